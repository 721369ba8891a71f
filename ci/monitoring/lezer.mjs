/**
 * Syntax errors from a Lezer grammar (Prometheus' PromQL, Grafana's LogQL): Lezer parsers
 * recover from errors and mark them with error nodes rather than throwing.
 */

/** Every error node of `text` as "at N: near ...", empty when it parses. */
export function syntaxErrors(parser, text) {
  const errors = [];
  parser.parse(text).iterate({
    enter(n) {
      if (n.type.isError) errors.push(`at ${n.from}: near ${JSON.stringify(text.slice(n.from, n.from + 20))}`);
    },
  });
  return errors;
}
