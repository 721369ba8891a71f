#!/usr/bin/env python3
"""Builds the Grafana dashboards in grafana/dashboards/ (overview, deploy, logs).

The JSON files are what Grafana provisions and what CI type-checks and runs against a real
Prometheus; this script is their source, so that every panel gets the same datasource,
filters, units and layout. Edit here, then run `grafana/build.py`; `grafana/build.py
--check` fails when a committed JSON file differs from what this script builds.
"""
import json
import sys
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
SCHEMA_VERSION = 42  # Grafana 12 (@grafana/schema 12.x)

PROM = {"type": "prometheus", "uid": "${datasource}"}
LOKI = {"type": "loki", "uid": "${loki}"}

# Label filters every server query carries; Grafana expands the variables.
SERVER = 'job="concurrent-socket", colour=~"$colour", instance=~"$instance"'
TRAEFIK = 'job="traefik"'
RATE = "[$__rate_interval]"


# ---- variables -----------------------------------------------------------------------

def datasource_var(name, label, plugin, uid):
    return {
        "name": name, "label": label, "type": "datasource", "query": plugin,
        "current": {"text": label, "value": uid}, "options": [], "hide": 0,
        "refresh": 1, "regex": "",
    }


def query_var(name, label, query, datasource, regex=""):
    return {
        "name": name, "label": label, "type": "query", "datasource": datasource,
        "query": query, "regex": regex, "refresh": 2, "sort": 1,
        "multi": True, "includeAll": True,
        "current": {"text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0,
    }


def textbox_var(name, label):
    return {
        "name": name, "label": label, "type": "textbox", "query": "",
        "current": {"text": "", "value": ""}, "options": [], "hide": 0,
    }


COLOUR_VAR = query_var("colour", "Colour", 'label_values(up{job="concurrent-socket"}, colour)', PROM)
INSTANCE_VAR = query_var(
    "instance", "Instance", 'label_values(up{job="concurrent-socket", colour=~"$colour"}, instance)', PROM)
# The host part of the servers' instance labels (host:port, one port per colour), for the
# deploy view that puts a host's two colours side by side.
HOST_VAR = query_var("host", "Host", 'label_values(up{job="concurrent-socket"}, instance)', PROM,
                     regex="/^(.+?)(?::[0-9]+)?$/")
PROM_VAR = datasource_var("datasource", "Prometheus", "prometheus", "prometheus")
LOKI_VAR = datasource_var("loki", "Loki", "loki", "loki")
# The journal's hostname (Alloy's `host` label): a fleet's hosts all ship to one Loki.
LOG_HOST_VAR = query_var("host", "Host", 'label_values({job="systemd-journal"}, host)', LOKI)


# ---- panels --------------------------------------------------------------------------

def target(expr, legend, ref, **extra):
    return {"refId": ref, "datasource": extra.pop("datasource", PROM), "expr": expr,
            "legendFormat": legend, "range": True, **extra}


def targets(queries, **extra):
    """queries: [(expr, legend)] -> targets with refIds A, B, C..."""
    return [target(expr, legend, chr(ord("A") + i), **extra) for i, (expr, legend) in enumerate(queries)]


def timeseries(title, description, unit, queries, axis_label, stack=False, width=12, min_zero=True):
    custom = {"axisLabel": axis_label, "drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
              "showPoints": "never", "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    defaults = {"unit": unit, "custom": custom}
    if min_zero:
        defaults["min"] = 0
    return {
        "type": "timeseries", "title": title, "description": description, "datasource": PROM,
        "targets": targets(queries), "width": width,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                               "calcs": ["lastNotNull", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def heatmap(title, description, unit, expr):
    return {
        "type": "heatmap", "title": title, "description": description, "datasource": PROM,
        "targets": [target(expr, "{{le}}", "A", format="heatmap")], "width": 12,
        "fieldConfig": {"defaults": {"unit": unit, "custom": {}}, "overrides": []},
        "options": {"calculate": False, "yAxis": {"unit": unit, "axisLabel": "latency"},
                    "cellValues": {"unit": "short"}, "color": {"scheme": "Oranges", "mode": "scheme"},
                    "tooltip": {"mode": "single", "yHistogram": True}},
    }


def stat(title, description, unit, queries, width=6):
    return {
        "type": "stat", "title": title, "description": description, "datasource": PROM,
        "targets": targets(queries, instant=True, range=False), "width": width,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "textMode": "value_and_name", "colorMode": "none", "graphMode": "none"},
    }


def logs(title, description, expr):
    return {
        "type": "logs", "title": title, "description": description, "datasource": LOKI,
        "targets": [{"refId": "A", "datasource": LOKI, "expr": expr, "queryType": "range"}],
        "width": 24, "height": 12,
        "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                    "enableLogDetails": True, "dedupStrategy": "none"},
    }


def log_volume(title, description, expr):
    panel = timeseries(title, description, "short", [], "lines per interval", stack=True, width=24)
    panel["datasource"] = LOKI
    panel["targets"] = [{"refId": "A", "datasource": LOKI, "expr": expr, "legendFormat": "{{unit}} {{level}}",
                         "queryType": "range"}]
    panel["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "bars"
    return panel


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def quantiles(metric, selector, by="colour"):
    """p50/p95/p99 of a histogram over $__rate_interval, one series per `by`."""
    return [(f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}{RATE})))",
             f"p{int(float(q) * 100)} {{{{{by}}}}}") for q in ("0.5", "0.95", "0.99")]


def layout(items):
    """Assigns ids and gridPos left to right, top to bottom; rows take a full line."""
    x = y = line_height = 0
    out = []
    for pid, item in enumerate(items, start=1):
        panel = dict(item)
        width = panel.pop("width", 24 if panel["type"] == "row" else 12)
        height = panel.pop("height", 1 if panel["type"] == "row" else 8)
        if x + width > 24 or panel["type"] == "row":
            x, y, line_height = 0, y + line_height, 0
        panel["id"] = pid
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        out.append(panel)
        x += width
        line_height = max(line_height, height)
        if panel["type"] == "row":
            x, y, line_height = 0, y + height, 0
    return out


def dashboard(uid, title, description, variables, panels, tags, refresh="30s"):
    return {
        "uid": uid, "title": title, "description": description, "tags": tags,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": True, "graphTooltip": 1,
        "timezone": "browser", "refresh": refresh, "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": [{
            "name": "Annotations & Alerts", "builtIn": 1, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "type": "dashboard",
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
        }]},
        "links": [{"title": "concurrent-socket", "type": "dashboards", "tags": ["concurrent-socket"],
                   "asDropdown": True, "includeVars": True, "keepTime": True,
                   "icon": "external link", "targetBlank": False, "tooltip": ""}],
        "panels": layout(panels),
    }


# ---- the dashboards ------------------------------------------------------------------

def overview():
    s = SERVER
    panels = [
        row("Connections"),
        timeseries("Open connections per colour",
                   "WebSockets currently open on each colour, next to the configured cap "
                   "(MAX_CONNECTIONS). At the cap new upgrades are answered 503.",
                   "short", [(f"sum by (colour) (websocket_connections_active{{{s}}})", "{{colour}} open"),
                             (f"sum by (colour) (websocket_connections_limit{{{s}}})", "{{colour}} cap")],
                   "connections"),
        timeseries("Connection cap used",
                   "Open connections divided by the cap, per server process (recording rule "
                   "instance:websocket_connections:utilisation). WebSocketHighConnectionCount "
                   "warns above 80%.",
                   "percentunit", [(f"instance:websocket_connections:utilisation{{{s}}}", "{{colour}} {{instance}}")],
                   "share of cap"),
        timeseries("Accepted connections",
                   "WebSocket upgrades accepted per second, per colour.",
                   "cps", [(f"sum by (colour) (rate(websocket_connections_total{{{s}}}{RATE}))", "{{colour}}")],
                   "upgrades/s", width=8),
        timeseries("Rejected connections by reason",
                   "Upgrades turned away per second, by reason: at_capacity (the cap), ip_limit "
                   "(MAX_CONNECTIONS_PER_IP), draining (SIGTERM received), forbidden_origin, "
                   "invalid_connection_id.",
                   "cps", [(f"sum by (reason) (rate(websocket_connections_rejected_total{{{s}}}{RATE}))",
                            "{{reason}}")],
                   "rejections/s", width=8),
        timeseries("Disconnects by reason",
                   "Connections closed per second, by reason: client_close is normal; "
                   "server_shutdown comes with a drain; dead_peer, slow_consumer, "
                   "transport_error and policy_violation point at clients or the network.",
                   "cps", [(f"sum by (reason) (rate(websocket_disconnects_total{{{s}}}{RATE}))", "{{reason}}")],
                   "disconnects/s", width=8),
        timeseries("Connection duration",
                   "How long closed connections had lived (quantiles of "
                   "websocket_connection_duration_seconds over the rate interval).",
                   "s", quantiles("websocket_connection_duration_seconds", s), "duration"),
        timeseries("Rejected share of attempts",
                   "Rejected upgrades divided by all upgrade attempts over 5 minutes (recording "
                   "rule); WebSocketRejectionSurge warns above 5%.",
                   "percentunit",
                   [(f"instance:websocket_connections_rejected:ratio_rate5m{{{s}}}", "{{colour}} {{instance}}")],
                   "share of attempts"),

        row("Messages"),
        timeseries("Messages per second by type",
                   "Frames per second by direction and type: in = message, ping, invalid; out = "
                   "connection_established, heartbeat, message_response, pong, error, goodbye.",
                   "cps", [(f"sum by (direction, type) (rate(websocket_messages_total{{{s}}}{RATE}))",
                            "{{direction}} {{type}}")],
                   "messages/s"),
        timeseries("Errors by code",
                   "Error messages sent to clients per second, by code. invalid_json, "
                   "invalid_message, unknown_type: a client bug; rate_limited, message_too_large: "
                   "abuse or limits too tight. WebSocketHighErrorRate warns above 10/s.",
                   "cps", [(f"sum by (code) (rate(websocket_errors_total{{{s}}}{RATE}))", "{{code}}")],
                   "errors/s"),
        timeseries("Message latency",
                   "Time from a client frame received to its answer written: p50, p95, p99 per "
                   "colour. WebSocketHighMessageLatency warns when p95 stays above 1 s.",
                   "s", quantiles("websocket_message_latency_seconds", s), "latency"),
        heatmap("Message latency distribution",
                "Answers per latency bucket per interval (websocket_message_latency_seconds "
                "buckets), all selected servers together. A second band means a slow path.",
                "s", f"sum by (le) (increase(websocket_message_latency_seconds_bucket{{{s}}}{RATE}))"),
        timeseries("Ping round trip",
                   "Time from a server ping to the client's pong: p50, p95, p99 per colour. High "
                   "values with normal message latency point at the network or slow clients.",
                   "s", quantiles("websocket_ping_rtt_seconds", s), "round trip"),
        timeseries("Latency p95 per server (5m)",
                   "p95 message latency per server process over 5 minutes, the exact signal "
                   "WebSocketHighMessageLatency uses (recording rule).",
                   "s", [(f'instance:websocket_message_latency_seconds:quantile_rate5m{{{s}, quantile="0.95"}}',
                          "{{colour}} {{instance}}")],
                   "latency"),

        row("Channels"),
        timeseries("Publications by result",
                   "Channel publishes per second: accepted (offset assigned, handed to the "
                   "broker) or refused (answered with an error; the Errors by code panel says "
                   "which). WebSocketPublicationsRefused warns above 5% refused.",
                   "cps", [(f"sum by (result) (rate(websocket_publications_total{{{s}}}{RATE}))", "{{result}}")],
                   "publishes/s", width=8),
        timeseries("Deliveries",
                   "Publications written into subscribers' outboxes per second, per colour: one "
                   "per subscriber of the channel, so deliveries over accepted publications is "
                   "the fan-out.",
                   "cps", [(f"sum by (colour) (rate(websocket_deliveries_total{{{s}}}{RATE}))", "{{colour}}")],
                   "deliveries/s", width=8),
        timeseries("Subscriptions and channels",
                   "Channel subscriptions held by connections, and channels alive in the process "
                   "(subscribed, or keeping history). New channels beyond MAX_CHANNELS are "
                   "refused with channel_limit.",
                   "short", [(f"sum by (colour) (websocket_subscriptions_active{{{s}}})", "{{colour}} subscriptions"),
                             (f"sum by (colour) (websocket_channels_active{{{s}}})", "{{colour}} channels")],
                   "count", width=8),
        timeseries("History size",
                   "Bytes of publications kept for recovery in each process. HISTORY_MAX_BYTES "
                   "(default 256 MiB, not exported) bounds it: a flat line at that value means "
                   "the oldest publications are being evicted, and recoveries of older offsets "
                   "answer recovered: false.",
                   "bytes", [(f"websocket_history_bytes{{{s}}}", "{{colour}} {{instance}}")],
                   "history", width=8),
        timeseries("Recoveries by outcome",
                   "Subscribes with recover per second: recovered (every missed publication came "
                   "back from history) or not_recovered (history did not hold them, or the "
                   "epoch changed: the client lost messages).",
                   "cps", [(f"sum by (outcome) (rate(websocket_recoveries_total{{{s}}}{RATE}))", "{{outcome}}")],
                   "recoveries/s", width=8),
        timeseries("Subscription ends by reason",
                   "Subscriptions ended per second: unsubscribe (the client asked), disconnect "
                   "(its connection closed), insufficient_state (the server ended it: the "
                   "subscriber's queue overflowed or the broker lost messages; the client "
                   "resubscribes with recover).",
                   "cps", [(f"sum by (reason) (rate(websocket_subscription_ends_total{{{s}}}{RATE}))", "{{reason}}")],
                   "ends/s", width=8),
        timeseries("Auth refusals by reason",
                   "Tokens refused per second, by reason (authentication on only): missing, "
                   "timeout, malformed, bad_signature, wrong_algorithm, expired, "
                   "not_yet_valid refuse a connection; forbidden_channel one subscribe or "
                   "publish.",
                   "cps", [(f"sum by (reason) (rate(websocket_auth_refusals_total{{{s}}}{RATE}))", "{{reason}}")],
                   "refusals/s", width=8),
        timeseries("Channel failure shares (5m)",
                   "The shares the channel alerts watch, per server process over 5 minutes "
                   "(recording rules): publishes refused, subscription ends that were "
                   "insufficient_state, recoveries not recovered, connection attempts refused "
                   "for their token. Empty while there is nothing to divide by.",
                   "percentunit",
                   [(f"instance:websocket_publications_refused:ratio_rate5m{{{s}}}", "refused publishes {{colour}} {{instance}}"),
                    (f"instance:websocket_subscription_ends_insufficient_state:ratio_rate5m{{{s}}}",
                     "insufficient_state ends {{colour}} {{instance}}"),
                    (f"instance:websocket_recoveries_not_recovered:ratio_rate5m{{{s}}}",
                     "not recovered {{colour}} {{instance}}"),
                    (f"instance:websocket_auth_refusals:ratio_rate5m{{{s}}}", "auth refused {{colour}} {{instance}}")],
                   "share", width=16),

        row("Broker"),
        timeseries("Broker publish latency",
                   "Round trip of a publish to the broker (with BROKER=redis the publish script: "
                   "offset, history, pub/sub in one call), p50 and p99 per colour; the publisher's "
                   "acknowledgement waits for it. WebSocketBrokerPublishSlow warns when p99 stays "
                   "above 50 ms.",
                   "s", [(f"histogram_quantile({q}, sum by (colour, le) "
                          f"(rate(websocket_broker_publish_duration_seconds_bucket{{{s}}}{RATE})))",
                          f"p{pct} {{{{colour}}}}") for q, pct in (("0.5", 50), ("0.99", 99))],
                   "latency"),
        timeseries("Broker errors by operation",
                   "Broker operations that failed per second, by operation: publish, history "
                   "(recovery reads), subscribe, unsubscribe, pubsub (the subscription "
                   "connection). Timeouts past REDIS_TIMEOUT, a full Redis refusing writes, a "
                   "lost connection. WebSocketBrokerErrors warns when they last 5 minutes.",
                   "cps", [(f"sum by (operation) (rate(websocket_broker_errors_total{{{s}}}{RATE}))", "{{operation}}")],
                   "errors/s"),
        timeseries("Pub/sub reconnects",
                   "Times per interval each colour's pub/sub connection to Redis came back after "
                   "dropping (Redis restarted or failed over, the network, or Redis cut a slow "
                   "reader). Each is followed by resubscribing and repairing the gaps.",
                   "short", [(f"sum by (colour) (increase(websocket_broker_pubsub_reconnects_total{{{s}}}{RATE}))",
                              "{{colour}}")],
                   "reconnects per interval", width=8),
        timeseries("Gap repairs by outcome",
                   "Channel gaps found per interval (after a reconnect, an offset out of "
                   "sequence, or a position check) by outcome: filled from Redis's history, or "
                   "insufficient_state (history no longer held them: the subscribers recover "
                   "and may lose messages). WebSocketBrokerGapsUnrepaired warns on the latter.",
                   "short", [(f"sum by (outcome) (increase(websocket_broker_gap_repairs_total{{{s}}}{RATE}))",
                              "{{outcome}}")],
                   "gaps per interval", width=8),
        stat("Broker up",
             "1 while the channels' broker of each server takes work (always 1 for the "
             "in-memory broker). At 0 every publish is refused with broker_unavailable: "
             "WebSocketBrokerDown pages after a minute.",
             "bool", [(f"websocket_broker_up{{{s}}}", "{{colour}} {{instance}}")], width=8),

        row("Handover"),
        timeseries("Handover: connections by outcome",
                   "Connections of the handover (systemctl reload, docs/handover.md) that started "
                   "each process, by outcome: resumed by it, or unresumable (closed with goodbye "
                   "server_shutdown; WebSocketHandoverUnresumable warns). A process counts its own "
                   "take-over once, at start, so the raw count is shown, not a rate; handed_over "
                   "is counted by the old process, which exits within a second, and is seldom "
                   "scraped.",
                   "short", [(f"websocket_handover_connections_total{{{s}}}",
                              "{{outcome}} {{colour}} {{instance}}")],
                   "connections"),
        timeseries("Handover durations",
                   "From the old process's handover signal to the new process serving new "
                   "connections, and to it having resumed every handed-over one (0: the process "
                   "started without a handover). WebSocketHandoverSlow warns above 1 s to serving.",
                   "s", [(f"websocket_handover_seconds{{{s}}}", "serving {{colour}} {{instance}}"),
                         (f"websocket_handover_resume_seconds{{{s}}}", "all resumed {{colour}} {{instance}}")],
                   "seconds"),

        row("Resources"),
        timeseries("Resident memory",
                   "Resident set size of each server process. WebSocketHighMemoryUsage warns above 2 GiB.",
                   "bytes", [(f"process_resident_memory_bytes{{{s}}}", "{{colour}} {{instance}}")], "memory", width=8),
        timeseries("Memory per connection",
                   "Resident memory divided by open connections (by 1 when idle). Flat under load "
                   "is healthy; growing at a steady connection count is a leak or buffering.",
                   "bytes", [(f"instance:process_resident_memory_bytes:per_connection{{{s}}}",
                              "{{colour}} {{instance}}")],
                   "bytes per connection", width=8),
        timeseries("CPU",
                   "CPU time used per second by each server process over 5 minutes; 100% is one "
                   "full core. The process collector counts whole CPU seconds, so a shorter "
                   "window would show steps, not load. WebSocketHighCPUUsage warns above 80%.",
                   "percentunit", [(f"instance:process_cpu_seconds:rate5m{{{s}}}", "{{colour}} {{instance}}")],
                   "of one core", width=8),
        timeseries("Open files",
                   "Open file descriptors (one per connection plus a few) against the process "
                   "limit. At the limit accepts fail before MAX_CONNECTIONS is reached.",
                   "short", [(f"process_open_fds{{{s}}}", "{{colour}} {{instance}} open"),
                             (f"process_max_fds{{{s}}}", "{{colour}} {{instance}} limit")],
                   "descriptors"),
        timeseries("Uptime",
                   "Seconds since each server process started; a drop to zero is a restart "
                   "(deploy, crash or watchdog).",
                   "s", [(f"time() - process_start_time_seconds{{{s}}}", "{{colour}} {{instance}}")], "uptime"),

        row("Traefik"),
        timeseries("Traefik requests by router and code",
                   "Requests per second Traefik answered on the ws router (WebSocket upgrades, "
                   "counted when the connection ends) and the ws-http router, by status code.",
                   "reqps", [(f'sum by (router, code) (rate(traefik_router_requests_total{{{TRAEFIK}, '
                              f'router=~"ws@file|ws-http@file"}}{RATE}))', "{{router}} {{code}}")],
                   "requests/s", width=8),
        timeseries("Traefik 5xx share",
                   "Share of each router's requests answered 5xx over 5 minutes (recording "
                   "rule); TraefikWebSocket5xx pages above 5% on the ws router.",
                   "percentunit",
                   [("instance_router:traefik_router_requests_5xx:ratio_rate5m", "{{instance}} {{router}}")],
                   "share of requests", width=8),
        timeseries("Traefik open connections",
                   "Connections open on each Traefik entry point; every WebSocket holds one on "
                   "web or websecure.",
                   "short", [(f"sum by (entrypoint) (traefik_open_connections{{{TRAEFIK}}})", "{{entrypoint}}")],
                   "connections", width=8),
    ]
    return dashboard("concurrent-socket-overview", "concurrent-socket: overview",
                     "Connections, messages, latency, errors and resources of the concurrent-socket "
                     "servers and the Traefik in front of them.",
                     [PROM_VAR, COLOUR_VAR, INSTANCE_VAR], panels, ["concurrent-socket"])


def deploy():
    # One host: its servers and its Traefik (instance host:port on one host, the Name tag in
    # the fleet).
    on_host = 'instance=~"($host)(:[0-9]+)?"'
    s = f'job="concurrent-socket", {on_host}'
    t = f"{TRAEFIK}, {on_host}"
    traefik_5xx = f'traefik_router_requests_total{{{t}, router=~"ws@file|ws-http@file", code=~"5.."}}'
    colour_services = 'service=~"ws-(blue|green)@file"'
    panels = [
        row("Blue against green"),
        timeseries("Open connections by colour",
                   "WebSockets open on blue and on green. During a switch the new colour climbs "
                   "as clients reconnect while the old one drains to zero.",
                   "short", [(f"sum by (colour) (websocket_connections_active{{{s}}})", "{{colour}}")],
                   "connections"),
        timeseries("Draining",
                   "1 while a colour has received SIGTERM and is saying goodbye to its clients; it "
                   "should drop back (the process exits) within SHUTDOWN_TIMEOUT.",
                   "bool", [(f"max by (colour) (websocket_draining{{{s}}})", "{{colour}}")], "draining"),
        timeseries("New connections share by colour",
                   "Share of accepted upgrades going to each colour, as the servers count them: "
                   "follows Traefik's weights in routing.yml within seconds of a switch.",
                   "percentunit",
                   [(f"sum by (colour) (rate(websocket_connections_total{{{s}}}{RATE})) / ignoring (colour) "
                     f"group_left sum(rate(websocket_connections_total{{{s}}}{RATE}))", "{{colour}}")],
                   "share of upgrades"),
        timeseries("Traefik requests by colour",
                   "Requests per second Traefik sent to the ws-blue and ws-green services, by "
                   "code. WebSocket upgrades are counted when the connection closes, so this lags "
                   "the switch for long-lived clients.",
                   "reqps", [(f"sum by (service, code) (rate(traefik_service_requests_total{{{t}, "
                              f"{colour_services}}}{RATE}))", "{{service}} {{code}}")],
                   "requests/s"),
        timeseries("Rejections by colour and reason",
                   "Upgrades rejected per second; `draining` rejections on the old colour mean "
                   "Traefik still sends it new clients after the switch.",
                   "cps", [(f"sum by (colour, reason) (rate(websocket_connections_rejected_total{{{s}}}{RATE}))",
                            "{{colour}} {{reason}}")],
                   "rejections/s", width=8),
        timeseries("Errors by colour",
                   "Error messages sent per second on each colour: a new release that breaks "
                   "clients shows here first.",
                   "cps", [(f"sum by (colour) (rate(websocket_errors_total{{{s}}}{RATE}))", "{{colour}}")],
                   "errors/s", width=8),
        timeseries("Disconnects by colour and reason",
                   "Connections closed per second; server_shutdown on the old colour is the drain, "
                   "anything else spiking during a switch is clients being dropped.",
                   "cps", [(f"sum by (colour, reason) (rate(websocket_disconnects_total{{{s}}}{RATE}))",
                            "{{colour}} {{reason}}")],
                   "disconnects/s", width=8),
        timeseries("p95 message latency by colour",
                   "p95 time from a client frame to its answer, per colour: compare the new "
                   "release with the old under the same traffic.",
                   "s", [(f"histogram_quantile(0.95, sum by (colour, le) "
                          f"(rate(websocket_message_latency_seconds_bucket{{{s}}}{RATE})))", "{{colour}}")],
                   "latency"),
        timeseries("Traefik 5xx answers during the switch",
                   "5xx answers per interval on the ws and ws-http routers: a clean switch has "
                   "none. Traefik creates a router/code series at its first such answer, which "
                   "increase() cannot see; a series born within the interval counts in full.",
                   "short", [(f"sum by (router, code) (({traefik_5xx} unless {traefik_5xx} offset $__rate_interval)"
                              f" or increase({traefik_5xx}{RATE}))", "{{router}} {{code}}")],
                   "answers per interval"),
        stat("Scrape target up per colour",
             "1 while Prometheus can scrape the colour. The idle colour is stopped on "
             "purpose and shows 0; during a deploy both show 1 until the old one drained.",
             "bool", [(f"up{{{s}}}", "{{colour}}")], width=6),
        stat("Version per colour",
             "The build each colour runs (websocket_build_info), to tell the new release from the old.",
             "none", [(f"websocket_build_info{{{s}}}", "{{colour}} {{version}}")], width=6),
        stat("Traefik health check per colour",
             "Traefik's view of each colour's /ready (1 healthy, 0 not). Only colours "
             "routing.yml has ever routed to are health-checked.",
             "bool", [(f"traefik_service_server_up{{{t}, {colour_services}}}", "{{service}}")], width=6),
        stat("Uptime per colour",
             "Time since each colour's process started: the new colour's is the deploy's age.",
             "s", [(f"time() - process_start_time_seconds{{{s}}}", "{{colour}}")], width=6),
    ]
    return dashboard("concurrent-socket-deploy", "concurrent-socket: deploy",
                     "Blue against green during a deploy: connections moving, traffic share, "
                     "drain, errors and Traefik answers.",
                     [PROM_VAR, HOST_VAR], panels, ["concurrent-socket"], refresh="5s")


def logs_dashboard():
    stream = '{unit=~"ws@.+\\\\.service", instance=~"$colour", host=~"$host"}'
    colour = {
        "name": "colour", "label": "Colour", "type": "custom", "query": "blue,green",
        "multi": True, "includeAll": True, "allValue": ".+",
        "current": {"text": ["All"], "value": ["$__all"]},
        "options": [], "hide": 0,
    }
    panels = [
        log_volume("Log lines by unit and level",
                   "Lines per interval that each ws@ unit wrote to the journal, by journal level: "
                   "a burst of error lines marks the moment to read below.",
                   f"sum by (unit, level) (count_over_time({stream} [$__interval]))"),
        logs("Errors and warnings",
             "Journal lines of priority warning or worse from the ws@ units (crashes, "
             "watchdog, failed binds, rejected configuration).",
             stream.replace("}", ', level=~"emerg|alert|crit|error|warning"}')),
        logs("Server logs",
             "Every line of the selected ws@ units, filtered by the search box (a connection "
             "id, an address, a word; empty shows all).",
             f'{stream} |= "$search"'),
        logs("Traefik logs",
             "Traefik's journal: configuration reloads (routing.yml rewritten by wsctl), "
             "health-check changes and proxy errors.",
             '{unit="traefik.service", host=~"$host"} |= "$search"'),
    ]
    return dashboard("concurrent-socket-logs", "concurrent-socket: logs",
                     "Journal of the ws@ units and Traefik in Loki (labels unit, instance = colour, "
                     "level, host), shipped by Grafana Alloy.",
                     [LOKI_VAR, LOG_HOST_VAR, colour, textbox_var("search", "Search")], panels,
                     ["concurrent-socket"])


DASHBOARDS = {"overview.json": overview, "deploy.json": deploy, "logs.json": logs_dashboard}


def main():
    check = sys.argv[1:] == ["--check"]
    stale = []
    for name, build in DASHBOARDS.items():
        text = json.dumps(build(), indent=2) + "\n"
        path = OUT_DIR / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT_DIR.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        sys.exit(f"grafana/dashboards out of date (run grafana/build.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
