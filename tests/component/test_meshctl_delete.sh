#!/usr/bin/env bash
# test_meshctl_delete: meshctl on jobs of the delete saga, with nothing delete-specific in
# meshctl: a mesh is bought, then its delete fails permanently at uninstall_release (a 403 on
# the release DELETE).  jobs and show name the saga, its steps and the step it stopped at;
# replay --dry-run plans the delete's own steps from there and changes nothing; rollback is
# refused (a delete never re-installs); replay takes it to Deleted, followed by watch.
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

SAGA_SCENARIO="$MB_ROOT/tests/fixtures/cloudsim/delete.json"
saga_stack_up
saga_worker w1
MC="$MB_BIN/meshctl"
export MESHBUY_LOG_LEVEL=error

saga_buy o-1 acct-m mesh-m proj-a c-fail --node n-fail-1 --namespace shop
assert_eq Running "$(saga_wait_terminal 90 acct-m/mesh-m o-1)"
cs_fault '{"match": {"method": "DELETE", "path_contains": "/clusters/c-fail/namespace/"},
    "error_status": 403, "count": 1}' >/dev/null
"$MB_BIN/meshbuy" --delete --order-id d-1 --account acct-m --name mesh-m --project proj-a \
    --region "$SAGA_REGION" >/dev/null
assert_eq Failed "$(saga_wait_terminal 90 acct-m/mesh-m d-1)"

# jobs and show: the saga, its step total and the step where it stopped
job=$("$MC" jobs -o json | jq -c '.[] | select(.order_id == "d-1")')
assert_json "$job" '.saga == "delete" and .status == "Failed" and .step == "uninstall_release"
    and .step_index == 5 and .step_total == 9 and .parked == true' "the delete job in jobs"
assert_json "$("$MC" jobs -o json)" '.[] | select(.order_id == "o-1") | .saga == "create"'
assert_contains "$("$MC" jobs | grep d-1)" "delete"
show=$("$MC" show d-1 --no-events)
assert_contains "$show" "saga delete"
for s in uninject uninstall_release close_port unlabel_nodes release_name; do
    assert_contains "$show" "$s" "show lists the delete's step $s"
done
assert_contains "$("$MC" jobs --status deleting --json)" "[]"

# replay --dry-run: the delete's steps from the failed one, each by its own face; no change
before=$(cs_get /admin/mutations | jq -S .); hist_before=$("$MC" show d-1 -o json --no-events | jq -S '.job | del(.age_ms)')
plan=$("$MC" replay d-1 --dry-run -o json)
assert_json "$plan" '.saga == "delete" and .from_step == "uninstall_release"'
assert_json "$plan" '[.steps[].step] == ["validate","precheck","uninject","restart",
    "uninstall_release","close_port","unlabel_nodes","release_name","finish"]'
assert_json "$plan" '[.steps[] | select(.runs) | .step] == ["uninstall_release","close_port",
    "unlabel_nodes","release_name","finish"]'
assert_json "$plan" '[.steps[] | select(.runs) | .observed and .error == null and .fails == null] | all' \
    "every running step observed by its own face"
full=$("$MC" replay d-1 --from-step validate --dry-run -o json)
step() { printf '%s' "$full" | jq -c --arg s "$1" '.steps[] | select(.step == $s)'; }
assert_json "$full" '[.steps[] | .observed and .error == null and .fails == null] | all'
assert_json "$(step precheck)" '.in_place[0] | test("the create o-1 may be deleted; cluster c-fail is Available")'
assert_json "$(step uninject)" '.changes == [] and (.in_place[0] | test("namespace shop is back to istio-injection=\\(none\\) already"))'
assert_json "$(step uninstall_release)" '.changes[0] | test("^DELETE release istio-master in istio-system")'
assert_json "$(step close_port)" '.changes[0] | test("^DELETE security-group rule .* on sg-fail")'
assert_json "$(step unlabel_nodes)" '.changes == ["PATCH /api/v1/nodes/fail-node-1 labels istio=(removed) (now: master)"]'
assert_json "$(step release_name)" '.changes[0] | test("free mesh name mesh-m from order o-1")'
assert_json "$(step finish)" '.changes == [] and (.in_place[0] | test("no cloud call"))'
# a delete of a mesh never bought: its precheck face says what run() would fail with
"$MB_BIN/meshbuy" --delete --order-id d-none --account acct-none --name nomesh --project proj-a \
    --region "$SAGA_REGION" >/dev/null
assert_eq Failed "$(saga_wait_terminal 90 acct-none/nomesh d-none)"
none=$("$MC" replay d-none --from-step validate --dry-run -o json)
assert_json "$none" '.steps[] | select(.step == "precheck") | .fails.code == "MeshNotFound"' 
assert_eq "$before" "$(cs_get /admin/mutations | jq -S .)" "dry-run made a mutating cloud call"
assert_eq "$hist_before" "$("$MC" show d-1 -o json --no-events | jq -S '.job | del(.age_ms)')" \
    "dry-run changed the job"

# a delete does not undo: rollback refused; replay from where it stopped finishes it
rc=0; "$MC" rollback d-1 2>"$TEST_TMP/err" || rc=$?
assert_eq 1 "$rc" "rollback of a delete"
assert_contains "$(cat "$TEST_TMP/err")" "does not undo"
"$MC" replay d-1 --reason "release DELETE fixed" >"$TEST_TMP/out"
assert_contains "$(cat "$TEST_TMP/out")" "from uninstall_release"
rc=0; "$MC" watch d-1 --timeout 120 >"$TEST_TMP/watch" 2>&1 || rc=$?
assert_eq 0 "$rc" "watch ends 0 on Deleted: $(cat "$TEST_TMP/watch")"
assert_contains "$(cat "$TEST_TMP/watch")" "Deleted"
assert_json "$("$MC" show d-1 -o json --no-events)" '.job.status == "Deleted"'
assert_contains "$("$MC" show d-1 --no-events)" "replay from uninstall_release by"
assert_json "$("$MC" jobs --status deleted -o json)" 'map(.order_id) == ["d-1"]'
rc=0; "$MC" replay d-1 2>/dev/null || rc=$?; assert_eq 1 "$rc" "replay of a Deleted job"
note "ok"
