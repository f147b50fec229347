#!/usr/bin/env bash
# test_intake.sh: meshworker intake end to end against devkafka + redis: an order becomes an
# Accepted status event (seq 1); redelivery joins; a name conflict fails; garbage goes to the
# DLQ with reasons while a valid order behind it is accepted; a worker SIGKILLed holding a
# consumed-not-accepted order loses nothing; SIGTERM drains and exits 0 within the bound.
. "$MB_ROOT/tests/lib.sh"

need_bin meshworker meshbuy devkafka
need_tool jq

stack_up
T=$TEST_TMP
# Intake alone: accepted jobs must stay Accepted for the assertions below.
export MESHBUY_RUN_SAGAS=false
export MESHBUY_DRAIN_MS=5000 MESHBUY_LEASE_MS=5000 MESHBUY_LOG_LEVEL=info

PORT=""
start_worker() { # name
    PORT=$(free_port)
    MESHBUY_HTTP_PORT=$PORT MESHBUY_WORKER_ID=$1 mb_start "$1" "$MB_BIN/meshworker"
    wait_for 30 curl -sf "http://127.0.0.1:$PORT/readyz"
}
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
buy() { # order-id account name [extra meshbuy args]
    local id=$1 acct=$2 name=$3
    shift 3
    "$MB_BIN/meshbuy" --order-id "$id" --account "$acct" --project p1 --region r1 \
        --name "$name" --istio 1.18 --cluster c1 --node n1 "$@" >/dev/null ||
        fail "meshbuy could not publish $id"
}
order_json() { # order-id account name -> a valid order message on stdout
    "$MB_BIN/meshbuy" --dry-run --order-id "$1" --account "$2" --project p1 --region r1 \
        --name "$3" --istio 1.18 --cluster c1 --node n1 | tail -n 1
}
# All status events so far (expects exactly N), one JSON value per line.
status_events() { # N
    kcat_consume mesh.status "$1" 20 | jq -c '{key: .key, h: .headers, e: (.payload | fromjson)}'
}

start_worker w1

# ---- 1. an order becomes Accepted, seq 1, keyed by account/mesh, traceparent header
buy ord-a acct1 mesh-one --traceparent 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
ev=$(status_events 1)
assert_json "$ev" '.key == "acct1/mesh-one"'
assert_json "$ev" '.e.data.status == "Accepted" and .e.data.seq == 1 and .e.data.order_id == "ord-a"'
assert_json "$ev" '.e.id == "acct1/mesh-one#1"'
assert_json "$ev" '.h | index("traceparent") != null'
assert_contains "$ev" "4bf92f3577b34da6a3ce929d0e0e4736"
echo "$ev" | jq '.e' >"$T/ev1.json"
if [ -f "$MB_ROOT/schemas/mesh-status.schema.json" ]; then
    validate_schema "$MB_ROOT/schemas/mesh-status.schema.json" "$T/ev1.json"
fi

# ---- 2. the same order three times: one job, one Accepted
buy ord-a acct1 mesh-one
buy ord-a acct1 mesh-one
wait_for 20 metric_ge meshbuy_orders_duplicate_total 2

# ---- 3. a second order for the same name: Failed NameConflict, seq 2 of the key
buy ord-b acct1 mesh-one
wait_for 20 metric_ge meshbuy_orders_conflict_total 1
wait_for 20 metric_ge meshbuy_events_relayed_total 2
wait_for 20 outbox_empty
evs=$(status_events 2)
assert_eq 1 "$(echo "$evs" | jq -s '[.[] | select(.e.data.order_id == "ord-a")] | length')" \
    "one event for ord-a after three deliveries"
c=$(echo "$evs" | jq -c 'select(.e.data.order_id == "ord-b")')
assert_json "$c" '.e.data.status == "Failed" and .e.data.error.code == "NameConflict"'
assert_json "$c" '.e.data.seq == 2 and .key == "acct1/mesh-one"'
assert_eq "Accepted" "$(redis_cli HGET "mb:{s$(redis_cli GET mb:order:ord-a)}:job:ord-a" status)"

# ---- 4. ten kinds of garbage land in the DLQ with a reason; the valid order behind is taken
good=$(order_json ord-g1 acct2 mesh-two)
g() { kcat_produce mesh.orders "acct2/garbage" "$1"; }
g 'this is not JSON {'
# a line with only a key: a message whose value is empty
printf 'acct2/garbage;\n' | kcat -P -b "$KAFKA_BROKERS" -t mesh.orders -K ';' -q ||
    fail "could not produce the empty message"
head -c 70000 /dev/zero | tr '\0' 'x' >"$T/big"
kcat -P -b "$KAFKA_BROKERS" -t mesh.orders -k acct2/garbage -q "$T/big" ||
    fail "could not produce the oversized message"
g '[1,2,3]'
g "$(order_json ord-g2 acct2 mesh-g2 | jq -c '.specversion = "0.3"')"
g "$(order_json ord-g3 acct2 mesh-g3 | jq -c '.type = "com.meshbuy.order.sell.v1"')"
g "$(order_json ord-g4 acct2 mesh-g4 | jq -c '.data.colour = "blue"')"
g "$(order_json ord-g5 acct2 mesh-g5 | jq -c '.data.mesh.name = "Mesh_Five"')"
g "$(order_json ord-g6 acct2 mesh-g6 | jq -c '.data.mesh.istio_version = "1.99"')"
g "$(order_json ord-g7 acct2 mesh-g7 | jq -c '.data.mesh.control_plane_nodes = "n1"')"
kcat_produce mesh.orders acct2/mesh-two "$good"
dlq=$(kcat_consume mesh.orders.dlq 10 30)
assert_eq 10 "$(echo "$dlq" | grep -c .)" "ten DLQ messages"
# every one says why and where it came from
assert_eq 10 "$(echo "$dlq" | jq -s '[.[] | select((.headers | index("meshbuy-reason")) and
    (.headers | index("meshbuy-origin-topic")) and (.headers | index("meshbuy-origin-offset")))]
    | length')" "DLQ headers"
assert_contains "$(echo "$dlq" | jq -r '.headers | tostring')" "too large"
assert_eq 0 "$(echo "$dlq" | jq -s '[.[] | select(.key != "acct2/garbage")] | length')" \
    "DLQ keeps the key"
wait_for 20 metric_ge meshbuy_orders_accepted_total 2
assert_eq "Accepted" "$(redis_cli HGET "mb:{s$(redis_cli GET mb:order:ord-g1)}:job:ord-g1" status)"
# an invalid order whose identity was readable is reported Failed on its own key
wait_for 20 outbox_empty
n=$(metric meshbuy_events_relayed_total)
evs=$(status_events "${n%.*}")
f5=$(echo "$evs" | jq -c 'select(.e.data.order_id == "ord-g4")')
assert_json "$f5" '.e.data.status == "Failed" and .e.data.error.code == "InvalidOrder"'
assert_json "$f5" '.e.data.seq == 1 and .key == "acct2/mesh-g4"'
assert_eq 10 "$(redis_cli XLEN mb:dlq)" "DLQ records for meshctl"
mb_alive w1 || fail "worker died on bad input"

# ---- 5. SIGKILL while holding a consumed, not yet accepted order: nothing lost
rpid=$(redis_cli INFO server | tr -d '\r' | awk -F: '$1 == "process_id" { print $2 }')
[ -n "$rpid" ] || fail "no redis pid"
kill -STOP "$rpid"
on_exit "kill -CONT $rpid 2>/dev/null || true"
buy ord-c acct3 mesh-three
wait_for 30 grep -q 'holding [0-9]* message' "$T/w1.log"
mb_stop w1 KILL 5 || true
kill -CONT "$rpid"
start_worker w2
wait_for 30 sh -c "[ \"\$(redis-cli -s '${REDIS_URL#unix://}' GET mb:order:ord-c)\" != '' ]"
wait_for 20 outbox_empty
n=$(metric meshbuy_events_relayed_total)
total=$(redis_cli GET 'mb:meta:shards' >/dev/null; kcat -C -b "$KAFKA_BROKERS" -t mesh.status \
    -o beginning -e -q -J 2>/dev/null | grep -c .)
evs=$(status_events "$total")
assert_eq 1 "$(echo "$evs" | jq -s '[.[] | select(.e.data.order_id == "ord-c" and
    .e.data.status == "Accepted")] | length')" "ord-c accepted exactly once"

# ---- 6. SIGTERM drains and exits 0 within the bound
start=$(date +%s%N)
rc=0
mb_stop w2 TERM 8 || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
assert_eq 0 "$rc" "exit status after SIGTERM"
[ "$ms" -le 6000 ] || fail "drain took ${ms} ms (bound 5000)"
grep -q '"drained"\|drain bound' "$T/w2.log" || fail "no drain in the log"
note "ok (drain ${ms} ms)"
