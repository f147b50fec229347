#!/usr/bin/env bash
# test_meshctl_dlq: an order the worker rejects lands in the DLQ; meshctl dlq list/show find
# it with its reason and bytes; redriving it unchanged is refused; redriving a corrected order
# (--edit) makes the worker accept it under the same order id, and the redrive is recorded.
. "${MB_ROOT:-.}/tests/lib.sh"

stack_up --cloudsim "$MB_ROOT/ops/cloudsim/scenarios/basic.json"
MC="$MB_BIN/meshctl"
export MESHBUY_LOG_LEVEL=error
MESHBUY_HTTP_PORT=0 MESHBUY_LOG_LEVEL=info mb_start worker "$MB_BIN/meshworker"

data='{"order_id":"ord-dlq-1","account_id":"acct-d","project_id":"proj-a","region":"r1",
 "mesh":{"name":"mesh-dlq","edition":"basic","istio_version":"1.99","cluster_id":"c-good",
 "control_plane_nodes":["n-good-1"]}}'
bad=$(jq -cn --argjson d "$data" '{specversion:"1.0", id:"ev-dlq-1", source:"billing",
  type:"com.meshbuy.order.buy.v1", time:"2024-05-01T12:00:00Z",
  datacontenttype:"application/json", data:$d}')
kcat_produce mesh.orders acct-d/mesh-dlq "$bad"

dlq_count() { [ "$("$MC" dlq list --json | jq length)" -ge 1 ]; }
wait_for 30 dlq_count
list=$("$MC" dlq list --json)
id=$(json_get "$list" '.[0].id')
assert_json "$list" '.[0].order_id == "ord-dlq-1" and (.[0].reason | test("istio_version"))'
out=$("$MC" dlq list)
assert_contains "$out" "$id"
assert_contains "$out" "acct-d/mesh-dlq"
show=$("$MC" dlq show "$id" --json)
assert_json "$show" '.message | fromjson | .data.mesh.istio_version == "1.99"'
rc=0; "$MC" dlq show 0-0 2>/dev/null || rc=$?; assert_eq 4 "$rc" "unknown DLQ record"

# unchanged bytes still do not parse: refused, nothing sent
rc=0; "$MC" dlq redrive "$id" 2>"$TEST_TMP/err" || rc=$?
assert_eq 1 "$rc" "redrive of bytes that do not parse"
assert_contains "$(cat "$TEST_TMP/err")" "--edit FILE"

# a corrected order that is still invalid is refused too
echo "$data" | jq '.mesh.name = "Bad_Name"' >"$TEST_TMP/worse.json"
rc=0; "$MC" dlq redrive "$id" --edit "$TEST_TMP/worse.json" 2>/dev/null || rc=$?
assert_eq 1 "$rc" "redrive of an invalid correction"

# a correction must not make another order: order id, account, project kept (unless --force)
for edit in '.order_id = "ord-other"' '.account_id = "acct-x"' '.project_id = "proj-x"'; do
    echo "$data" | jq ".mesh.istio_version = \"1.18\" | $edit" >"$TEST_TMP/other.json"
    rc=0; "$MC" dlq redrive "$id" --edit "$TEST_TMP/other.json" 2>"$TEST_TMP/err" || rc=$?
    assert_eq 1 "$rc" "redrive changing identity ($edit)"
    assert_contains "$(cat "$TEST_TMP/err")" "the correction changes"
    assert_contains "$(cat "$TEST_TMP/err")" "--force"
done
assert_contains "$(cat "$TEST_TMP/err")" "project proj-a -> proj-x"

# corrected: data only, wrapped in a fresh envelope; same order id
echo "$data" | jq '.mesh.istio_version = "1.18"' >"$TEST_TMP/fixed.json"
"$MC" dlq redrive "$id" --edit "$TEST_TMP/fixed.json" >"$TEST_TMP/out"
assert_contains "$(cat "$TEST_TMP/out")" "as order ord-dlq-1"
accepted() {
    "$MC" show ord-dlq-1 --json --no-events |
        jq -e '.order.data.mesh.istio_version == "1.18" and .job.status != "Failed"'
}
wait_for 30 accepted
assert_contains "$("$MC" show ord-dlq-1 --no-events)" "DLQ record $id redriven (corrected order) by"
out=$("$MC" dlq list)
assert_contains "$out" "redriven by ${USER:-$(id -un)}@"
assert_json "$("$MC" dlq list --json)" '.[0].redriven.edited == true and .[0].redriven.order_id == "ord-dlq-1"'
# one shape per object: numbers as numbers, RFC 3339 beside epoch ms, null for absent
need_py jsonschema
list=$("$MC" dlq list -o json)
printf '%s' "$list" | /usr/bin/python3 -c '
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
items = json.load(sys.stdin)
assert items, "no DLQ records"
for r in items:
    jsonschema.validate(r, schema)' "$MB_ROOT/schemas/meshctl-dlq-record.schema.json" ||
    fail "dlq list -o json does not match schemas/meshctl-dlq-record.schema.json"
"$MC" dlq show "$id" --output=json | /usr/bin/python3 -c '
import json, sys, jsonschema
jsonschema.validate(json.load(sys.stdin), json.load(open(sys.argv[1])))' \
    "$MB_ROOT/schemas/meshctl-dlq-record.schema.json" || fail "dlq show -o json against the schema"
assert_json "$list" '.[0].partition | type == "number"'
assert_eq "$id" "$("$MC" dlq list -o name | head -1)" "dlq list -o name"
assert_eq "$(json_get "$list" '.[0].reason')" "$("$MC" dlq list -o yaml | /usr/bin/python3 -c '
import sys, yaml; print(yaml.safe_load(sys.stdin)[0]["reason"])')" "dlq list -o yaml"
assert_not_contains "$("$MC" dlq list --no-headers)" "POSITION"

note "ok"
