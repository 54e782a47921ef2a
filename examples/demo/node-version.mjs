// The demo runs on the Node.js queue-otel needs (package.json `engines`): on an older one, say so
// in one line and exit 1, before building or starting anything. Run first by `npm run demo`, and
// imported first by run.mjs.
import { readFileSync } from 'node:fs';

const { engines } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
const need = engines.node.replace(/^>=\s*/, '');
const have = process.versions.node;
const older = (a, b) => {
  const [x, y] = [a, b].map((v) => v.split('.').map(Number));
  for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] < y[i];
  return false;
};
if (older(have, need)) {
  console.error(`demo: queue-otel needs Node.js ${need} or later (22.15+ or 24), this is ${have}. Install one (e.g. nvm install 24) and run npm run demo again.`);
  process.exit(1);
}
