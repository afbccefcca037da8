#!/usr/bin/env node
// Rewrites the README's "## Error codes" table from the catalogue (dist/host/errors.js, so build
// first). The doc test (test/host/error-codes-are-documented.test.ts) fails until they agree.
import { readFileSync, writeFileSync } from 'node:fs';
import { ERROR_CODES, statusOf } from '../dist/host/errors.js';

const readme = new URL('../README.md', import.meta.url);
const text = readFileSync(readme, 'utf8');
const start = text.indexOf('\n## Error codes\n');
const tableStart = text.indexOf('\n| code', start);
const tableEnd = text.indexOf('\n\n', tableStart + 1);
const rows = Object.entries(ERROR_CODES).map(([c, m]) => [`\`${c}\``, String(statusOf(c)), m]);
const head = ['code', 'status', 'meaning'];
const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(w[i])).join(' | ')} |`;
const table = [line(head), `| ${w.map((n) => '-'.repeat(n)).join(' | ')} |`, ...rows.map(line)].join('\n');
writeFileSync(readme, `${text.slice(0, tableStart + 1)}${table}${text.slice(tableEnd)}`);
