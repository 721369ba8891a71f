// Channels of wire protocol v1.1 (docs/protocol.md) for a peer whose transport has native
// topics (Bun's uWebSockets publish/subscribe): the requests `subscribe`, `unsubscribe` and
// `publish` as Peer.handlers, the in-process engine behind them, and the channel metrics.
//
// The engine is concurrent-socket's memory broker in JavaScript: per channel an offset counter,
// an epoch made new whenever the channel is created, and a ring of HISTORY_SIZE publications
// kept HISTORY_TTL after the channel's last publication; a channel without subscribers whose
// history expired is freed; HISTORY_MAX_BYTES bounds all history together, the oldest
// publications of the process going first; at most MAX_CHANNELS channels. A publication is
// serialised once and handed to the transport's topic, which writes the same bytes to every
// subscriber. JavaScript runs one request at a time, so a `subscribe` reads history and joins
// the topic in one step: no publication can fall between the two.

/** How often expired history is looked for besides at each request. */
const SWEEP_INTERVAL_MS = 1000;
/** Memory a kept publication costs besides its data and publisher id (object, fields). */
const PUBLICATION_OVERHEAD = 48;
const MAX_CHANNEL_CHARS = 128;
const CHANNEL_NAME = /^[A-Za-z0-9_\-:.@]{1,128}$/;

/** A first-in first-out queue with O(1) shift (an array and a moving head). */
class Fifo {
  constructor() {
    this.items = [];
    this.head = 0;
  }

  get length() {
    return this.items.length - this.head;
  }

  push(item) {
    this.items.push(item);
  }

  first() {
    return this.items[this.head];
  }

  shift() {
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head += 1;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Keeps the items `keep` accepts, in order. */
  retain(keep) {
    this.items = this.items.slice(this.head).filter(keep);
    this.head = 0;
  }

  /** The items from position `from` (0 = first) on. */
  from(from) {
    return this.items.slice(this.head + from);
  }
}

/** A binary min-heap of [deadline, channel name]. */
class Deadlines {
  constructor() {
    this.heap = [];
  }

  peek() {
    return this.heap[0];
  }

  push(entry) {
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (heap[parent][0] <= entry[0]) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = entry;
  }

  pop() {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= heap.length) break;
        const child = left + 1 < heap.length && heap[left + 1][0] < heap[left][0] ? left + 1 : left;
        if (heap[child][0] >= last[0]) break;
        heap[i] = heap[child];
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}

/** `,"id":"..."` when the request had an id. */
const withId = (id) => (id === undefined ? '' : `,"id":${JSON.stringify(id)}`);
const failure = (code, message, id) => ({ code, message, id });

/** The request's `channel`, or the invalid_channel error. */
function channelOf(value, id) {
  const name = value.channel ?? undefined;
  if (typeof name !== 'string') return { error: failure('invalid_channel', 'channel must be a string', id) };
  if (!CHANNEL_NAME.test(name)) {
    const rule = `channel must be 1 to ${MAX_CHANNEL_CHARS} characters of A-Z a-z 0-9 _ - : . @`;
    return { error: failure('invalid_channel', rule, id) };
  }
  return { name };
}

/** A subscribe's `recover` ({offset, epoch} or absent), or the invalid_message error. */
function recoverOf(value, id) {
  const recover = value.recover ?? undefined;
  if (recover === undefined) return {};
  const valid = typeof recover === 'object' && !Array.isArray(recover) &&
    Object.keys(recover).every((k) => k === 'offset' || k === 'epoch') &&
    Number.isSafeInteger(recover.offset) && recover.offset >= 0 && typeof recover.epoch === 'string';
  if (!valid) return { error: failure('invalid_message', 'recover must be {"offset": integer >= 0, "epoch": string}', id) };
  return { recover };
}

function createChannelMetrics(prom, register, engine) {
  const registers = [register];
  const counter = (name, help, labelNames, values) => {
    const c = new prom.Counter({ name, help, labelNames, registers });
    for (const v of values) c.labels(v).inc(0); // every series from start-up, at 0
    return Object.fromEntries(values.map((v) => [v, c.labels(v)]));
  };
  // Read when Prometheus scrapes, not kept current on every request.
  const gauge = (name, help, read) => new prom.Gauge({ name, help, registers, collect() { this.set(read()); } });
  gauge('websocket_subscriptions_active', 'Channel subscriptions held by connections right now', () => engine.subscriptions);
  gauge('websocket_channels_active', 'Channels alive in the process', () => engine.channels.size);
  gauge('websocket_history_bytes', 'Bytes of publications kept in channel history', () => engine.historyBytes);
  gauge('websocket_broker_up', '1 when the broker accepts work (always, in process)', () => 1);
  return {
    publications: counter('websocket_publications_total', 'Channel publishes, by result', ['result'], ['accepted', 'refused']),
    deliveries: new prom.Counter({ name: 'websocket_deliveries_total', help: 'Publications handed to subscribers', registers }),
    recoveries: counter('websocket_recoveries_total', 'Subscribes with recover, by outcome', ['outcome'], ['recovered', 'not_recovered']),
    ends: counter('websocket_subscription_ends_total', 'Subscriptions ended, by reason', ['reason'],
      ['unsubscribe', 'disconnect', 'insufficient_state']),
  };
}

export class Channels {
  /**
   * `peer`: the Peer whose handlers and connections these are. `prom`: its prom-client.
   * `publish(name, text)`: hands one serialised publication to the topic's subscribers.
   */
  constructor(peer, prom, publish) {
    const c = peer.config;
    this.peer = peer;
    this.publishToTopic = publish;
    this.historySize = c.HISTORY_SIZE;
    this.ttl = c.HISTORY_TTL;
    this.maxBytes = c.HISTORY_MAX_BYTES;
    this.maxChannels = c.MAX_CHANNELS;
    this.maxSubscriptions = c.MAX_SUBSCRIPTIONS_PER_CONNECTION;
    this.channels = new Map();
    this.order = new Fifo(); // every kept publication, oldest first: [channel, offset]
    this.kept = 0;
    this.historyBytes = 0;
    this.expiries = new Deadlines();
    this.generations = 0;
    this.subscriptions = 0;
    this.nonce = Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0');
    this.metrics = createChannelMetrics(prom, peer.metrics.register, this);
    peer.handlers.set('subscribe', (connection, request, now) => this.subscribe(connection, request, now));
    peer.handlers.set('unsubscribe', (connection, request, now) => this.unsubscribe(connection, request, now));
    peer.handlers.set('publish', (connection, request, now) => this.publish(connection, request, now));
    peer.onClosed = (connection) => this.closed(connection);
    setInterval(() => this.expire(Date.now()), SWEEP_INTERVAL_MS).unref();
  }

  /** The channel, created with a new epoch when absent and MAX_CHANNELS allows; else null. */
  channel(name) {
    let ch = this.channels.get(name);
    if (ch === undefined) {
      if (this.channels.size >= this.maxChannels) return null;
      this.generations += 1;
      ch = {
        name,
        epoch: this.nonce + this.generations.toString(36),
        top: 0,
        history: new Fifo(),
        lastPublish: 0,
        subscribers: 0,
        expiryQueued: false,
      };
      this.channels.set(name, ch);
    }
    return ch;
  }

  channelLimit(id) {
    const message = `the server holds its maximum of ${this.maxChannels} channels; existing channels still work`;
    return failure('channel_limit', message, id);
  }

  subscribe(connection, { id, value }, now) {
    const { name, error } = channelOf(value, id);
    if (error) return connection.refuse(error, now);
    const { recover, error: badRecover } = recoverOf(value, id);
    if (badRecover) return connection.refuse(badRecover, now);
    connection.channels ??= new Set();
    if (connection.channels.has(name)) {
      return connection.refuse(failure('already_subscribed', 'already subscribed to this channel', id), now);
    }
    if (connection.channels.size >= this.maxSubscriptions) {
      return connection.refuse(failure('subscription_limit', `at most ${this.maxSubscriptions} subscriptions per connection`, id), now);
    }
    this.expire(now);
    const ch = this.channel(name);
    if (ch === null) return connection.refuse(this.channelLimit(id), now);
    ch.subscribers += 1;
    this.subscriptions += 1;
    connection.channels.add(name);
    connection.socket.subscribe(name);
    const recovery = recover === undefined ? '' : this.recovery(ch, recover);
    connection.send(`{"type":"subscribed","channel":"${name}"${withId(id)},"epoch":"${ch.epoch}","offset":${ch.top}` +
      `${recovery},"ts":${now}}`, 'subscribed');
    return false;
  }

  /** `,"recovered":...,"publications":[...]` for a subscribe with recover. */
  recovery(ch, { offset, epoch }) {
    const oldest = ch.history.length > 0 ? ch.history.first().offset : ch.top + 1;
    const recovered = epoch === ch.epoch && offset <= ch.top && offset + 1 >= oldest;
    this.metrics.recoveries[recovered ? 'recovered' : 'not_recovered'].inc();
    if (!recovered) return ',"recovered":false,"publications":[]';
    const missed = ch.history.from(offset + 1 - oldest)
      .map((p) => `{"offset":${p.offset},"data":${p.data},"from":"${p.from}"}`);
    return `,"recovered":true,"publications":[${missed.join(',')}]`;
  }

  unsubscribe(connection, { id, value }, now) {
    const { name, error } = channelOf(value, id);
    if (error) return connection.refuse(error, now);
    if (!connection.channels?.delete(name)) {
      return connection.refuse(failure('not_subscribed', 'not subscribed to this channel', id), now);
    }
    connection.socket.unsubscribe(name);
    this.release(name, 'unsubscribe');
    connection.send(`{"type":"unsubscribed","channel":"${name}"${withId(id)},"ts":${now}}`, 'unsubscribed');
    return false;
  }

  publish(connection, { id, value }, now) {
    const { name, error } = channelOf(value, id);
    if (error) return connection.refuse(error, now);
    const data = connection.dataJson(value.data, now);
    if (data === null) return true;
    this.expire(now);
    const ch = this.channel(name);
    if (ch === null) {
      this.metrics.publications.refused.inc();
      return connection.refuse(this.channelLimit(id), now);
    }
    const offset = ++ch.top;
    ch.lastPublish = now;
    if (ch.subscribers > 0) {
      // Serialised once; uWebSockets writes these bytes to every subscriber of the topic.
      this.publishToTopic(name, `{"type":"publication","channel":"${name}","offset":${offset},"data":${data},` +
        `"from":"${connection.id}","ts":${now}}`);
      this.metrics.deliveries.inc(ch.subscribers);
      this.peer.metrics.sent('publication').inc(ch.subscribers);
    }
    if (!ch.expiryQueued) {
      ch.expiryQueued = true;
      this.expiries.push([now + this.ttl, name]);
    }
    this.append(ch, { offset, data, from: connection.id });
    this.metrics.publications.accepted.inc();
    connection.send(`{"type":"published","channel":"${name}"${withId(id)},"offset":${offset},"epoch":"${ch.epoch}","ts":${now}}`,
      'published');
    return false;
  }

  /** Keeps a publication in the channel's ring, within HISTORY_SIZE and HISTORY_MAX_BYTES. */
  append(ch, publication) {
    if (this.historySize === 0) return;
    publication.cost = PUBLICATION_OVERHEAD + publication.data.length + publication.from.length;
    ch.history.push(publication);
    this.kept += 1;
    this.historyBytes += publication.cost;
    this.order.push([ch, publication.offset]);
    if (ch.history.length > this.historySize) this.forget(ch.history.shift());
    while (this.historyBytes > this.maxBytes && this.evictOldest());
    // Entries of publications that left by other ways are skipped when met; drop them when
    // they outnumber the live ones.
    if (this.order.length > 2 * this.kept + 1024) {
      this.order.retain(([c, offset]) => this.channels.get(c.name) === c && c.history.length > 0 &&
        c.history.first().offset <= offset);
    }
  }

  forget(publication) {
    this.kept -= 1;
    this.historyBytes -= publication.cost;
  }

  /** Drops the oldest publication kept in any channel; false when none is left. */
  evictOldest() {
    while (this.order.length > 0) {
      const [ch, offset] = this.order.shift();
      if (this.channels.get(ch.name) === ch && ch.history.length > 0 && ch.history.first().offset === offset) {
        this.forget(ch.history.shift());
        return true;
      }
    }
    return false;
  }

  /** Drops the history of channels silent for HISTORY_TTL, and frees those nobody holds. */
  expire(now) {
    for (let next = this.expiries.peek(); next !== undefined && next[0] <= now; next = this.expiries.peek()) {
      const [, name] = this.expiries.pop();
      const ch = this.channels.get(name);
      if (ch === undefined) continue;
      if (ch.lastPublish + this.ttl > now) {
        this.expiries.push([ch.lastPublish + this.ttl, name]); // published since: the new deadline
        continue;
      }
      ch.expiryQueued = false;
      while (ch.history.length > 0) this.forget(ch.history.shift());
      if (ch.subscribers === 0) this.channels.delete(name);
    }
  }

  /** One subscription to `name` ended; the channel goes when nothing keeps it. */
  release(name, reason) {
    const ch = this.channels.get(name);
    ch.subscribers -= 1;
    this.subscriptions -= 1;
    // Kept while its history (or, with history off, its offsets) may still be asked for.
    if (ch.subscribers === 0 && !ch.expiryQueued) this.channels.delete(name);
    this.metrics.ends[reason].inc();
  }

  /** A connection ended: the transport left its topics, the engine forgets its subscriptions. */
  closed(connection) {
    if (!connection.channels) return;
    for (const name of connection.channels) this.release(name, 'disconnect');
    connection.channels = null;
  }
}
