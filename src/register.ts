/**
 * Reserved for zero-code start (`node --import queue-otel/register`), which is not in this
 * release yet. Loading it changes nothing; it says so once, so nobody believes they are traced.
 */
process.emitWarning(
  'queue-otel/register does not start OpenTelemetry yet in this version; construct BullMQInstrumentation in your SDK setup (see README).',
  { code: 'QUEUE_OTEL_REGISTER_NOT_AVAILABLE' },
);
export {};
