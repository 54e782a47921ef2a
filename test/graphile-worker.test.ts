// graphile-worker 0.18 against the real PostgreSQL: the conformance suite (test/graphile-worker-specific.test.ts has the rest).
import { runConformance } from './conformance/suite.js';
import { graphileWorkerDriver } from './conformance/drivers/graphile-worker.js';

runConformance(graphileWorkerDriver);
