// Wire protocol v1 (docs/protocol.md) as plain functions: a client frame to a request or an
// error, and the server's messages as JSON text, `type` first and `ts` last. No I/O.

const MAX_ID_CHARS = 128;
const MAX_QUOTED_TYPE_CHARS = 64;

/** An `error` to answer with; `id` only when the request had a valid one. */
const failure = (code, message, id) => ({ error: { code, message, id } });

export const tooLarge = (maxBytes) => failure('message_too_large', `message exceeds ${maxBytes} bytes`);

/** Unicode scalar values, as concurrent-socket counts an id's length. */
const chars = (s) => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

/**
 * A parsed frame -> `{ type, id, value }` for a type in `known`, or `{ error }`. A field whose
 * value is `null` is absent.
 */
export function requestFromValue(value, known) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return failure('invalid_message', 'message must be a JSON object with unique keys');
  }
  const id = value.id ?? undefined;
  if (id !== undefined && typeof id !== 'string') return failure('invalid_message', 'id must be a string');
  // .length counts UTF-16 units, never fewer than scalar values: count those only when it matters.
  if (id !== undefined && id.length > MAX_ID_CHARS && chars(id) > MAX_ID_CHARS) {
    return failure('invalid_message', `id is longer than ${MAX_ID_CHARS} characters`);
  }
  const type = value.type;
  if (typeof type !== 'string') return failure('invalid_message', 'type must be a string', id);
  if (!known.has(type)) {
    const quoted = type.length > MAX_QUOTED_TYPE_CHARS ? [...type].slice(0, MAX_QUOTED_TYPE_CHARS).join('') : type;
    return failure('unknown_type', `unknown message type '${quoted}'`, id);
  }
  return { type, id, value };
}

/** A text frame of `bytes` UTF-8 bytes -> a request or `{ error }`. */
export function requestFromText(text, bytes, maxBytes, known) {
  if (bytes > maxBytes) return tooLarge(maxBytes);
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return failure('invalid_json', 'message is not valid JSON');
  }
  return requestFromValue(value, known);
}

const q = JSON.stringify;
const withId = (id) => (id === undefined ? '' : `,"id":${q(id)}`);

/** The server's messages, as the text of one frame each. */
export const say = {
  established: (connectionId, serverId, heartbeatIntervalMs, ts) =>
    `{"type":"connection_established","connectionId":${q(connectionId)},"serverId":${q(serverId)},` +
    `"heartbeatIntervalMs":${heartbeatIntervalMs},"ts":${ts}}`,
  heartbeat: (ts) => `{"type":"heartbeat","ts":${ts}}`,
  /** `dataJson`: the request's `data` as JSON text. */
  messageResponse: (id, dataJson, ts) => `{"type":"message_response"${withId(id)},"data":${dataJson},"ts":${ts}}`,
  pong: (id, ts) => `{"type":"pong"${withId(id)},"ts":${ts}}`,
  error: ({ code, message, id }, ts) => `{"type":"error","code":${q(code)},"message":${q(message)}${withId(id)},"ts":${ts}}`,
  goodbye: (reason, reconnect, ts) => `{"type":"goodbye","reason":${q(reason)},"reconnect":${reconnect},"ts":${ts}}`,
};

/** Goodbye reasons: the close code that follows and whether the client should reconnect. */
export const GOODBYES = {
  server_shutdown: { code: 1001, reconnect: true },
  idle_timeout: { code: 1000, reconnect: false },
  // true: only the same client replaces its own connection, most likely a stale duplicate.
  replaced: { code: 1000, reconnect: true },
  policy_violation: { code: 1008, reconnect: false },
};

/** A valid `connectionId`: 1 to 64 of A-Z a-z 0-9 _ -. */
export const isValidConnectionId = (id) => /^[A-Za-z0-9_-]{1,64}$/.test(id);
