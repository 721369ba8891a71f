// Protocol v1 peer on Node + ws (+ prom-client): the transport for ../common/peer.mjs (no channels).
// Run from this folder after `npm ci`: node server.mjs. Configuration: ../README.md.
import http from 'node:http';
import prom from 'prom-client';
import { WebSocketServer } from 'ws';
import { configOrExit } from '../common/config.mjs';
import { Peer } from '../common/peer.mjs';

const config = configOrExit();
const peer = new Peer(config, prom);
const CHAT = '/ws/chat/';

function reply(res, { status, body, headers = {} }) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(body);
}

/** A refusal on the raw socket of an upgrade request (no HTTP response object exists). */
function refuseUpgrade(socket, { status, body, headers = {} }) {
  const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
  socket.on('error', () => {});
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\n` +
    `cache-control: no-store\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`);
}

/** The connectionId of a /ws/chat path, percent-decoded; '' when it cannot be one. */
function connectionIdOf(path) {
  try {
    return decodeURIComponent(path.slice(CHAT.length));
  } catch {
    return '';
  }
}

const isChat = (path) => path === '/ws/chat' || path.startsWith('/ws/chat/');

const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0];
  if (path === '/health' && req.method === 'GET') return reply(res, peer.health());
  if (path === '/ready' && req.method === 'GET') return reply(res, peer.ready());
  // A chat path without an upgrade: 400 for a bad id, else 426.
  if (isChat(path)) return reply(res, peer.admit({ id: connectionIdOf(path), isUpgrade: false }));
  return reply(res, peer.notFound());
});

const wss = new WebSocketServer({
  noServer: true,
  clientTracking: false,
  perMessageDeflate: false,
  // Up to 4x MAX_MESSAGE_BYTES is read and answered message_too_large; beyond, ws closes with 1009.
  maxPayload: config.MAX_MESSAGE_BYTES * 4,
});

server.on('upgrade', (req, socket, head) => {
  const path = req.url.split('?')[0];
  if (!isChat(path)) return refuseUpgrade(socket, peer.notFound());
  const id = connectionIdOf(path);
  const ip = socket.remoteAddress?.replace(/^::ffff:/, '');
  const refused = peer.admit({
    id,
    isUpgrade: req.headers.upgrade?.toLowerCase() === 'websocket',
    origin: req.headers.origin,
    host: req.headers.host,
    ip,
  });
  if (refused) return refuseUpgrade(socket, refused);
  // Without verifyClient the upgrade completes synchronously: no other upgrade can pass
  // admit() in between, so MAX_CONNECTIONS holds exactly.
  wss.handleUpgrade(req, socket, head, (ws) => {
    const connection = peer.open(ws, id, ip);
    ws.on('message', (data, isBinary) => (isBinary ? connection.onBinary() : connection.onText(data, data.length)));
    ws.on('pong', () => connection.alive());
    ws.on('ping', () => connection.alive());
    ws.on('error', () => {}); // a protocol violation: ws closes with 1002/1007/1009 and 'close' follows
    ws.on('close', (code) => connection.onClose(code));
  });
});

const metricsServer = http.createServer(async (req, res) => {
  if (req.url.split('?')[0] !== '/metrics') return reply(res, peer.notFound());
  res.writeHead(200, { 'content-type': peer.metrics.register.contentType });
  res.end(await peer.metrics.register.metrics());
});

const stop = () => {
  server.close();
  metricsServer.close();
};
process.on('SIGTERM', () => peer.drain('SIGTERM', stop));
process.on('SIGINT', () => peer.drain('SIGINT', stop));

metricsServer.listen(config.METRICS_ADDR.port, config.METRICS_ADDR.host);
server.listen(config.PORT, config.HOST, () => {
  console.error(`node-ws ${process.version} listening on ${config.HOST}:${server.address().port} (serverId ${config.SERVER_ID})`);
});
