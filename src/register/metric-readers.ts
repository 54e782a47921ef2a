/**
 * Metric readers from the standard environment variables, made with the application's own SDK
 * packages. NodeSDK builds these itself only when it is given no reader; register adds the
 * dashboard's in-process reader beside them, so it builds them the same way (and applies
 * OTEL_METRIC_EXPORT_INTERVAL to the console exporter too, which NodeSDK leaves at 60 s).
 */
import { type ConfigWarn, warnConfig } from '../config.js';

type Env = Readonly<Record<string, string | undefined>>;
type Load = (id: string) => unknown;

interface Ctor<T = object> {
  new (options?: object): T;
}

const EXPORTERS = ['otlp', 'prometheus', 'console', 'none'] as const;
const PROTOCOLS: Record<string, string> = {
  'http/protobuf': '@opentelemetry/exporter-metrics-otlp-proto',
  'http/json': '@opentelemetry/exporter-metrics-otlp-http',
  grpc: '@opentelemetry/exporter-metrics-otlp-grpc',
};

/** Reports a value that cannot be used, naming the variable, what it expected and what applies. */
function invalid(warn: ConfigWarn, name: string, expected: string, text: string, instead: string): void {
  warn(`queue-otel: environment variable ${name} must be ${expected}, got ${JSON.stringify(text)}; ${instead}`);
}

function milliseconds(env: Env, name: string, fallback: number, warn: ConfigWarn): number {
  const text = env[name]?.trim();
  if (!text) return fallback;
  if (/^\d+$/.test(text) && Number(text) >= 1) return Number(text);
  invalid(warn, name, 'a whole number of milliseconds >= 1', text, `using the default, ${fallback}`);
  return fallback;
}

/**
 * Which metric exporters OTEL_METRICS_EXPORTER asks for (default `otlp`, as in the SDK). An
 * unknown name is reported and left out, as NodeSDK does for OTEL_TRACES_EXPORTER.
 */
export function metricExporterNames(env: Env, warn: ConfigWarn = warnConfig): string[] {
  const text = env.OTEL_METRICS_EXPORTER?.trim();
  if (!text) return ['otlp'];
  const names = [...new Set(text.split(',').map((s) => s.trim().toLowerCase()))];
  const known = names.filter((n) => (EXPORTERS as readonly string[]).includes(n));
  for (const n of names) {
    if (!known.includes(n)) invalid(warn, 'OTEL_METRICS_EXPORTER', `a comma-separated list of ${EXPORTERS.join(', ')}`, text, `"${n}" ignored`);
  }
  return known.includes('none') ? [] : known;
}

/**
 * Readers for OTEL_METRICS_EXPORTER: `otlp` (OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL, endpoint and
 * headers read by the exporter itself), `prometheus` (OTEL_EXPORTER_PROMETHEUS_HOST / _PORT,
 * default port 9464), `console`; OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT for the periodic ones.
 * `load` requires a package as the application's @opentelemetry/sdk-node resolves it. A value that
 * cannot be used is reported through `warn` and its default applies.
 */
export function metricReadersFromEnv(env: Env, load: Load, warn: ConfigWarn = warnConfig): object[] {
  const names = metricExporterNames(env, warn);
  if (names.length === 0) return [];
  const metrics = load('@opentelemetry/sdk-metrics') as {
    PeriodicExportingMetricReader: Ctor;
    ConsoleMetricExporter: Ctor;
  };
  const interval = milliseconds(env, 'OTEL_METRIC_EXPORT_INTERVAL', 60_000, warn);
  const timeout = Math.min(milliseconds(env, 'OTEL_METRIC_EXPORT_TIMEOUT', 30_000, warn), interval);
  const periodic = (exporter: object) =>
    new metrics.PeriodicExportingMetricReader({ exporter, exportIntervalMillis: interval, exportTimeoutMillis: timeout });

  return names.map((name) => {
    if (name === 'console') return periodic(new metrics.ConsoleMetricExporter());
    if (name === 'prometheus') {
      let port = env.OTEL_EXPORTER_PROMETHEUS_PORT?.trim();
      if (port && (!/^\d+$/.test(port) || Number(port) > 65535)) {
        invalid(warn, 'OTEL_EXPORTER_PROMETHEUS_PORT', 'a port number', port, 'using the default, 9464');
        port = undefined;
      }
      // Its server is unref'd by the exporter: it never keeps the process alive.
      const { PrometheusExporter } = load('@opentelemetry/exporter-prometheus') as { PrometheusExporter: Ctor };
      return new PrometheusExporter({
        host: env.OTEL_EXPORTER_PROMETHEUS_HOST?.trim() || undefined,
        port: port ? Number(port) : undefined,
      });
    }
    const variable = env.OTEL_EXPORTER_OTLP_METRICS_PROTOCOL?.trim() ? 'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL' : 'OTEL_EXPORTER_OTLP_PROTOCOL';
    let protocol = env[variable]?.trim() || 'http/protobuf';
    if (PROTOCOLS[protocol] === undefined) {
      invalid(warn, variable, Object.keys(PROTOCOLS).join(', '), protocol, 'using http/protobuf for metrics');
      protocol = 'http/protobuf';
    }
    const { OTLPMetricExporter } = load(PROTOCOLS[protocol]!) as { OTLPMetricExporter: Ctor };
    return periodic(new OTLPMetricExporter());
  });
}
