// The README and docs/ are what users read to know the schema and the settings: every metric name,
// option and QUEUE_OTEL_* variable the code has must be in them, every link in them must lead to
// a file of this repository, and the README must stay short enough to read.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'vitest';
import { OPTION_NAMES } from '../src/config.js';
import { KNOWN_VARIABLES } from '../src/register/env.js';
import * as semconv from '../src/semconv.js';

const ROOT = resolve(import.meta.dirname, '..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const README = read('README.md');
const METRIC_NAMES = Object.entries(semconv)
  .filter(([key]) => key.startsWith('METRIC_'))
  .map(([, value]) => value as string);

describe('README and docs', () => {
  it('the README fits on a screen or two (under 400 lines) and says nothing of how it is developed', ({ expect }) => {
    expect(README.split('\n').length).toBeLessThan(400);
    expect(README).not.toMatch(/\bissue #?\d+|\b(this|previous|next) session\b|\bhelpers?\b|measured here|this project's machine/i);
  });

  it('lists every metric of the schema, in the README and in docs/metrics.md', ({ expect }) => {
    expect(METRIC_NAMES.length).toBeGreaterThanOrEqual(20);
    const metricsDoc = read('docs/metrics.md');
    for (const name of METRIC_NAMES) {
      expect(README, name).toContain(`| \`${name}\` |`);
      expect(metricsDoc, name).toContain(`| \`${name}\` |`);
    }
  });

  it('lists every option in the README and in docs/configuration.md, and every variable in docs/configuration.md', ({ expect }) => {
    const configuration = read('docs/configuration.md');
    for (const option of OPTION_NAMES) {
      expect(README, option).toMatch(new RegExp(`\\| [^|]*\`${option}\``));
      expect(configuration, option).toContain(`| \`${option}\` |`);
    }
    for (const variable of KNOWN_VARIABLES) expect(configuration, variable).toContain(`\`${variable}\``);
  });

  it('every relative link of the README and docs/ leads to a file of the repository', ({ expect }) => {
    const files = ['README.md', 'CHANGELOG.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
    const broken: string[] = [];
    for (const file of files) {
      for (const [, target] of read(file).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue;
        const path = resolve(ROOT, dirname(file), target.split('#')[0]);
        if (!existsSync(path)) broken.push(`${file} -> ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });
});
