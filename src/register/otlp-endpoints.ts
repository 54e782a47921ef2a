/**
 * Where the OTLP exporters that NodeSDK builds from the environment send each signal, worked out
 * from the same variables and defaults (the OpenTelemetry specification's), so that a message
 * about an endpoint that does not answer can name it and the variable that changes it.
 */
type Env = Readonly<Record<string, string | undefined>>;

/** A signal exported over OTLP. */
export interface OtlpEndpoint {
  signal: 'traces' | 'metrics' | 'logs';
  /** The variable that picks this signal's exporter: `none` there stops the sending. */
  exporterVariable: string;
  url: string;
}

const SIGNALS = [
  { signal: 'traces', exporterVariable: 'OTEL_TRACES_EXPORTER' },
  { signal: 'metrics', exporterVariable: 'OTEL_METRICS_EXPORTER' },
  { signal: 'logs', exporterVariable: 'OTEL_LOGS_EXPORTER' },
] as const;

/**
 * The signals whose exporter is OTLP (the default for each), with the URL each is sent to. Logs
 * only when OTEL_LOGS_EXPORTER names otlp: by default their exporter is set up but sends nothing
 * until the application emits a log record through OpenTelemetry, which queue-otel never does.
 */
export function otlpEndpoints(env: Env): OtlpEndpoint[] {
  const out: OtlpEndpoint[] = [];
  for (const { signal, exporterVariable } of SIGNALS) {
    const given = env[exporterVariable]?.trim();
    const exporters = (given || (signal === 'logs' ? 'none' : 'otlp')).split(',').map((s) => s.trim().toLowerCase());
    if (!exporters.includes('otlp')) continue;
    const upper = signal.toUpperCase();
    const protocol = env[`OTEL_EXPORTER_OTLP_${upper}_PROTOCOL`]?.trim() || env.OTEL_EXPORTER_OTLP_PROTOCOL?.trim() || 'http/protobuf';
    const own = env[`OTEL_EXPORTER_OTLP_${upper}_ENDPOINT`]?.trim();
    const shared = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
    let url: string;
    if (protocol === 'grpc') url = own || shared || 'http://localhost:4317';
    else if (own) url = own;
    else url = `${(shared || 'http://localhost:4318').replace(/\/+$/, '')}/v1/${signal}`;
    out.push({ signal, exporterVariable, url });
  }
  return out;
}

/** `host:port` of a URL, with the scheme's default port; `undefined` when it is not a URL. */
export function hostPort(url: string): { host: string; port: string } | undefined {
  try {
    const u = new URL(url);
    return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port || (u.protocol === 'https:' ? '443' : '80') };
  } catch {
    return undefined;
  }
}
