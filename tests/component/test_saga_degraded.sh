#!/usr/bin/env bash
# test_saga_degraded.sh: the create-mesh saga against a degraded cloud, against devkafka +
# redis + cloudsim (tests/fixtures/cloudsim/saga.json).  Every cloud request (every path,
# every method) has a 10% chance of 429 with Retry-After: 1 and a 30% chance of 503; one
# order with two nodes, two namespaces (shop, payments) and restart_existing must reach
# Running within 180 s, with each side effect exactly once in cloudsim's mutation log.  The
# first release create is also refused with a 409 for a release that is not there.
#
# The worker runs with the production backoff of the saga (200 ms doubling to 30 s): a step
# whose calls were retried only as one unit would need all its parallel calls to succeed in
# the same attempt (0.6^6 for six listings), and would not make it.  Calls retry on their
# own inside mb_cloud, so the saga hardly ever has to retry a step.
#
# Prints the time from the order to Running, the cloud requests it took (by status), and the
# retries counted by the worker (per call and per step).
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

ID=flaky # the saga scenario's cluster c-flaky in project proj-flaky
KEY="acct-degraded/degraded-mesh"
ORDER=o-degraded
BOUND=180

saga_stack_up
# A lease several times the HTTP timeout, and the saga's own production backoff.
saga_worker w1 MESHBUY_LEASE_MS=15000 MESHBUY_HTTP_TIMEOUT_MS=3000 \
    MESHBUY_BACKOFF_BASE_MS=200 MESHBUY_BACKOFF_MAX_MS=30000
PORT=$(cat "$TEST_TMP/w1.port")

# The first release create is refused as if the name were taken (409) though no release is
# there: the step reads it, finds none, and creates it again after a backoff.
cs_fault '{"match": {"method": "POST", "path_contains": "/releases"}, "error_status": 409,
    "count": 1}' >/dev/null
# No match: every non-admin request.  429 is decided first (10%), then 503 for a third of
# the rest (30% of all).
cs_fault '{"throttle_rate": 0.1, "retry_after": 1, "error_rate": 0.3333,
    "error_status": 503}' >/dev/null
since=$(cs_get "/admin/requests?limit=0" | jq .total)

t0=$(date +%s%3N)
saga_buy "$ORDER" acct-degraded degraded-mesh "proj-$ID" "c-$ID" --node "n-$ID-1" \
    --node "n-$ID-2" --namespace shop --namespace payments --restart
status=$(saga_wait_terminal "$BOUND" "$KEY" "$ORDER")
t1=$(date +%s%3N)
assert_eq Running "$status" "$ORDER: terminal status"
took_ms=$((t1 - t0))

saga_check_order "$KEY" "$ORDER" Running >/dev/null
assert_mutations "c-$ID" "node_label_patch $ID-node-1" "node_label_patch $ID-node-2" \
    "release_create istio-system/istio-master" "sg_rule_create *" \
    "namespace_label_patch shop" "namespace_label_patch payments" \
    "workload_patch deployments/shop/web" "workload_patch statefulsets/shop/db" \
    "workload_patch daemonsets/shop/agent" "workload_patch deployments/payments/pay"
st=$(cs_state "c-$ID")
assert_json "$st" '[.clusters[0].releases[]] | length == 1 and .[0].status == "DEPLOYED"' \
    "one release, DEPLOYED"
assert_eq 1 "$(cs_rule_ids "c-$ID" | grep -c .)" "one 7443 rule"
cs_requests_match POST /releases '.status == 409' || fail "no release create was refused"

# What it cost: cloud requests since the faults went in, by status.
reqs=$(cs_get "/admin/requests?since=$since&limit=100000" | jq -c '[.requests[] | select(
    .path | startswith("/admin") | not)] | {total: length,
    ok: [.[] | select(.status >= 200 and .status < 300)] | length,
    s503: [.[] | select(.status == 503)] | length,
    s429: [.[] | select(.status == 429)] | length,
    other: [.[] | select(.status < 200 or (.status >= 300 and .status != 429 and
        .status != 503)) | "\(.method) \(.status)"] | unique | join(", ")}')
metrics=$(curl -sf --max-time 5 "http://127.0.0.1:$PORT/metrics") || fail "no /metrics"
call_retries=$(printf '%s\n' "$metrics" | awk '$1 == "meshbuy_cloud_retries_total" {print $2}')
step_retries=$(printf '%s\n' "$metrics" | awk '$1 == "meshbuy_saga_retries_total" {print $2}')

note "Running after $((took_ms / 1000)).$(printf '%03d' $((took_ms % 1000))) s;" \
    "cloud requests: $(json_get "$reqs" \
        '"\(.total) (\(.ok) 2xx, \(.s503) 503, \(.s429) 429; also \(.other))"');" \
    "retries: $call_retries per call, $step_retries per step"
# Both fault kinds really fired, and the calls (not the steps) absorbed them.
assert_json "$reqs" '.s503 > 0 and .s429 > 0' "the faults fired"
[[ "$call_retries" =~ ^[1-9][0-9]*$ ]] ||
    fail "meshbuy_cloud_retries_total is '$call_retries' after $(json_get "$reqs" .s503) 503s"
[ "$call_retries" -ge "$(json_get "$reqs" '.s503 + .s429')" ] ||
    fail "$call_retries call retries for $(json_get "$reqs" '.s503 + .s429') 503s and 429s"
[ "$took_ms" -le $((BOUND * 1000)) ] || fail "Running after $took_ms ms, over ${BOUND} s"
saga_validate_all
mb_alive w1 || fail "w1 died"
