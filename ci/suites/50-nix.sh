#!/usr/bin/env bash
# Nix: every .nix file parses, is nixpkgs-fmt formatted and has no dead code; the pure
# library's assertions (nixos/tests/lib.nix) hold; nixos/module.nix, the flake's module,
# terraform/nixos/fleet-host.nix and the VM test's node evaluate with nixpkgs' own module
# system against the NixOS options they set, with both shapes of nixpkgs' Traefik module,
# and the known mistakes do not (nixos/tests/eval); the Traefik files the library renders
# match Traefik v3's JSON schemas (when ../shared/schemas is there) and, loaded into a real
# Traefik in front of two real servers (blue and green), raise no error, route to the seeded
# colour, switch new connections to green when routing.yml is rewritten while a WebSocket
# opened before stays up, compress, rate-limit upgrades to the burst, expose only metrics on
# the metrics entry point, and let a server configured as the module configures it count
# each client behind Traefik for MAX_CONNECTIONS_PER_IP; the Prometheus configuration it
# renders passes promtool and scrapes both colours and Traefik; the flake's outputs have the
# expected structure (with an empty stand-in for nixpkgs, which is not reachable offline:
# structure only, nothing is built).
# needs: setup release
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
cd "$REPO"
# No nixbld group here (no daemon, no builds): silence Nix's warning about it.
export NIX_CONFIG="$NIX_CONFIG"$'\nbuild-users-group ='

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  stop_pids "${PIDS[@]}"
  rm -rf "$WORK"
}
trap cleanup EXIT

PYTHON="$VENV/bin/python"
SERVER_BIN=${SERVER_BIN:-$BIN_DIR/concurrent-socket}   # override to try a debug build
WS_SERVER_ID=("$PYTHON" "$REPO/nixos/tests/ws-server-id.py")

# traefik_lib EXPR: evaluate `(import nixos/lib/traefik.nix { }).EXPR` to JSON.
traefik_lib() {
  nix-instantiate --eval --strict --json -E "(import $REPO/nixos/lib/traefik.nix { }).$1"
}

# write_atomically FILE < content: what wsctl does (write aside, rename over).
write_atomically() {
  cat > "$1.tmp" && mv "$1.tmp" "$1"
}

# ---- static checks of every .nix file ----------------------------------------------------
# Ours: nixpkgs' vendored lib (nixos/tests/nixpkgs-lib) keeps nixpkgs' own formatting.
list_nix_files() {
  { git ls-files -co --exclude-standard '*.nix' 2>/dev/null ||
    find . -name '*.nix' -not -path './target/*' -not -path './ci/node/*' -printf '%P\n'; } |
    grep -v '^nixos/tests/nixpkgs-lib/' |
    while read -r f; do [ -f "$f" ] && echo "$f"; done
}
mapfile -t nix_files < <(list_nix_files)
[ ${#nix_files[@]} -gt 0 ] || die "no .nix files found"
for f in "${nix_files[@]}"; do
  nix-instantiate --parse "$f" > /dev/null || die "$f does not parse"
done
nixpkgs-fmt --check "${nix_files[@]}" || die "run nixpkgs-fmt on the files above"
deadnix --fail "${nix_files[@]}" || die "deadnix found unused code"
echo "RESULT nix files: ${#nix_files[@]} parse, are nixpkgs-fmt clean and deadnix clean"

# The host configuration of docs/nixos.md must at least be valid Nix.
awk '/^```nix$/ { on = 1; next } /^```$/ { on = 0 } on' docs/nixos.md > "$WORK/docs-host.nix"
[ -s "$WORK/docs-host.nix" ] || die "docs/nixos.md has no nix example"
nix-instantiate --parse "$WORK/docs-host.nix" > /dev/null || die "the example in docs/nixos.md does not parse"

# ---- the pure library ------------------------------------------------------------------
passed=$(nix-instantiate --eval --strict --json nixos/tests/lib.nix | jq -r .passed)
echo "RESULT nixos/lib: $passed assertions passed (nixos/tests/lib.nix)"
refs=$(nix-instantiate --eval --strict --json nixos/tests/option-paths.nix | jq -r .passed)
echo "RESULT nixos/module.nix: $refs option reads, each of an option it declares (nixos/tests/option-paths.nix)"

# ---- through nixpkgs' module system (issue 13 item 1) ---------------------------------------
# nixpkgs' real lib.evalModules (vendored lib), declarations of every NixOS option the modules
# set, both shapes of nixpkgs' Traefik module; on main before this check it stopped at
# "The option `services.traefik.dynamic' does not exist".
summary=$(nix-instantiate --eval --strict --json nixos/tests/eval/cases.nix) || die "a NixOS configuration does not evaluate (above)"
jq -r '.cases[] | "  evaluated: \(.)"' <<< "$summary"
refusals=$(jq '.failing | length' <<< "$summary")
for ((i = 0; i < refusals; i++)); do
  name=$(jq -r ".failing[$i].name" <<< "$summary")
  want=$(jq -r ".failing[$i].error" <<< "$summary")
  if out=$(nix-instantiate --eval --strict --arg n "$i" nixos/tests/eval/refusal.nix 2>&1); then
    die "evaluated, but must fail: $name"
  fi
  grep -qF -- "$want" <<< "$out" || { echo "$out"; die "'$name' failed, but not with '$want'"; }
  echo "  refused as it must be ($want): $name"
done
jq -r '.checks[] | "  checked in both shapes: \(.)"' <<< "$summary"
echo "RESULT nixos eval (issue 13 item 1): $(($(jq .passed <<< "$summary") - refusals)) host configurations evaluate through nixpkgs' lib.evalModules (module, flake module, fleet ws/monitoring hosts, VM node + specialisation; Traefik shapes classic and refactored), $(jq '.checks | length' <<< "$summary") checks of what they configure hold, $refusals known mistakes refused with their message"
# result_from_checks LABEL REGEX...: a RESULT line naming the evaluation checks that prove an
# item (each REGEX must match at least one).
result_from_checks() {
  local label=$1 regex found all=()
  shift
  for regex in "$@"; do
    mapfile -t found < <(jq -r --arg re "$regex" '.checks[] | select(test($re))' <<< "$summary")
    [ ${#found[@]} -gt 0 ] || die "no evaluation check matches '$regex'"
    all+=("${found[@]}")
  done
  local IFS=';'
  echo "RESULT $label, by evaluation: ${all[*]}"
}
result_from_checks "VM test (issue 13 item 5)" "specialisation candidate: "
result_from_checks "stop timeout (issue 13 item 7)" "stop timeout"
result_from_checks "Grafana (issue 13 item 7)" "Grafana"
result_from_checks "host builds run no tests (issue 13 item 7)" "runs no tests"
result_from_checks "binary cache (issue 13 item 7)" ": the cache is a substituter"
result_from_checks "other modules' options with mkDefault (issue 13 item 3)" "mkDefault" "no fs.file-max" "ports reserved|ports are reserved"
result_from_checks "Redis broker (issue 17 item 7)" "^Redis broker on this host: " "^external Redis over TLS" "^fleet WebSocket host on the fleet's Redis: "
result_from_checks "upgrade by handover on nixos-rebuild switch (issue 18 item 4)" "^a colour upgraded by handover on nixos-rebuild switch: " "^defaults: switch-to-configuration skips both colours"

# The VM test cannot boot here; its Python gets the lint the NixOS test driver applies
# (pyflakes, the driver's globals as builtins), the probe the flake8 of writePython3Bin.
nix-instantiate --eval --strict --json \
  -E "(import $REPO/nixos/tests/blue-green.nix { self = null; }).testScript" | jq -r . > "$WORK/testScript.py"
PYFLAKES_BUILTINS=machine,start_all,subtest "$VENV/bin/flake8" --select=F "$WORK/testScript.py"
"$VENV/bin/flake8" "$REPO/nixos/tests/ws-server-id.py"
echo "RESULT VM test: testScript passes pyflakes, ws-server-id.py passes flake8"

# ---- rendered Traefik files against the JSON schemas -------------------------------------
BLUE_PORT=$(free_port) GREEN_PORT=$(free_port)
BLUE_METRICS=$(free_port) GREEN_METRICS=$(free_port)
WEB=$(free_port) WEBSECURE=$(free_port) API=$(free_port) LOOPBACK=$(free_port) METRICS=$(free_port)
DYN="$WORK/dynamic"
mkdir -p "$WORK/render" "$DYN"
INSTANCES="{ blue = { port = $BLUE_PORT; metricsPort = $BLUE_METRICS; }; green = { port = $GREEN_PORT; metricsPort = $GREEN_METRICS; }; }"
# As the module renders it: public routers for one host name, loopback twins for the host.
HOST_NAME=ws.example.com
BASE_ARGS="instances = $INSTANCES; host = \"$HOST_NAME\"; loopbackEntryPoint = \"loopback\";"

traefik_lib "static { webAddress = \"127.0.0.1:$WEB\"; websecureAddress = \"127.0.0.1:$WEBSECURE\";
  apiAddress = \"127.0.0.1:$API\"; loopbackAddress = \"127.0.0.1:$LOOPBACK\";
  metricsAddress = \"127.0.0.1:$METRICS\";
  dynamicDir = \"$DYN\"; logFile = \"$WORK/traefik.log\";
  accessLogFile = \"$WORK/access.log\"; }" > "$WORK/render/static.json"
traefik_lib 'static { acme = { email = "ops@example.com"; storage = "/var/lib/traefik/acme.json";
  caServer = "https://acme-staging-v02.api.letsencrypt.org/directory"; }; }' > "$WORK/render/static-acme.json"
traefik_lib "base { $BASE_ARGS }" > "$WORK/render/base.json"
traefik_lib 'base { host = "ws.example.com"; entryPoints = [ "websecure" ]; certResolver = "letsencrypt"; clientIpDepth = 1; }' \
  > "$WORK/render/base-tls.json"
traefik_lib 'seedRouting "blue"' > "$WORK/render/routing-blue.json"
traefik_lib 'routing { weights = { green = 1; }; }' > "$WORK/render/routing-green.json"
traefik_lib 'routing { weights = { blue = 90; green = 10; }; }' > "$WORK/render/routing-split.json"
traefik_lib "base { $BASE_ARGS rateLimits.ws = { average = 1; burst = 1; }; }" > "$WORK/render/base-strict.json"

# Optional: Traefik's JSON schemas come with ../shared, which the repository does not need.
if [ ! -f "$SHARED/schemas/traefik-v3.json" ]; then
  echo "SKIP traefik schemas: $SHARED/schemas is absent (an optional extra); the real Traefik below still loads every file"
else
"$PYTHON" - "$SHARED/schemas" "$WORK/render" <<'PY'
import json, pathlib, sys
from jsonschema import validators

schemas, render = map(pathlib.Path, sys.argv[1:])
def validator(name):
    schema = json.loads((schemas / name).read_text())
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)
static, dynamic = validator("traefik-v3.json"), validator("traefik-v3-file-provider.json")
failures = 0
for path in sorted(render.glob("*.json")):
    v = static if path.name.startswith("static") else dynamic
    errors = list(v.iter_errors(json.loads(path.read_text())))
    for e in errors:
        print(f"{path.name}: {'/'.join(map(str, e.absolute_path))}: {e.message}")
    failures += len(errors)
if failures:
    sys.exit(f"{failures} schema violations")
print(f"RESULT traefik schemas: {len(list(render.glob('*.json')))} rendered files valid")
PY
fi

# ---- a real Traefik in front of two real servers -------------------------------------------
# start_server COLOUR PORT METRICS_PORT [VAR=VALUE...]: sets SERVER_PID. A short drain keeps
# the restarts below quick.
start_server() {
  local colour=$1 port=$2 metrics=$3
  shift 3
  env SHUTDOWN_TIMEOUT=1000 "$@" HOST=127.0.0.1 PORT="$port" METRICS_ADDR="127.0.0.1:$metrics" SERVER_ID="$colour" \
    "$SERVER_BIN" > "$WORK/$colour.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_http "http://127.0.0.1:$port/ready" 20 || { cat "$WORK/$colour.log"; die "$colour did not become ready"; }
}
start_server blue "$BLUE_PORT" "$BLUE_METRICS"
start_server green "$GREEN_PORT" "$GREEN_METRICS"
GREEN_PID=$SERVER_PID

cp "$WORK/render/base.json" "$DYN/base.yml"
cp "$WORK/render/routing-blue.json" "$DYN/routing.yml"
# Traefik picks the parser by extension. The loopback entry point gets a 2 s readTimeout
# (Traefik's default is 60 s) to show below that it cuts slow requests but not idle
# WebSockets.
jq '.entryPoints.loopback.transport.respondingTimeouts.readTimeout = "2s"' \
  "$WORK/render/static.json" > "$WORK/static.yml"
"$VENV/bin/traefik" --configFile="$WORK/static.yml" > "$WORK/traefik.out" 2>&1 &
TRAEFIK_PID=$!
PIDS+=("$TRAEFIK_PID")
api() { curl -fsS "http://127.0.0.1:$API/api/$1"; }
wait_http "http://127.0.0.1:$API/ping" 20 || { cat "$WORK/traefik.out"; die "traefik did not start"; }

# The file provider loads asynchronously: wait for the last router, and for blue's health check.
deadline=$((SECONDS + 20))
until api http/services/ws-blue@file 2>/dev/null | jq -e '.serverStatus[] == "UP"' > /dev/null; do
  [ $SECONDS -lt $deadline ] || { cat "$WORK/traefik.log"; die "ws-blue never became UP in Traefik"; }
  sleep 0.2
done

api overview | jq -e '[.http.routers, .http.services, .http.middlewares] | all(.errors == 0 and .warnings == 0)' > /dev/null ||
  { api overview; die "Traefik reports errors or warnings"; }
broken=$(for kind in routers services middlewares; do
  api "http/$kind" | jq -r --arg kind "$kind" '.[] | select(.status != "enabled" or (.error // [] | length) > 0)
    | "\($kind) \(.name): \(.status) \(.error // [] | join("; "))"'
done)
[ -z "$broken" ] || die "Traefik: $broken"
routers=$(api http/routers | jq -r '[.[] | select(.provider == "file") | .name] | sort | join(" ")')
services=$(api http/services | jq -r '[.[] | select(.provider == "file") | .name] | sort | join(" ")')
middlewares=$(api http/middlewares | jq -r '[.[] | select(.provider == "file") | .name] | sort | join(" ")')
[ "$routers" = "ws-http-loopback@file ws-http@file ws-loopback@file ws@file" ] || die "routers: $routers"
[ "$services" = "ws-active@file ws-blue@file ws-green@file" ] || die "services: $services"
[ "$middlewares" = "api-ratelimit@file circuit-breaker@file compress@file security-headers@file ws-ratelimit@file" ] ||
  die "middlewares: $middlewares"
echo "RESULT traefik: routers [$routers], services [$services], middlewares [$middlewares] enabled, no errors"

# ---- routing: seeded colour, then a switch while a WebSocket stays open --------------------
# WebSockets go through the loopback entry point, as wsctl's do; the public one is checked
# with curl below (it wants the host name).
WS_URL="ws://127.0.0.1:$LOOPBACK/ws/chat"
first=$("${WS_SERVER_ID[@]}" "$WS_URL/probe-before")
[ "$first" = blue ] || die "seeded routing: serverId $first, want blue"

# A connection opened on blue before the switch must keep working after it.
"$PYTHON" - "$WS_URL/held" "$WORK/held.ready" "$WORK/held.go" > "$WORK/held.out" 2>&1 <<'PY' &
import json, os, sys, time
from websockets.sync.client import connect

url, ready, go = sys.argv[1:]
IDLE = 4  # seconds without a frame either way: twice the entry point's readTimeout
with connect(url, open_timeout=5) as ws:
    hello = json.loads(ws.recv(timeout=5))
    opened = time.monotonic()
    with open(ready, "w") as f:
        f.write(hello["serverId"])
    while not os.path.exists(go):
        if time.monotonic() > opened + 60:
            sys.exit("never told to go on")
        time.sleep(0.05)
    time.sleep(max(0, opened + IDLE - time.monotonic()))
    ws.send(json.dumps({"type": "message", "id": "after-switch", "data": {"n": 1}}))
    while True:
        msg = json.loads(ws.recv(timeout=5))
        if msg.get("type") == "message_response" and msg.get("id") == "after-switch":
            print(hello["serverId"], "answered", json.dumps(msg["data"]))
            break
PY
HELD_PID=$!
PIDS+=("$HELD_PID")
deadline=$((SECONDS + 10))
until [ -s "$WORK/held.ready" ]; do
  [ $SECONDS -lt $deadline ] || { cat "$WORK/held.out"; die "held connection did not open"; }
  sleep 0.05
done
[ "$(cat "$WORK/held.ready")" = blue ] || die "held connection landed on $(cat "$WORK/held.ready")"

switch_start=$(date +%s%N)
write_atomically "$DYN/routing.yml" < "$WORK/render/routing-green.json"
deadline=$((SECONDS + 20))
until [ "$("${WS_SERVER_ID[@]}" "$WS_URL/probe-after")" = green ]; do
  [ $SECONDS -lt $deadline ] || die "new connections never moved to green"
  sleep 0.25   # below the WebSocket rate limit of 5 upgrades/s
done
switch_ms=$((($(date +%s%N) - switch_start) / 1000000))
kill -0 "$TRAEFIK_PID" || die "Traefik exited during the switch"
touch "$WORK/held.go"
wait "$HELD_PID" || { cat "$WORK/held.out"; die "the WebSocket opened before the switch broke"; }
echo "RESULT switch: routing.yml rewritten, new connections on green after ${switch_ms} ms, same Traefik process"
echo "RESULT switch: WebSocket opened on blue before the switch answered after it, idle 4 s past a 2 s readTimeout ($(cat "$WORK/held.out"))"

# The control: the same readTimeout does cut a request whose headers never end.
"$PYTHON" - "$LOOPBACK" <<'PY' || die "Traefik kept a half-sent request open: the readTimeout control failed"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
s.settimeout(15)
sys.exit(0 if s.recv(1) == b"" else "answered instead of closing")
PY
echo "RESULT traefik timeouts: readTimeout closes a half-sent request but not an idle WebSocket (upgraded connections are exempt; default 60 s)"

# ---- the HTTP router: security headers, compression ---------------------------------------
headers=$(curl -fsS -D - -o /dev/null -H "Host: $HOST_NAME" "http://127.0.0.1:$WEB/health")
other_host=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Host: elsewhere.example' "http://127.0.0.1:$WEB/health")
[ "$other_host" = 404 ] || die "public entry point answered $other_host for another host name, want 404"
grep -qi '^x-frame-options: DENY' <<< "$headers" || die "no X-Frame-Options on /health: $headers"
grep -qi '^x-content-type-options: nosniff' <<< "$headers" || die "no X-Content-Type-Options on /health: $headers"
page=$(curl -sS -D - -o /dev/null -H "Host: $HOST_NAME" -H 'Accept-Encoding: gzip' "http://127.0.0.1:$WEB/" | tr -d '\r')
# docs/nixos.md: ws-http compresses answers of 1 KiB or more (the page is larger).
grep -qi '^content-encoding: gzip$' <<< "$page" || die "GET / with Accept-Encoding gzip was not compressed: $page"
echo "RESULT http router: Host $HOST_NAME routed with security headers, other hosts 404; GET / with Accept-Encoding gzip: $(head -1 <<< "$page"), Content-Encoding gzip (issue 21 item 3)"

# ---- the metrics entry point serves metrics and nothing else (issue 13 item 7) --------------
traefik_metrics=$(curl -fsS "http://127.0.0.1:$METRICS/metrics") || die "the metrics entry point does not answer /metrics"
grep -q '^traefik_entrypoint_requests_total' <<< "$traefik_metrics" || die "no Traefik metrics on the metrics entry point"
for path in /api/overview /api/rawdata /ping /dashboard/; do
  code=$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS$path")
  [ "$code" = 404 ] || die "the metrics entry point answers $path with $code, want 404 (it must not expose the API)"
done
api overview > /dev/null || die "the API is gone from its own entry point"
echo "RESULT traefik metrics entry point (issue 13 item 7): /metrics answers; /api/overview, /api/rawdata, /ping, /dashboard/ are 404 there (the API stays on its loopback entry point)"

# ---- MAX_CONNECTIONS_PER_IP behind Traefik (issue 13 item 2) --------------------------------
# Green, the active colour, restarted with the environment file the module writes for a host
# with its defaults (evaluated by nixos/tests/eval) and a per-IP limit of 3. Clients connect
# through the real Traefik from distinct loopback addresses: Traefik puts each one's address
# in X-Forwarded-For (and drops what a client sent there), and the server believes it from
# the proxy it trusts.
PER_IP=3
restart_green() {
  kill "$GREEN_PID"
  wait "$GREEN_PID" || die "green exited with status $? on SIGTERM"
  start_server green "$GREEN_PORT" "$GREEN_METRICS" "$@"
  GREEN_PID=$SERVER_PID
  local deadline=$((SECONDS + 20))
  until api http/services/ws-green@file 2> /dev/null | jq -e '.serverStatus[] == "UP"' > /dev/null; do
    [ $SECONDS -lt $deadline ] || die "ws-green never came back UP in Traefik"
    sleep 0.2
  done
}
nix-instantiate --eval --strict --json \
  -E "(import $REPO/nixos/tests/eval/harness.nix).hostConfig.environment.etc.\"concurrent-socket/green.env\".text" |
  jq -r . > "$WORK/green.env"
grep -qx 'TRUSTED_PROXIES="127.0.0.1"' "$WORK/green.env" || die "the module's green.env does not trust Traefik: $(cat "$WORK/green.env")"
mapfile -t module_env < <(sed -n 's/^\([A-Z_][A-Z0-9_]*\)="\(.*\)"$/\1=\2/p' "$WORK/green.env")
per_ip() {
  "$PYTHON" - "$WS_URL" <<'PY'
import sys
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

url = sys.argv[1]
held = []

def attempts(source, n, spoof=False):
    accepted = refused = 0
    for i in range(n):
        # A client's own X-Forwarded-For must not buy it another budget.
        headers = {"X-Forwarded-For": f"203.0.113.{i + 1}"} if spoof else None
        try:
            ws = connect(f"{url}/per-ip-{source.replace('.', '-')}-{i}", open_timeout=5, proxy=None,
                         source_address=(source, 0), additional_headers=headers)
            ws.recv(timeout=5)  # hello
            held.append(ws)
            accepted += 1
        except InvalidStatus as e:
            refused += 1
            print(f"{source}: refused, {e.response.status_code} {bytes(e.response.body[:200])!r}", file=sys.stderr)
    return f"{accepted}/{n}"

one = attempts("127.0.0.1", 4)
distinct = [attempts(f"127.0.0.{k}", 3) for k in range(2, 6)]
spoofed = attempts("127.0.0.6", 4, spoof=True)
print(one, ",".join(distinct), spoofed)
for ws in held:
    ws.close()
PY
}
restart_green "${module_env[@]}" MAX_CONNECTIONS_PER_IP=$PER_IP
read -r one distinct spoofed < <(per_ip)
[ "$one" = 3/4 ] || die "one client address through Traefik: $one accepted, want 3/4 (MAX_CONNECTIONS_PER_IP=$PER_IP)"
[ "$distinct" = 3/3,3/3,3/3,3/3 ] || die "4 client addresses x 3 through Traefik: $distinct accepted, want 3/3 each"
[ "$spoofed" = 3/4 ] || die "a client varying its own X-Forwarded-For: $spoofed accepted, want 3/4"
# The control: without the trusted proxy every client is Traefik's 127.0.0.1.
restart_green "${module_env[@]}" MAX_CONNECTIONS_PER_IP=$PER_IP TRUSTED_PROXIES=
read -r _ control _ < <(per_ip)
[ "$control" = 0/3,0/3,0/3,0/3 ] || die "control without TRUSTED_PROXIES: $control accepted from the other addresses, want none (the first address used the $PER_IP)"
echo "RESULT trusted proxies (issue 13 item 2): MAX_CONNECTIONS_PER_IP=$PER_IP, module's green.env (TRUSTED_PROXIES=127.0.0.1), through the real Traefik: 12/12 WebSockets from 4 client addresses, 3/4 from one, 3/4 from one forging X-Forwarded-For; control without it: $control"

# ---- the WebSocket rate limit, tightened through a live base.yml rewrite --------------------
write_atomically "$DYN/base.yml" < "$WORK/render/base-strict.json"
deadline=$((SECONDS + 20))
until api http/middlewares/ws-ratelimit@file | jq -e '.rateLimit.average == 1' > /dev/null; do
  [ $SECONDS -lt $deadline ] || die "Traefik never loaded the new base.yml"
  sleep 0.1
done
read -r accepted limited other allowed < <("$PYTHON" - "$WS_URL" <<'PY'
import sys, time
from concurrent.futures import ThreadPoolExecutor
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

AVERAGE, BURST = 1, 1  # base-strict: ws average 1/s, burst 1

def attempt(i):
    try:
        with connect(f"{sys.argv[1]}/burst-{i}", open_timeout=5, proxy=None):
            return "accepted"
    except InvalidStatus as e:
        return "limited" if e.response.status_code == 429 else f"status {e.response.status_code}"

start = time.monotonic()
with ThreadPoolExecutor(20) as pool:
    results = list(pool.map(attempt, range(20)))
# A token bucket lets the burst through, then AVERAGE per second of the attempts' span.
allowed = BURST + int((time.monotonic() - start) * AVERAGE)
print(results.count("accepted"), results.count("limited"), len(results) - results.count("accepted") - results.count("limited"), allowed)
PY
)
[ "$other" -eq 0 ] || die "upgrade burst: $other answers other than 101 and 429"
[ "$accepted" -ge 1 ] || die "upgrade burst at 1/s: none accepted, want the burst (1)"
[ "$accepted" -le "$allowed" ] || die "upgrade burst at 1/s, burst 1: $accepted accepted, want at most $allowed (the burst plus what the average refilled while they ran)"
echo "RESULT rate limit (issue 21 item 3): 20 simultaneous upgrades at ws average 1/s burst 1: $accepted accepted (at most $allowed allowed), $limited got 429"

# ---- Traefik's log: no errors, no unknown keys ---------------------------------------------
if grep -E ' ERR |level=error|"level":"error"' "$WORK/traefik.log" "$WORK/traefik.out"; then
  die "Traefik logged errors (above)"
fi
if grep -Ei 'field not found|unknown (key|field)' "$WORK/traefik.log" "$WORK/traefik.out"; then
  die "Traefik rejected keys (above)"
fi
echo "RESULT traefik log: no ERR lines, no unknown keys"

# ---- Prometheus as the module configures it, scraping the real servers and Traefik ----------
PROM=$(free_port)
rule_files=$(printf '"%s" ' "$REPO"/alerts/*.yml)
nix-instantiate --eval --strict --json -E "(import $REPO/nixos/lib/monitoring.nix { }).prometheusConfig {
  instances = $INSTANCES; traefikTarget = \"127.0.0.1:$METRICS\"; ruleFiles = [ $rule_files ]; interval = \"1s\"; }" \
  > "$WORK/prometheus.yml"
promtool check config "$WORK/prometheus.yml" > "$WORK/promtool.out" 2>&1 || { cat "$WORK/promtool.out"; die "promtool rejects the configuration"; }
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
  --web.listen-address="127.0.0.1:$PROM" > "$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PROM/-/ready" 30 || { cat "$WORK/prometheus.log"; die "prometheus did not start"; }
up_query() {
  curl -fsS "http://127.0.0.1:$PROM/api/v1/query" --data-urlencode 'query=up == 1' |
    jq -r '[.data.result[].metric | "\(.job)/\(.colour // "-")"] | sort | join(" ")'
}
want_up="concurrent-socket/blue concurrent-socket/green traefik/-"
deadline=$((SECONDS + 30))
until [ "$(up_query)" = "$want_up" ]; do
  [ $SECONDS -lt $deadline ] || die "Prometheus up targets: '$(up_query)', want '$want_up'"
  sleep 0.5
done
echo "RESULT prometheus: promtool accepts the module's configuration with alerts/*.yml; up: $want_up"

# ---- the flake's structure (nixpkgs replaced by an empty flake) ----------------------------
mkdir -p "$WORK/flake" "$WORK/stub"
cp -r flake.nix Cargo.toml nixos "$WORK/flake/"
echo '{ outputs = _: { }; }' > "$WORK/stub/flake.nix"
flake_eval() {
  nix eval --json --no-write-lock-file --override-input nixpkgs "path:$WORK/stub" \
    "path:$WORK/flake#$1" --apply "$2" 2> "$WORK/flake-eval.err" || { cat "$WORK/flake-eval.err"; die "flake: $1"; }
}
names='builtins.mapAttrs (_: builtins.attrNames)'
expect_json() {
  [ "$(jq -cS . <<< "$2")" = "$(jq -cS . <<< "$3")" ] || die "flake $1: got $2, want $3"
}
systems='["aarch64-linux","x86_64-linux"]'
expect_json packages "$(flake_eval packages "$names")" \
  "{\"aarch64-linux\":[\"default\",\"dockerImage\",\"loadtest\",\"wsctl\"],\"x86_64-linux\":[\"default\",\"dockerImage\",\"loadtest\",\"wsctl\"]}"
expect_json checks "$(flake_eval checks "$names")" \
  "{\"aarch64-linux\":[\"build\",\"clippy\",\"nixos-lib\",\"tests\",\"vm-blue-green\"],\"x86_64-linux\":[\"build\",\"clippy\",\"nixos-lib\",\"tests\",\"vm-blue-green\"]}"
expect_json devShells "$(flake_eval devShells "$names")" '{"aarch64-linux":["default"],"x86_64-linux":["default"]}'
expect_json formatter "$(flake_eval formatter builtins.attrNames)" "$systems"
expect_json nixosModules "$(flake_eval nixosModules 'm: builtins.mapAttrs (_: builtins.isFunction) m')" '{"default":true}'
echo "RESULT flake: packages, checks, devShells, formatter and nixosModules have the expected names (structure only)"
