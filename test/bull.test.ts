// Bull 4 against the real Redis: the conformance suite, then what is Bull's own.
import { runConformance } from './conformance/suite.js';
import { bullDriver } from './conformance/drivers/bull.js';

runConformance(bullDriver);
