# shellcheck shell=bash
# The channel figures of bench/run.sh (protocol v1.1, issue 16), sourced by it after its own
# functions (start_server, stop_server, cpu_seconds, rss_kib, server_connections, loadtest_run)
# and run like its other figures, each server in turn, each figure on a fresh server:
#
#   fanout      one channel, FANOUT_SUBSCRIBERS (1000) subscribers, one publisher at
#               FANOUT_RATE (100) publications/s, CHANNEL_RUNS (3) runs
#   fanout_10k  the same with FANOUT_10K_SUBSCRIBERS (10000) at FANOUT_10K_RATE (10)/s
#   rooms       ROOMS (2000) rooms of 5 users, each user publishing once a second
#   chmem       RSS per idle connection with 0 and with 2 subscriptions (CHMEM_CONNECTIONS,
#               10000), and per channel with a full history (CHMEM_CHANNELS (200) channels,
#               HISTORY_SIZE publications of CHMEM_BYTES (64) bytes of padding each)
#   syscalls    the fanout load once more, its system calls per delivery counted on the
#               kernel's syscall tracepoints (perf stat, every thread of the server) over
#               the CPU window: all of them, the sends, the waits for events, futex; and
#               the same seconds sampled (perf record): the share of the server's CPU in
#               the kernel, and in the client's TCP receive that loopback runs inside it
#
# Each publication/s run: `loadtest fanout|rooms --publish-after-ramp`: users connect and
# subscribe over CHANNEL_RAMP (10 s), then publishing runs from the end of the ramp to 2 s
# before the end of CHANNEL_HOLD (20 s). Delivery latency is each publication's receipt time
# minus the publisher's send time (the `t` in its data), one sample per subscriber; the CPU
# figure is the server's utime + stime over the seconds from 2 s after the ramp to 1 s before
# publishing stops, divided by the deliveries the client counted in those seconds.
# The server speaks channels only if it is one of CHANNEL_SERVERS; node-ws speaks protocol v1
# only, and its channel figures are skipped with that reason.
#
# bench/redis.sh runs the same kind of run with the Redis engine, through channel_run's hooks:
# CHANNEL_START and CHANNEL_STOP (functions that start and stop the server or servers),
# CHANNEL_CPU (prints their user and system CPU seconds so far, as cpu_split does) and BROKER_STATS (prints, as JSON, the
# broker's `cpu_seconds` and the `publications` it ran so far, when the broker is a process of
# its own). A run also writes the publishes sent in the CPU window, and with BROKER_STATS the
# broker's CPU per publication it ran in that window.

CHANNEL_SERVERS="concurrent-socket elysia"
CHANNEL_RUNS=${CHANNEL_RUNS:-3}
CHANNEL_RAMP=${CHANNEL_RAMP:-10}
CHANNEL_HOLD=${CHANNEL_HOLD:-20}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-1000}
FANOUT_RATE=${FANOUT_RATE:-100}
FANOUT_10K_SUBSCRIBERS=${FANOUT_10K_SUBSCRIBERS:-10000}
FANOUT_10K_RATE=${FANOUT_10K_RATE:-10}
ROOMS=${ROOMS:-2000}
CHMEM_CONNECTIONS=${CHMEM_CONNECTIONS:-10000}
CHMEM_CHANNELS=${CHMEM_CHANNELS:-200}
CHMEM_BYTES=${CHMEM_BYTES:-64}
# The servers' default, stated so that the figure says what it measured.
CHMEM_HISTORY_SIZE=100
# Seconds of a run (from loadtest's start) between which the CPU (and the system calls) are
# taken: from 2 s after the ramp to 1 s before publishing stops (2 s before the hold ends).
WINDOW_FROM=$((CHANNEL_RAMP + 2))
WINDOW_TO=$((CHANNEL_RAMP + CHANNEL_HOLD - 3))
channel_start() { start_server "$SERVER" 30000; }
CHANNEL_START=channel_start
CHANNEL_STOP=stop_server
CHANNEL_CPU=cpu_split
BROKER_STATS=

# speaks_channels: true when $SERVER speaks protocol v1.1's channels; says so when not.
speaks_channels() {
  case " $CHANNEL_SERVERS " in
    *" $SERVER "*) return 0 ;;
    *)
      log "$SERVER speaks protocol v1 only (no channels): channel figure skipped" | tee -a "$RUN_DIR/progress.log"
      return 1
      ;;
  esac
}

# channel_run NAME SCENARIO ARGS...: a fresh server, one loadtest channel run
# (SERVER-NAME.json), and the server's CPU over the steady publishing seconds
# (SERVER-NAME-cpu.json), with the client's over the same seconds: on loopback it shares the
# server's cores, so the two together say how busy the machine was.
channel_run() {
  local name=$1 scenario=$2 from=$WINDOW_FROM to=$WINDOW_TO user0 system0 user1 system1
  local broker0=null broker1=null load_pid client client0=null client1=null rc=0
  shift 2
  "$CHANNEL_START"
  loadtest_run "$scenario" "$name" --ramp "${CHANNEL_RAMP}s" --duration "${CHANNEL_HOLD}s" \
    --publish-after-ramp --payload-bytes 64 --max-delivery-p99 1s "$@" &
  load_pid=$!
  sleep "$from"
  # loadtest itself: the child of loadtest_run's background shell (one process: workers 1).
  client=$(pgrep -P "$load_pid" | head -n 1)
  read -r user0 system0 < <("$CHANNEL_CPU")
  [ -z "$client" ] || client0=$(cpu_seconds "$client")
  [ -z "$BROKER_STATS" ] || broker0=$("$BROKER_STATS")
  sleep $((to - from))
  read -r user1 system1 < <("$CHANNEL_CPU")
  [ -z "$client" ] || client1=$(cpu_seconds "$client" 2> /dev/null || echo null)
  [ -z "$BROKER_STATS" ] || broker1=$("$BROKER_STATS")
  wait "$load_pid" || rc=$?
  "$CHANNEL_STOP"
  [ "$rc" -eq 0 ] || die "loadtest $name against $SERVER failed (log: $RUN_DIR/$SERVER-$name.err)"
  jq -n --argjson u0 "$user0" --argjson s0 "$system0" --argjson u1 "$user1" --argjson s1 "$system1" \
    --argjson from "$from" --argjson to "$to" \
    --argjson b0 "$broker0" --argjson b1 "$broker1" --argjson c0 "$client0" --argjson c1 "$client1" \
    --slurpfile r "$RUN_DIR/$SERVER-$name.json" \
    '$r[0] as $r | [$r.timeline[] | select(.second > $from and .second <= $to)] as $w |
     ([$w[].deliveries] | add) as $d | ([$w[].publishes] | add) as $p |
     ($u1 - $u0) as $user | ($s1 - $s0) as $system | ($user + $system) as $cpu |
     def per_100k(seconds): if $d > 0 then seconds / $d * 100000 else null end;
     {cpu_seconds: $cpu, window_s: ($to - $from), deliveries: $d, publishes: $p,
      cpu_cores: ($cpu / ($to - $from)), cpu_s_per_100k: per_100k($cpu),
      user_s_per_100k: per_100k($user), system_s_per_100k: per_100k($system),
      client_cpu_cores: (if $c0 == null or $c1 == null then null else ($c1 - $c0) / ($to - $from) end)} +
     (if $b0 == null then {} else
      ($b1.cpu_seconds - $b0.cpu_seconds) as $bc | ($b1.publications - $b0.publications) as $bp |
      {broker_cpu_seconds: $bc, broker_publications: $bp, broker_cpu_cores: ($bc / ($to - $from)),
       broker_cpu_us_per_publication: (if $bp > 0 then $bc / $bp * 1000000 else null end)} end)' \
    > "$RUN_DIR/$SERVER-$name-cpu.json"
}

# channel_runs NAME SCENARIO ARGS...: CHANNEL_RUNS runs (SERVER-NAME-1..N), and the median
# CPU per 100,000 deliveries of them in SERVER-NAME-cpu.json (table.py takes the rest from the
# run with the median delivery p99).
channel_runs() {
  local name=$1 i
  shift
  for ((i = 1; i <= CHANNEL_RUNS; i++)); do
    channel_run "$name-$i" "$@"
  done
  jq -s 'def median(f): map(f) | sort | .[length / 2 | floor];
         {cpu_s_per_100k: median(.cpu_s_per_100k), cpu_cores: median(.cpu_cores),
          user_s_per_100k: median(.user_s_per_100k), system_s_per_100k: median(.system_s_per_100k),
          publishes_per_s: median(if .publishes then .publishes / .window_s else null end),
          broker_publications_per_s: median(if .broker_publications then .broker_publications / .window_s else null end),
          broker_cpu_us_per_publication: median(.broker_cpu_us_per_publication),
          broker_cpu_cores: median(.broker_cpu_cores), client_cpu_cores: median(.client_cpu_cores),
          runs: .}' \
    "$RUN_DIR/$SERVER-$name"-[0-9]*-cpu.json > "$RUN_DIR/$SERVER-$name-cpu.json"
}

bench_fanout() {
  speaks_channels || return 0
  channel_runs fanout fanout --subscribers "$FANOUT_SUBSCRIBERS" --publish-rate "$FANOUT_RATE"
}

bench_fanout_10k() {
  speaks_channels || return 0
  channel_runs fanout-10k fanout --subscribers "$FANOUT_10K_SUBSCRIBERS" --publish-rate "$FANOUT_10K_RATE"
}

bench_rooms() {
  speaks_channels || return 0
  channel_runs rooms rooms --rooms "$ROOMS" --room-size 5 --publish-rate 1
}

# hold_idle SUBSCRIPTIONS: RSS per connection of CHMEM_CONNECTIONS idle WebSockets that each
# subscribed to SUBSCRIPTIONS channels (bench/channel_memory.py hold), by the difference of the
# server's RSS before they connect and 10 s after the last subscribed (the memory trim runs
# every 2 s) -> SERVER-chmem-idle-SUBSCRIPTIONS.json.
hold_idle() {
  local subscriptions=$1 before after held client out="$RUN_DIR/$SERVER-chmem-idle-$1.client"
  start_server "$SERVER" 30000
  before=$(rss_kib)
  python3 "$REPO/bench/channel_memory.py" hold "$PORT" "$CHMEM_CONNECTIONS" "$subscriptions" > "$out" &
  client=$!
  # Ready when its one line is written (10,000 handshakes take seconds, more on a busy host).
  for _ in $(seq 120); do
    [ -s "$out" ] || ! kill -0 "$client" 2> /dev/null && break
    sleep 1
  done
  [ -s "$out" ] || die "channel_memory.py hold did not finish connecting in 120 s (or failed)"
  sleep 10
  after=$(rss_kib)
  held=$(server_connections)
  kill -TERM "$client"
  wait "$client" || true
  stop_server
  jq -n --argjson before "$before" --argjson after "$after" --argjson held "$held" \
    --argjson subscriptions "$subscriptions" --slurpfile client "$out" \
    '{subscriptions: $subscriptions, rss_before_kib: $before, rss_after_kib: $after, connections: $held,
      client: $client[0], rss_per_connection_kib: (($after - $before) / $held)}' \
    > "$RUN_DIR/$SERVER-chmem-idle-$subscriptions.json"
}

# history_memory: RSS per channel of CHMEM_CHANNELS channels with full history, by the
# difference of the server's RSS before and 5 s after their publications (no connection left
# then: the publishers closed) -> SERVER-chmem-history.json.
history_memory() {
  local before after out="$RUN_DIR/$SERVER-chmem-history.client"
  start_server "$SERVER" 30000
  before=$(rss_kib)
  python3 "$REPO/bench/channel_memory.py" history "$PORT" "$CHMEM_CHANNELS" "$CHMEM_HISTORY_SIZE" "$CHMEM_BYTES" > "$out"
  sleep 5
  after=$(rss_kib)
  stop_server
  jq -n --argjson before "$before" --argjson after "$after" --argjson history "$CHMEM_HISTORY_SIZE" \
    --argjson bytes "$CHMEM_BYTES" --slurpfile client "$out" \
    '{history_size: $history, padding_bytes: $bytes, rss_before_kib: $before, rss_after_kib: $after,
      client: $client[0], rss_per_channel_kib: (($after - $before) / $client[0].channels)}' \
    > "$RUN_DIR/$SERVER-chmem-history.json"
}

bench_chmem() {
  speaks_channels || return 0
  hold_idle 0
  hold_idle 2
  history_memory
}

# The system calls bench_syscalls counts apart: the sends (a server that writes each delivery
# on its own makes one per delivery) and the waits for socket events.
SYSCALL_SENDS="sendto sendmsg write writev"
SYSCALL_WAITS="epoll_wait epoll_pwait epoll_pwait2"

# bench_syscalls: the fanout load's system calls per delivery (SERVER-syscalls.json), over
# the seconds channel_run takes the CPU in.
bench_syscalls() {
  speaks_channels || return 0
  if ! command -v perf > /dev/null; then
    log "perf is not installed: syscalls skipped"
    return 0
  fi
  local from=$WINDOW_FROM to=$WINDOW_TO events call load_pid record_pid
  local counts="$RUN_DIR/$SERVER-syscalls.perf" samples="$RUN_DIR/$SERVER-syscalls.perf.data"
  events=raw_syscalls:sys_enter
  for call in $SYSCALL_SENDS $SYSCALL_WAITS futex; do events+=",syscalls:sys_enter_$call"; done
  start_server "$SERVER" 30000
  loadtest_run fanout syscalls-load --ramp "${CHANNEL_RAMP}s" --duration "${CHANNEL_HOLD}s" \
    --publish-after-ramp --payload-bytes 64 --subscribers "$FANOUT_SUBSCRIBERS" \
    --publish-rate "$FANOUT_RATE" &
  load_pid=$!
  sleep "$from"
  # The same seconds sampled too (at a low rate, as the profile figure): where the CPU goes.
  perf record -q -F 499 -g -p "$PID" -o "$samples" -- sleep $((to - from)) > /dev/null 2>&1 &
  record_pid=$!
  perf stat -x , -e "$events" -p "$PID" -o "$counts" -- sleep $((to - from)) || true
  wait "$record_pid" || true
  wait "$load_pid" || die "loadtest syscalls-load against $SERVER failed"
  stop_server
  perf_shares "$samples" > "$RUN_DIR/$SERVER-syscalls-profile.json"
  # perf's CSV lines: count,unit,event,...
  awk -F, '$3 ~ /^(raw_)?syscalls:/ {sub(/^.*sys_enter_?/, "", $3); print $3 "\t" $1}' "$counts" |
    jq -R -s --argjson from "$from" --argjson to "$to" \
      --arg sends "$SYSCALL_SENDS" --arg waits "$SYSCALL_WAITS" \
      --slurpfile r "$RUN_DIR/$SERVER-syscalls-load.json" \
      '[split("\n")[] | select(length > 0) | split("\t") | {(.[0]): (.[1] | tonumber? // 0)}] | add as $n |
       ([$r[0].timeline[] | select(.second > $from and .second <= $to) | .deliveries] | add) as $d |
       def sum(names): [names | split(" ")[] | $n[.] // 0] | add;
       def per_delivery(count): if $d > 0 then count / $d else null end;
       {deliveries: $d, counts: $n, calls_per_delivery: per_delivery($n[""]),
        sends_per_delivery: per_delivery(sum($sends)), waits_per_delivery: per_delivery(sum($waits)),
        futex_per_delivery: per_delivery($n.futex // 0)}' > "$RUN_DIR/$SERVER-syscalls.json"
}
