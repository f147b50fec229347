#!/usr/bin/env bash
# test_redis_stall.sh: Redis stalls (SIGSTOP, 10 s) under 50 running sagas.  One meshworker
# takes 50 orders published before it starts (one cluster each; releases take 3 s to install),
# and once every saga has reached the release install, so that all are mid-flight,
# redis-server is SIGSTOPped for 10 s, then SIGCONTed.  Throughout, /healthz must answer
# within 1 s (Redis is off the loop: a stalled Redis blocks only the Redis thread).  Afterwards
# every order must end Running exactly once with a gapless status stream, every cloud side
# effect must have happened exactly once, and the worker must have re-sent the checkpoints
# whose outcome the stall left unknown.
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

N=50
STALL_S=10
# Clusters bench-0 .. bench-19999, created on first use.
SAGA_SCENARIO="$MB_ROOT/ops/cloudsim/scenarios/bench.json"
saga_stack_up
cs_config '{"release_install_ms": 3000, "release_delete_ms": 200, "latency_ms": 1500}' >/dev/null
REDIS_PID=$(cat "$TEST_TMP/stack/redis.pid")
on_exit "kill -CONT $REDIS_PID 2>/dev/null || true"

# Every cloud call takes 1.5 s, so that at any moment sagas are in memory with calls out:
# their checkpoints fall into the stall (claims now wait for due jobs, so without it the
# stall could find every saga parked in Redis between two polls).
# Published first, so that the sagas start together.
pairs=()
for i in $(seq 0 $((N - 1))); do
    saga_buy "o-st-$i" acct-st "st-mesh-$i" proj-bench "bench-$i" \
        --node "bench-$i-node-1" --node "bench-$i-node-2" --namespace shop
    pairs+=("acct-st/st-mesh-$i:o-st-$i")
done

# A lease longer than the stall: the sagas keep theirs and carry on once Redis is back.
saga_worker w1 MESHBUY_LEASE_MS=30000 MESHBUY_HTTP_TIMEOUT_MS=5000
PORT=$(cat "$TEST_TMP/w1.port")

count() { # status [step] -> events with that status (and step)
    jq -R -c --arg s "$1" --arg step "${2:-}" 'fromjson? | .payload | fromjson? |
        select(.data.status == $s and ($step == "" or .data.step == $step))' \
        "$SAGA_STATUS" | wc -l
}
at_install() { [ "$(count Installing label_nodes)" -ge "$N" ]; }

# Mid-flight: every saga past label_nodes, whose record rides with the release's write-ahead
# save; then each creates its release (1.5 s), which installs for 3 s, and reads it (1.5 s),
# so its next checkpoint, the release's, falls inside the stall.
wait_for 120 at_install
note "stalling redis-server (SIGSTOP ${STALL_S}s) with $(count Running) of $N Running"

# /healthz polled every 200 ms with a 1 s bound, from just before the stall to after it.
HZ_OK=$TEST_TMP/healthz.ok
HZ_FAIL=$TEST_TMP/healthz.fail
: >"$HZ_OK"
: >"$HZ_FAIL"
(
    while [ ! -f "$TEST_TMP/healthz.stop" ]; do
        t0=$(date +%s.%N)
        if curl -sf --max-time 1 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then
            echo "$t0" >>"$HZ_OK"
        else
            echo "$t0" >>"$HZ_FAIL"
        fi
        sleep 0.2
    done
) &
HZ_PID=$!
on_exit "kill $HZ_PID 2>/dev/null || true"

kill -STOP "$REDIS_PID"
stall_end=$(($(date +%s) + STALL_S))
while [ "$(date +%s)" -lt "$stall_end" ]; do
    saga_workers_alive
    sleep 0.5
done
ready_during=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$PORT/readyz" ||
    true)
kill -CONT "$REDIS_PID"
note "redis-server continued; /readyz answered $ready_during at the end of the stall"
sleep 2
touch "$TEST_TMP/healthz.stop"
wait "$HZ_PID" || true

ok=$(wc -l <"$HZ_OK")
bad=$(wc -l <"$HZ_FAIL")
note "/healthz: $ok answered within 1 s, $bad did not"
[ "$bad" = 0 ] || fail "/healthz did not answer within 1 s $bad time(s) while Redis stalled"
[ "$ok" -ge "$STALL_S" ] || fail "/healthz polled only $ok times in ${STALL_S}+2 s"
assert_eq 503 "$ready_during" "/readyz at the end of a ${STALL_S}s stall"

saga_wait_all 240 "${pairs[@]}"
wait_for 30 curl -sf --max-time 2 "http://127.0.0.1:$PORT/readyz"

# Every mesh: gapless stream, Accepted first, exactly one Running, last.
for i in $(seq 0 $((N - 1))); do
    saga_check_order "acct-st/st-mesh-$i" "o-st-$i" Running >/dev/null
done

# Each side effect exactly once (a re-run step must observe, not act again).
muts=$(cs_get /admin/mutations)
for kind_want in "release_create $N" "sg_rule_create $N" "namespace_label_patch $N" \
    "node_label_patch $((N * 2))"; do
    kind=${kind_want% *}
    want=${kind_want#* }
    got=$(printf '%s' "$muts" | jq --arg k "$kind" '[.mutations[] | select(.kind == $k)] | length')
    assert_eq "$want" "$got" "$kind mutations (a repeated call counts too)"
done
assert_eq 0 "$(printf '%s' "$muts" | jq '[.mutations[] | select(.kind | test("delete"))] |
    length')" "nothing was undone"

metrics=$(curl -sf --max-time 2 "http://127.0.0.1:$PORT/metrics")
resends=$(printf '%s\n' "$metrics" | awk '$1 == "meshbuy_checkpoint_resends_total" { print $2 }')
lost=$(printf '%s\n' "$metrics" | awk '$1 == "meshbuy_saga_lost_total" { print $2 }')
note "checkpoints re-sent: $resends, jobs lost: $lost"
[ "${resends:-0}" -gt 0 ] || fail "no checkpoint was re-sent: the stall did not catch a saga"
assert_eq 0 "$lost" "jobs lost (the lease outlasts the stall)"
saga_validate_all
note "ok: $N sagas Running across a ${STALL_S}s Redis stall, /healthz answered throughout"
