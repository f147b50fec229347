#!/usr/bin/env bash
# test_meshctl_e2e: meshctl with the real worker and cloudsim.  A release that fails is
# compensated; the fault is removed; `replay --dry-run` changes nothing (Redis dump, cloudsim
# mutations); `replay` reaches Running with one release, one 7443 rule and the labels in
# place, followed by `watch`.  Then in park mode: `replay --from-step install_release` makes no
# new call of the steps before it.
. "${MB_ROOT:-.}/tests/lib.sh"

stack_up --cloudsim "$MB_ROOT/ops/cloudsim/scenarios/basic.json"
MC="$MB_BIN/meshctl"
CS=${MESHBUY_CCE_URL:?}
export MESHBUY_LOG_LEVEL=info
export MESHBUY_HTTP_PORT=0 MESHBUY_POLL_MS=200 MESHBUY_BACKOFF_BASE_MS=20

status_of() { "$MC" show "$1" --json --no-events | jq -r .job.status; }
is_status() { [ "$(status_of "$1")" = "$2" ]; }
mutations() { curl -sf "$CS/admin/mutations"; }
mut_count() { mutations | jq ".counts.$1"; }
dump() { "$MC" show "$1" --json --no-events | jq -S 'del(.job.age_ms)'; }
add_release_fault() { # cluster
    curl -sf -X POST "$CS/admin/faults" -H 'Content-Type: application/json' \
        -d "{\"release_fail\":{\"cluster_id\":\"$1\",\"status\":\"FAILED\"}}" | jq -r .id
}
order() { # id name cluster node-prefix (one mesh per cluster)
    "$MB_BIN/meshbuy" --order-id "$1" --account acct-e --project proj-a --region r1 \
        --name "$2" --istio 1.18 --cluster "$3" --node "$4-1" --node "$4-2" \
        --namespace shop >/dev/null
}
# The saga must move the job off Accepted: say so plainly when the worker does not.
wait_failed() {
    local id=$1 deadline=$(($(date +%s) + 60))
    until is_status "$id" Failed; do
        [ "$(date +%s)" -lt "$deadline" ] ||
            fail "job $id is $(status_of "$id") after 60 s, not Failed: does the worker run sagas?"
        sleep 0.1
    done
}

# ------------------------------------------------------------------ compensated, then replayed
fault=$(add_release_fault c-good)
mb_start worker "$MB_BIN/meshworker"
order ord-e1 mesh-e-one c-good n-good
wait_failed ord-e1
assert_ne "" "$("$MC" show ord-e1 --json --no-events | jq -r .job.error_code)" "Failed without an error code"
assert_json "$("$MC" show ord-e1 --json --no-events)" '.state.steps.label_nodes.status == "compensated"'
# every view shows the step where the saga stopped, not where compensation ended
assert_json "$("$MC" show ord-e1 --json --no-events)" '.job.step == "install_release"'
assert_contains "$("$MC" show ord-e1 --no-events)" "step install_release"
assert_json "$("$MC" jobs --json)" '.[] | select(.order_id == "ord-e1") | .step == "install_release"'
assert_contains "$("$MC" jobs | grep ord-e1)" "install_release"
curl -sf -X DELETE "$CS/admin/faults/$fault" >/dev/null

before=$(dump ord-e1); mut_before=$(mutations)
plan=$("$MC" replay ord-e1 --dry-run)
assert_contains "$plan" "from reserve"
assert_contains "$plan" "may call: POST release istio-master"
assert_contains "$plan" "labels istio=master (now: absent)"
assert_eq "$before" "$(dump ord-e1)" "dry-run changed the job"
assert_eq "$mut_before" "$(mutations)" "dry-run made a mutating cloud call"

"$MC" replay ord-e1 >/dev/null
# watch follows the replayed job to its end (or reports it at once if it got there first)
rc=0; "$MC" watch ord-e1 --timeout 90 >"$TEST_TMP/watch.out" 2>&1 || rc=$?
assert_eq 0 "$rc" "watch exit code on Running: $(cat "$TEST_TMP/watch.out")"
assert_eq Running "$(status_of ord-e1)"
assert_contains "$(cat "$TEST_TMP/watch.out")" "Running"

after=$("$MC" replay ord-e1 --dry-run --json)
assert_json "$after" '[.steps[] | select(.step=="label_nodes") | .in_place | length] == [2]'
assert_json "$after" '.steps[] | select(.step=="install_release") | .in_place[0] | test("DEPLOYED")'
assert_json "$after" '.steps[] | select(.step=="open_port") | (.in_place | length) == 1'
assert_eq 1 "$(mut_count sg_rule_create)" "one 7443 rule created in the whole run"
rel=$(mutations | jq '[.mutations[] | select(.kind=="release_create")] | length')
del=$(mutations | jq '[.mutations[] | select(.kind=="release_delete")] | length')
assert_eq 1 "$((rel - del))" "exactly one release left"
assert_contains "$("$MC" show ord-e1 --no-events)" "replay from reserve by"

# ------------------------------------------------------------------ watch a just-published order
# meshbuy && meshctl watch: the job does not exist yet when watch starts; watch waits for it.
"$MC" watch ord-e3 --timeout 120 >"$TEST_TMP/w3" 2>&1 &
wpid=$!
wait_for 30 grep -q "waiting for order ord-e3 to be accepted" "$TEST_TMP/w3"
order ord-e3 mesh-e-three c-labeled n-lab
rc=0; wait "$wpid" || rc=$?
assert_eq 0 "$rc" "watch of a just-published order: $(cat "$TEST_TMP/w3")"
assert_contains "$(cat "$TEST_TMP/w3")" "Running"
order ord-e4 mesh-e-four c-unavailable n-unav
rc=0; "$MC" watch ord-e4 --timeout 120 >"$TEST_TMP/w4" 2>&1 || rc=$?
assert_eq 1 "$rc" "watch of an order that fails: $(cat "$TEST_TMP/w4")"
assert_contains "$(cat "$TEST_TMP/w4")" "Failed"
assert_json "$("$MC" jobs --json)" '.[] | select(.order_id == "ord-e4") | .step == "precheck"' \
    "a job compensated after precheck failed shows precheck"
rc=0; "$MC" watch ord-e4 >"$TEST_TMP/w4b" 2>&1 || rc=$?
assert_eq 1 "$rc"
assert_contains "$(cat "$TEST_TMP/w4b")" "ord-e4 is Failed at precheck: "
# an order nobody accepts: a bounded wait, then exit 4 with what to look at
rc=0; "$MC" watch ord-never --accept-timeout 2 >"$TEST_TMP/w5" 2>&1 || rc=$?
assert_eq 4 "$rc" "watch of an order never accepted"
assert_contains "$(cat "$TEST_TMP/w5")" "no worker accepted it"

# ------------------------------------------------------------------ parked, replayed from a step
mb_stop worker
MESHBUY_ON_FAILURE=park mb_start worker2 "$MB_BIN/meshworker"
fault=$(add_release_fault c-open7443)
order ord-e2 mesh-e-two c-open7443 n-open
wait_failed ord-e2
assert_json "$("$MC" show ord-e2 --json --no-events)" '.state.parked == true'
curl -sf -X DELETE "$CS/admin/faults/$fault" >/dev/null
nodes_before=$(mut_count node_label_patch)
"$MC" replay ord-e2 --from-step install_release >/dev/null
wait_for 90 is_status ord-e2 Running
assert_eq "$nodes_before" "$(mut_count node_label_patch)" "steps before install_release patched nodes"
note "ok"
