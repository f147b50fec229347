#!/usr/bin/env bash
# test_producer_fatal.sh: the producer heals.  A worker (MESHBUY_TEST_HOOKS=1) relays status
# events for 8 mesh keys (25 orders each: one Accepted, then NameConflict Failed events, seq
# 1..25 per key) while the brokers are slow; a fatal producer error is injected (SIGUSR2 ->
# rd_kafka_test_fatal_error) with batches in flight.  Then: /readyz goes false, the producer
# is replaced in-process, readiness comes back, and mesh.status holds every seq of every key
# (no gap), first seen in order; a seq seen twice is only a resend of what was in flight at
# the fatal error (the documented at-least-once), bounded by what was in flight.
# shellcheck source=tests/lib.sh disable=SC2119
. "$MB_ROOT/tests/lib.sh"

for b in meshworker meshbuy devkafka; do
    [ -x "$MB_BIN/$b" ] || skip "$b not built in $MB_BIN"
done
command -v jq >/dev/null || skip "jq missing"

stack_up
T=$TEST_TMP
KEYS=8
PER_KEY=25
export MESHBUY_RUN_SAGAS=false MESHBUY_LOG_LEVEL=info MESHBUY_DRAIN_MS=5000

PORT=$(free_port)
metric() { mb_metric "$PORT" "$1"; } # name -> value (0 when absent)
metric_ge() { # name value
    local v
    v=$(metric "$1") || return 1
    [ "${v%.*}" -ge "$2" ]
}
outbox_empty() {
    local n=0 s
    for s in $(seq 0 15); do
        n=$((n + $(redis_cli LLEN "mb:{s$s}:outbox")))
    done
    [ "$n" = 0 ]
}
# Orders i..j of every key, interleaved, as "key<TAB>json" lines in FILE.
orders() { # from to file
    local i k
    : >"$3"
    for i in $(seq "$1" "$2"); do
        for k in $(seq 1 "$KEYS"); do
            printf 'acct-f/mesh-k%s\t%s\n' "$k" "$("$MB_BIN/meshbuy" --dry-run \
                --order-id "ord-k$k-$i" --account acct-f --project p1 --region r1 \
                --name "mesh-k$k" --istio 1.18 --cluster c1 --node n1 | tail -n 1)" >>"$3"
        done
    done
}
publish() { # file
    kcat -P -b "$KAFKA_BROKERS" -t mesh.orders -K "$(printf '\t')" -l \
        -X message.timeout.ms=20000 "$1" || fail "could not publish $1"
}
set_rtt() { # ms
    local b
    for b in 1 2 3; do kafka_ctl rtt "$b" "$1" >/dev/null; done
}

orders 1 10 "$T/a.txt"
orders 11 "$PER_KEY" "$T/b.txt"

MESHBUY_TEST_HOOKS=1 MESHBUY_HTTP_PORT=$PORT MESHBUY_WORKER_ID=w1 mb_start w1 "$MB_BIN/meshworker"
wait_for 30 curl -sf "http://127.0.0.1:$PORT/readyz"
grep -q 'MESHBUY_TEST_HOOKS: SIGUSR2' "$T/w1.log" || fail "test hooks not announced"

# ---- phase A: a first part, relayed normally
publish "$T/a.txt"
wait_for 60 metric_ge meshbuy_events_relayed_total $((KEYS * 10))

# ---- phase B: slow brokers, more orders, and the fatal error with batches in flight
( while :; do
    curl -s -o /dev/null -w '%{http_code}\n' --max-time 2 "http://127.0.0.1:$PORT/readyz" || true
    sleep 0.02
done ) >"$T/readyz.txt" 2>/dev/null &
poller=$!
on_exit "kill $poller 2>/dev/null || true"
set_rtt 300
publish "$T/b.txt"
wait_for 60 sh -c "[ \$(curl -sf http://127.0.0.1:$PORT/metrics | awk '\$1 == \"meshbuy_relay_inflight\" { print \$2 }') -gt 0 ]"
kill -USR2 "$(mb_pid w1)"
wait_for 30 metric_ge meshbuy_producer_fatal_total 1
set_rtt 0
wait_for 60 metric_ge meshbuy_producer_rebuilt_total 1
wait_for 30 curl -sf "http://127.0.0.1:$PORT/readyz"
kill "$poller" 2>/dev/null || true
wait_for 60 outbox_empty
wait_for 60 sh -c "[ \$(curl -sf http://127.0.0.1:$PORT/metrics | awk '\$1 == \"meshbuy_relay_inflight\" { print \$2 }') = 0 ]"

assert_eq 1 "$(metric meshbuy_producer_fatal_total)" "fatal errors"
assert_eq 1 "$(metric meshbuy_producer_rebuilt_total)" "producers rebuilt"
assert_eq 1 "$(metric meshbuy_producer_up)" "producer up"
assert_eq 1 "$(grep -c '"module":"loop","msg":"producer fatal error' "$T/w1.log")" \
    "one fatal error line"
grep -q 'new producer up' "$T/w1.log" || fail "no 'new producer up' in the log"
grep -q '^503$' "$T/readyz.txt" || fail "/readyz never said not ready while the producer was replaced"
mb_alive w1 || fail "the worker died"

# ---- mesh.status: every seq of every key, first seen in order; resends bounded
kcat -C -b "$KAFKA_BROKERS" -t mesh.status -o beginning -e -q -J >"$T/status.json" 2>/dev/null ||
    fail "could not read mesh.status"
jq -s --argjson keys "$KEYS" --argjson n "$PER_KEY" '
    [.[] | select(.key | startswith("acct-f/")) | {k: .key, seq: (.payload | fromjson | .data.seq)}]
    | group_by(.k) | map({k: .[0].k, seqs: map(.seq)})
    | {keys: length,
       gaps: map(select((.seqs | unique) != [range(1; $n + 1)])) | map(.k),
       disorder: map(select(
           (.seqs | reduce .[] as $s ({m: 0, ok: true};
               if $s > .m then {m: $s, ok: (.ok and $s == .m + 1)} else . end) | .ok) | not))
           | map(.k),
       dups: ((map(.seqs | length) | add) - ($n * length))}' "$T/status.json" >"$T/check.json"
check=$(cat "$T/check.json")
assert_json "$check" ".keys == $KEYS" "keys seen on mesh.status"
assert_json "$check" '.gaps == []' "keys with a seq gap"
assert_json "$check" '.disorder == []' "keys whose seqs were first seen out of order"
dups=$(json_get "$check" .dups)
# At most what was in flight when the producer died can come twice: phase B's events.
[ "$dups" -le $((KEYS * (PER_KEY - 10))) ] || fail "$dups resent events: more than was in flight"
note "ok: $(wc -l <"$T/status.json") events on mesh.status, $dups resent after the fatal error," \
    "$(grep -c '^503$' "$T/readyz.txt") not-ready answers while healing"
