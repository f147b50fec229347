#!/usr/bin/env bash
# test_retention.sh: finished jobs expire, the claims they made stay right (one worker with a
# 4 s retention, order ids remembered an hour; devkafka + redis + cloudsim):
#   - a Running mesh's record and name never get a TTL, and outlive the retention
#   - a conflicting order (Failed NameConflict) and a rejected order (with its raw bytes)
#     expire; the name stays with the Running mesh; meshctl jobs (from the status index)
#     stops listing them
#   - a delete frees the name: the create's and the delete's records expire, their order ids
#     stay remembered (tombstones with a TTL)
#   - redelivering the old create and the old conflicting order then starts nothing: no
#     record, no event, no cloud call, the name stays free; a new order takes the name
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

need_bin meshctl
saga_stack_up
RETAIN=4
saga_worker w1 MESHBUY_RETENTION_S=$RETAIN MESHBUY_RETENTION_ORDER_IDS_S=3600
PORT=$(cat "$TEST_TMP/w1.port")
KEY="acct-ret/ret-mesh"

metric() { mb_metric "$PORT" "$1"; } # name -> value (0 when absent)
metric_ge() { # name value
    local v
    v=$(metric "$1") || return 1
    [ "${v%.*}" -ge "$2" ]
}
shard_of() { redis_cli GET "mb:order:$1"; }
jobkey() { echo "mb:{s$(shard_of "$1")}:job:$1"; }
gone() { [ "$(redis_cli EXISTS "mb:{s$2}:job:$1")" = 0 ]; }
listed() { # meshctl jobs --json prints the order ids it lists
    "$MB_BIN/meshctl" jobs --json 2>"$TEST_TMP/meshctl.err" | jq -r '.[] | .order_id'
}
buy() { saga_buy "$1" acct-ret ret-mesh proj-a c-single --node n-single-1; }

# ---- a Running mesh keeps its record and its name
buy o-ret-1
assert_eq Running "$(saga_wait_terminal 120 "$KEY" o-ret-1)" "o-ret-1"
S=$(shard_of o-ret-1)
NAMEKEY="mb:{s$S}:name:$KEY"
assert_eq o-ret-1 "$(redis_cli GET "$NAMEKEY")" "name holder"
assert_eq -1 "$(redis_cli PTTL "$(jobkey o-ret-1)")" "a Running record has no TTL"
assert_eq -1 "$(redis_cli PTTL "$NAMEKEY")" "a name has no TTL"
assert_eq -1 "$(redis_cli PTTL mb:order:o-ret-1)" "a Running order id has no TTL"

# ---- a conflicting order and a rejected one expire; the name stays
buy o-ret-2
assert_eq Failed "$(saga_wait_terminal 60 "$KEY" o-ret-2)" "o-ret-2 (name taken)"
ttl=$(redis_cli PTTL "$(jobkey o-ret-2)")
if [ "$ttl" -le 0 ] || [ "$ttl" -gt $((RETAIN * 1000)) ]; then
    fail "conflict record TTL $ttl, want 1..$((RETAIN * 1000)) ms"
fi
ttl=$(redis_cli PTTL mb:order:o-ret-2)
[ "$ttl" -gt $((RETAIN * 1000)) ] || fail "conflict order id TTL $ttl, want > the retention"
bad=$(jq -cn '{specversion:"1.0", id:"ev-bad", source:"test", type:"com.meshbuy.order.buy.v1",
    time:"2024-05-01T12:00:00Z", datacontenttype:"application/json",
    data:{order_id:"o-ret-bad", account_id:"acct-ret", project_id:"proj-a", region:"r1",
          mesh:{name:"bad-mesh", edition:"basic", istio_version:"1.99", cluster_id:"c-single",
                control_plane_nodes:["n-single-1"]}}}')
kcat_produce mesh.orders acct-ret/bad-mesh "$bad"
wait_for 30 sh -c "[ -n \"\$(redis-cli -s '${REDIS_URL#unix://}' GET mb:order:o-ret-bad)\" ]"
SB=$(shard_of o-ret-bad)
assert_eq InvalidOrder "$(redis_cli HGET "mb:{s$SB}:job:o-ret-bad" error_code)" "rejected record"
[ "$(redis_cli HSTRLEN "mb:{s$SB}:job:o-ret-bad" raw)" -gt 0 ] || fail "no raw bytes kept"
ttl=$(redis_cli PTTL "mb:{s$SB}:job:o-ret-bad")
[ "$ttl" -gt 0 ] || fail "rejected record TTL $ttl, want > 0"
ids=$(listed)
assert_contains "$ids" o-ret-1
assert_contains "$ids" o-ret-2
assert_contains "$ids" o-ret-bad
S2=$(shard_of o-ret-2)
wait_for 30 gone o-ret-2 "$S2"
wait_for 30 gone o-ret-bad "$SB"
assert_eq o-ret-1 "$(redis_cli GET "$NAMEKEY")" "the name after the conflict expired"
assert_eq 1 "$(redis_cli EXISTS "$(jobkey o-ret-1)")" "the Running record outlives the retention"
assert_eq "$S2" "$(redis_cli GET mb:order:o-ret-2)" "the conflict's order id is remembered"
assert_eq 0 "$(redis_cli EXISTS mb:order:o-ret-bad)" "a rejected order id expires with it"
ids=$(listed)
assert_contains "$ids" o-ret-1
assert_not_contains "$ids" o-ret-2
assert_not_contains "$ids" o-ret-bad

# ---- a delete frees the name; the create's and the delete's records expire
"$MB_BIN/meshbuy" --delete --order-id d-ret-1 --account acct-ret --name ret-mesh \
    --project proj-a --region "$SAGA_REGION" >/dev/null 2>"$TEST_TMP/meshbuy.err" ||
    fail "meshbuy could not publish the delete: $(cat "$TEST_TMP/meshbuy.err")"
assert_eq Deleted "$(saga_wait_terminal 120 "$KEY" d-ret-1)" "d-ret-1"
assert_eq 0 "$(redis_cli EXISTS "$NAMEKEY")" "the name is free after the delete"
wait_for 30 gone o-ret-1 "$S"
wait_for 30 gone d-ret-1 "$S"
for o in o-ret-1 d-ret-1; do
    ttl=$(redis_cli PTTL "mb:order:$o")
    [ "$ttl" -gt 0 ] || fail "order id $o: TTL $ttl, want a tombstone"
done

# ---- redelivered old orders start nothing
wait_for 30 sh -c "[ \"\$(redis-cli -s '${REDIS_URL#unix://}' LLEN 'mb:{s$S}:outbox')\" = 0 ]"
events0=$(saga_events "$KEY" | grep -c . || true)
mut0=$(cs_mutations c-single)
dup0=$(metric meshbuy_orders_duplicate_total)
buy o-ret-1
buy o-ret-2
wait_for 30 metric_ge meshbuy_orders_duplicate_total $((${dup0%.*} + 2))
assert_eq 0 "$(redis_cli EXISTS "$NAMEKEY")" "the name stays free"
gone o-ret-1 "$S" || fail "o-ret-1 has a record again"
gone o-ret-2 "$S2" || fail "o-ret-2 has a record again"
assert_eq "$mut0" "$(cs_mutations c-single)" "no cloud change from the redeliveries"
# a new order is served at once; by then any event of the redeliveries would be out
buy o-ret-3
assert_eq Running "$(saga_wait_terminal 120 "$KEY" o-ret-3)" "o-ret-3 takes the free name"
new=$(saga_events "$KEY" | tail -n +"$((events0 + 1))" |
    jq -r '.payload | fromjson | .data.order_id' | sort -u | tr '\n' ' ')
assert_eq "o-ret-3 " "$new" "orders with events after the redeliveries"
saga_stream "$KEY" >/dev/null
mb_alive w1 || fail "worker died"
