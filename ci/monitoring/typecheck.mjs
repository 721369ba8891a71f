#!/usr/bin/env node
/**
 * Type-checks every dashboard of grafana/dashboards/ against @grafana/schema: writes each
 * one as `export const d: Dashboard = <its JSON>;` into a scratch directory and runs
 * `tsc --noEmit --strict` over them, so a misspelt or mistyped field fails as an excess or
 * wrong property. Usage: typecheck.mjs SCRATCH_DIR
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nodeModules, tscPath } from './deps.mjs';
import { loadDashboards } from './grafana.mjs';

const scratch = process.argv[2];
if (!scratch) {
  console.error('usage: typecheck.mjs SCRATCH_DIR');
  process.exit(2);
}
rmSync(scratch, { recursive: true, force: true });
mkdirSync(scratch, { recursive: true });
symlinkSync(nodeModules, join(scratch, 'node_modules'));

const files = loadDashboards().map(({ file, dashboard }) => {
  const ts = `${file.replace(/\.json$/, '')}.ts`;
  writeFileSync(join(scratch, ts), `// ${file}, as Grafana's Dashboard type.\n`
    + `import type { Dashboard } from '@grafana/schema';\n\n`
    + `export const d: Dashboard = ${JSON.stringify(dashboard, null, 2)};\n`);
  return ts;
});
writeFileSync(join(scratch, 'tsconfig.json'), JSON.stringify({
  compilerOptions: {
    strict: true, noEmit: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext',
    types: [], exactOptionalPropertyTypes: false,
  },
  files,
}, null, 2));

try {
  execFileSync(process.execPath, [tscPath, '--project', join(scratch, 'tsconfig.json'), '--pretty', 'false'],
    { stdio: 'inherit' });
} catch {
  console.error(`\ndashboards do not match @grafana/schema's Dashboard type (sources in ${scratch})`);
  process.exit(1);
}
console.log(`RESULT typecheck: ${files.length} dashboards match @grafana/schema's Dashboard type (tsc --strict)`);
