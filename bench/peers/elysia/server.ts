// Protocol v1 and v1.1 (channels) peer on Bun + Elysia (+ prom-client), the original design's
// stack: the transport for ../common/peer.mjs on Elysia's own WebSocket route, which parses
// each text frame before the handler sees it (the differences that makes: ../README.md).
// Run from this folder after `npm ci`: node_modules/.bin/bun server.ts. Configuration: ../README.md.
//
// Channels (../common/channels.mjs) run on Bun's native publish/subscribe: a subscriber's
// socket joins the uWebSockets topic of the channel (connection.socket.subscribe), and each
// publication is serialised once and handed to app.server.publish, which writes the same
// bytes to every subscriber of the topic in native code.
import { Elysia } from 'elysia';
import prom from 'prom-client';
import { configOrExit } from '../common/config.mjs';
import { Peer } from '../common/peer.mjs';
import { Channels } from '../common/channels.mjs';

type Answer = { status: number; body: string; headers?: Record<string, string> };

const config = configOrExit();
// Elysia hands over parsed JSON: MAX_MESSAGE_BYTES is held against a message's data.
const peer = new Peer(config, prom, { judgesDataSize: true });
new Channels(peer, prom, (channel: string, text: string) => app.server!.publish(channel, text));

const reply = ({ status, body, headers = {} }: Answer) =>
  new Response(body, { status, headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers } });

/** The connectionId of a /ws/chat/ path, percent-decoded; '' when it cannot be one. */
function decodedId(path: string) {
  try {
    return decodeURIComponent(path.slice('/ws/chat/'.length));
  } catch {
    return '';
  }
}

const clientIp = (address: string | undefined) => address?.replace(/^::ffff:/, '');
const isBinary = (message: unknown) =>
  Buffer.isBuffer(message) || message instanceof ArrayBuffer || ArrayBuffer.isView(message);

const app = new Elysia({
  websocket: {
    // Liveness and the idle timeout are the protocol's (peer.mjs), not Bun's.
    idleTimeout: 0,
    sendPings: false,
    perMessageDeflate: false,
    // Up to 4x MAX_MESSAGE_BYTES is read and answered message_too_large; beyond, Bun closes with 1009.
    maxPayloadLength: config.MAX_MESSAGE_BYTES * 4,
    // A client that does not read is closed once OUTBOUND_QUEUE_BYTES wait for it, as
    // concurrent-socket's slow_consumer; without this uWebSockets would drop publications
    // for it silently, a gap the channels contract forbids.
    backpressureLimit: config.OUTBOUND_QUEUE_BYTES,
    closeOnBackpressureLimit: true,
  },
})
  .onError(({ code }) => (code === 'NOT_FOUND' ? reply(peer.notFound()) : undefined))
  .get('/health', () => reply(peer.health()))
  .get('/ready', () => reply(peer.ready()))
  .ws('/ws/chat/:connectionId', {
    beforeHandle({ params, request, server }) {
      const refused = peer.admit({
        id: params.connectionId,
        isUpgrade: request.headers.get('upgrade')?.toLowerCase() === 'websocket',
        origin: request.headers.get('origin'),
        host: request.headers.get('host'),
        ip: clientIp(server?.requestIP(request)?.address),
      });
      if (refused) return reply(refused);
    },
    open(ws) {
      ws.data.connection = peer.open(ws.raw, ws.data.params.connectionId, clientIp(ws.raw.remoteAddress));
    },
    message(ws, message) {
      const connection = ws.data.connection;
      if (typeof message === 'string') connection.onText(message, Buffer.byteLength(message));
      else if (isBinary(message)) connection.onBinary();
      else connection.onParsed(message);
    },
    // Called with Bun's own socket, whose data is Elysia's context.
    ping(ws: any) {
      ws.data.connection?.alive();
    },
    pong(ws: any) {
      ws.data.connection?.alive();
    },
    close(ws, code) {
      ws.data.connection?.onClose(code);
    },
  })
  // What the WebSocket route leaves (a chat path without an upgrade, or with an id holding a
  // '/'): 400 for an invalid id, else 426.
  .all('/ws/chat', () => reply(peer.admit({ id: '' })))
  .all('/ws/chat/*', ({ path }) => reply(peer.admit({ id: decodedId(path), isUpgrade: false })))
  .listen({ port: config.PORT, hostname: config.HOST });

const metrics = Bun.serve({
  port: config.METRICS_ADDR.port,
  hostname: config.METRICS_ADDR.host,
  async fetch(request) {
    if (new URL(request.url).pathname !== '/metrics') return reply(peer.notFound());
    return new Response(await peer.metrics.register.metrics(), { headers: { 'content-type': peer.metrics.register.contentType } });
  },
});

const stop = () => {
  app.stop(true);
  metrics.stop(true);
};
process.on('SIGTERM', () => peer.drain('SIGTERM', stop));
process.on('SIGINT', () => peer.drain('SIGINT', stop));
console.error(`elysia on bun ${Bun.version} listening on ${config.HOST}:${app.server?.port} (serverId ${config.SERVER_ID})`);
