// Bee-Queue 2 against the real Redis: the conformance suite (test/bee-queue-specific.test.ts has the rest).
import { runConformance } from './conformance/suite.js';
import { beeQueueDriver } from './conformance/drivers/bee-queue.js';

runConformance(beeQueueDriver);
