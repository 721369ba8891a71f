# shellcheck shell=bash
# The chat scenarios of ci/deploy/scenarios.sh (sourced by it; never run): rooms of users
# chatting through the public address (Traefik, or the direct path's shared address) while
# `wsctl deploy` moves them from one colour to the other (docs/redis.md, "Deploys").
#
#   chat_deploy NAME FROM TO BROKER-SETTING...
#       both colours' settings get BROKER-SETTING... (e.g. BROKER=redis REDIS_URL=...), the
#       running colour FROM is restarted to take them (no client is connected then), then
#       `loadtest rooms` (CHAT_ROOMS rooms of CHAT_ROOM_SIZE users, each subscribed to its room
#       and publishing CHAT_RATE/s to it; a room's users connected at different moments, so
#       that the drain moves them at different moments too; on `goodbye` a user takes the answers still on their
#       way, reconnects and subscribes again with `recover` from the last offset it saw)
#       runs through the public address, and `wsctl deploy --to TO` runs meanwhile. The
#       connections each colour holds are sampled during the deploy: while FROM drains, a
#       room's users sit on both colours. Leaves NAME.load.json (loadtest's report),
#       NAME.deploy.json and DEPLOY_RC.
#   chat_counts NAME    the figures of the RESULT line
#   most_on_both NAME   the most users both colours held at one moment of the deploy
#
# Uses the functions of scenarios.sh (wsctl, run_deploy, connections_of, serving_colour,
# colour_env) and ci/redis/lib.sh.

CHAT_ROOMS=${CHAT_ROOMS:-20}
CHAT_ROOM_SIZE=${CHAT_ROOM_SIZE:-5}
CHAT_RATE=${CHAT_RATE:-2}
# The users connect over CHAT_RAMP and chat for CHAT_HOLD; publishing stops 2 s before the
# end. The deploy must be over before that (checked: otherwise the drain's reconnections
# would not be under load).
CHAT_RAMP=2
CHAT_HOLD=${CHAT_HOLD:-40}
LOAD_PID=""

# colour_connections FROM TO: "FROM TO", the connections each colour's processes hold on the
# public ports now (established TCP on 3001, 3002 and the direct path's shared port, told
# apart by the process's colour: on the direct path both colours serve on one port, and a
# draining colour no longer answers /health).
colour_connections() {
  local from=$1 to=$2 count pid colour ports="( sport = :3001 or sport = :3002 )"
  local -A held=(["$from"]=0 ["$to"]=0)
  [ -z "${DIRECT_PORT:-}" ] || ports="( sport = :3001 or sport = :3002 or sport = :$DIRECT_PORT )"
  while read -r count pid; do
    # ws@.service sets SERVER_ID to the colour.
    colour=$(tr '\0' '\n' < "/proc/$pid/environ" 2> /dev/null | sed -n 's/^SERVER_ID=//p' || true)
    [ -z "$colour" ] || held[$colour]=$((${held[$colour]:-0} + count))
  done < <(ss -Htnp state established "$ports" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort | uniq -c)
  echo "${held[$from]} ${held[$to]}"
}

# sample_colours FILE FROM TO: every 100 ms, colour_connections FROM TO, until FILE.stop
# exists.
sample_colours() {
  local file=$1
  while [ ! -e "$file.stop" ]; do
    colour_connections "$2" "$3" >> "$file"
    sleep 0.1
  done
}

chat_deploy() {
  local name=$1 from=$2 to=$3 users deadline started publish_end sampler
  shift 3
  BROKER_SETTINGS=("$@")
  colour_env blue
  colour_env green
  IN systemctl restart "ws@$from.service"
  wait_active "ws@$from.service" || die "$name: $from did not start again with ${BROKER_SETTINGS[*]}"
  # Until new connections reach FROM again through the public address: the load must not
  # start while Traefik's health check still has FROM out of rotation.
  deadline=$((SECONDS + 20))
  until [ "$(serving_colour 2> /dev/null)" = "$from" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "$name: $from does not serve through $PUBLIC_HTTP after its restart"
    sleep 0.2
  done
  users=$((CHAT_ROOMS * CHAT_ROOM_SIZE))
  started=$(date +%s%3N)
  "$BIN_DIR/loadtest" rooms --url "$PUBLIC" --rooms "$CHAT_ROOMS" --room-size "$CHAT_ROOM_SIZE" --spread-rooms \
    --publish-rate "$CHAT_RATE" --ramp "${CHAT_RAMP}s" --duration "${CHAT_HOLD}s" --json --quiet \
    --max-connect-p95 10s --max-delivery-p99 30s > "$WORK/$name.load.json" 2> "$WORK/$name.load.err" &
  LOAD_PID=$!
  deadline=$((SECONDS + 20))
  until [ "$(colour_connections "$from" "$to" | cut -d' ' -f1)" -ge "$users" ]; do
    [ "$SECONDS" -lt "$deadline" ] || die "$name: $users chat users did not connect to $from"
    sleep 0.1
  done
  sleep 2 # chat on one colour before the deploy
  sample_colours "$WORK/$name.colours" "$from" "$to" &
  sampler=$!
  local deploy_args=(--json deploy --to "$to" "${DEPLOY_WAITS[@]}")
  run_deploy "$name" "${deploy_args[@]}"
  publish_end=$((started + (CHAT_RAMP + CHAT_HOLD - 2) * 1000))
  [ "$(date +%s%3N)" -lt "$publish_end" ] ||
    die "$name: the deploy outlasted the chat's publishing window (CHAT_HOLD=$CHAT_HOLD s): raise CHAT_HOLD"
  local rc=0
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  touch "$WORK/$name.colours.stop"
  wait "$sampler"
  # Exit 1 is a failed threshold, judged by the caller; anything else is a broken run.
  [ "$rc" -le 1 ] || { cat "$WORK/$name.load.err" >&2; die "$name: loadtest exit $rc"; }
}

# l NAME FILTER: jq FILTER over NAME's loadtest report, with `never_received`: of the
# acknowledged publications x the room size, those that no room user received, live or by
# recovery, but for those made before the user joined.
l() {
  jq -r --argjson size "$CHAT_ROOM_SIZE" 'def never_received: .channels.counts |
    [.published * $size - .deliveries - .recovered_publications - .published_before_joining, 0] | max; '"$2" "$WORK/$1.load.json"
}

# most_on_both NAME: the most chat users that both colours held at one moment of NAME's
# deploy: once the old colour has lost one (the drain; before it, the new colour's
# connections are wsctl's checks), the fewer of the two counts.
most_on_both() {
  awk -v users=$((CHAT_ROOMS * CHAT_ROOM_SIZE)) '$1 < users { m = ($1 < $2 ? $1 : $2); if (m > max) max = m }
    END { print max + 0 }' "$WORK/$1.colours"
}

chat_counts() {
  local name=$1
  # shellcheck disable=SC2016 # jq variables
  echo "$(l "$name" '.connections as $n | .channels.counts as $c |
    "connections \($n.attempts) (\($n.reconnects) reconnects after \(.disconnects.by_goodbye_reason.server_shutdown // 0) goodbyes server_shutdown), failed \($n.failed);" +
    " publications sent \($c.publishes), acknowledged \($c.published), refused \($c.publish_refused), unanswered \($c.publishes - $c.published - $c.publish_refused);" +
    " received by room users \($c.deliveries) live + \($c.recovered_publications) by recovery, of \($c.published * $size - $c.published_before_joining) owed (acknowledged x room size, less \($c.published_before_joining) made before the user joined);" +
    " lost: never received \(never_received), skipped offsets \($c.missing), acknowledged and never back to the publisher \($c.acked_lost) (+ \($c.acked_unrecovered) excused by recovered:false); duplicated \($c.duplicates), out of order \($c.out_of_order);" +
    " resubscriptions recovered \($c.recovered), recovered:false \($c.not_recovered), epoch changes \($c.epoch_changes), insufficient_state \($c.insufficient_state);" +
    " delivery p99 \(.channels.delivery_latency.p99_ms // "-") ms"'); at most $(most_on_both "$name") users on each colour at once"
}
