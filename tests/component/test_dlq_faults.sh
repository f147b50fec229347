#!/usr/bin/env bash
# test_dlq_faults.sh: intake never wedges on a DLQ copy the producer refuses for good.
#  1. a DLQ copy larger than the producer's message.max.bytes (KAFKA_MESSAGE_MAX_BYTES=20000,
#     a 30,000-byte garbage message);
#  2. a DLQ topic that does not exist (the broker answers UNKNOWN_TOPIC_OR_PART).
# (Not authorized is classed the same way, see mb_kafka_err_is_permanent; the mock broker
# cannot refuse a topic's metadata the way a real one does, so it is not run here.)
# Each time: a valid order behind it on the same partition (same key) is accepted, nothing
# stays pending (the offset moved on, so a restarted worker does not see it again), the
# refusal is recorded in Redis (mb:dlq, dlq=undeliverable, with origin, key and reason),
# meshbuy_dlq_undeliverable_total counts it, and the log says so once, not once per retry.
# shellcheck source=tests/lib.sh disable=SC2119
. "$MB_ROOT/tests/lib.sh"

for b in meshworker meshbuy devkafka; do
    [ -x "$MB_BIN/$b" ] || skip "$b not built in $MB_BIN"
done
command -v jq >/dev/null || skip "jq missing"

stack_up
T=$TEST_TMP
export MESHBUY_RUN_SAGAS=false MESHBUY_LOG_LEVEL=info MESHBUY_DRAIN_MS=5000

PORT=""
start_worker() { # name [VAR=value...]
    local name=$1
    shift
    PORT=$(free_port)
    mb_start "$name" env "$@" MESHBUY_HTTP_PORT="$PORT" MESHBUY_WORKER_ID="$name" \
        "$MB_BIN/meshworker"
    wait_for 30 curl -sf "http://127.0.0.1:$PORT/readyz"
}
metric() { mb_metric "$PORT" "$1"; } # name -> value (0 when absent)
metric_eq() { # name value
    local v
    v=$(metric "$1") || return 1
    [ "${v%.*}" = "$2" ]
}
accepted() { # order-id
    [ "$(redis_cli HGET "mb:{s$(redis_cli GET "mb:order:$1")}:job:$1" status)" = Accepted ]
}
buy() { # order-id account name
    "$MB_BIN/meshbuy" --order-id "$1" --account "$2" --project p1 --region r1 --name "$3" \
        --istio 1.18 --cluster c1 --node n1 >/dev/null || fail "meshbuy could not publish $1"
}
# The newest mb:dlq record as a JSON object of its fields.
last_dlq_record() {
    redis_cli XREVRANGE mb:dlq + - COUNT 1 | tail -n +2 | jq -R . | jq -s '
        [range(0; length; 2) as $i | {(.[$i]): .[$i + 1]}] | add'
}
# One garbage message (SIZE bytes, or "not JSON {") under KEY, then a valid order under the
# same key: same partition.  Checks everything listed at the top.  Args: case-name worker
# key-account mesh size expect-dlq-error-substring
garbage_then_order() {
    local name=$1 w=$2 acct=$3 mesh=$4 size=$5 want=$6 rec off n
    if [ "$size" -gt 0 ]; then
        head -c "$size" /dev/zero | tr '\0' 'x' >"$T/big.$name"
        kcat -P -b "$KAFKA_BROKERS" -t mesh.orders -k "$acct/$mesh" -X message.max.bytes=2000000 \
            -q "$T/big.$name" || fail "$name: could not produce the large message"
    else
        kcat_produce mesh.orders "$acct/$mesh" 'not JSON {'
    fi
    buy "ord-$name" "$acct" "$mesh"
    wait_for 60 accepted "ord-$name"
    wait_for 30 metric_eq meshbuy_dlq_undeliverable_total 1
    wait_for 30 metric_eq meshbuy_intake_pending 0
    rec=$(last_dlq_record)
    assert_json "$rec" '.dlq == "undeliverable" and .topic == "mesh.orders"' "$name: record"
    assert_eq "$acct/$mesh" "$(json_get "$rec" .key)" "$name: record key"
    assert_contains "$(json_get "$rec" .dlq_error)" "$want" "$name: record says why"
    assert_ne "" "$(json_get "$rec" '.reason // ""')" "$name: the record keeps the reason"
    [ "$(json_get "$rec" .offset)" -ge 0 ] || fail "$name: no origin offset"
    off=$(json_get "$rec" .offset)
    n=$(grep -c "undeliverable to .*@$off\|@$off (key $acct/$mesh.*undeliverable" "$T/$w.log" || true)
    assert_eq 1 "$n" "$name: error lines for the message"
    n=$(grep -c "DLQ copy of mesh.orders \[[0-9]*\] @$off" "$T/$w.log" || true)
    [ "$n" -le 2 ] || fail "$name: $n log lines for one refused DLQ copy"
    note "$name: ok (offset $off)"
}

# ---- 1. the DLQ copy is over the producer's message.max.bytes
start_worker w1 KAFKA_MESSAGE_MAX_BYTES=20000
garbage_then_order size w1 acct9 mesh-size 30000 "too large"
assert_eq 0 "$(metric meshbuy_orders_dlq_total)" "nothing was delivered to the DLQ topic"
mb_stop w1 TERM 10 || fail "w1 did not drain"
# The offset was committed past it: a new worker does not see that message again.
start_worker w1b KAFKA_MESSAGE_MAX_BYTES=20000
buy ord-after acct9 mesh-after
wait_for 60 accepted ord-after
assert_eq 0 "$(metric meshbuy_dlq_undeliverable_total)" "the refused message came back"
mb_stop w1b TERM 10 || fail "w1b did not drain"

# ---- 2. the DLQ topic does not exist: the broker answers UNKNOWN_TOPIC_OR_PART for it, as
# a cluster with auto.create.topics.enable=false does (the mock broker would auto-create it)
kafka_ctl topic-error mesh.orders.dlq.missing UNKNOWN_TOPIC_OR_PART >/dev/null
start_worker w2 MESHBUY_DLQ_TOPIC=mesh.orders.dlq.missing KAFKA_TOPIC_METADATA_PROPAGATION_MAX_MS=1000
garbage_then_order missing w2 acct9 mesh-missing 0 "nknown topic"
mb_stop w2 TERM 10 || fail "w2 did not drain"

note "ok"
