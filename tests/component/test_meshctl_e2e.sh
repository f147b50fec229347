#!/usr/bin/env bash
# test_meshctl_e2e: meshctl with the real worker and cloudsim.  A release that fails is
# compensated; the fault is removed; `replay --dry-run` changes nothing (Redis dump, cloudsim
# mutations); `replay` reaches Running with one release, one 7443 rule and the labels in
# place, followed by `watch`; `watch --all --until-done` follows two orders to their end (a
# progress bar on a terminal, plain lines without escape codes when piped).  Then in park mode:
# `replay --from-step install_release` makes no new call of the steps before it.  Last,
# `workers` and `outbox` on live workers, and on one killed while it held a job.
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
mb_start worker env MESHBUY_WORKER_ID=w-e2e "$MB_BIN/meshworker"
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
# watch --all --until-done follows ord-e3 (Running) and ord-e4 (Failed at precheck) to their
# end: piped (plain lines) and on a terminal (script(1): progress bars).
"$MC" watch --all --until-done --timeout 150 >"$TEST_TMP/wall" 2>&1 &
wall=$!
wait_for 30 grep -q "watching every job from now on" "$TEST_TMP/wall"
if command -v script >/dev/null; then
    script -qec "$MC watch --all --until-done --timeout 150" /dev/null >"$TEST_TMP/wall-tty" 2>&1 &
    walltty=$!
    wait_for 30 grep -q "watching every job from now on" "$TEST_TMP/wall-tty"
fi
"$MC" watch ord-e3 --timeout 120 >"$TEST_TMP/w3" 2>&1 &
wpid=$!
wait_for 30 grep -q "waiting for order ord-e3 to be accepted" "$TEST_TMP/w3"
order ord-e3 mesh-e-three c-labeled n-lab
order ord-e4 mesh-e-four c-unavailable n-unav
rc=0; wait "$wpid" || rc=$?
assert_eq 0 "$rc" "watch of a just-published order: $(cat "$TEST_TMP/w3")"
assert_contains "$(cat "$TEST_TMP/w3")" "Running"
rc=0; wait "$wall" || rc=$?
out=$(cat "$TEST_TMP/wall")
assert_eq 1 "$rc" "watch --all --until-done with a failed job: $out"
assert_contains "$out" "2 job(s) ended: 1 reached their end, 1 failed or cancelled"
assert_contains "$out" " ord-e3 seq=1 Accepted "
assert_contains "$out" " ord-e4 seq=1 Accepted "
echo "$out" | grep -Eq ' ord-e3 seq=[0-9]+ Installing install_release 5/9 ' ||
    fail "no progress line of ord-e3 at install_release: $out"
echo "$out" | grep -Eq ' ord-e3 seq=[0-9]+ Running [a-z_]+ 9/9 ' || fail "ord-e3 did not end Running: $out"
echo "$out" | grep -Eq ' ord-e4 seq=[0-9]+ Failed precheck 3/9 .* error=' || fail "ord-e4 did not fail at precheck: $out"
assert_eq 0 "$(grep -c $'\033' "$TEST_TMP/wall")" "escape codes in piped watch output"
if [ -n "${walltty:-}" ]; then
    rc=0; wait "$walltty" || rc=$?
    out=$(tr -d '\r' <"$TEST_TMP/wall-tty")
    assert_contains "$out" "2 job(s) ended: 1 reached their end, 1 failed or cancelled"
    echo "$out" | grep -Eq '^\[#{6}-{14}\] 4/9 label_nodes +Installing +ord-e3 label_nodes done' ||
        fail "no progress bar of ord-e3 on a terminal: $out"
    echo "$out" | grep -Eq '^\[#{20}\] 9/9 [a-z_]+ +Running +ord-e3 ' || fail "no full bar of ord-e3: $out"
fi
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
MESHBUY_ON_FAILURE=park mb_start worker2 env MESHBUY_WORKER_ID=w-park "$MB_BIN/meshworker"
fault=$(add_release_fault c-open7443)
order ord-e2 mesh-e-two c-open7443 n-open
wait_failed ord-e2
assert_json "$("$MC" show ord-e2 --json --no-events)" '.state.parked == true'
curl -sf -X DELETE "$CS/admin/faults/$fault" >/dev/null
nodes_before=$(mut_count node_label_patch)
"$MC" replay ord-e2 --from-step install_release >/dev/null
wait_for 90 is_status ord-e2 Running
assert_eq "$nodes_before" "$(mut_count node_label_patch)" "steps before install_release patched nodes"
# ------------------------------------------------------------------ workers and outbox, live
need_py jsonschema
validate_each() { # schema file; a JSON array on stdin
    /usr/bin/python3 -c '
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
items = json.load(sys.stdin)
assert items, "empty"
for i in items:
    jsonschema.validate(i, schema)' "$1"
}
worker_json() { "$MC" workers --all -o json | jq -c --arg w "$1" '.[] | select(.id == $w)'; }
worker_is() { # id jq-condition
    local w
    w=$(worker_json "$1")
    [ -n "$w" ] && printf '%s' "$w" | jq -e "$2" >/dev/null
}
# w-park beats (live, its identity) and relays; w-e2e exited cleanly: gone, listed with --all only
wait_for 30 worker_is w-park '.state == "live" and (.relay_shards | length) > 0'
ws=$("$MC" workers -o json)
printf '%s' "$ws" | validate_each "$MB_ROOT/schemas/meshctl-worker.schema.json" ||
    fail "workers -o json does not match schemas/meshctl-worker.schema.json: $ws"
assert_json "$ws" 'map(.id) == ["w-park"]' "only the live worker without --all"
assert_json "$ws" ".[0] | .host == \"$(hostname)\" and .pid == $(mb_pid worker2) and .sagas and .lease_ms == 120000 and .beat_every_ms == 5000 and .jobs == []"
assert_eq "$("$MB_BIN/meshworker" --version | awk '{print $2}')" "$(json_get "$ws" '.[0].version')" "version"
assert_json "$("$MC" workers --all -o json)" '.[] | select(.id == "w-e2e") | .state == "gone" and .jobs == [] and .host == null'
assert_eq w-park "$("$MC" workers -o name)" "workers -o name"
assert_contains "$("$MC" workers | grep '^w-park ')" "live"
ob=$("$MC" outbox --all -o json)
printf '%s' "$ob" | validate_each "$MB_ROOT/schemas/meshctl-outbox.schema.json" ||
    fail "outbox -o json does not match schemas/meshctl-outbox.schema.json: $ob"
assert_json "$ob" 'length == 16 and ([.[] | select(.relay_worker == "w-park")] | length) > 0'
assert_json "$ob" '[.[] | select(.relay_worker == "w-park") | .relay_worker_state] | unique == ["live"]'

# A worker killed while it holds a job: its heartbeat goes late, then its record expires (2
# leases + a beat: 25 s) while the job still names it, its lease run out.
mb_stop worker2
hang=$(curl -sf -X POST "$CS/admin/faults" -H 'Content-Type: application/json' \
    -d '{"match": {"method": "GET", "path_contains": "/clusters/c-bigpods"}, "hang": true}' | jq -r .id)
mb_start worker3 env MESHBUY_WORKER_ID=w-hang MESHBUY_LEASE_MS=10000 MESHBUY_HTTP_TIMEOUT_MS=3000 \
    MESHBUY_LEASE_MARGIN_MS=1000 "$MB_BIN/meshworker"
order ord-w1 mesh-w-one c-bigpods n-big
wait_for 60 worker_is w-hang '.state == "live" and .jobs_held == 1 and .jobs[0].order_id == "ord-w1"'
w=$(worker_json w-hang)
assert_json "$w" '.jobs[0] | .mesh == "acct-e/mesh-w-one" and .step == "precheck" and .status == "Installing" and .lease_left_ms > 0 and .lease_left_ms <= 10000'
assert_contains "$("$MC" workers w-hang)" "job ord-w1  acct-e/mesh-w-one  Installing at precheck  lease "
mb_stop worker3 KILL || true # 137: killed, as meant
wait_for 40 worker_is w-hang '.state == "late" and .jobs_expired == 1'
assert_contains "$("$MC" workers w-hang)" "heartbeat late (stalled or dead)"
wait_for 40 worker_is w-hang '.state == "gone" and .jobs_expired == 1 and .jobs[0].order_id == "ord-w1" and .jobs[0].lease_left_ms < 0'
assert_json "$("$MC" workers -o json)" 'map(.id) == ["w-hang"]' "a gone worker holding a job is listed"
out=$("$MC" workers)
assert_contains "$out" "no heartbeat record (the worker is gone); its jobs' leases ran out: any worker may claim them"
assert_contains "$out" "job ord-w1  acct-e/mesh-w-one  Installing at precheck  lease expired "
curl -sf -X DELETE "$CS/admin/faults/$hang" >/dev/null
note "ok"
