// Check a plugin's JavaScript syntax before it is built, and report an
// error as FILE:LINE:COLUMN: SyntaxError: MESSAGE with the line itself.
// componentize-js reports only that parsing failed; node's parser says
// where and why.
//
//   node check.mjs SOURCE.js
//
// Exits 0 when the source parses (as an ES module, as the build reads it),
// 1 with the report on stderr when it does not. Only node: builtins are
// used, so it runs before the build toolchain is installed.
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [source] = process.argv.slice(2);
if (!source) {
  console.error('usage: node check.mjs SOURCE.js');
  process.exit(2);
}

const scratch = await mkdtemp(join(tmpdir(), 'sluice-js-check-'));
try {
  // `.mjs`: parsed as a module whatever the nearest package.json says.
  const copy = join(scratch, 'plugin.mjs');
  await copyFile(source, copy);
  const checked = spawnSync(process.execPath, ['--check', copy], { encoding: 'utf8' });
  if (checked.status !== 0) {
    console.error(report(checked.stderr, copy, source));
    process.exitCode = 1;
  }
} finally {
  await rm(scratch, { recursive: true, force: true });
}

// node --check prints `PATH:LINE`, the line, a caret under the column and
// `SyntaxError: MESSAGE`.
function report(stderr, copy, source) {
  const lines = stderr.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`${copy}:`));
  const error = lines.find((l) => /^\w*Error: /.test(l));
  if (at < 0 || !error) {
    return `${source}: does not parse:\n${stderr.replaceAll(copy, source)}`;
  }
  const line = lines[at].slice(copy.length + 1);
  const code = lines[at + 1] ?? '';
  const caret = (lines[at + 2] ?? '').indexOf('^');
  const column = caret >= 0 ? `:${caret + 1}` : '';
  return `${source}:${line}${column}: ${error}\n    ${code.trim()}`;
}
