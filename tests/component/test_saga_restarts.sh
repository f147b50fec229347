#!/usr/bin/env bash
# test_saga_restarts.sh: Redis and the Kafka brokers fail under a running batch of sagas.
# Thirty orders (one cluster each) are in flight on two workers when redis-server is killed
# with SIGKILL and started again on the same data (AOF fsync always, so nothing acknowledged
# is lost); then a broker goes down until every saga has finished in Redis, and comes back.  Every order must still end Running
# exactly once, every cloud side effect must have happened exactly once, and every mesh's
# status stream must be gapless.
. "$MB_ROOT/tests/lib.sh"

need_bin meshworker meshbuy devkafka cloudsim

N=30
stack_up --cloudsim "$MB_ROOT/ops/cloudsim/scenarios/bench.json" --redis-fsync always
CS=${MESHBUY_CCE_URL%/}/admin
curl -sf -X POST "$CS/config" -H 'Content-Type: application/json' \
    -d '{"release_install_ms":3000,"latency_ms":20}' >/dev/null
export MESHBUY_LEASE_MS=10000 MESHBUY_HTTP_TIMEOUT_MS=3000 MESHBUY_LEASE_MARGIN_MS=1000 \
    MESHBUY_POLL_MS=200 MESHBUY_BACKOFF_BASE_MS=50 \
    MESHBUY_BACKOFF_MAX_MS=500 MESHBUY_LOG_LEVEL=info MESHBUY_DRAIN_MS=3000

STATUS=$TEST_TMP/status.tsv
kcat -C -b "$KAFKA_BROKERS" -t mesh.status -o beginning -u -f '%k\t%s\n' >"$STATUS" 2>/dev/null &
echo $! >"$TEST_TMP/tail.pid"
on_exit "kill $(cat "$TEST_TMP/tail.pid") 2>/dev/null || true"

for w in w1 w2; do
    port=$(free_port)
    echo "$port" >"$TEST_TMP/$w.port"
    MESHBUY_HTTP_PORT=$port MESHBUY_WORKER_ID=$w mb_start "$w" "$MB_BIN/meshworker"
done
for w in w1 w2; do
    wait_for 60 curl -sf --max-time 2 "http://127.0.0.1:$(cat "$TEST_TMP/$w.port")/readyz"
done

for i in $(seq 0 $((N - 1))); do
    "$MB_BIN/meshbuy" --order-id "o-rs-$i" --account acct-rs --project proj-bench \
        --region r1 --name "rs-mesh-$i" --istio 1.18 --cluster "bench-$i" \
        --node "bench-$i-node-1" --node "bench-$i-node-2" --namespace shop >/dev/null
done

count() { # status -> events with it
    awk -F'\t' -v s="\"status\":\"$1\"" 'index($2, s) { n++ } END { print n + 0 }' "$STATUS"
}
more_than() { [ "$(count "$1")" -gt "$2" ]; }
# Meshes (keys) with a Running event: a re-relayed duplicate must not stand for a mesh
# whose own events are still waiting in the outbox.
meshes_running() {
    awk -F'\t' 'index($2, "\"status\":\"Running\"") { k[$1] = 1 } END { print length(k) }' "$STATUS"
}
all_running() { [ "$(meshes_running)" -ge "$N" ]; }

# Mid-run: some sagas done, most still going.
wait_for 60 more_than Installing $((N * 2))
note "killing redis-server (SIGKILL) with $(count Running) of $N Running"
"$MB_ROOT/ops/devstack" redis-restart --dir "$TEST_TMP/stack" --kill >/dev/null
# Progress after the restart: the sagas still in flight move on (on a fast machine most may
# have finished before the kill, so "N more events" would wait for events nobody owes).
before=$(count Installing)
moved_on() { more_than Installing "$before" || more_than Running $((N - 1)); }
wait_for 60 moved_on
# A broker down: status events led by it cannot be published, but the sagas go on (their
# events wait in the Redis outbox) and every one arrives once it is back.
note "broker 1 down with $(count Running) of $N Running"
kafka_ctl broker-down 1 >/dev/null
running_in_redis() {
    [ "$("$MB_BIN/meshctl" jobs --status Running --account acct-rs --json | jq length)" -eq "$N" ]
}
wait_for 120 running_in_redis
kafka_ctl broker-up 1 >/dev/null

wait_for 180 all_running

# Every mesh: seq 1..n with no gap (repeats only as identical copies), one Accepted first,
# exactly one Running, last, nothing Failed.
/usr/bin/python3 - "$STATUS" "$N" <<'PY' || fail "status streams are not right (see above)"
import json, sys
path, n = sys.argv[1], int(sys.argv[2])
streams = {}
for line in open(path):
    key, _, value = line.rstrip("\n").partition("\t")
    if not key.startswith("acct-rs/"):
        continue
    ev = json.loads(value)
    seen = streams.setdefault(key, {})
    seq = ev["data"]["seq"]
    if seq in seen and seen[seq] != ev:
        sys.exit("%s: seq %d seen twice with different content" % (key, seq))
    seen[seq] = ev
bad = []
if len(streams) != n:
    bad.append("%d meshes have events, want %d" % (len(streams), n))
for key, seen in sorted(streams.items()):
    seqs = sorted(seen)
    if seqs != list(range(1, len(seqs) + 1)):
        bad.append("%s: seq gap: %s" % (key, seqs))
        continue
    statuses = [seen[s]["data"]["status"] for s in seqs]
    if statuses[0] != "Accepted" or statuses[-1] != "Running" or statuses.count("Running") != 1:
        bad.append("%s: %s" % (key, statuses))
    if "Failed" in statuses or "RollingBack" in statuses:
        bad.append("%s: failed on the way: %s" % (key, statuses))
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY

# Each side effect exactly once across the whole run (a step re-run after the restart must
# observe and not act again).
muts=$(curl -sf "$CS/mutations")
for kind_want in "release_create $N" "sg_rule_create $N" "namespace_label_patch $N" \
    "node_label_patch $((N * 2))"; do
    kind=${kind_want% *}
    want=${kind_want#* }
    got=$(printf '%s' "$muts" | jq --arg k "$kind" '[.mutations[] | select(.kind == $k)] | length')
    assert_eq "$want" "$got" "$kind mutations (a repeated call counts too)"
done
assert_eq 0 "$(printf '%s' "$muts" | jq '[.mutations[] | select(.kind | test("delete"))] | length')" \
    "nothing was undone"
note "ok: $N sagas Running across a Redis SIGKILL and a broker outage"
