/**
 * The npm packages of ci/node (installed by ci/setup), for the scripts in ci/monitoring/,
 * which live outside that package's node_modules lookup path.
 */
import { createRequire } from 'node:module';

const require = createRequire(new URL('../node/package.json', import.meta.url));

export const promqlParser = require('@prometheus-io/lezer-promql').parser;
export const logqlParser = require('@grafana/lezer-logql').parser;
export const YAML = require('yaml');
export const tscPath = require.resolve('typescript/bin/tsc');
export const nodeModules = new URL('../node/node_modules', import.meta.url).pathname;
