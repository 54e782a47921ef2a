/**
 * The cardinality limit an OpenTelemetry SDK MeterProvider applies to queue-otel's instruments,
 * read from its internals when they are there (sdk-metrics 2.x and 3.x): the lowest of its
 * readers' `cardinalitySelector` and of its views' `aggregationCardinalityLimit`. Undefined when
 * it cannot be read (another SDK, a proxy, a changed internal): the `cardinalityLimit` option
 * applies then. Never throws.
 */
const INSTRUMENT_TYPES = ['COUNTER', 'HISTOGRAM', 'OBSERVABLE_COUNTER', 'OBSERVABLE_GAUGE', 'OBSERVABLE_UP_DOWN_COUNTER'];

interface SdkMeterProviderLike {
  _sharedState?: {
    metricCollectors?: Array<{ selectCardinalityLimit?: (type: string) => unknown }>;
    viewRegistry?: { _registeredViews?: Array<{ aggregationCardinalityLimit?: unknown }> };
  };
}

export function sdkCardinalityLimit(provider: unknown): number | undefined {
  try {
    const shared = (provider as SdkMeterProviderLike | undefined)?._sharedState;
    if (shared === undefined) return undefined;
    const limits: number[] = [];
    for (const collector of shared.metricCollectors ?? []) {
      for (const type of INSTRUMENT_TYPES) limits.push(Number(collector.selectCardinalityLimit?.(type)));
    }
    for (const view of shared.viewRegistry?._registeredViews ?? []) limits.push(Number(view.aggregationCardinalityLimit));
    const valid = limits.filter((n) => Number.isInteger(n) && n > 0);
    return valid.length === 0 ? undefined : Math.min(...valid);
  } catch {
    return undefined;
  }
}
