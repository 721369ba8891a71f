/**
 * PromQL as the monitoring checks see it (parsed with @prometheus-io/lezer-promql):
 * syntax errors, the vector selectors of an expression, and the "signal" operands of an
 * alert expression, that is the expression with every filtering comparison against a
 * threshold and every set operator taken apart, so that each operand can be queried on its
 * own and must return series even while the alert is not firing.
 */
import { promqlParser } from './deps.mjs';
import { syntaxErrors as lezerErrors } from './lezer.mjs';

const COMPARISONS = new Set(['Eql', 'Neq', 'Gtr', 'Lss', 'Gte', 'Lte']);
const SET_OPERATORS = new Set(['And', 'Or', 'Unless']);
const ABSENT = new Set(['absent', 'absent_over_time']);
// Children of a BinaryExpr that are not operands.
const NOT_OPERANDS = new Set([...COMPARISONS, ...SET_OPERATORS, 'BoolModifier', 'MatchingModifierClause',
  'Add', 'Sub', 'Mul', 'Div', 'Mod', 'Pow', 'Atan2']);

const text = (expr, node) => expr.slice(node.from, node.to);

function children(node) {
  const out = [];
  for (let c = node.firstChild; c; c = c.nextSibling) out.push(c);
  return out;
}

/** Every PromQL syntax error as "at N: ...", empty when the expression parses. */
export const syntaxErrors = (expr) => lezerErrors(promqlParser, expr);

/** The text of every vector selector (also those inside range selectors), deduplicated. */
export function selectors(expr) {
  const out = new Set();
  promqlParser.parse(expr).iterate({
    enter(n) { if (n.name === 'VectorSelector') out.add(text(expr, n)); },
  });
  return [...out];
}

const filteringOperator = (node) => children(node).find((c) => COMPARISONS.has(c.name) || SET_OPERATORS.has(c.name));

const isBool = (node) => children(node).some((c) => c.name === 'BoolModifier');

function functionName(expr, node) {
  const id = children(node).find((c) => c.name === 'FunctionIdentifier');
  return id ? text(expr, id) : '';
}

function functionArgs(node) {
  const body = children(node).find((c) => c.name === 'FunctionCallBody');
  return body ? children(body) : [];
}

/** True when the node filters series: a comparison without `bool`, a set operator, absent(). */
function filters(expr, node) {
  if (node.name === 'BinaryExpr') {
    const op = filteringOperator(node);
    if (op && (SET_OPERATORS.has(op.name) || (COMPARISONS.has(op.name) && !isBool(node)))) return true;
  }
  return node.name === 'FunctionCall' && ABSENT.has(functionName(expr, node));
}

function someNode(node, predicate) {
  return predicate(node) || children(node).some((c) => someNode(c, predicate));
}

const containsFilter = (expr, node) => someNode(node, (n) => filters(expr, n));
const hasSelector = (node) => someNode(node, (n) => n.name === 'VectorSelector');

/**
 * The operands an alert expression compares or combines, each a query of its own:
 *   `a > 0.8`                       -> a
 *   `a > 0.05 and on (x) b > 1`     -> a, b
 *   `absent(up{job="x"})`           -> up{job="x"}
 *   `label_replace(a == 0, ...)`    -> a
 * Constants (operands without a selector) are dropped. An expression without any filter
 * is its own single signal.
 */
export function signals(expr) {
  const out = [];
  const visit = (node) => {
    if (!hasSelector(node)) return;
    if (!containsFilter(expr, node)) {
      out.push(text(expr, node).trim());
      return;
    }
    if (node.name === 'FunctionCall' && ABSENT.has(functionName(expr, node))) {
      for (const arg of functionArgs(node)) {
        out.push(text(expr, arg.name === 'MatrixSelector' ? arg.firstChild : arg).trim());
      }
      return;
    }
    if (node.name === 'BinaryExpr' && filters(expr, node)) {
      const operands = children(node).filter((c) => !NOT_OPERANDS.has(c.name));
      operands.forEach(visit);
      return;
    }
    // A wrapper (parentheses, label_replace, an aggregation...) around a filter: look inside.
    children(node).forEach(visit);
  };
  visit(promqlParser.parse(expr).topNode);
  return [...new Set(out)];
}
