#!/usr/bin/env node
/**
 * Static checks of the monitoring code, no Prometheus needed:
 *  - dashboards: current schemaVersion, unique uids and panel ids, a description on every
 *    panel, a unit (and axis label) on every graph, no undefined variable, PromQL and LogQL
 *    that parse (lezer grammars of Prometheus and Grafana);
 *  - alert rules: a severity of critical or warning, summary, description, and a runbook
 *    annotation whose anchor is a heading of docs/runbook.md; for every alert, a promtool
 *    test where it fires and one where it stays silent.
 * Prints every problem and RESULT lines; exits 1 on any problem.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { logqlParser } from './deps.mjs';
import { syntaxErrors as lezerErrors } from './lezer.mjs';
import { syntaxErrors } from './promql.mjs';
import {
  applyVariableRegex, BUILT_INS, loadDashboards, panels, parseLabelValues, queries, referencedVariables, substitute, variables,
} from './grafana.mjs';
import { loadAlertTests, loadRules } from './rules.mjs';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const CURRENT_SCHEMA = require('@grafana/schema').defaultDashboard.schemaVersion;
const RUNBOOK = new URL('../../docs/runbook.md', import.meta.url).pathname;
const GRAPH_TYPES = new Set(['timeseries', 'stat', 'gauge', 'bargauge', 'barchart', 'heatmap']);

const problems = [];
const problem = (where, what) => problems.push(`${where}: ${what}`);

const logqlErrors = (expr) => lezerErrors(logqlParser, expr);

// Placeholder values that keep a query's syntax as Grafana would send it.
function placeholderValues(dashboard) {
  const values = { ...BUILT_INS };
  for (const v of variables(dashboard)) values[v.name] = v.type === 'textbox' ? 'text' : '(a|b)';
  return values;
}

function checkPanel(file, dashboard, panel, known) {
  const where = `${file} / ${panel.title ?? `panel ${panel.id}`}`;
  if (panel.type === 'row') return;
  if (!panel.description?.trim()) problem(where, 'no description');
  if (!panel.datasource) problem(where, 'no datasource');
  if (!(panel.targets ?? []).length) problem(where, 'no query');
  if (GRAPH_TYPES.has(panel.type)) {
    const defaults = panel.fieldConfig?.defaults ?? {};
    if (!defaults.unit) problem(where, 'no unit');
    if (panel.type === 'timeseries' && !defaults.custom?.axisLabel) problem(where, 'no axis label');
    if (panel.type === 'heatmap' && !panel.options?.yAxis?.unit) problem(where, 'heatmap y axis has no unit');
  }
  for (const name of referencedVariables(JSON.stringify(panel.targets ?? []))) {
    if (!known.has(name)) problem(where, `undefined variable $${name}`);
  }
}

function checkDashboards() {
  const uids = new Set();
  let panelCount = 0;
  let queryCount = 0;
  for (const { file, dashboard } of loadDashboards()) {
    if (dashboard.schemaVersion !== CURRENT_SCHEMA) {
      problem(file, `schemaVersion ${dashboard.schemaVersion}, @grafana/schema's current is ${CURRENT_SCHEMA}`);
    }
    if (uids.has(dashboard.uid)) problem(file, `duplicate uid ${dashboard.uid}`);
    uids.add(dashboard.uid);
    const ids = new Set();
    const known = new Set([...Object.keys(BUILT_INS), ...variables(dashboard).map((v) => v.name)]);
    for (const panel of panels(dashboard)) {
      if (ids.has(panel.id)) problem(file, `duplicate panel id ${panel.id}`);
      ids.add(panel.id);
      checkPanel(file, dashboard, panel, known);
      if (panel.type !== 'row') panelCount += 1;
    }
    const values = placeholderValues(dashboard);
    for (const q of queries(file, dashboard)) {
      queryCount += 1;
      const expr = substitute(q.expr ?? '', values);
      const errors = q.type === 'loki' ? logqlErrors(expr) : q.type === 'prometheus' ? syntaxErrors(expr) : null;
      if (errors === null) problem(q.where, `unknown datasource type ${q.type}`);
      else if (errors.length) problem(q.where, `${q.type} syntax error ${errors.join('; ')} in ${expr}`);
    }
    for (const v of variables(dashboard).filter((x) => x.type === 'query')) {
      for (const name of referencedVariables(v.query)) {
        if (!known.has(name)) problem(`${file} / variable ${v.name}`, `undefined variable $${name}`);
      }
      try {
        applyVariableRegex([], v.regex);
      } catch (error) {
        problem(`${file} / variable ${v.name}`, error.message);
      }
      const lv = parseLabelValues(v.query);
      if (!lv) problem(`${file} / variable ${v.name}`, `not label_values(selector, label): ${v.query}`);
      else if (v.datasourceType === 'prometheus') {
        const errors = syntaxErrors(substitute(lv.selector, values));
        if (errors.length) problem(`${file} / variable ${v.name}`, `PromQL syntax error ${errors.join('; ')}`);
      }
    }
  }
  console.log(`RESULT dashboards: ${uids.size} dashboards, ${panelCount} panels, ${queryCount} queries checked`);
}

/** GitHub's anchor for a Markdown heading. */
const slug = (heading) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');

function checkRules() {
  const anchors = new Set(readFileSync(RUNBOOK, 'utf8').split('\n')
    .filter((l) => /^#{1,6}\s/.test(l)).map((l) => slug(l.replace(/^#+/, ''))));
  const tests = loadAlertTests();
  const rules = loadRules();
  for (const r of rules) {
    const where = `${r.file} / ${r.name}`;
    const errors = syntaxErrors(r.expr);
    if (errors.length) problem(where, `PromQL syntax error ${errors.join('; ')}`);
    if (r.kind !== 'alert') continue;
    if (!['critical', 'warning'].includes(r.labels.severity)) problem(where, `severity ${r.labels.severity}`);
    for (const a of ['summary', 'description', 'runbook']) if (!r.annotations[a]) problem(where, `no ${a}`);
    const m = /^docs\/runbook\.md#(.+)$/.exec(r.annotations.runbook ?? '');
    if (!m) problem(where, `runbook ${r.annotations.runbook} is not docs/runbook.md#anchor`);
    else if (!anchors.has(m[1])) problem(where, `docs/runbook.md has no heading for #${m[1]}`);
    const mine = tests.filter((t) => t.alertname === r.name);
    if (!mine.some((t) => t.expAlerts.length > 0)) problem(where, 'no promtool test where it fires');
    if (!mine.some((t) => t.expAlerts.length === 0)) problem(where, 'no promtool test where it stays silent');
  }
  const alerts = rules.filter((r) => r.kind === 'alert').length;
  console.log(`RESULT rules: ${alerts} alerts and ${rules.length - alerts} recording rules checked`);
}

checkDashboards();
checkRules();
for (const p of problems) console.error(`PROBLEM ${p}`);
process.exit(problems.length ? 1 : 0);
