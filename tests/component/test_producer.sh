#!/usr/bin/env bash
# test_producer.sh: meshbuy publishes valid orders (flags, --file, stdin, --cancel) to mesh.orders
# with key <account>/<mesh>, a schema-valid CloudEvent and a traceparent header; refuses invalid
# ones without sending anything (exit 2); reports config errors (3) and undeliverable orders (1).
. "$MB_ROOT/tests/lib.sh"

MESHBUY="$MB_BIN/meshbuy"
[ -x "$MESHBUY" ] || fail "no $MESHBUY (build first)"
[ -x "$MB_BIN/devkafka" ] || fail "no $MB_BIN/devkafka (build first)"

TP=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
TOPIC=${MESHBUY_ORDERS_TOPIC:-mesh.orders}

# rc CMD...: run CMD, print its exit status (never trips set -e)
rc() { local r=0; "$@" || r=$?; echo "$r"; }

# All messages on a topic right now, one kcat JSON envelope per line (ends at the end of
# every partition, so a count is exact).
topic_dump() {
    timeout --kill-after=2 20 kcat -C -b "$KAFKA_BROKERS" -t "$1" -o beginning -e -J -q 2>/dev/null || true
}

# --- without a broker: help, usage, validation, config ------------------------------------------
help=$("$MESHBUY" --help)
for want in KAFKA_BROKERS MESHBUY_ORDERS_TOPIC "KAFKA_<X>" "exit codes" "  3  configuration"; do
    assert_contains "$help" "$want" "--help mentions $want"
done
assert_eq 2 "$(rc "$MESHBUY" --bogus 2>/dev/null)" "unknown option"
assert_eq 2 "$(rc "$MESHBUY" --account a 2>/dev/null)" "missing flags"
assert_eq 2 "$(rc "$MESHBUY" --file x --account a 2>/dev/null)" "--file with flags"
assert_eq 3 "$(rc env -u KAFKA_BROKERS "$MESHBUY" --account acc-1 --project p1 --region eu-de-01 \
    --name shop-mesh --istio 1.18 --cluster c1 --node n1 2>/dev/null)" "no KAFKA_BROKERS"
assert_eq 3 "$(rc env MESHBUY_NO_SUCH_SETTING=1 "$MESHBUY" --check 2>/dev/null)" "unknown MESHBUY_ key"

dry=$("$MESHBUY" --dry-run --account acc-1 --project p1 --region eu-de-01 --name shop-mesh \
    --istio 1.18 --cluster c1 --node n1 --order-id ord-dry)
assert_eq "acc-1/shop-mesh" "$(head -1 <<<"$dry")" "dry-run key"
tail -n +2 <<<"$dry" >"$TEST_TMP/dry.json"
validate_schema "$MB_ROOT/schemas/order-buy.schema.json" "$TEST_TMP/dry.json"

stack_up
note "kafka at $KAFKA_BROKERS"

# --- a buy order from flags ----------------------------------------------------------------------
out=$("$MESHBUY" --account acc-1 --project proj-1 --region eu-de-01 --name shop-mesh --istio 1.18 \
    --cluster c-1 --node node-a --node node-b --namespace default --namespace shop --restart \
    --order-id ord-flags-1 --traceparent "$TP" --timeout 20)
assert_eq "ord-flags-1" "$out" "prints the order id"

msg=$(kcat_consume "$TOPIC" 1 30)
assert_eq "acc-1/shop-mesh" "$(json_get "$msg" .key)" "key"
json_get "$msg" .payload >"$TEST_TMP/buy.json"
validate_schema "$MB_ROOT/schemas/order-buy.schema.json" "$TEST_TMP/buy.json"
p=$(cat "$TEST_TMP/buy.json")
assert_json "$p" '.type == "com.meshbuy.order.buy.v1" and .specversion == "1.0"'
assert_json "$p" '.source == "meshbuy-cli" and .subject == "acc-1/shop-mesh"'
assert_json "$p" ".traceparent == \"$TP\""
assert_json "$p" '.data.order_id == "ord-flags-1" and .data.account_id == "acc-1"'
assert_json "$p" '.data.mesh.control_plane_nodes == ["node-a","node-b"]'
assert_json "$p" '.data.mesh.sidecar == {"namespaces":["default","shop"],"restart_existing":true}'
assert_json "$p" '.data.mesh.istio_version == "1.18" and .data.mesh.edition == "basic"'
# the traceparent header (kcat -J: headers are [name, value, ...])
assert_json "$msg" ".headers | index(\"traceparent\") as \$i | .[\$i+1] == \"$TP\"" "traceparent header"
"$MESHBUY" --validate "$TEST_TMP/buy.json" >/dev/null || fail "published bytes do not validate"

# --- invalid orders send nothing -------------------------------------------------------------------
before=$(topic_dump "$TOPIC" | grep -c . || true)
assert_eq 1 "$before" "one message so far"
err=$("$MESHBUY" --account acc-1 --project proj-1 --region eu-de-01 --name shop-mesh- \
    --istio 1.18 --cluster c-1 --node n1 2>&1 >/dev/null) && fail "invalid name accepted"
assert_contains "$err" "data.mesh.name: must end with a letter or digit"
assert_eq 2 "$(rc "$MESHBUY" --account acc-1 --project proj-1 --region eu-de-01 --name shop-mesh \
    --istio 1.19 --cluster c-1 --node n1 2>/dev/null)" "unknown istio version"
assert_eq 2 "$(rc "$MESHBUY" --account acc-1 --project proj-1 --region eu-de-01 --name shop-mesh \
    --istio 1.18 --cluster c-1 --node n1 --namespace kube-system 2>/dev/null)" "kube-system"
assert_eq 2 "$(rc "$MESHBUY" --account acc-1 --project proj-1 --region eu-de-01 --name shop-mesh \
    --istio 1.18 --cluster c-1 --node n1 --node n1 2>/dev/null)" "duplicate nodes"
assert_eq 2 "$(rc "$MESHBUY" --file "$MB_ROOT/tests/fixtures/order/invalid/buy-unknown-field-mesh.json" 2>/dev/null)" \
    "invalid file"
assert_eq 2 "$(rc "$MESHBUY" --traceparent 00-bad --account acc-1 --project proj-1 --region eu-de-01 \
    --name shop-mesh --istio 1.18 --cluster c-1 --node n1 2>/dev/null)" "bad traceparent"

# --- --file (whole envelope), --file - (data only, wrapped), --cancel ------------------------------
out=$("$MESHBUY" --file "$MB_ROOT/tests/fixtures/order/valid/buy-full.json")
assert_eq "ord-20240501-0001" "$out" "--file envelope"
jq '.data | .order_id = "ord-stdin-1" | .mesh.name = "other-mesh"' \
    "$MB_ROOT/tests/fixtures/order/valid/buy-no-sidecar.json" >"$TEST_TMP/data.json"
out=$("$MESHBUY" --file - <"$TEST_TMP/data.json")
assert_eq "ord-stdin-1" "$out" "--file - with data only"
out=$("$MESHBUY" --cancel ord-flags-1 --account acc-1 --name shop-mesh --reason "changed mind")
assert_eq "ord-flags-1" "$out" "--cancel"
gen=$("$MESHBUY" --account acc-2 --project proj-1 --region eu-de-01 --name gen-mesh --istio 1.8 \
    --cluster c-1 --node n1)
[[ "$gen" =~ ^ord-[0-9a-f]{32}$ ]] || fail "generated order id looks wrong: $gen"

all=$(topic_dump "$TOPIC")
assert_eq 5 "$(grep -c . <<<"$all")" "exactly the five valid orders were sent"
by_id() { jq -c --arg id "$1" 'select((.payload | fromjson | .data.order_id) == $id)' <<<"$all"; }
m=$(by_id ord-20240501-0001)
assert_eq "0a1b2c3d4e5f60718293a4b5c6d7e8f9/shop-mesh" "$(json_get "$m" .key)" "--file key"
assert_json "$m" '.payload | fromjson | .id == "ce-7f1c0a7e2b5d4c3a9e8f"' "envelope kept as given"
m=$(by_id ord-stdin-1)
assert_eq "0a1b2c3d4e5f60718293a4b5c6d7e8f9/other-mesh" "$(json_get "$m" .key)" "stdin key"
assert_json "$m" '.payload | fromjson | .type == "com.meshbuy.order.buy.v1" and (.traceparent | test("^00-[0-9a-f]{32}-[0-9a-f]{16}-01$"))'
assert_json "$m" '.headers | index("traceparent") != null' "fresh traceparent header"
m=$(jq -c 'select((.payload | fromjson | .type) == "com.meshbuy.order.cancel.v1")' <<<"$all")
assert_eq "acc-1/shop-mesh" "$(json_get "$m" .key)" "cancel key"
json_get "$m" .payload >"$TEST_TMP/cancel.json"
validate_schema "$MB_ROOT/schemas/order-cancel.schema.json" "$TEST_TMP/cancel.json"
assert_json "$(cat "$TEST_TMP/cancel.json")" '.data == {"order_id":"ord-flags-1","account_id":"acc-1","mesh_name":"shop-mesh","reason":"changed mind"}'

# --- topic from the environment ---------------------------------------------------------------------
MESHBUY_ORDERS_TOPIC=orders.alt "$MESHBUY" --account acc-1 --project proj-1 --region eu-de-01 \
    --name alt-mesh --istio 1.15 --cluster c-1 --node n1 --order-id ord-alt >/dev/null
msg=$(kcat_consume orders.alt 1 30)
assert_eq "acc-1/alt-mesh" "$(json_get "$msg" .key)" "MESHBUY_ORDERS_TOPIC"

# --- delivery failure: nothing listens there; bounded by --timeout -------------------------------
port=$(free_port)
start=$(date +%s)
code=$(rc env KAFKA_BROKERS="127.0.0.1:$port" "$MESHBUY" --timeout 2 --account acc-1 --project p \
    --region eu-de-01 --name dead-mesh --istio 1.18 --cluster c-1 --node n1 2>"$TEST_TMP/dead.err")
assert_eq 1 "$code" "undeliverable order"
[ $(($(date +%s) - start)) -le 12 ] || fail "--timeout 2 took $(($(date +%s) - start)) s"
assert_eq 3 "$(rc env KAFKA_NO_SUCH_PROPERTY=1 "$MESHBUY" --account acc-1 --project p --region r1 \
    --name some-mesh --istio 1.18 --cluster c-1 --node n1 2>/dev/null)" "bad KAFKA_ property"
note "producer ok"
