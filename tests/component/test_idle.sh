#!/usr/bin/env bash
# test_idle.sh: an idle worker is quiet and still quick (devkafka + redis + cloudsim):
#   - one worker with nothing to do sends at most IDLE_MAX Redis commands a second, counted
#     as INFO stats total_commands_processed over 30 s (the worker is the only client; the
#     two INFO calls are subtracted)
#   - an order published to that idle worker is claimed (its first Installing event) within
#     PICKUP_MAX seconds of its Accepted event and reaches Running
#   - the worker's producer has looked up the status and DLQ topics' partitions before its
#     first message: librdkafka looks up a topic first met in a produce call only at its
#     once-a-second scan, which held an idle worker's first status event up to a second
#     (read off librdkafka's topic debug lines, KAFKA_DEBUG=topic)
#   - that order's status events reach Kafka within RELAY_MAX_MS of their time (the relay is
#     told of its own worker's events; before, it learned of them from the wake counters read
#     every 250 ms): the largest lag of the order's events, the message's timestamp (taken
#     when the relay produced it) less the event's time
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

IDLE_MAX=20
IDLE_SECS=30
PICKUP_MAX=2
RELAY_MAX_MS=120
saga_stack_up
saga_worker w1 KAFKA_DEBUG=topic MESHBUY_LOG_LEVEL=debug

commands() {
    redis_cli INFO stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }'
}

# ---- idle: let the worker settle (connect, scripts, group join), then count
sleep_until() { [ "$(date +%s)" -ge "$1" ]; }
wait_for 20 sleep_until $(($(date +%s) + 3))
c0=$(commands)
t0=$(date +%s%N)
wait_for $((IDLE_SECS + 5)) sleep_until $(($(date +%s) + IDLE_SECS))
c1=$(commands)
t1=$(date +%s%N)
rate=$(awk -v c=$((c1 - c0 - 1)) -v ns=$((t1 - t0)) 'BEGIN { printf "%.1f", c / (ns / 1e9) }')
note "idle worker: $((c1 - c0 - 1)) Redis commands in $(((t1 - t0) / 1000000)) ms = $rate/s"
awk -v r="$rate" -v m="$IDLE_MAX" 'BEGIN { exit !(r <= m) }' ||
    fail "idle worker sends $rate Redis commands/s, bound $IDLE_MAX"
mb_alive w1 || fail "worker died while idle"

for topic in "${MESHBUY_STATUS_TOPIC:-mesh.status}" "${MESHBUY_DLQ_TOPIC:-mesh.orders.dlq}"; do
    grep -q "#producer-.*Topic $topic partition count changed from 0 to" "$TEST_TMP/w1.log" ||
        fail "the idle worker's producer has not looked up $topic before its first message"
done

# Seconds (decimal) between ORDER's Accepted event and its first Installing one on KEY.
pickup() { # KEY ORDER
    saga_events "$1" | jq -rs --arg o "$2" '[.[] | .payload | fromjson |
        select(.data.order_id == $o)] as $e |
        (($e | map(select(.data.status == "Installing")) | first | .time) as $i |
         ($e | map(select(.data.status == "Accepted")) | first | .time) as $a |
         if $i == null or $a == null then "none" else
         (($i | sub("\\.[0-9]+"; "") | fromdateiso8601) - ($a | sub("\\.[0-9]+"; "") | fromdateiso8601)) +
         (($i | capture("\\.(?<f>[0-9]+)").f // "0" | ("0." + .) | tonumber) -
          ($a | capture("\\.(?<f>[0-9]+)").f // "0" | ("0." + .) | tonumber)) | tostring end)'
}
check_pickup() { # KEY ORDER MAX
    local p
    p=$(pickup "$1" "$2")
    note "$2: claimed ${p}s after its acceptance"
    [ "$p" != none ] || fail "$2: no Accepted or Installing event"
    awk -v p="$p" -v m="$3" 'BEGIN { exit !(p <= m) }' ||
        fail "$2 was claimed ${p}s after its acceptance, bound ${3}s"
}

# The largest lag, in ms, between an event of ORDER on KEY and its produce time.
relay_lag_max() { # KEY ORDER
    saga_events "$1" | jq -rs --arg o "$2" '[.[] | .ts as $ts | .payload | fromjson |
        select(.data.order_id == $o) |
        $ts - ((.time | sub("\\.[0-9]+"; "") | fromdateiso8601) * 1000 +
               (.time | capture("\\.(?<f>[0-9]{1,3})").f // "0" | (. + "00")[0:3] | tonumber))]
        | if length == 0 then "none" else max | tostring end'
}

# ---- an order published to the idle worker is claimed at once
saga_buy o-idle-1 acct-idle idle-mesh proj-a c-single --node n-single-1
assert_eq Running "$(saga_wait_terminal 120 acct-idle/idle-mesh o-idle-1)" "o-idle-1"
check_pickup acct-idle/idle-mesh o-idle-1 "$PICKUP_MAX"
lag=$(relay_lag_max acct-idle/idle-mesh o-idle-1)
note "o-idle-1: its events reached Kafka at most ${lag} ms after their time"
[ "$lag" != none ] || fail "o-idle-1: no events"
[ "$lag" -le "$RELAY_MAX_MS" ] ||
    fail "o-idle-1: an event reached Kafka ${lag} ms after its time, bound ${RELAY_MAX_MS} ms"

saga_stream acct-idle/idle-mesh >/dev/null
