#!/usr/bin/env bash
# test_kafka_service_links.sh: a worker beside a Kubernetes Service named "kafka" (whose
# service-link variables KAFKA_PORT, KAFKA_SERVICE_HOST, KAFKA_PORT_9092_TCP... land in every
# pod's environment) passes --check, starts, and takes an order; a KAFKA_* that is no
# service link and no librdkafka property is still refused.
# shellcheck source=tests/lib.sh disable=SC2119
. "$MB_ROOT/tests/lib.sh"

for b in meshworker meshbuy devkafka; do
    [ -x "$MB_BIN/$b" ] || skip "$b not built in $MB_BIN"
done
command -v jq >/dev/null || skip "jq missing"

stack_up
export MESHBUY_RUN_SAGAS=false MESHBUY_LOG_LEVEL=info MESHBUY_DRAIN_MS=3000
# What Kubernetes injects for `Service kafka` (port 9092 named "broker").
export KAFKA_PORT=tcp://10.0.0.1:9092 KAFKA_SERVICE_HOST=10.0.0.1 KAFKA_SERVICE_PORT=9092 \
    KAFKA_SERVICE_PORT_BROKER=9092 KAFKA_PORT_9092_TCP=tcp://10.0.0.1:9092 \
    KAFKA_PORT_9092_TCP_PROTO=tcp KAFKA_PORT_9092_TCP_PORT=9092 KAFKA_PORT_9092_TCP_ADDR=10.0.0.1

# ---- 1. --check passes
out=$("$MB_BIN/meshworker" --check 2>&1) || fail "meshworker --check refused the service links: $out"

# ---- 2. a real start: ready, and an order becomes Accepted on mesh.status
PORT=$(free_port)
MESHBUY_HTTP_PORT=$PORT MESHBUY_WORKER_ID=w1 mb_start w1 "$MB_BIN/meshworker"
wait_for 30 curl -sf "http://127.0.0.1:$PORT/readyz"
"$MB_BIN/meshbuy" --order-id ord-sl --account acct-sl --project p1 --region r1 --name mesh-sl \
    --istio 1.18 --cluster c1 --node n1 >/dev/null || fail "meshbuy could not publish"
ev=$(kcat_consume mesh.status 1 30 | jq -c '.payload | fromjson')
assert_json "$ev" '.data.order_id == "ord-sl" and .data.status == "Accepted"'
assert_contains "$(cat "$TEST_TMP/w1.log")" "service-link variables are not librdkafka settings"
rc=0
mb_stop w1 TERM 10 || rc=$?
assert_eq 0 "$rc" "exit status after SIGTERM"

# ---- 3. not every KAFKA_* is waved through: a bad name is still a start-up error
rc=0
out=$(KAFKA_PORT=9092 "$MB_BIN/meshworker" --check 2>&1) || rc=$?
assert_ne 0 "$rc" "--check with KAFKA_PORT=9092 (no service link) passed"
assert_contains "$out" 'KAFKA_PORT: unknown librdkafka property'
note "ok"
