"""The channels checks (wire protocol v1.1, docs/protocol.md) that check.py runs, before its
drain, against the servers that speak channels: every request and answer with its exact
fields, the errors, offsets in order under concurrent publishers, recovery (within, at the
edge of and beyond history, across epochs), history's TTL and byte budget, and MAX_CHANNELS.
"""

import json
import time

from check import CheckFailed, Client, error_of, expect

# The settings these checks need (check.py adds them to the server's environment).
CHANNEL_ENV = {
    "HISTORY_SIZE": "8",
    "HISTORY_TTL": "1500",
    "HISTORY_MAX_BYTES": "4096",
    "MAX_SUBSCRIPTIONS_PER_CONNECTION": "3",
    "MAX_CHANNELS": "16",
}
HISTORY = int(CHANNEL_ENV["HISTORY_SIZE"])
TTL_S = int(CHANNEL_ENV["HISTORY_TTL"]) / 1000
# How late a server may free expired history (both sweep every second).
SWEEP_S = 1.2
CHANNEL_SERVERS = {"concurrent-socket", "elysia"}


def ask(client, **request):
    client.ws.send(json.dumps(request))
    return client.next()


def paced(client, **request):
    """ask, slower than RATE_LIMIT_MSGS_PER_SEC (20/s), for the checks that send many."""
    time.sleep(0.06)
    return ask(client, **request)


def wait(seconds, *clients):
    """Sleeps, pinging each client every second so that CONNECTION_TIMEOUT (2.5 s) spares it."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        for c in clients:
            expect(ask(c, type="ping")["type"] == "pong", "pong while waiting")


def keys(message):
    return list(message)


def quiet(client, seconds=0.3):
    """Nothing but heartbeats arrives within `seconds`."""
    try:
        text = client.next_raw(timeout=seconds)
    except TimeoutError:
        return
    raise CheckFailed(f"expected nothing, got {text}")


def subscribed(client, channel, **extra):
    m = ask(client, type="subscribe", channel=channel, **extra)
    expect(m["type"] == "subscribed" and m["channel"] == channel, f"subscribe {channel}: {m}")
    return m


def publish(client, channel, data, **extra):
    m = ask(client, type="publish", channel=channel, data=data, **extra)
    expect(m["type"] == "published" and m["channel"] == channel, f"publish to {channel}: {m}")
    return m


def check_channel_requests(port):
    ch = "check:requests"
    with Client(port, "check-sub") as sub, Client(port, "check-pub") as pub:
        s = subscribed(sub, ch, id="s1")
        expect(keys(s) == ["type", "channel", "id", "epoch", "offset", "ts"] and s["offset"] == 0
               and isinstance(s["epoch"], str) and s["epoch"], f"subscribed: {s}")
        data = {"text": "hi", "n": [1, 2, None]}
        p = publish(pub, ch, data, id="p1")
        expect(keys(p) == ["type", "channel", "id", "offset", "epoch", "ts"] and p["id"] == "p1"
               and p["offset"] == 1 and p["epoch"] == s["epoch"], f"published: {p}")
        m = sub.next()
        expect(m == {"type": "publication", "channel": ch, "offset": 1, "data": data, "from": "check-pub", "ts": m["ts"]}
               and keys(m) == ["type", "channel", "offset", "data", "from", "ts"], f"publication: {m}")
        quiet(pub)  # not subscribed: the publisher gets its answer only
        error_of(ask(sub, type="subscribe", channel=ch, id="again"), "already_subscribed", "again")
        u = ask(sub, type="unsubscribe", channel=ch, id="u1")
        expect(u == {"type": "unsubscribed", "channel": ch, "id": "u1", "ts": u["ts"]}, f"unsubscribed: {u}")
        error_of(ask(sub, type="unsubscribe", channel=ch, id="u2"), "not_subscribed", "u2")
        p = publish(pub, ch, None)
        expect("id" not in p and p["offset"] == 2, f"published without id: {p}")
        quiet(sub)  # unsubscribed: nothing more
        s = subscribed(sub, ch)
        expect("id" not in s and s["offset"] == 2 and "recovered" not in s, f"subscribed without id: {s}")


def check_channel_errors(port):
    with Client(port, "check-channel-errors") as c:
        for bad in [{}, {"channel": ""}, {"channel": "a b"}, {"channel": "x" * 129}, {"channel": 5},
                    {"channel": None}, {"channel": "caf\u00e9"}]:
            for kind in ("subscribe", "unsubscribe", "publish"):
                error_of(paced(c, type=kind, id="bad", **bad), "invalid_channel", "bad")
        expect(subscribed(c, "x" * 128)["offset"] == 0, "a 128-character name is valid")
        for recover in [-1, 1.5, "1", [], {"offset": 1}, {"epoch": "e"}, {"offset": -1, "epoch": "e"},
                        {"offset": 1, "epoch": 2}, {"offset": 1.5, "epoch": "e"}, {"offset": 1, "epoch": "e", "x": 1}]:
            error_of(paced(c, type="subscribe", channel="check:recover", id="r", recover=recover), "invalid_message", "r")
        subscribed(c, "check:limit-1")
        subscribed(c, "check:limit-2")
        error_of(ask(c, type="subscribe", channel="check:limit-3", id="l"), "subscription_limit", "l")
        ask(c, type="unsubscribe", channel="check:limit-2")
        subscribed(c, "check:limit-3")
        m = ask(c, type="publish", channel="check:big", data="x" * 1024)
        expect(m["type"] == "error" and m["code"] == "message_too_large", f"publish over MAX_MESSAGE_BYTES: {m}")


def check_publisher_subscribed(port):
    ch = "check:self"
    with Client(port, "check-self") as c:
        subscribed(c, ch)
        c.ws.send(json.dumps({"type": "publish", "channel": ch, "id": "me", "data": "echo"}))
        got = {m["type"]: m for m in (c.next(), c.next())}
        expect(set(got) == {"publication", "published"}, f"publication and published: {got}")
        expect(got["publication"]["offset"] == got["published"]["offset"] == 1
               and got["publication"]["from"] == "check-self", f"{got}")


def check_concurrent_publishers(port):
    """Two publishers send 10 each without waiting; two subscribers see offsets 1..20 once each,
    in order, the same sequence, each publisher's data in its sending order."""
    ch = "check:order"
    with Client(port, "check-order-a") as a, Client(port, "check-order-b") as b, \
            Client(port, "check-order-s1") as s1, Client(port, "check-order-s2", source="127.0.0.2") as s2:
        subscribed(s1, ch)
        subscribed(s2, ch)
        for i in range(10):
            a.ws.send(json.dumps({"type": "publish", "channel": ch, "data": {"a": i}}))
            b.ws.send(json.dumps({"type": "publish", "channel": ch, "data": {"b": i}}))
        acks = {"a": [a.next()["offset"] for _ in range(10)], "b": [b.next()["offset"] for _ in range(10)]}
        seen = []
        for s in (s1, s2):
            got = [s.next() for _ in range(20)]
            expect([m["offset"] for m in got] == list(range(1, 21)), f"offsets {[m['offset'] for m in got]}")
            seen.append([(m["from"], m["data"]) for m in got])
        expect(seen[0] == seen[1], "both subscribers see the same order")
        for who in ("a", "b"):
            mine = [(m, data) for m, (frm, data) in enumerate(seen[0], start=1) if frm == f"check-order-{who}"]
            expect([data[who] for _, data in mine] == list(range(10)), f"{who}'s publications in its order")
            expect([offset for offset, _ in mine] == acks[who], f"{who}'s published offsets {acks[who]}")


def check_recovery(port):
    ch = "check:recovery"
    with Client(port, "check-rec-pub") as pub:
        with Client(port, "check-rec-sub") as sub:
            epoch = subscribed(sub, ch)["epoch"]
            publish(pub, ch, "one")
            publish(pub, ch, "two")
            expect([sub.next()["offset"] for _ in range(2)] == [1, 2], "live publications")
        for i in range(3):
            publish(pub, ch, {"missed": i})
        with Client(port, "check-rec-sub") as sub:
            s = subscribed(sub, ch, id="r", recover={"offset": 2, "epoch": epoch})
            expect(keys(s) == ["type", "channel", "id", "epoch", "offset", "recovered", "publications", "ts"]
                   and s["recovered"] is True and s["offset"] == 5, f"recovered: {s}")
            expect(s["publications"] == [{"offset": 3 + i, "data": {"missed": i}, "from": "check-rec-pub"} for i in range(3)],
                   f"the missed publications: {s['publications']}")
            publish(pub, ch, "live")
            m = sub.next()
            expect(m["offset"] == 6 and m["data"] == "live", f"live after the recovery, no gap or double: {m}")
        for recover, recovered in [({"offset": 6, "epoch": epoch}, True), ({"offset": 7, "epoch": epoch}, False),
                                   ({"offset": 2, "epoch": epoch + "x"}, False)]:
            with Client(port, "check-rec-edge") as c:
                s = subscribed(c, ch, recover=recover)
                expect(s["recovered"] is recovered and (s["publications"] == [] if recovered is False or recover["offset"] == 6 else True),
                       f"recover {recover}: {s}")


def check_recovery_beyond_history(port):
    ch = "check:beyond"
    with Client(port, "check-beyond") as c:
        epoch = None
        for i in range(HISTORY + 2):
            epoch = publish(c, ch, i)["epoch"]
        oldest = 3  # HISTORY + 2 published, HISTORY kept
        s = subscribed(c, ch, recover={"offset": oldest - 1, "epoch": epoch})
        expect(s["recovered"] is True and [p["offset"] for p in s["publications"]] == list(range(oldest, HISTORY + 3)),
               f"recover from the oldest kept: {s}")
        ask(c, type="unsubscribe", channel=ch)
        s = subscribed(c, ch, recover={"offset": oldest - 2, "epoch": epoch})
        expect(s["recovered"] is False and s["publications"] == [], f"one before what history holds: {s}")


def check_history_ttl(port):
    ch = "check:ttl"
    with Client(port, "check-ttl-hold") as hold, Client(port, "check-ttl") as c:
        epoch = subscribed(hold, ch)["epoch"]
        publish(c, ch, 1)
        publish(c, ch, 2)
        hold.next(), hold.next()
        wait(TTL_S + SWEEP_S, hold, c)
        s = subscribed(c, ch, recover={"offset": 1, "epoch": epoch})
        expect(s["recovered"] is False and s["epoch"] == epoch and s["offset"] == 2,
               f"history expired, channel kept by its subscriber (same epoch and offset): {s}")


def check_history_budget(port):
    """7 publications of 900 bytes: more than HISTORY_MAX_BYTES (4096) can hold."""
    ch = "check:budget"
    with Client(port, "check-budget") as c:
        for i in range(7):
            last = publish(c, ch, str(i) * 900)
        s = subscribed(c, ch, recover={"offset": 5, "epoch": last["epoch"]})
        expect(s["recovered"] is True and [p["offset"] for p in s["publications"]] == [6, 7], f"the newest kept: {s}")
        ask(c, type="unsubscribe", channel=ch)
        s = subscribed(c, ch, recover={"offset": 0, "epoch": last["epoch"]})
        expect(s["recovered"] is False, f"the oldest evicted by the byte budget: {s}")


def check_channel_limit(port):
    """New channels until channel_limit; existing ones keep working; freed after HISTORY_TTL."""
    limit = int(CHANNEL_ENV["MAX_CHANNELS"])
    with Client(port, "check-channels") as c:
        wait(TTL_S + SWEEP_S, c)  # the other checks' channels expire first
        refused = None
        for i in range(limit + 1):
            m = paced(c, type="publish", channel=f"check:many-{i}", id=str(i), data=i)
            if m["type"] == "error":
                refused = (i, m)
                break
        expect(refused is not None, f"{limit + 1} new channels accepted with MAX_CHANNELS={limit}")
        error_of(refused[1], "channel_limit", str(refused[0]))
        error_of(ask(c, type="subscribe", channel="check:many-new", id="s"), "channel_limit", "s")
        publish(c, "check:many-0", "still works")
        wait(TTL_S + SWEEP_S, c)
        publish(c, "check:many-new", "freed")


CHANNEL_CHECKS = [
    ("channel requests", check_channel_requests), ("channel errors", check_channel_errors),
    ("publisher subscribed", check_publisher_subscribed), ("concurrent publishers", check_concurrent_publishers),
    ("recovery", check_recovery), ("recovery beyond history", check_recovery_beyond_history),
    ("history ttl", check_history_ttl), ("history byte budget", check_history_budget),
    ("channel limit", check_channel_limit),
]
