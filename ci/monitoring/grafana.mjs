/**
 * The dashboards of grafana/dashboards/ as the monitoring checks see them: their panels
 * (rows flattened), each query with the datasource it runs on and a name that says where it
 * is ("overview.json / Message latency / B"), their variables, and Grafana's variable
 * substitution.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export const DASHBOARD_DIR = new URL('../../grafana/dashboards/', import.meta.url).pathname;

/** [{file, dashboard}] for every *.json in grafana/dashboards/. */
export function loadDashboards(dir = DASHBOARD_DIR) {
  return readdirSync(dir).filter((f) => f.endsWith('.json')).sort()
    .map((file) => ({ file, dashboard: JSON.parse(readFileSync(join(dir, file), 'utf8')) }));
}

/** Every panel, with the panels of rows (collapsed rows keep theirs inside). */
export function panels(dashboard) {
  return (dashboard.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** The datasource type a datasource reference points at, resolving `${variable}` uids. */
function datasourceType(dashboard, ref) {
  if (!ref) return undefined;
  if (ref.type) return ref.type;
  const variable = (dashboard.templating?.list ?? []).find((v) => ref.uid === `\${${v.name}}`);
  return variable?.query;
}

/** [{where, type, expr}] for every panel target, type 'prometheus' or 'loki'. */
export function queries(file, dashboard) {
  return panels(dashboard).flatMap((panel) => (panel.targets ?? []).map((t) => ({
    where: `${file} / ${panel.title} / ${t.refId}`,
    type: datasourceType(dashboard, t.datasource ?? panel.datasource),
    expr: t.expr,
  })));
}

/** The query variables: [{name, type, query, datasourceType, multi, includeAll, allValue}]. */
export function variables(dashboard) {
  return (dashboard.templating?.list ?? []).map((v) => ({ ...v, datasourceType: datasourceType(dashboard, v.datasource) }));
}

/** Parses Grafana's Prometheus variable query `label_values(selector, label)`. */
export function parseLabelValues(query) {
  const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/s.exec(query.trim());
  return m ? { selector: m[1].trim(), label: m[2] } : null;
}

/**
 * What a variable offers from the label values it found: with a `/pattern/` regex, the
 * first capture group of each value that matches (the whole match without a group), like
 * Grafana; duplicates removed, sorted.
 */
export function applyVariableRegex(values, regex) {
  if (!regex) return [...new Set(values)].sort();
  const m = /^\/(.*)\/([a-z]*)$/s.exec(regex);
  if (!m) throw new Error(`variable regex ${regex} is not /pattern/flags`);
  const re = new RegExp(m[1], m[2]);
  const out = values.map((v) => re.exec(v)).filter(Boolean).map((x) => x[1] ?? x[0]);
  return [...new Set(out)].sort();
}

/**
 * Alternation of regex-escaped values, as Grafana's Prometheus datasource formats a
 * multi-value variable: the escape is doubled because it lands inside a PromQL string.
 */
export function regexValue(values) {
  const escaped = values.map((v) => v.replace(/[.*+?^${}()|[\]\\]/g, '\\\\$&'));
  return escaped.length === 1 ? escaped[0] : `(${escaped.join('|')})`;
}

/**
 * Substitutes variables the way Grafana does before a query is sent: `${name:format}`,
 * `${name}`, `[[name]]` and `$name` (longest names first, so `$instance` never eats
 * `$instances`). `values` maps a name to the text to put in.
 */
export function substitute(expr, values) {
  let out = expr;
  for (const name of Object.keys(values).sort((a, b) => b.length - a.length)) {
    const v = values[name];
    out = out.replaceAll(new RegExp(`\\$\\{${name}(?::[a-z]+)?\\}`, 'g'), () => v)
      .replaceAll(`[[${name}]]`, v)
      .replaceAll(new RegExp(`\\$${name}(?![A-Za-z0-9_])`, 'g'), () => v);
  }
  return out;
}

/** Variable names a text refers to (`$x`, `${x}`, `${x:fmt}`, `[[x]]`). */
export function referencedVariables(text) {
  const names = new Set();
  for (const m of text.matchAll(/\$\{([A-Za-z0-9_]+)(?::[a-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)|\[\[([A-Za-z0-9_]+)\]\]/g)) {
    names.add(m[1] ?? m[2] ?? m[3]);
  }
  return [...names];
}

/** Grafana's built-in interval variables, with values fit for a short test run. */
export const BUILT_INS = {
  __rate_interval: '30s',
  __interval: '5s',
  __interval_ms: '5000',
  __range: '5m',
  __range_s: '300',
  __auto: '5s',
};
