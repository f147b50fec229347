#!/usr/bin/env bash
# test_cloud_stall.sh: a stalled cloud holds no more jobs in a worker than its calls can
# carry (devkafka + redis + cloudsim on the bench scenario).
#
# Every cloud call hangs.  One worker that may have 4 calls on the wire
# (MESHBUY_HTTP_MAX_ACTIVE=4) takes one order, whose precheck puts 6 calls out: 4 on the
# wire, hanging, 2 waiting for a slot (meshbuy_cloud_calls says so).  Then N more orders
# are accepted.  While the calls hang, time out (MESHBUY_HTTP_TIMEOUT_MS) and are sent
# again, the worker claims none of the N: it claims no job while as many calls as it may
# have on the wire are out, since a job claimed then would only hold memory and a lease.
# The N stay due in Redis, unowned; once the cloud answers again, all N + 1 reach Running.
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

N=20
# Clusters bench-0 .. bench-19999, created on first use.
SAGA_SCENARIO="$MB_ROOT/ops/cloudsim/scenarios/bench.json"
saga_stack_up
saga_worker w1 MESHBUY_HTTP_MAX_ACTIVE=4 MESHBUY_HTTP_MAX_CONNECTIONS=4 \
    MESHBUY_HTTP_TIMEOUT_MS=1000
PORT=$(cat "$TEST_TMP/w1.port")

metric() { mb_metric "$PORT" "$1"; }
at_least() { [ "$("${@:2}")" -ge "$1" ]; }
cs_held() { cs_get /healthz | jq .held; }
with_status() { # with_status STATUS: orders with an event of that status so far
    jq -R -r --arg s "$1" 'fromjson? | .payload | fromjson? | select(.data.status == $s) |
        .data.order_id' "$SAGA_STATUS" | sort -u | wc -l
}
timeouts() { metric 'meshbuy_cloud_requests_total{outcome="again"}'; }
buy() { # buy I
    saga_buy "o-cs-$1" acct-cs "cs-mesh-$1" proj-bench "bench-$1" \
        --node "bench-$1-node-1" --node "bench-$1-node-2" --namespace shop
}

cs_fault '{"hang": true}' >/dev/null # no match: every cloud request
buy 0
wait_for 60 at_least 4 cs_held
note "the first order's calls hang: $(cs_held) held by cloudsim"
# 4 on the wire and 2 waiting; again after each round of timeouts, once the retries are out.
calls_are() { # calls_are WIRE WAITING
    [ "$(metric 'meshbuy_cloud_calls{state="wire"}')" = "$1" ] &&
        [ "$(metric 'meshbuy_cloud_calls{state="waiting"}')" = "$2" ]
}
wait_for 30 calls_are 4 2

for i in $(seq 1 "$N"); do buy "$i"; done
wait_for 60 at_least $((N + 1)) with_status Accepted
# Two rounds of the hanging calls' timeouts after the N were due: the worker looked for
# work many times meanwhile.
t0=$(timeouts)
wait_for 60 at_least $((t0 + 8)) timeouts
assert_eq 1 "$(metric meshbuy_sagas_inflight)" "jobs held while every slot hangs"
assert_eq 1 "$(with_status Installing)" "orders started while every slot hangs"
assert_json "$("$MB_BIN/meshctl" workers w1 -o json)" '[.[] | .jobs[]] | length == 1' \
    "leases w1 holds in Redis"

cs_delete /admin/faults >/dev/null
pairs=()
for i in $(seq 0 "$N"); do pairs+=("acct-cs/cs-mesh-$i:o-cs-$i"); done
saga_wait_all 120 "${pairs[@]}"
for p in "${pairs[@]}"; do
    assert_eq Running "$(saga_terminal "${p%%:*}" "${p#*:}")" "${p#*:}"
done
note "$((N + 1)) orders Running once the cloud answered"
