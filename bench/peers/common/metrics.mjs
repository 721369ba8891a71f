// The peers' Prometheus metrics: concurrent-socket's names and labels (docs/metrics.md) for
// what a protocol v1 server counts, on the peer's own prom-client (passed in, since this folder
// has no node_modules of its own).

const SECONDS_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const DURATION_BUCKETS = [1, 5, 30, 60, 300, 900, 1800, 3600, 14400, 43200, 86400];

/**
 * A counter's children by the value of its last label (the others fixed), each created once:
 * the per-message path only looks one up in a Map and increments it.
 */
function byLabel(counter, ...fixed) {
  const children = new Map();
  return (value) => {
    let child = children.get(value);
    if (!child) {
      child = counter.labels(...fixed, value);
      children.set(value, child);
    }
    return child;
  };
}

export function createMetrics(prom, maxConnections) {
  const register = new prom.Registry();
  try {
    prom.collectDefaultMetrics({ register });
  } catch (e) {
    // Bun lacks some of Node's process probes.
    console.error(`process metrics unavailable: ${e.message}`);
  }
  const registers = [register];
  const gauge = (name, help) => new prom.Gauge({ name, help, registers });
  const counter = (name, help, labelNames = []) => new prom.Counter({ name, help, labelNames, registers });
  const histogram = (name, help, buckets) => new prom.Histogram({ name, help, buckets, registers });

  const active = gauge('websocket_connections_active', 'WebSockets open right now');
  gauge('websocket_connections_limit', 'The configured MAX_CONNECTIONS').set(maxConnections);
  const draining = gauge('websocket_draining', '1 from SIGTERM/SIGINT until exit');
  const messages = counter('websocket_messages_total', 'Protocol messages', ['direction', 'type']);
  return {
    register,
    active,
    draining,
    accepted: counter('websocket_connections_total', 'Upgrades accepted since start'),
    rejected: byLabel(counter('websocket_connections_rejected_total', 'Upgrade requests refused', ['reason'])),
    disconnects: byLabel(counter('websocket_disconnects_total', 'Connections ended, by why', ['reason'])),
    duration: histogram('websocket_connection_duration_seconds', 'Lifetime of ended connections', DURATION_BUCKETS),
    received: byLabel(messages, 'in'),
    sent: byLabel(messages, 'out'),
    errors: byLabel(counter('websocket_errors_total', 'Errors by protocol code', ['code'])),
    latency: histogram('websocket_message_latency_seconds', 'From a client frame to its answer', SECONDS_BUCKETS),
  };
}
