// Build one JavaScript Sluice plugin into a WebAssembly component with the
// componentize-js API (its CLI, and jco's, mishandle relative --wit paths).
//
//   node build.mjs SOURCE.js KIND OUT.wasm [WIT_DIR]
//
// KIND is transform or destination: the world of wit/plugin.wit the plugin
// exports. The plugin's folder is copied to a scratch folder together
// with lib/sluice-sdk.js (unless the folder has its own sluice-sdk.js, as a
// project made by `sluice plugin new` does), so a plugin anywhere imports
// the SDK as './sluice-sdk.js'. `sluice plugin build` runs a copy of this
// file from the toolchain folder it installs (beside its node_modules). Transforms are built without the engine's HTTP support
// (they make no requests); destinations keep it, so `fetch` works
// over wasi:http, filtered by the host through the plugin's grant.
import { componentize } from '@bytecodealliance/componentize-js';
import { existsSync } from 'node:fs';
import { copyFile, cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [source, kind, out, wit = resolve(here, '../../wit')] = process.argv.slice(2);
if (!source || !out || !['transform', 'destination'].includes(kind)) {
  console.error('usage: node build.mjs SOURCE.js transform|destination OUT.wasm [WIT_DIR]');
  process.exit(2);
}

const started = Date.now();
const scratch = await mkdtemp(join(tmpdir(), 'sluice-js-'));
const previous = process.cwd();
try {
  await cp(dirname(resolve(source)), scratch, {
    recursive: true,
    filter: (path) => !path.includes('node_modules') && !path.endsWith('.wasm'),
  });
  if (!existsSync(join(scratch, 'sluice-sdk.js'))) {
    await copyFile(join(here, 'lib', 'sluice-sdk.js'), join(scratch, 'sluice-sdk.js'));
  }
  // componentize-js maps the current directory into the build: the
  // scratch folder, so relative imports resolve inside it.
  process.chdir(scratch);
  const { component } = await componentize({
    sourcePath: join(scratch, basename(source)),
    witPath: resolve(previous, wit),
    worldName: kind,
    disableFeatures: kind === 'transform' ? ['http', 'fetch-event'] : ['fetch-event'],
  });
  const target = resolve(previous, out);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, component);
  console.error(`sdk/js: ${source} (${kind}) -> ${out}: ${component.length} bytes in ${Date.now() - started} ms`);
} finally {
  process.chdir(previous);
  await rm(scratch, { recursive: true, force: true });
}
