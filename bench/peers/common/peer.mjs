// A protocol v1 server without its transport: admission of upgrades, one Connection per
// WebSocket (requests, heartbeats, liveness, idle timeout, rate limit, goodbyes), the
// registry of connection ids, and the drain on SIGTERM. Each peer plugs in its own HTTP and
// WebSocket stack: a socket here is anything with send(text), ping(), close(code, reason) and
// terminate(), which both Node's `ws` and Bun's ServerWebSocket are.
import { createMetrics } from './metrics.mjs';
import { normalizeOrigin } from './config.mjs';
import { GOODBYES, isValidConnectionId, requestFromText, requestFromValue, say, tooLarge } from './protocol.mjs';

/** After a goodbye's close frame, how long the client gets to answer with its own. */
const CLOSE_HANDSHAKE_MS = 2000;
/** Rejected messages are counted towards a policy violation within this window. */
const STRIKE_WINDOW_MS = 10_000;
const MIN_STRIKES = 10;

/** A token bucket holding one second of messages, and the strikes that make abuse. */
class RateLimiter {
  constructor(rate, now) {
    this.rate = rate;
    this.tokens = rate;
    this.refilled = now;
    this.strikes = 0;
    this.windowStart = now;
  }

  /** 'allow', 'limited' (answer rate_limited) or 'abusive' (goodbye policy_violation). */
  check(now) {
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.refilled) / 1000) * this.rate);
    this.refilled = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 'allow';
    }
    if (now - this.windowStart > STRIKE_WINDOW_MS) {
      this.windowStart = now;
      this.strikes = 0;
    }
    this.strikes += 1;
    return this.strikes > Math.max(this.rate, MIN_STRIKES) ? 'abusive' : 'limited';
  }
}

/** A refusal before the upgrade: status, JSON body and headers, as concurrent-socket answers. */
const refusal = (status, error, headers = {}) => ({ status, body: JSON.stringify({ error }), headers });

function originAllowed(origin, host, allowed) {
  if (origin === undefined || origin === null) return true;
  if (allowed === '*') return true;
  const normalized = normalizeOrigin(origin);
  if (!normalized) return false; // `null` or garbage: only `*` accepts it
  if (allowed === '') return host !== undefined && host !== null && normalized.split('://')[1] === host.toLowerCase();
  return allowed.includes(normalized);
}

/** Timer callback for a connection's single timer (no closure per connection). */
const onTimer = (connection) => connection.tick();

export class Connection {
  constructor(peer, socket, id, ip) {
    const now = Date.now();
    this.peer = peer;
    this.socket = socket;
    this.id = id;
    this.ip = ip;
    this.opened = now;
    this.lastFrame = now; // any frame, pongs included: liveness
    this.lastMessage = now; // text or binary frames: idle timeout
    this.nextBeat = now + peer.config.HEARTBEAT_INTERVAL;
    this.limiter = peer.config.RATE_LIMIT_MSGS_PER_SEC > 0 ? new RateLimiter(peer.config.RATE_LIMIT_MSGS_PER_SEC, now) : null;
    this.leaving = null; // the goodbye reason once one is sent
    this.closing = false; // our close frame is sent: nothing more is answered
    this.deadPeer = false;
    this.timer = null;
    this.channels = null; // the channels it subscribed to, from its first subscribe (channels.mjs)
    this.schedule(now);
  }

  /** One timer per connection, due at the next heartbeat or the idle deadline. */
  schedule(now) {
    const due = Math.min(this.nextBeat, this.lastMessage + this.peer.config.CONNECTION_TIMEOUT);
    this.timer = setTimeout(onTimer, Math.max(0, due - now), this);
  }

  tick() {
    const now = Date.now();
    const { HEARTBEAT_INTERVAL, CONNECTION_TIMEOUT } = this.peer.config;
    if (now - this.lastMessage >= CONNECTION_TIMEOUT) return this.goodbye('idle_timeout');
    if (now >= this.nextBeat) {
      if (now - this.lastFrame >= 2 * HEARTBEAT_INTERVAL) {
        // Silent for two intervals: close TCP without a close frame.
        this.deadPeer = true;
        return this.socket.terminate();
      }
      this.send(say.heartbeat(now), 'heartbeat');
      this.socket.ping();
      this.nextBeat += HEARTBEAT_INTERVAL;
    }
    this.schedule(now);
  }

  send(text, type) {
    this.socket.send(text);
    this.peer.metrics.sent(type).inc();
  }

  /** Any frame from the client proves it alive (pongs to our pings included). */
  alive() {
    this.lastFrame = Date.now();
  }

  /** Every client message costs a token; false when it was refused. */
  admitMessage(now) {
    this.lastFrame = now;
    this.lastMessage = now;
    if (this.limiter === null) return true;
    const verdict = this.limiter.check(now);
    if (verdict === 'allow') return true;
    this.peer.metrics.received('invalid').inc();
    if (verdict === 'abusive') {
      this.peer.metrics.errors('rate_limited').inc();
      this.goodbye('policy_violation');
    } else {
      this.reject({ code: 'rate_limited', message: `more than ${this.limiter.rate} messages per second` }, now);
    }
    return false;
  }

  /** A text frame as its raw text (`bytes` UTF-8 bytes long). */
  onText(text, bytes) {
    if (this.closing) return;
    const now = Date.now();
    if (!this.admitMessage(now)) return;
    const t0 = performance.now();
    this.serve(requestFromText(text, bytes, this.peer.config.MAX_MESSAGE_BYTES, this.peer.handlers), now, t0);
  }

  /**
   * A text frame a framework has already parsed (Elysia): its raw text is gone, so only
   * `data` can be held to MAX_MESSAGE_BYTES (in serveMessage).
   */
  onParsed(value) {
    if (this.closing) return;
    const now = Date.now();
    if (!this.admitMessage(now)) return;
    const t0 = performance.now();
    this.serve(requestFromValue(value, this.peer.handlers), now, t0);
  }

  onBinary() {
    if (this.closing) return;
    const now = Date.now();
    if (!this.admitMessage(now)) return;
    this.peer.metrics.received('invalid').inc();
    this.reject({ code: 'unsupported_frame', message: 'binary frames are not supported' }, now);
  }

  serve(request, now, t0) {
    if (request.error) {
      this.peer.metrics.received('invalid').inc();
      this.reject(request.error, now);
    } else {
      const refused = this.peer.handlers.get(request.type)(this, request, now);
      this.peer.metrics.received(refused ? 'invalid' : request.type).inc();
    }
    this.peer.metrics.latency.observe((performance.now() - t0) / 1000);
  }

  reject(error, now) {
    this.peer.metrics.errors(error.code).inc();
    this.send(say.error(error, now), 'error');
  }

  /** Answers a request with an `error`; true, what a handler returns for a refusal. */
  refuse(error, now) {
    this.reject(error, now);
    return true;
  }

  /**
   * A request's `data` as JSON text, or null after answering message_too_large: a stack that
   * parses frames before the handler (judgesDataSize) holds `data` to MAX_MESSAGE_BYTES.
   */
  dataJson(data, now) {
    const json = data === undefined ? 'null' : JSON.stringify(data);
    const max = this.peer.config.MAX_MESSAGE_BYTES;
    // UTF-8 takes at most 3 bytes per UTF-16 unit: count the bytes only when that could exceed.
    if (this.peer.judgesDataSize && json.length * 3 > max && Buffer.byteLength(json) > max) {
      this.reject(tooLarge(max).error, now); // never with the id, as concurrent-socket
      return null;
    }
    return json;
  }

  /** Sends `goodbye` and closes; after server_shutdown, answers for a grace period first. */
  goodbye(reason) {
    if (this.leaving) return;
    this.leaving = reason;
    this.send(say.goodbye(reason, GOODBYES[reason].reconnect, Date.now()), 'goodbye');
    clearTimeout(this.timer);
    if (reason === 'server_shutdown') {
      this.timer = setTimeout(() => this.closeNow(), this.peer.shutdownGraceMs);
    } else {
      this.closeNow();
    }
  }

  closeNow() {
    if (this.closing) return;
    this.closing = true;
    this.socket.close(GOODBYES[this.leaving].code, this.leaving);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.socket.terminate(), CLOSE_HANDSHAKE_MS);
  }

  /** The WebSocket is gone; `code` is 1006 when no close frame came. */
  onClose(code) {
    clearTimeout(this.timer);
    let reason = this.leaving;
    if (!reason) reason = this.deadPeer ? 'dead_peer' : code === 1006 ? 'transport_error' : 'client_close';
    this.peer.closed(this, reason);
  }
}

/**
 * The built-in requests; a peer may add its own (channels) to Peer.handlers. A handler answers
 * the request and returns true when it refused it with an `error`.
 */
function serveMessage(connection, { id, value }, now) {
  const dataJson = connection.dataJson(value.data, now);
  if (dataJson === null) return true;
  connection.send(say.messageResponse(id, dataJson, now), 'message_response');
  return false;
}

function servePing(connection, { id }, now) {
  connection.send(say.pong(id, now), 'pong');
  return false;
}

export class Peer {
  /**
   * `prom`: the peer's prom-client. `judgesDataSize`: the stack parses frames before the
   * handler sees them, so MAX_MESSAGE_BYTES is held against a message's `data` instead.
   */
  constructor(config, prom, { judgesDataSize = false } = {}) {
    this.config = config;
    this.metrics = createMetrics(prom, config.MAX_CONNECTIONS);
    this.judgesDataSize = judgesDataSize;
    this.handlers = new Map([['message', serveMessage], ['ping', servePing]]);
    // Called with each connection that ended (channels release its subscriptions).
    this.onClosed = null;
    this.connections = new Set();
    this.byId = new Map();
    this.perIp = new Map();
    this.started = Date.now();
    this.draining = false;
    // After a server_shutdown goodbye: a fifth of SHUTDOWN_TIMEOUT, at most 1 s.
    this.shutdownGraceMs = Math.min(config.SHUTDOWN_TIMEOUT / 5, 1000);
  }

  /**
   * The checks before an upgrade, in concurrent-socket's order: connection id, upgrade,
   * Origin, draining, capacity, per-IP. A refusal, or null to upgrade.
   */
  admit({ id, isUpgrade, origin, host, ip }) {
    const refuse = (status, error, headers) => {
      this.metrics.rejected(error).inc();
      return refusal(status, error, headers);
    };
    if (!isValidConnectionId(id)) return refuse(400, 'invalid_connection_id');
    if (!isUpgrade) return refusal(426, 'upgrade_required', { upgrade: 'websocket' });
    if (!originAllowed(origin, host, this.config.ALLOWED_ORIGINS)) return refuse(403, 'forbidden_origin');
    if (this.draining) return refuse(503, 'draining', { 'retry-after': '1' });
    if (this.connections.size >= this.config.MAX_CONNECTIONS) return refuse(503, 'at_capacity', { 'retry-after': '5' });
    const limit = this.config.MAX_CONNECTIONS_PER_IP;
    if (limit > 0 && (this.perIp.get(ip) ?? 0) >= limit) return refuse(429, 'ip_limit', { 'retry-after': '5' });
    return null;
  }

  /** A WebSocket that passed admit() is open. */
  open(socket, id, ip) {
    const connection = new Connection(this, socket, id, ip);
    this.connections.add(connection);
    this.perIp.set(ip, (this.perIp.get(ip) ?? 0) + 1);
    this.metrics.active.inc();
    this.metrics.accepted.inc();
    const replaced = this.byId.get(id);
    this.byId.set(id, connection);
    connection.send(say.established(id, this.config.SERVER_ID, this.config.HEARTBEAT_INTERVAL, connection.opened), 'connection_established');
    if (replaced) replaced.goodbye('replaced');
    return connection;
  }

  closed(connection, reason) {
    if (!this.connections.delete(connection)) return;
    const left = this.perIp.get(connection.ip) - 1;
    if (left > 0) this.perIp.set(connection.ip, left);
    else this.perIp.delete(connection.ip);
    if (this.byId.get(connection.id) === connection) this.byId.delete(connection.id);
    this.onClosed?.(connection);
    this.metrics.active.dec();
    this.metrics.disconnects(reason).inc();
    this.metrics.duration.observe((Date.now() - connection.opened) / 1000);
    if (this.draining && this.connections.size === 0) this.exit();
  }

  /** GET /health: always 200; `status` says whether the server is draining. */
  health() {
    return {
      status: 200,
      body: JSON.stringify({
        status: this.draining ? 'draining' : 'ok',
        connections: this.connections.size,
        uptimeSeconds: Math.floor((Date.now() - this.started) / 1000),
        serverId: this.config.SERVER_ID,
      }),
    };
  }

  /** GET /ready: 503 while draining. */
  ready() {
    return this.draining
      ? { status: 503, body: '{"status":"draining"}' }
      : { status: 200, body: '{"status":"ready"}' };
  }

  notFound() {
    return refusal(404, 'not_found');
  }

  /**
   * SIGTERM/SIGINT: refuse upgrades, spread the goodbyes evenly over the first half of
   * SHUTDOWN_TIMEOUT, and exit 0 once every connection is closed, dropping what is still
   * open at 90 % of it (at most 1 s before the end). `stop` closes the listeners.
   */
  drain(signal, stop) {
    if (this.draining) return;
    this.draining = true;
    this.stop = stop;
    this.metrics.draining.set(1);
    const timeout = this.config.SHUTDOWN_TIMEOUT;
    const open = [...this.connections];
    console.error(`${signal}: draining ${open.length} connections over ${timeout} ms`);
    open.forEach((connection, i) => {
      setTimeout(() => connection.goodbye('server_shutdown'), (i * timeout) / 2 / open.length);
    });
    setTimeout(() => {
      for (const connection of this.connections) connection.socket.terminate();
      this.exit();
    }, Math.max(0.9 * timeout, timeout - 1000)).unref();
    if (open.length === 0) this.exit();
  }

  exit() {
    console.error(`exiting with ${this.connections.size} connections open`);
    this.stop();
    process.exit(0);
  }
}
