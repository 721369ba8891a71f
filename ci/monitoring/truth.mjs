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
 * Every dashboard query must also show a value other than 0 at some moment since the servers
 * started (a range query at 1 s steps over the run), unless EXPECTED_FLAT names it with the
 * reason this traffic cannot move it; a listed query that moves fails too, so the list stays
 * exact. With --traffic (ci/monitoring/traffic.py's JSON summary of what its clients were
 * answered), the counters that traffic fixes exactly must equal it: errors by code, and the
 * upgrades refused for a forbidden Origin (403) or an invalid connection id (400).
 *
 * Usage: truth.mjs PROMETHEUS_URL [--traffic TRAFFIC_JSON]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { selectors, signals } from './promql.mjs';
import {
  applyVariableRegex, BUILT_INS, loadDashboards, parseLabelValues, queries, regexValue, substitute, variables,
} from './grafana.mjs';
import { loadRules } from './rules.mjs';

const RUNBOOK = new URL('../../docs/runbook.md', import.meta.url).pathname;
const { values: options, positionals } = parseArgs({ options: { traffic: { type: 'string' } }, allowPositionals: true });
const base = positionals[0];
if (positionals.length !== 1) {
  console.error('usage: truth.mjs PROMETHEUS_URL [--traffic TRAFFIC_JSON]');
  process.exit(2);
}

/** Dashboard queries the truth test's traffic cannot move, and why. */
const EXPECTED_FLAT = new Map([
  ['deploy.json / Draining / A', 'nothing drains while the traffic runs (the drain comes after truth.mjs)'],
  ['overview.json / Auth refusals by reason / A', 'authentication is off on these servers (no AUTH_JWT_* key)'],
  ['overview.json / Channel failure shares (5m) / A', 'no publication is refused: the traffic\'s few channels are '
    + 'far below MAX_CHANNELS and the memory broker is always up'],
  ['overview.json / Channel failure shares (5m) / B', 'no subscriber falls behind: the traffic\'s channel clients '
    + 'read everything (insufficient_state needs a full inbox)'],
  ['overview.json / Channel failure shares (5m) / D', 'authentication is off on these servers (no AUTH_JWT_* key)'],
  ['overview.json / Handover: connections by outcome / A', 'no handover here (it needs systemd\'s file '
    + 'descriptor store: ci/suites/31-handover.sh): every outcome stays at 0'],
  ['overview.json / Handover durations / A', 'no handover here: the servers started without one'],
  ['overview.json / Handover durations / B', 'no handover here: the servers started without one'],
  // The Redis broker's series: these servers run the in-memory broker (BROKER=memory),
  // which times no publish in Redis, has no connection to lose, no command to time out and
  // no gap to repair (src/metrics/broker.rs: it leaves them at 0). The Redis-engine suites
  // (45-redis) run them against a real redis-server.
  ['overview.json / Broker publish latency / A', 'the in-memory broker times no publish (the Redis engine observes '
    + 'websocket_broker_publish_duration_seconds): p50 of an empty histogram is NaN'],
  ['overview.json / Broker publish latency / B', 'the in-memory broker times no publish: p99 of an empty histogram is NaN'],
  ['overview.json / Broker errors by operation / A', 'the in-memory broker has no Redis operation that can fail'],
  ['overview.json / Pub/sub reconnects / A', 'the in-memory broker has no pub/sub connection to lose'],
  ['overview.json / Gap repairs by outcome / A', 'the in-memory broker delivers in process: no gap to repair'],
]);

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

/** The series of expr over [start, end] (Unix seconds) at 1 s steps, or {error}. */
async function queryRange(expr, start, end) {
  const body = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: '1' });
  const response = await (await fetch(`${base}/api/v1/query_range`, { method: 'POST', body })).json();
  if (response.status !== 'success') return { error: `${response.errorType}: ${response.error}` };
  return { series: response.data.result };
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

/** True when some series of a range query has a finite value other than 0 at some step. */
const moves = (series) => series.some((s) => s.values.some(([, text]) => {
  const v = Number(text);
  return Number.isFinite(v) && v !== 0;
}));

/** The run so far: from the first server's start to now, in Unix seconds. */
async function runWindow() {
  const started = (await query('min(process_start_time_seconds{job="concurrent-socket"})')).series ?? [];
  if (!started.length) throw new Error('no process_start_time_seconds: is Prometheus scraping the servers?');
  return [Math.floor(Number(started[0].value[1])), Math.ceil(Date.now() / 1000)];
}

/** Records a failure for a query that stays at 0 through the run and is not expected flat,
 * or is listed in EXPECTED_FLAT and moved; returns whether it moved. A query without series
 * now has its failure already. */
async function expectMoves(where, expr, [start, end]) {
  if (!(await query(expr)).series?.length) return false;
  const r = await queryRange(expr, start, end);
  if (r.error) {
    failures.push(`${where}: range query: ${r.error}\n    query: ${expr}`);
    return false;
  }
  const moved = moves(r.series);
  if (!moved && !EXPECTED_FLAT.has(where)) {
    failures.push(`${where}: only zeros since the servers started, under traffic that must move it\n    query: ${expr}`);
  }
  if (moved && EXPECTED_FLAT.has(where)) {
    failures.push(`${where}: listed in EXPECTED_FLAT (${EXPECTED_FLAT.get(where)}) but moved: drop it from the list`);
  }
  return moved;
}

async function checkDashboards() {
  let count = 0;
  let skipped = 0;
  let moved = 0;
  const window = await runWindow();
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
      if (await expectMoves(q.where, expr, window)) moved += 1;
    }
  }
  return { count, skipped, moved };
}

/** {code: n} of the counters in TRAFFIC_JSON whose keys start with `prefix`. */
function seen(traffic, prefix) {
  return Object.fromEntries(Object.entries(traffic).filter(([k]) => k.startsWith(prefix)).map(([k, n]) => [k.slice(prefix.length), n]));
}

/** Compares each series of expr, by `label`, with `expected` ({label value: count}; a value
 * not listed must be 0). Returns the number of values compared. */
async function expectCounts(what, expr, label, expected) {
  const series = await expectSeries(what, expr);
  const got = Object.fromEntries(series.map((s) => [s.metric[label], Number(s.value[1])]));
  for (const value of new Set([...Object.keys(got), ...Object.keys(expected)])) {
    if ((got[value] ?? 0) !== (expected[value] ?? 0)) {
      failures.push(`${what} ${label}="${value}": ${got[value] ?? 'no series'} in Prometheus, the traffic's clients saw ${expected[value] ?? 0}\n    query: ${expr}`);
    }
  }
  return series.length;
}

/** The counters the traffic fixes exactly, against what its clients were answered. */
async function checkKnownTraffic(file) {
  const traffic = JSON.parse(readFileSync(file, 'utf8'));
  const [errors, goodbyes, rejected] = ['error:', 'goodbye:', 'rejected:'].map((prefix) => seen(traffic, prefix));
  // The refusal that turns a flood into a policy violation is counted as rate_limited but
  // answered with the goodbye instead of an error (docs/metrics.md).
  errors.rate_limited = (errors.rate_limited ?? 0) + (goodbyes.policy_violation ?? 0);
  return await expectCounts('errors', 'sum by (code) (websocket_errors_total{job="concurrent-socket"})', 'code', errors)
    + await expectCounts('disconnects', 'sum by (reason) (websocket_disconnects_total{job="concurrent-socket", reason="policy_violation"})',
      'reason', { policy_violation: goodbyes.policy_violation ?? 0 })
    + await expectCounts('upgrades refused', 'sum by (reason) (websocket_connections_rejected_total{job="concurrent-socket", reason=~"forbidden_origin|invalid_connection_id"})',
      'reason', { forbidden_origin: rejected['403'] ?? 0, invalid_connection_id: rejected['400'] ?? 0 });
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
const known = options.traffic ? await checkKnownTraffic(options.traffic) : 0;
console.log(`RESULT truth: ${dashboards.count} dashboard PromQL queries checked (${dashboards.skipped} LogQL queries syntax-checked only, no Loki here)`);
console.log(`RESULT truth: ${dashboards.moved} of ${dashboards.count} dashboard queries moved during the run; expected flat: ${[...EXPECTED_FLAT.keys()].join('; ')}`);
if (options.traffic) console.log(`RESULT truth: ${known} counters compared with the known traffic (${options.traffic})`);
console.log(`RESULT truth: ${rules.alerts} alerts (${rules.operands} signal operands) and ${rules.records} recording rules checked; ${loaded} rules loaded in Prometheus`);
console.log(`RESULT truth: ${runbook} PromQL queries of docs/runbook.md checked`);
console.log(`RESULT truth: ${cache.size} distinct instant queries sent to Prometheus; ${failures.length} failures (error, no series, flat, or a count unlike the traffic)`);
for (const f of failures) console.error(`FAILED ${f}`);
process.exit(failures.length ? 1 : 0);
