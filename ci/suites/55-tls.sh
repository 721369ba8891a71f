#!/usr/bin/env bash
# loadtest and wsctl over TLS (wss://, https://), through the real Traefik (ci/traefik.sh)
# terminating TLS with a certificate made here by openssl (a test CA, and a certificate for
# 127.0.0.1 that it signed), in front of two real servers, blue and green:
#  1. `loadtest smoke --url wss://...` passes (exit 0, every connection over TLS) trusting the
#     CA with --ca-file, and with SSL_CERT_FILE instead of the flag;
#  2. trusting another CA, every attempt fails as `tls` and the gate fails (exit 1); a
#     --ca-file that holds no certificate, or --ca-file with a ws:// URL, exits 2;
#  3. `wsctl status` with a wss:// public URL and an https:// Traefik API: Traefik applies
#     blue=1 and a new connection through it reaches blue; after routing.yml moves to green,
#     green; trusting another CA, both probes fail naming the certificate problem, and a bad
#     --ca-file is refused (exit 2).
# Traefik's dynamic configuration is the module's (nixos/lib/traefik.nix base.yml) with its
# routers on `websecure`, adapted here: `tls: {}` with the file certificate of certs.yml
# instead of the ACME resolver the module sets (no ACME offline); its API is routed on
# `websecure` too (api.yml), so that wsctl reaches it over https.
# needs: setup release
set -euo pipefail
# shellcheck source=ci/lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=ci/server.sh
. "$REPO/ci/server.sh"
# shellcheck source=ci/traefik.sh
. "$REPO/ci/traefik.sh"

LOADTEST=${LOADTEST_BIN:-$BIN_DIR/loadtest}
WSCTL=${WSCTL_BIN:-$BIN_DIR/wsctl}
for bin in "$LOADTEST" "$WSCTL" "$VENV/bin/traefik"; do
  [ -x "$bin" ] || die "$bin missing (ci/test-all builds the binaries, ci/setup installs Traefik)"
done
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  stop_traefik
  stop_pids "${PIDS[@]}"
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the certificates -----------------------------------------------------------------------
# new_ca NAME: a self-signed CA, NAME.pem and NAME.key.
new_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=concurrent-socket CI $1" -keyout "$WORK/$1.key" -out "$WORK/$1.pem" 2> /dev/null
}
new_ca ca
new_ca other-ca
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2> /dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$WORK/server.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
  -days 2 -extfile "$WORK/server.ext" -out "$WORK/server.pem" 2> /dev/null
openssl verify -CAfile "$WORK/ca.pem" "$WORK/server.pem" > /dev/null || die "the test certificate does not verify"

# --- blue and green, Traefik terminating TLS in front ---------------------------------------
# start_colour COLOUR: the release server as COLOUR; sets COLOUR_PORT and COLOUR_METRICS
# (BLUE_PORT, GREEN_METRICS...).
start_colour() {
  start_server "$WORK/$1" SERVER_ID="$1" MAX_CONNECTIONS_PER_IP=0 RATE_LIMIT_MSGS_PER_SEC=0
  PIDS+=("$SERVER_PID")
  printf -v "${1^^}_PORT" '%s' "$SERVER_PORT"
  printf -v "${1^^}_METRICS" '%s' "$METRICS_PORT"
}
start_colour blue
start_colour green

DYN="$WORK/state/traefik"
mkdir -p "$DYN"
nix-instantiate --eval --strict --json -E "(import $REPO/nixos/lib/traefik.nix { }).base {
    instances = { blue = { port = $BLUE_PORT; }; green = { port = $GREEN_PORT; }; };
    entryPoints = [ \"websecure\" ];
    rateLimits = { api = { average = 10000; burst = 10000; }; ws = { average = 10000; burst = 10000; }; };
  }" | jq '.http.routers |= map_values(. + {tls: {}})' > "$DYN/base.yml"
jq -n --arg cert "$WORK/server.pem" --arg key "$WORK/server.key" \
  '{tls: {stores: {default: {defaultCertificate: {certFile: $cert, keyFile: $key}}}}}' > "$DYN/certs.yml"
jq -n '{http: {routers: {api: {entryPoints: ["websecure"], rule: "PathPrefix(`/api`)", priority: 300,
  service: "api@internal", tls: {}}}}}' > "$DYN/api.yml"
"$WSCTL" render-routing --active blue > "$DYN/routing.yml"
echo blue > "$WORK/state/active"
start_traefik "$WORK/traefik" "$DYN"

HTTPS="https://127.0.0.1:$TRAEFIK_WEBSECURE"
WSS="wss://127.0.0.1:$TRAEFIK_WEBSECURE"
# applied_colour: the colour all new connections go to, as Traefik's API says (over https).
applied_colour() {
  curl -fsS --cacert "$WORK/ca.pem" "$HTTPS/api/http/services/ws-active@file" |
    jq -r 'if (.weighted.services | length) == 1 then .weighted.services[0].name | ltrimstr("ws-") else "split" end'
}
deadline=$((SECONDS + 20))
until [ "$(applied_colour 2> /dev/null)" = blue ]; do
  [ "$SECONDS" -lt "$deadline" ] || { traefik_errors; cat "$WORK/traefik/traefik.log"; die "Traefik does not route to blue over TLS"; }
  sleep 0.2
done
errors=$(traefik_errors)
[ -z "$errors" ] || die "Traefik reports: $errors"
echo "RESULT Traefik terminates TLS on websecure with the test certificate (routers and API over https, no error)"

# expect_exit CODE NAME CMD...: run CMD (stdout to $WORK/NAME.json) and check its exit code.
expect_exit() {
  local want=$1 name=$2 rc=0
  shift 2
  "$@" > "$WORK/$name.json" 2> "$WORK/$name.err" || rc=$?
  [ "$rc" -eq "$want" ] || { cat "$WORK/$name.err"; die "$name: exit $rc, expected $want"; }
}
# check NAME JQ-EXPRESSION: the JSON of NAME satisfies the expression.
check() {
  jq -e "$2" "$WORK/$1.json" > /dev/null || { jq '.connections, .failed_thresholds' "$WORK/$1.json" >&2 || true; die "$1: fails $2"; }
}
# Only the trust each case gives: not the environment's.
no_env_roots=(env -u SSL_CERT_FILE -u SSL_CERT_DIR)

# --- 1. loadtest over wss:// ----------------------------------------------------------------
log "loadtest smoke over wss:// through Traefik, trusting the test CA with --ca-file"
expect_exit 0 smoke "${no_env_roots[@]}" "$LOADTEST" smoke --url "$WSS" --ca-file "$WORK/ca.pem" --json --quiet
check smoke '.passed and .settings.url == "'"$WSS"'" and .connections.established == 20 and .connections.failed == 0'
check smoke '.messages.sent > 0 and .messages.answered == .messages.sent and .messages.failed == 0'
echo "RESULT loadtest smoke over wss:// (--ca-file): exit 0, $(jq -r '"\(.connections.established) connections, \(.messages.answered)/\(.messages.sent) answered, connect p95 \(.latency.connect.p95_ms) ms (TLS handshake included), round trip p95 \(.latency.round_trip.p95_ms) ms"' "$WORK/smoke.json")"

log "the same trusting the CA through SSL_CERT_FILE"
expect_exit 0 env-ca env -u SSL_CERT_DIR SSL_CERT_FILE="$WORK/ca.pem" "$LOADTEST" smoke --url "$WSS" --users 5 --duration 2s --json --quiet
check env-ca '.passed and .connections.established == 5'
echo "RESULT loadtest smoke over wss:// (SSL_CERT_FILE): exit 0, $(jq -r .connections.established "$WORK/env-ca.json") connections"

# --- 2. an untrusted certificate, bad setups --------------------------------------------------
log "trusting another CA: every attempt fails as tls"
expect_exit 1 untrusted env -u SSL_CERT_DIR SSL_CERT_FILE="$WORK/other-ca.pem" "$LOADTEST" smoke --url "$WSS" --users 5 --duration 1s --json --quiet
# An attempt still in its handshake when the second ends counts as `unfinished`, not `tls`.
check untrusted '.passed == false and .connections.established == 0 and .connections.failures.tls > 0
  and (.connections.failures | del(.unfinished) | keys) == ["tls"] and (.connections.failures | add) == .connections.attempts'
echo "RESULT untrusted certificate: exit 1, failures $(jq -c .connections.failures "$WORK/untrusted.json"), failed thresholds $(jq -c .failed_thresholds "$WORK/untrusted.json")"

expect_exit 2 bad-ca-file "$LOADTEST" smoke --url "$WSS" --ca-file "$WORK/server.key" --json --quiet
grep -q 'no PEM CERTIFICATE' "$WORK/bad-ca-file.err" || die "a --ca-file without a certificate is not explained: $(cat "$WORK/bad-ca-file.err")"
expect_exit 2 ca-file-plain "$LOADTEST" smoke --url "ws://127.0.0.1:$TRAEFIK_WEB" --ca-file "$WORK/ca.pem" --json --quiet
grep -q 'is for wss://' "$WORK/ca-file-plain.err" || die "--ca-file with ws:// is not explained: $(cat "$WORK/ca-file-plain.err")"
echo "RESULT setup errors: exit 2 for a --ca-file holding no certificate and for --ca-file with ws://"

# --- 3. wsctl over wss:// and https:// ----------------------------------------------------------
jq -n --argjson blue "$BLUE_PORT" --argjson green "$GREEN_PORT" --argjson bm "$BLUE_METRICS" \
  --argjson gm "$GREEN_METRICS" '{instances: {blue: {port: $blue, metricsPort: $bm},
  green: {port: $green, metricsPort: $gm}}}' > "$WORK/wsctl.json"
wsctl_tls() {
  "${no_env_roots[@]}" "$WSCTL" --json --config "$WORK/wsctl.json" --state-dir "$WORK/state" \
    --traefik-dir "$DYN" --public-url "$WSS" --traefik-api "$HTTPS" "$@"
}

log "wsctl status over wss:// and https://"
expect_exit 0 status-blue wsctl_tls --ca-file "$WORK/ca.pem" status
check status-blue '.traefikApplies == "blue=1" and .public.serverId == "blue" and .warnings == []'
check status-blue '[.instances[] | .health.serverId] == ["blue", "green"]'

log "routing.yml to green: the probe through Traefik follows"
"$WSCTL" render-routing --active green > "$DYN/routing.yml.new" && mv "$DYN/routing.yml.new" "$DYN/routing.yml"
echo green > "$WORK/state/active"
deadline=$((SECONDS + 20))
until [ "$(applied_colour)" = green ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "Traefik did not apply routing green=1"
  sleep 0.2
done
expect_exit 0 status-green wsctl_tls --ca-file "$WORK/ca.pem" status
check status-green '.traefikApplies == "green=1" and .public.serverId == "green" and .warnings == []'
echo "RESULT wsctl status over TLS (--ca-file): Traefik applies $(jq -r .traefikApplies "$WORK/status-blue.json") then $(jq -r .traefikApplies "$WORK/status-green.json") over https; new connections over wss reach $(jq -r .public.serverId "$WORK/status-blue.json") then $(jq -r .public.serverId "$WORK/status-green.json")"

log "wsctl trusting another CA, and a bad --ca-file"
expect_exit 0 status-untrusted env -u SSL_CERT_DIR SSL_CERT_FILE="$WORK/other-ca.pem" "$WSCTL" --json --config "$WORK/wsctl.json" \
  --state-dir "$WORK/state" --traefik-dir "$DYN" --public-url "$WSS" --traefik-api "$HTTPS" status
check status-untrusted '.traefikApplies == null and .public.serverId == null and (.public.error | test("TLS: .*(UnknownIssuer|certificate)"))'
check status-untrusted 'any(.warnings[]; test("certificate|UnknownIssuer"))'
expect_exit 2 status-bad-ca wsctl_tls --ca-file "$WORK/server.key" status
grep -q 'no PEM CERTIFICATE' "$WORK/status-bad-ca.err" || die "wsctl: a bad --ca-file is not explained: $(cat "$WORK/status-bad-ca.err")"
echo "RESULT wsctl with another CA: public probe error '$(jq -r .public.error "$WORK/status-untrusted.json" | cut -c1-160)'; bad --ca-file refused (exit 2)"
