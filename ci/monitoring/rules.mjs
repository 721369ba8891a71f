/**
 * The Prometheus rule files of alerts/ (alerts/*.yml, what the NixOS module loads) and the
 * promtool test files of alerts/tests/, parsed.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { YAML } from './deps.mjs';

export const ALERTS_DIR = new URL('../../alerts/', import.meta.url).pathname;

const ymlFiles = (dir) => readdirSync(dir, { withFileTypes: true })
  .filter((e) => e.isFile() && /\.ya?ml$/.test(e.name)).map((e) => e.name).sort();

/** [{file, group, kind: 'alert'|'record', name, expr, labels, annotations, for}] */
export function loadRules(dir = ALERTS_DIR) {
  return ymlFiles(dir).flatMap((file) => {
    const doc = YAML.parse(readFileSync(join(dir, file), 'utf8'));
    return (doc.groups ?? []).flatMap((group) => group.rules.map((r) => ({
      file,
      group: group.name,
      kind: r.alert ? 'alert' : 'record',
      name: r.alert ?? r.record,
      expr: r.expr,
      labels: r.labels ?? {},
      annotations: r.annotations ?? {},
      for: r.for,
    })));
  });
}

/** [{file, test, alertname, evalTime, expAlerts}] for every alert_rule_test in alerts/tests/. */
export function loadAlertTests(dir = join(ALERTS_DIR, 'tests')) {
  return ymlFiles(dir).flatMap((file) => {
    const doc = YAML.parse(readFileSync(join(dir, file), 'utf8'));
    return (doc.tests ?? []).flatMap((test) => (test.alert_rule_test ?? []).map((t) => ({
      file, test: test.name, alertname: t.alertname, evalTime: t.eval_time, expAlerts: t.exp_alerts ?? [],
    })));
  });
}
