// The peers' configuration: the environment variables of concurrent-socket
// (docs/configuration.md) that a protocol v1 (and v1.1 channels) server needs, with the same defaults and valid
// ranges. A bad value is an error naming the variable, and every bad one is reported at once.
import net from 'node:net';
import os from 'node:os';

/** `NAME="value": problem` lines, thrown when any variable is bad. */
export class ConfigError extends Error {
  constructor(problems) {
    super(`invalid configuration (${problems.length} bad variable${problems.length === 1 ? '' : 's'}):\n` +
      problems.map((p) => `  ${p}`).join('\n'));
  }
}

const wholeNumber = (min, max) => (s) => {
  const n = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!(n >= min && n <= max)) throw new Error(`expected a whole number from ${min} to ${max}`);
  return n;
};

const ipAddress = (s) => {
  if (!net.isIP(s)) throw new Error('expected an IP address');
  return s;
};

/** `IP:PORT` or `[IPv6]:PORT` -> { host, port }. */
const socketAddress = (s) => {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  const host = m && (m[1] ?? m[2]);
  if (!m || !net.isIP(host) || Number(m[3]) > 65535) throw new Error('expected IP:PORT, for example 127.0.0.1:9464');
  return { host, port: Number(m[3]) };
};

const serverId = (s) => {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(s)) throw new Error('expected 1 to 64 characters of A-Z a-z 0-9 . _ -');
  return s;
};

/** `scheme://authority`, lower case, or null: the form concurrent-socket compares origins in. */
export function normalizeOrigin(origin) {
  const o = origin.trim().replace(/\/+$/, '').toLowerCase();
  const m = /^(https?):\/\/([a-z0-9\-.:[\]_]+)$/.exec(o);
  return m ? o : null;
}

/** '' = the page's own origin only, '*' = any, else a list of normalised origins. */
const allowedOrigins = (s) => {
  if (s === '' || s === '*') return s;
  return s.split(',').map((item) => item.trim()).filter((item) => item !== '').map((item) => {
    const origin = normalizeOrigin(item);
    if (!origin) throw new Error(`"${item}" is not an origin like https://example.com[:port], and \`*\` must stand alone`);
    return origin;
  });
};

/** The hostname, cut to a valid server id (as concurrent-socket does). */
const defaultServerId = () => os.hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 64) || 'peer';

// name -> [parse, default]. Defaults are given as the text a variable would hold.
const VARIABLES = {
  PORT: [wholeNumber(0, 65535), '3001'],
  HOST: [ipAddress, '0.0.0.0'],
  MAX_CONNECTIONS: [wholeNumber(1, 1_000_000), '10000'],
  HEARTBEAT_INTERVAL: [wholeNumber(10, 3_600_000), '30000'],
  CONNECTION_TIMEOUT: [wholeNumber(10, 86_400_000), '300000'],
  MAX_MESSAGE_BYTES: [wholeNumber(64, 16_777_216), '65536'],
  RATE_LIMIT_MSGS_PER_SEC: [wholeNumber(0, 1_000_000), '100'],
  MAX_CONNECTIONS_PER_IP: [wholeNumber(0, 1_000_000), '1000'],
  ALLOWED_ORIGINS: [allowedOrigins, ''],
  SHUTDOWN_TIMEOUT: [wholeNumber(100, 3_600_000), '10000'],
  METRICS_ADDR: [socketAddress, '127.0.0.1:9464'],
  SERVER_ID: [serverId, null],
  // Channels (protocol v1.1), read by the peers that speak them (common/channels.mjs).
  HISTORY_SIZE: [wholeNumber(0, 1_000_000), '100'],
  HISTORY_TTL: [wholeNumber(1, 604_800_000), '300000'],
  HISTORY_MAX_BYTES: [wholeNumber(0, 2 ** 40), '268435456'],
  MAX_SUBSCRIPTIONS_PER_CONNECTION: [wholeNumber(0, 65_536), '128'],
  MAX_CHANNELS: [wholeNumber(1, 100_000_000), '100000'],
  OUTBOUND_QUEUE_BYTES: [wholeNumber(1024, 1_073_741_824), '1048576'],
};

/** Reads every variable of VARIABLES from `env`; throws ConfigError listing the bad ones. */
export function readConfig(env = process.env) {
  const config = {};
  const problems = [];
  for (const [name, [parse, fallback]] of Object.entries(VARIABLES)) {
    const raw = env[name];
    if (raw === undefined) {
      config[name] = fallback === null ? defaultServerId() : parse(fallback);
      continue;
    }
    const value = raw.trim();
    try {
      // Empty is an error (unset the variable for the default), except for the origin list.
      if (value === '' && name !== 'ALLOWED_ORIGINS') throw new Error('expected a value (unset the variable for the default)');
      config[name] = parse(value);
    } catch (e) {
      problems.push(`${name}=${JSON.stringify(raw)}: ${e.message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** readConfig, or the errors on stderr and exit status 1 (before anything binds). */
export function configOrExit(env = process.env) {
  try {
    return readConfig(env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    console.error(e.message);
    process.exit(1);
  }
}
