#!/usr/bin/env bash
# test_devstack: ops/devstack brings up devkafka + redis, Kafka works end to end through kcat
# (6 partitions, key + headers + value survive), the control socket injects a fault, redis
# answers, and down leaves no process and no directory behind.
. "$MB_ROOT/tests/lib.sh"

stack_up
dir=$MESHBUY_STACK_DIR
assert_eq "$TEST_TMP/stack" "$dir" "stack dir"
assert_contains "$REDIS_URL" "unix://$dir/redis.sock"
kpid=$(cat "$dir/devkafka.pid")
rpid=$(cat "$dir/redis.pid")

# Metadata: the three topics, six partitions each, three brokers.
meta=$(kcat -b "$KAFKA_BROKERS" -L -J)
for t in mesh.orders mesh.status mesh.orders.dlq; do
    n=$(json_get "$meta" ".topics[] | select(.topic == \"$t\") | .partitions | length")
    assert_eq 6 "$n" "partitions of $t"
done
assert_eq 3 "$(json_get "$meta" '.brokers | length')" "brokers"

# Round trip with key, header and a multi-line value.
kcat_produce mesh.orders acct-1/mesh-a '{"a":1,
"b":"two"}' traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01
msg=$(kcat_consume mesh.orders 1 20)
assert_eq "acct-1/mesh-a" "$(json_get "$msg" .key)" "key"
assert_eq '{"a":1,
"b":"two"}' "$(json_get "$msg" .payload)" "value"
assert_eq "traceparent" "$(json_get "$msg" '.headers[0]')" "header name"
assert_eq "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" \
    "$(json_get "$msg" '.headers[1]')" "header value"

# Consumer groups work across processes and committed offsets survive a consumer restart
# (the worker's at-least-once intake relies on both).
for i in 1 2 3; do
    printf 'm%s' "$i" | kcat -P -b "$KAFKA_BROKERS" -t mesh.status -k "k$i" -p 0 ||
        fail "produce m$i"
done
group_read() {
    timeout --kill-after=2 30 kcat -b "$KAFKA_BROKERS" -G test-group -q -f '%k=%s\n' \
        -X session.timeout.ms=6000 -X auto.offset.reset=earliest -c "$1" mesh.status
}
assert_eq "k1=m1 k2=m2" "$(group_read 2 | tr '\n' ' ' | sed 's/ $//')" "first group member"
assert_eq "k3=m3" "$(group_read 1)" "after restart the group resumes at its committed offset"

# Fault injection over the control socket: a broker taken down stays out of the metadata.
out=$(kafka_ctl ping)
assert_eq "ok pong" "$out"
# The mock broker keeps listing a downed broker in metadata but drops and refuses its
# connections: talk to broker 2 alone.
b2=$(json_get "$meta" '.brokers[] | select(.id == 2) | .name')
broker_answers() { kcat -b "$b2" -L -m 2 -t mesh.orders >/dev/null 2>&1; }
broker_refuses() { ! broker_answers; }
broker_answers || fail "broker 2 ($b2) does not answer before broker-down"
kafka_ctl broker-down 2 >/dev/null || fail "broker-down 2"
wait_for 20 broker_refuses
kafka_ctl broker-up 2 >/dev/null || fail "broker-up 2"
wait_for 20 broker_answers
# Injected request errors reach clients: exactly one Produce fails, the next one succeeds.
kafka_ctl push-errors Produce 1 TOPIC_AUTHORIZATION_FAILED >/dev/null || fail "push-errors"
if printf x | kcat -P -b "$KAFKA_BROKERS" -t mesh.orders.dlq -X message.send.max.retries=0 \
    2>"$TEST_TMP/pe.err"; then
    fail "produce succeeded despite an injected error"
fi
assert_contains "$(cat "$TEST_TMP/pe.err")" "authorization failed"
printf y | kcat -P -b "$KAFKA_BROKERS" -t mesh.orders.dlq || fail "produce after the injected error"
if kafka_ctl broker-down 9 >/dev/null 2>&1; then fail "broker-down 9 accepted"; fi
out=$(kafka_ctl no-such-command || true)
assert_contains "$out" "error unknown command"

# A topic made at run time, as a test that owns its topics would.
kafka_ctl topic-create test.own 2 >/dev/null || fail "topic-create"
n=$(kcat -b "$KAFKA_BROKERS" -L -J -t test.own | jq '.topics[0].partitions | length')
assert_eq 2 "$n" "partitions of test.own"

# Redis: private, unix socket only.
assert_eq PONG "$(redis_cli ping)"
assert_eq 0 "$(redis_cli config get port | sed -n 2p)" "redis TCP port"

# env reprints the same thing.
env_out=$("$MB_ROOT/ops/devstack" env --dir "$dir")
assert_contains "$env_out" "export KAFKA_BROKERS='$KAFKA_BROKERS'"

# A second up on the same dir refuses.
if "$MB_ROOT/ops/devstack" up --dir "$dir" --bin "$MB_BIN" >/dev/null 2>&1; then
    fail "second up on a running stack succeeded"
fi

# redis-restart keeps the data (AOF) and the socket.
redis_cli set k v >/dev/null
"$MB_ROOT/ops/devstack" redis-restart --dir "$dir" --kill 2>/dev/null || fail "redis-restart"
assert_ne "$rpid" "$(cat "$dir/redis.pid")" "redis pid after restart"
rpid2=$(cat "$dir/redis.pid")
assert_eq v "$(redis_cli get k)" "value after kill -9 + restart (appendfsync everysec)"

stack_down
# Gone: no such pid, a zombie, or the pid already reused by another program.
gone() {
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || return 0 # one read: no race with the reaper
    [[ "$st" != *"($2) "* ]] || [[ "${st##*) }" == [ZX]* ]]
}
for p in "devkafka:$kpid" "redis-server:$rpid" "redis-server:$rpid2"; do
    gone "${p#*:}" "${p%%:*}" ||
        fail "${p%%:*} (pid ${p#*:}) still alive after down: $(cat "/proc/${p#*:}/stat" 2>&1)"
done
[ ! -e "$dir" ] || fail "$dir left behind"

# --redis-tcp picks a free port; down twice is harmless.
stack_up --redis-tcp --brokers 1 --partitions 2
assert_contains "$REDIS_URL" "redis://127.0.0.1:"
assert_eq PONG "$(redis_cli ping)"
assert_eq 2 "$(kcat -b "$KAFKA_BROKERS" -L -J -t mesh.status | jq '.topics[0].partitions | length')"
stack_down
stack_down
[ ! -e "$TEST_TMP/stack" ] || fail "stack dir left behind"

# With cloudsim: the URLs point at a live simulator that refuses unsigned calls, the printed
# credentials are the scenario's, and down stops it too.
if [ -x "$MB_BIN/cloudsim" ]; then
    if "$MB_ROOT/ops/devstack" up --dir "$TEST_TMP/nostack" --bin "$MB_BIN" \
        --cloudsim no-such-scenario 2>"$TEST_TMP/bad-scenario.err"; then
        fail "up with an unknown scenario succeeded"
    fi
    assert_contains "$(cat "$TEST_TMP/bad-scenario.err")" "no cloudsim scenario 'no-such-scenario'"
    [ ! -e "$TEST_TMP/nostack" ] || fail "failed up left its dir behind"

    stack_up --cloudsim basic
    cpid=$(cat "$MESHBUY_STACK_DIR/cloudsim.pid")
    assert_eq "http://$(cat "$MESHBUY_STACK_DIR/cloudsim.addr")" "$MESHBUY_CCE_URL" "CCE URL"
    assert_eq "$MESHBUY_CCE_URL" "$MESHBUY_VPC_URL" "VPC URL"
    assert_eq "$MESHBUY_CCE_URL/k8s/{cluster_id}" "$MESHBUY_K8S_URL" "K8S URL"
    assert_eq "$(jq -r '.credentials[0].ak' "$MB_ROOT/ops/cloudsim/scenarios/basic.json")" \
        "$MESHBUY_AK" "AK from the scenario"
    code=$(curl -s -o "$TEST_TMP/unsigned.json" -w '%{http_code}' "$MESHBUY_CCE_URL/api/v3/projects/p/clusters")
    assert_eq 401 "$code" "unsigned call to cloudsim"
    assert_json "$(cat "$TEST_TMP/unsigned.json")" '.error_code == "APIGW.0301"'
    stack_down
    gone "$cpid" cloudsim || fail "cloudsim (pid $cpid) still alive after down: $(cat "/proc/$cpid/stat" 2>&1) $(tr '\0' ' ' <"/proc/$cpid/cmdline" 2>&1)"
else
    note "no $MB_BIN/cloudsim: cloudsim part not run"
fi
