// pg-boss 12 against the real PostgreSQL: the conformance suite (test/pg-boss-specific.test.ts has the rest).
import { runConformance } from './conformance/suite.js';
import { pgBossDriver } from './conformance/drivers/pg-boss.js';

runConformance(pgBossDriver);
