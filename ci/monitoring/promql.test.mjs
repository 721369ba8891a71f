/**
 * Tests of promql.mjs: how alert expressions are taken apart for the truth test
 * (docs/monitoring.md, "What CI checks"). Run with `node --test ci/monitoring/`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { selectors, signals, syntaxErrors } from './promql.mjs';

test('a threshold comparison leaves its left-hand side', () => {
  assert.deepEqual(signals('instance:x:ratio > 0.8'), ['instance:x:ratio']);
  assert.deepEqual(signals('changes(p[15m]) >= 3'), ['changes(p[15m])']);
});

test('constant arithmetic on the threshold side is dropped', () => {
  assert.deepEqual(signals('m{job="a"} > 2 * 1024 * 1024 * 1024'), ['m{job="a"}']);
});

test('set operators are split into their operands, each comparison stripped', () => {
  assert.deepEqual(signals('a > 0.05 and on (job) sum by (job) (b) > 1'), ['a', 'sum by (job) (b)']);
  assert.deepEqual(signals('a unless on (host) c == 1'), ['a', 'c']);
});

test('absent() contributes the selector that must exist', () => {
  assert.deepEqual(signals('absent(up{colour="blue"}) or absent(up{job="traefik"})'),
    ['up{colour="blue"}', 'up{job="traefik"}']);
});

test('wrappers around filters are looked through', () => {
  assert.deepEqual(
    signals('label_replace(last_over_time(a[1h]) > 0 and on (i) up == 0, "h", "$1", "i", "(.*)") unless on (h) m == 1'),
    ['last_over_time(a[1h])', 'up', 'm'],
  );
});

test('a vector comparison keeps both sides; bool comparisons do not filter', () => {
  assert.deepEqual(signals('a >= b'), ['a', 'b']);
  assert.deepEqual(signals('a > bool 1'), ['a > bool 1']);
});

test('an expression without a filter is its own signal', () => {
  assert.deepEqual(signals('sum(rate(x[5m])) / sum(rate(y[5m]))'), ['sum(rate(x[5m])) / sum(rate(y[5m]))']);
});

test('selectors include those inside range selectors', () => {
  assert.deepEqual(selectors('rate(a{x="1"}[5m]) / b'), ['a{x="1"}', 'b']);
});

test('syntax errors are reported, valid expressions have none', () => {
  assert.deepEqual(syntaxErrors('sum by (a) (rate(x[5m]))'), []);
  assert.notDeepEqual(syntaxErrors('sum(rate(x[5m]) by'), []);
});
