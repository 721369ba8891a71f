"""The attacks, numbered as the defects of issue 14 (14: issue 20's direct path), with what each asserts and
its time bound."""

from dataclasses import dataclass

from . import (eviction, fd_exhaustion, frame_floods, handshake, ipv6_prefix, observability, origin, outbound_memory,
               pre_upgrade, shutdown, slow_liveness, spike, upgrade_flood, utf8_fragments)


@dataclass(frozen=True)
class Attack:
    number: int
    name: str
    run: object  # async def run(ctx)
    limit: float  # seconds
    asserts: str


ATTACKS = [
    Attack(1, "pre-upgrade", pre_upgrade.run, 120,
           "never-ending heads -> 431 or closed, RSS <= min(N, MAX_PENDING_HTTP) x (MAX_HEADER_BYTES + 16 KiB) "
           "+ 16 MiB; per-IP and global pending caps close the excess and count it"),
    Attack(2, "fd-exhaustion", fd_exhaustion.run, 60,
           "ulimit -n 512 filled by idle connections: WATCHDOG=1 keeps coming, accept errors logged <= ~1/s, "
           "new connections closed not hung, accept errors counted, established clients echo"),
    Attack(3, "frame-floods", frame_floods.run, 60,
           "continuation flood -> 1008; ping bursts -> pongs coalesced, latest answered; ping flood -> one "
           "rate_limited then 1008; > MAX_FRAGMENTS -> 1008; > FRAGMENT_TIMEOUT -> 1008"),
    Attack(4, "outbound-memory", outbound_memory.run, 60,
           "a non-reading ping flooder pins <= OUTBOUND_QUEUE_BYTES + MAX_MESSAGE_BYTES + 64 KiB; after one "
           "refused 250 KiB frame a connection keeps <= 32 KiB"),
    Attack(5, "spike", spike.run, 90,
           "1,000 connections x 64 KiB echo then close: RSS back within baseline + 32 MiB within 10 s"),
    Attack(6, "ipv6-prefix", ipv6_prefix.run, 30,
           "per-IP limits count IPv6 clients per /CLIENT_IPV6_PREFIX (via TRUSTED_PROXIES + X-Forwarded-For)"),
    Attack(7, "eviction", eviction.run, 30,
           "same id from another address -> 409, victim untouched; same address replaces, goodbye replaced "
           "reconnect: true"),
    Attack(8, "slow-liveness", slow_liveness.run, 30,
           "fragments and partial frames prove liveness: slow senders survive > 5 s at HEARTBEAT_INTERVAL=1000"),
    Attack(9, "origin", origin.run, 30,
           "DNS-rebinding names and scheme mismatches -> 403; localhost/IP same origin -> 101; PUBLIC_ORIGIN"),
    Attack(10, "observability", observability.run, 60,
           "refusal and accept-error metrics present at 0 and counting exactly; 2,000 connections churned "
           "-> < 50 info lines; a summary at shutdown"),
    Attack(11, "handshake", handshake.run, 30,
           "bad Sec-WebSocket-Key -> 400 bad_handshake; bad version -> 426 + Sec-WebSocket-Version: 13; body -> 400"),
    Attack(12, "shutdown", shutdown.run, 30,
           "SHUTDOWN_TIMEOUT=2000 with clients: every goodbye said, exit 0 within 3 s; check-config refuses < 1000"),
    Attack(13, "utf8-fragments", utf8_fragments.run, 30,
           "invalid UTF-8 in a text fragment -> 1007 before the final fragment"),
    Attack(14, "upgrade-flood", upgrade_flood.run, 60,
           "one address floods upgrades at UPGRADE_RATE_PER_IP=5: burst + 5/s get 101, the rest 429 "
           "upgrade_rate_limited + Retry-After: 1, counted; 20 other addresses upgrade meanwhile; bad, slow "
           "and untrusted PROXY v2 headers closed unanswered and counted by reason"),
]
