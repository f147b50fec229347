#!/usr/bin/env bash
# test_cloudevents.sh: orders as CloudEvents producers send them, per the Kafka protocol binding,
# against one meshworker + devkafka + redis + cloudsim:
#   binary      kcat with ce_ headers and content-type application/json, data alone as the
#               value, no traceparent: reaches Running; its status events carry no traceparent
#               header (never an empty one)
#   structured  content-type with a charset, dataschema, subject, a partitionkey extension,
#               datacontenttype with parameters and no time: reaches Running
#   meshbuy     `meshbuy --binary`: reaches Running
#   bad-data    binary mode with an unknown data field: Failed InvalidOrder (with mesh_id), DLQ
#   plain       a whole structured event with no header at all (plain kcat): reaches Running
#   not-ce      a JSON order without content-type or ce_ headers: DLQ "not a CloudEvent"
# Every status event of the suite, Accepted included, validates against the status schema and
# carries the mesh_id "mesh-" + 16 hex of SHA-256("<key>#<order_id>").
# (The CloudEvents JavaScript SDK's own messages: test_cloudevents_sdk.sh.)
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

saga_stack_up
saga_worker w1

# data OID ACCOUNT MESH CLUSTER NODE: a buy order's data object.
data() {
    jq -cn --arg o "$1" --arg a "$2" --arg m "$3" --arg c "$4" --arg n "$5" \
        --arg r "$SAGA_REGION" '{order_id: $o, account_id: $a, project_id: "proj-a",
        region: $r, mesh: {name: $m, edition: "basic", istio_version: "1.18",
        cluster_id: $c, control_plane_nodes: [$n]}}'
}

# ---- binary content mode with kcat headers
kcat_produce mesh.orders acct-bin/bin-mesh "$(data o-bin acct-bin bin-mesh c-single n-single-1)" \
    ce_specversion=1.0 ce_id=ce-bin-1 ce_source=billing/test \
    ce_type=com.meshbuy.order.buy.v1 content-type=application/json

# ---- structured content mode with optional attributes and an extension
st=$(jq -cn --argjson d "$(data o-st acct-st st-mesh c-open n-open-1)" '{specversion: "1.0",
    id: "ce-st-1", source: "billing/test", type: "com.meshbuy.order.buy.v1",
    datacontenttype: "application/json; charset=utf-8",
    dataschema: "https://meshbuy.example/schemas/order-buy.schema.json",
    subject: "acct-st/st-mesh", partitionkey: "acct-st/st-mesh", data: $d}')
kcat_produce mesh.orders acct-st/st-mesh "$st" \
    "content-type=application/cloudevents+json; charset=utf-8"

# ---- meshbuy --binary
saga_buy o-mb acct-mb mb-mesh proj-a c-dup --node n-dup-1 --binary
"$MB_BIN/meshbuy" --binary --dry-run --order-id o-x --account a --project p --region r1 \
    --name mesh-x --istio 1.18 --cluster c --node n >/dev/null || fail "meshbuy --binary --dry-run"

# ---- a whole structured event with no header at all, as plain producers send it
plain=$(jq -cn --argjson d "$(data o-plain acct-plain plain-mesh c-happy n-happy-1)" '{
    specversion: "1.0", id: "ce-plain-1", source: "billing/test",
    type: "com.meshbuy.order.buy.v1", data: $d}')
printf '%s' "$plain" >"$TEST_TMP/plain.json"
kcat -P -b "$KAFKA_BROKERS" -t mesh.orders -k acct-plain/plain-mesh -q "$TEST_TMP/plain.json" ||
    fail "could not produce the header-less event"

# ---- refused: an unknown data field in binary mode, and no CloudEvent at all
bad=$(data o-bad acct-bad bad-mesh c-rebuy n-rebuy-1 | jq -c '.colour = "blue"')
kcat_produce mesh.orders acct-bad/bad-mesh "$bad" ce_specversion=1.0 ce_id=ce-bad-1 \
    ce_source=billing/test ce_type=com.meshbuy.order.buy.v1
printf '%s' "$(data o-nce acct-nce nce-mesh c-other n-other-1)" >"$TEST_TMP/nce.json"
kcat -P -b "$KAFKA_BROKERS" -t mesh.orders -k acct-nce/nce-mesh -q "$TEST_TMP/nce.json" ||
    fail "could not produce the plain JSON message"

saga_wait_all 180 acct-bin/bin-mesh:o-bin acct-st/st-mesh:o-st acct-mb/mb-mesh:o-mb \
    acct-bad/bad-mesh:o-bad acct-plain/plain-mesh:o-plain
saga_check_order acct-bin/bin-mesh o-bin Running >/dev/null
saga_check_order acct-st/st-mesh o-st Running >/dev/null
saga_check_order acct-mb/mb-mesh o-mb Running >/dev/null
saga_check_order acct-plain/plain-mesh o-plain Running >/dev/null
assert_eq Failed "$(saga_terminal acct-bad/bad-mesh o-bad)" "unknown data field in binary mode"
f=$(saga_stream acct-bad/bad-mesh | tail -n 1)
assert_json "$f" '.data.error.code == "InvalidOrder" and
    (.data.error.message | contains("unknown field '"'"'colour'"'"'"))'

dlq=$(kcat_consume mesh.orders.dlq 2 60)
reasons=$(printf '%s\n' "$dlq" | jq -r '.headers as $h | [range(0; $h | length; 2) |
    select($h[.] == "meshbuy-reason") | $h[. + 1]] | .[]')
assert_contains "$reasons" "not a CloudEvent"
assert_contains "$reasons" "data: unknown field 'colour'"
assert_eq 0 "$(redis_cli EXISTS mb:order:o-nce)" "the plain JSON order was not accepted"

# ---- every event: the schema, and the mesh_id every part of the worker computes alike
saga_validate_all
for ko in acct-bin/bin-mesh:o-bin acct-st/st-mesh:o-st acct-mb/mb-mesh:o-mb \
    acct-bad/bad-mesh:o-bad; do
    key=${ko%%:*} oid=${ko#*:}
    want="mesh-$(printf '%s#%s' "$key" "$oid" | sha256sum | cut -c1-16)"
    evs=$(saga_stream "$key")
    assert_eq "$want" "$(printf '%s\n' "$evs" | jq -r .data.mesh_id | sort -u | tr '\n' ' ' |
        sed 's/ $//')" "$key: one mesh_id on every event, Accepted included"
    assert_eq 0 "$(printf '%s\n' "$evs" | jq -s '[.[] | .data | select((has("cluster_id") |
        not) and .status != "Failed")] | length')" "$key: cluster_id on every event"
done

# ---- headers of the status events: never empty; a traceparent only when the order had one
hdrs=$(jq -R -c 'fromjson? | select(.key == "acct-bin/bin-mesh") | .headers' "$SAGA_STATUS")
[ -n "$hdrs" ] || fail "no status events of acct-bin/bin-mesh in the tail"
assert_eq 0 "$(printf '%s\n' "$hdrs" | jq -s '[.[] | . as $h | range(1; $h | length; 2) |
    select($h[.] == "" or $h[.] == null)] | length')" "no empty header"
assert_eq 0 "$(printf '%s\n' "$hdrs" | jq -s '[.[] | . as $h | range(0; $h | length; 2) |
    select($h[.] == "traceparent")] | length')" "no traceparent header for an order without one"
tp=$(jq -R -c 'fromjson? | select(.key == "acct-mb/mb-mesh") | .headers as $h |
    [range(0; $h | length; 2) | select($h[.] == "traceparent") | $h[. + 1]] | .[]' \
    "$SAGA_STATUS" | sort -u)
assert_eq 1 "$(printf '%s\n' "$tp" | grep -c '^"00-')" "meshbuy's traceparent on its events"
# ---- the build's version on /metrics, as --version prints it
v=$("$MB_BIN/meshworker" --version | cut -d' ' -f2)
assert_contains "$(curl -sf --max-time 5 "http://127.0.0.1:$(cat "$TEST_TMP/w1.port")/metrics")" \
    "meshbuy_build_info{version=\"$v\"} 1" "meshbuy_build_info on /metrics"
note "binary, structured and meshbuy --binary orders Running; refusals in the DLQ"
