// examples/collector/otel-collector.yaml, checked without a Collector binary (none is packaged for
// npm or Debian): it parses as YAML, every key of every component is one the component's Go config
// struct accepts (their `mapstructure` tags, copied below from the Collector's sources, with the
// file each comes from), the validation rules those structs apply hold, and the pipelines wire
// only components that are defined, in pipelines of a type each component supports.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ROOT } from './helpers/processes.js';

const CONFIG = join(ROOT, 'examples/collector/otel-collector.yaml');

/** A config struct: its keys, each a leaf type or a nested struct. `null` in YAML is an empty section. */
type Shape = 'string' | 'number' | 'boolean' | 'duration' | { [key: string]: Shape };

// confighttp.ServerConfig / configgrpc.ServerConfig: only the keys used here are listed.
const SERVER = { endpoint: 'string' } as const;

/** Component type -> what its config accepts, and which pipeline types it can be in. */
const COMPONENTS: Record<string, Record<string, { shape: Shape; signals: string[] }>> = {
  receivers: {
    // opentelemetry-collector receiver/otlpreceiver/config.go: Protocols{GRPC, HTTP}
    otlp: { shape: { protocols: { grpc: SERVER, http: SERVER } }, signals: ['traces', 'metrics', 'logs'] },
  },
  processors: {
    // opentelemetry-collector internal/memorylimiter/config.go (GCStatsConfig squashed)
    memory_limiter: {
      shape: {
        model: 'string',
        check_interval: 'duration',
        min_gc_interval_when_soft_limited: 'duration',
        min_gc_interval_when_hard_limited: 'duration',
        limit_mib: 'number',
        spike_limit_mib: 'number',
        limit_percentage: 'number',
        spike_limit_percentage: 'number',
      },
      signals: ['traces', 'metrics', 'logs'],
    },
    // opentelemetry-collector processor/batchprocessor/config.go
    batch: { shape: { timeout: 'duration', send_batch_size: 'number', send_batch_max_size: 'number' }, signals: ['traces', 'metrics', 'logs'] },
  },
  exporters: {
    // opentelemetry-collector-contrib exporter/prometheusexporter/config.go (ServerConfig squashed)
    prometheus: {
      shape: {
        ...SERVER,
        namespace: 'string',
        const_labels: {},
        send_timestamps: 'boolean',
        metric_expiration: 'duration',
        resource_to_telemetry_conversion: { enabled: 'boolean' },
        enable_open_metrics: 'boolean',
        add_metric_suffixes: 'boolean',
        translation_strategy: 'string',
      },
      signals: ['metrics'],
    },
    // opentelemetry-collector-contrib pkg/datadog/config/config.go and metrics.go
    datadog: {
      shape: {
        hostname: 'string',
        only_metadata: 'boolean',
        api: { key: 'string', site: 'string', fail_on_invalid_key: 'boolean' },
        metrics: {
          delta_ttl: 'number',
          endpoint: 'string',
          resource_attributes_as_tags: 'boolean',
          instrumentation_scope_metadata_as_tags: 'boolean',
          histograms: { mode: 'string', send_count_sum_metrics: 'boolean', send_aggregation_metrics: 'boolean' },
          sums: { cumulative_monotonic_mode: 'string', initial_cumulative_monotonic_value: 'string' },
          summaries: { mode: 'string' },
        },
        // exporterhelper.QueueConfig; `batch:` (empty) turns batching on with its defaults.
        sending_queue: { enabled: 'boolean', batch: {} },
      },
      signals: ['traces', 'metrics', 'logs'],
    },
  },
  connectors: {
    // opentelemetry-collector-contrib connector/datadogconnector: traces in, metrics out
    datadog: { shape: {}, signals: ['traces->metrics'] },
  },
  extensions: {
    // opentelemetry-collector-contrib extension/healthcheckextension/config.go (ServerConfig squashed)
    health_check: { shape: { ...SERVER }, signals: [] },
  },
};

const type = (id: string) => id.split('/')[0]!;

function check(value: unknown, shape: Shape, path: string, errors: string[]): void {
  if (value === null || value === undefined) {
    if (typeof shape !== 'object') errors.push(`${path}: empty, expected ${shape}`);
    return;
  }
  if (typeof shape === 'object') {
    if (typeof value !== 'object' || Array.isArray(value)) return void errors.push(`${path}: expected a mapping`);
    for (const [key, v] of Object.entries(value)) {
      if (!(key in shape)) errors.push(`${path}.${key}: not a key of this component's config`);
      // An empty shape (const_labels, batch) takes any keys.
      else check(v, shape[key]!, `${path}.${key}`, errors);
    }
    return;
  }
  const envReference = typeof value === 'string' && /^\$\{env:[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$/.test(value);
  const ok =
    shape === 'string' ? typeof value === 'string'
    : shape === 'number' ? typeof value === 'number' || envReference
    : shape === 'boolean' ? typeof value === 'boolean' || envReference
    : typeof value === 'string' && /^\d+(\.\d+)?(ns|us|ms|s|m|h)$/.test(value);
  if (!ok) errors.push(`${path}: ${JSON.stringify(value)} is not a ${shape}`);
}

describe('examples/collector/otel-collector.yaml', () => {
  const config = parse(readFileSync(CONFIG, 'utf8')) as Record<string, Record<string, unknown>> & {
    service: { extensions?: string[]; pipelines: Record<string, { receivers: string[]; processors?: string[]; exporters: string[] }> };
  };

  it('has only the Collector top-level sections, and every key of every component is one its config accepts', () => {
    expect(Object.keys(config).sort()).toEqual(['connectors', 'exporters', 'extensions', 'processors', 'receivers', 'service']);
    const errors: string[] = [];
    for (const section of ['receivers', 'processors', 'exporters', 'connectors', 'extensions']) {
      for (const [id, body] of Object.entries(config[section] ?? {})) {
        const known = COMPONENTS[section]![type(id)];
        if (known === undefined) errors.push(`${section}.${id}: not a component this check knows`);
        else check(body, known.shape, `${section}.${id}`, errors);
      }
    }
    expect(errors).toEqual([]);
  });

  it("meets the components' own validation rules", () => {
    const limiter = config.processors!.memory_limiter as Record<string, number | string>;
    expect(limiter.check_interval).not.toMatch(/^0/); // must be greater than zero
    expect(Number(limiter.limit_percentage)).toBeGreaterThan(Number(limiter.spike_limit_percentage));
    expect(Number(limiter.limit_percentage)).toBeLessThanOrEqual(100);
    const datadog = config.exporters!.datadog as { api: { key: string }; endpoint?: unknown; metrics: { histograms: { mode: string } } };
    expect(datadog.api.key).toBe('${env:DD_API_KEY}'); // never a key in the file
    expect(datadog.endpoint).toBeUndefined(); // not respected by the Datadog exporter (validateClientConfig)
    expect(['distributions', 'counters', 'nobuckets']).toContain(datadog.metrics.histograms.mode);
  });

  it('wires pipelines only from defined components, each in a pipeline type it supports; memory_limiter first', () => {
    const defined = (section: string) => new Set(Object.keys(config[section] ?? {}));
    const errors: string[] = [];
    const connectorsIn = new Map<string, Set<string>>();
    const connectorsOut = new Map<string, Set<string>>();
    for (const [name, pipeline] of Object.entries(config.service.pipelines)) {
      const signal = type(name);
      for (const id of pipeline.receivers) {
        if (defined('connectors').has(id)) connectorsOut.set(id, (connectorsOut.get(id) ?? new Set()).add(signal));
        else if (!defined('receivers').has(id)) errors.push(`${name}: receiver ${id} is not defined`);
        else if (!COMPONENTS.receivers![type(id)]!.signals.includes(signal)) errors.push(`${name}: ${id} does not take ${signal}`);
      }
      for (const id of pipeline.processors ?? []) if (!defined('processors').has(id)) errors.push(`${name}: processor ${id} is not defined`);
      if ((pipeline.processors ?? []).length > 0 && pipeline.processors![0] !== 'memory_limiter') errors.push(`${name}: memory_limiter is not first`);
      for (const id of pipeline.exporters) {
        if (defined('connectors').has(id)) connectorsIn.set(id, (connectorsIn.get(id) ?? new Set()).add(signal));
        else if (!defined('exporters').has(id)) errors.push(`${name}: exporter ${id} is not defined`);
        else if (!COMPONENTS.exporters![type(id)]!.signals.includes(signal)) errors.push(`${name}: ${id} does not export ${signal}`);
      }
    }
    // A connector is an exporter of one pipeline and a receiver of another, of the types it joins.
    for (const id of defined('connectors')) {
      const [from, to] = COMPONENTS.connectors![type(id)]!.signals[0]!.split('->');
      expect([id, [...(connectorsIn.get(id) ?? [])], [...(connectorsOut.get(id) ?? [])]]).toEqual([id, [from], [to]]);
    }
    for (const id of config.service.extensions ?? []) if (!defined('extensions').has(id)) errors.push(`extension ${id} is not defined`);
    expect(errors).toEqual([]);
    expect(Object.keys(config.service.pipelines).sort()).toEqual(['metrics', 'metrics/datadog-apm', 'traces']);
  });

  it('listens where the OTLP exporters of the OpenTelemetry JS SDK send by default (4318 http/protobuf, 4317 grpc)', () => {
    const otlp = (config.receivers!.otlp as { protocols: { grpc: { endpoint: string }; http: { endpoint: string } } }).protocols;
    expect(otlp.http.endpoint.endsWith(':4318')).toBe(true);
    expect(otlp.grpc.endpoint.endsWith(':4317')).toBe(true);
  });
});
