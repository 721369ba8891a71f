#!/usr/bin/env node
/**
 * The truth test's query runner: executes, through a real Prometheus' HTTP API
 * (/api/v1/query), every Prometheus query of every dashboard panel (variables resolved the
 * way Grafana resolves them, from the same Prometheus) and every alerting and recording
 * rule of alerts/, and fails on any query that errors or returns no series, naming the
 * dashboard and panel or the rule.
 *
 * Alert expressions return nothing while they do not fire, so each is taken apart into its
 * signal operands (promql.mjs: comparisons against thresholds and set operators removed,
 * absent(x) checked as x) and every operand must return series. Every vector selector of
 * every query must also return series on its own, so a fallback such as `or vector(0)` or
 * `absent()` cannot hide a metric that does not exist. Recording rules are checked twice:
 * their expression, and the recorded series Prometheus wrote. Finally every rule group
 * must be healthy in /api/v1/rules (no evaluation error), and every PromQL line of
 * docs/runbook.md (its "Confirm" queries) must return series, taken apart the same way.
 *
 * Usage: truth.mjs PROMETHEUS_URL
 */
import { readFileSync } from 'node:fs';
import { selectors, signals } from './promql.mjs';
import {
  applyVariableRegex, BUILT_INS, loadDashboards, parseLabelValues, queries, regexValue, substitute, variables,
} from './grafana.mjs';
import { loadRules } from './rules.mjs';

const RUNBOOK = new URL('../../docs/runbook.md', import.meta.url).pathname;
const base = process.argv[2];
if (!base) {
  console.error('usage: truth.mjs PROMETHEUS_URL');
  process.exit(2);
}

const failures = [];
const cache = new Map();

/** {series: [...]} or {error}, one request per distinct query. */
async function query(expr) {
  if (!cache.has(expr)) {
    cache.set(expr, (async () => {
      const response = await fetch(`${base}/api/v1/query`, { method: 'POST', body: new URLSearchParams({ query: expr }) });
      const body = await response.json();
      if (body.status !== 'success') return { error: `${body.errorType}: ${body.error}` };
      return { series: body.data.result };
    })());
  }
  return cache.get(expr);
}

/** Runs expr; records a failure naming `where` when it errors or returns no series. */
async function expectSeries(where, expr) {
  const r = await query(expr);
  if (r.error) failures.push(`${where}: ${r.error}\n    query: ${expr}`);
  else if (r.series.length === 0) failures.push(`${where}: no series\n    query: ${expr}`);
  return r.series ?? [];
}

/** The query plus each of its selectors on its own. */
async function expectQueryAndSelectors(where, expr) {
  await expectSeries(where, expr);
  for (const s of selectors(expr)) {
    if (s !== expr) await expectSeries(`${where} (selector ${s})`, s);
  }
}

/** Values of the dashboard's variables as Grafana sends them with "All" selected. */
async function resolveVariables(file, dashboard) {
  const values = { ...BUILT_INS };
  for (const v of variables(dashboard)) {
    if (v.type === 'textbox') values[v.name] = '';
    if (v.type !== 'query' || v.datasourceType !== 'prometheus') continue;
    const { selector, label } = parseLabelValues(v.query);
    const series = await expectSeries(`${file} / variable ${v.name}`, substitute(selector, values));
    const found = applyVariableRegex(series.map((s) => s.metric[label]).filter(Boolean), v.regex);
    if (series.length && !found.length) failures.push(`${file} / variable ${v.name}: no value of label ${label} (regex ${v.regex || 'none'})`);
    values[v.name] = regexValue(found);
  }
  return values;
}

/** True when some series has a finite value other than 0. */
const moves = (series) => series.some((s) => {
  const v = Number(s.value[1]);
  return Number.isFinite(v) && v !== 0;
});

async function checkDashboards() {
  let count = 0;
  let skipped = 0;
  const flat = [];
  for (const { file, dashboard } of loadDashboards()) {
    const values = await resolveVariables(file, dashboard);
    for (const q of queries(file, dashboard)) {
      if (q.type !== 'prometheus') {
        skipped += 1; // LogQL: no Loki here; lint.mjs checks its syntax.
        continue;
      }
      count += 1;
      const expr = substitute(q.expr, values);
      await expectQueryAndSelectors(q.where, expr);
      if (!moves((await query(expr)).series ?? [])) flat.push(q.where);
    }
  }
  return { count, skipped, flat };
}

/** The recorded series of a recording rule, narrowed by the labels the rule adds. */
function recordedSelector(rule) {
  const matchers = Object.entries(rule.labels).map(([k, v]) => `${k}=${JSON.stringify(String(v))}`);
  return matchers.length ? `${rule.name}{${matchers.join(', ')}}` : rule.name;
}

async function checkRules() {
  const rules = loadRules();
  let operands = 0;
  for (const rule of rules) {
    const where = `${rule.file} / ${rule.kind} ${rule.kind === 'record' ? recordedSelector(rule) : rule.name}`;
    if (rule.kind === 'record') {
      await expectQueryAndSelectors(where, rule.expr);
      await expectSeries(`${where} (recorded series)`, recordedSelector(rule));
      continue;
    }
    for (const signal of signals(rule.expr)) {
      operands += 1;
      await expectQueryAndSelectors(`${where} (operand ${signal})`, signal);
    }
  }
  return { alerts: rules.filter((r) => r.kind === 'alert').length, records: rules.filter((r) => r.kind === 'record').length, operands };
}

/** [{where, expr}] for every line of every ```promql block of docs/runbook.md. */
function runbookQueries() {
  const out = [];
  let section = '';
  let inBlock = false;
  readFileSync(RUNBOOK, 'utf8').split('\n').forEach((line, index) => {
    if (line.startsWith('## ')) section = line.slice(3).trim();
    if (line.startsWith('```')) inBlock = line.trim() === '```promql';
    else if (inBlock && line.trim()) out.push({ where: `runbook.md / ${section} / line ${index + 1}`, expr: line.trim() });
  });
  return out;
}

/** The runbook's confirmation queries, taken apart like alert expressions. */
async function checkRunbook() {
  const queries = runbookQueries();
  for (const q of queries) {
    for (const signal of signals(q.expr)) await expectQueryAndSelectors(`${q.where} (${signal})`, signal);
  }
  return queries.length;
}

async function checkRuleHealth() {
  const body = await (await fetch(`${base}/api/v1/rules`)).json();
  const rules = body.data.groups.flatMap((g) => g.rules.map((r) => ({ ...r, group: g.name })));
  for (const r of rules.filter((x) => x.health !== 'ok')) {
    failures.push(`rule ${r.group} / ${r.name}: health ${r.health} ${r.lastError ?? ''}`);
  }
  return rules.length;
}

const dashboards = await checkDashboards();
const rules = await checkRules();
const loaded = await checkRuleHealth();
const runbook = await checkRunbook();
console.log(`RESULT truth: ${dashboards.count} dashboard PromQL queries checked (${dashboards.skipped} LogQL queries syntax-checked only, no Loki here)`);
console.log(`RESULT truth: ${dashboards.count - dashboards.flat.length} of ${dashboards.count} dashboard queries show non-zero data after the traffic`);
if (dashboards.flat.length) console.log(`  only zeros or NaN (information, not a failure): ${dashboards.flat.join('; ')}`);
console.log(`RESULT truth: ${rules.alerts} alerts (${rules.operands} signal operands) and ${rules.records} recording rules checked; ${loaded} rules loaded in Prometheus`);
console.log(`RESULT truth: ${runbook} PromQL queries of docs/runbook.md checked`);
console.log(`RESULT truth: ${cache.size} distinct queries sent to Prometheus, ${failures.length} failed (error or no series)`);
for (const f of failures) console.error(`FAILED ${f}`);
process.exit(failures.length ? 1 : 0);
