# shellcheck shell=bash
# tests/saga_lib.sh: helpers shared by the create-mesh saga component tests
# (tests/component/test_saga*.sh).  Source it after tests/lib.sh:
#
#   . "$MB_ROOT/tests/lib.sh"
#   . "$MB_ROOT/tests/saga_lib.sh"
#
# A suite starts the stack once (saga_stack_up: devkafka, redis, cloudsim on
# tests/fixtures/cloudsim/saga.json, plus one kcat that tails mesh.status into a file), starts
# workers, and runs its cases against clusters of their own, so cases can run side by side and
# cloudsim's mutation log can be read per cluster.
#
# Stack and workers:
#   saga_stack_up                    stack_up with the saga scenario; fast releases
#                                    (install 400 ms, delete 200 ms); starts the status tail
#   saga_worker NAME [VAR=VAL...]    start a meshworker (10 s lease, 3 s cloud call timeout,
#                                    fast polls and backoff; VAR=VAL override), wait until it
#                                    has joined the group
#   saga_worker_nowait NAME [VAR=VAL...]   same, without waiting for the group join
# Orders:
#   saga_buy ID ACCOUNT MESH PROJECT CLUSTER [meshbuy args: --node U --namespace N --restart]
#   saga_cancel ID ACCOUNT MESH
# Status stream (everything the tail consumed from mesh.status):
#   saga_events KEY                  the raw events of KEY (<account>/<mesh>), one JSON per line
#   saga_stream KEY                  checks KEY's stream: seq 1..n, no gap, a repeated seq only
#                                    as an identical copy (dropped); prints the deduplicated
#                                    CloudEvents, one per line; fails with the reason
#   saga_terminal KEY ORDER          prints ORDER's terminal status on KEY (Running, Failed,
#                                    Cancelled, Deleted) or nothing
#   saga_wait_terminal SECS KEY ORDER   waits for it
#   saga_wait_all SECS KEY:ORDER...  waits until every pair has its terminal status
#   saga_check_order KEY ORDER STATUS   the stream of KEY is gapless, ORDER's events end with
#                                    exactly one STATUS event and nothing after it, the first
#                                    event of ORDER is Accepted; prints ORDER's data objects
#   saga_workers_alive               fails at once if every started worker has died
#   saga_validate_all                every consumed event against schemas/mesh-status.schema.json
#                                    (one python run; the reason names key and seq)
# cloudsim:
#   cs_get PATH | cs_post PATH JSON | cs_delete PATH    admin API ($CS_URL + PATH)
#   cs_fault JSON                    adds a fault rule, prints its id
#   cs_config JSON                   POST /admin/config
#   cs_state CLUSTER                 the cluster and its security group, normalized (jq -S)
#   cs_mutations CLUSTER             one line per mutation of the cluster or its security group:
#                                    "kind target" (+ " (unchanged)" if it changed nothing);
#                                    security-group rule ids print as "*"; sorted
#   assert_mutations CLUSTER [LINE...]   cs_mutations must be exactly these lines
#   cs_requests_match METHOD SUBSTR [JQ]   true if a logged request matches METHOD, has SUBSTR
#                                    in its path and JQ is true of it (e.g. '.fault == "hang"')
#   cs_rule_ids CLUSTER              ids of the 7443-covering ingress rules of its security group
# Cases:
#   saga_case NAME CMD [ARG...]      run CMD in a subshell (set -e); a failure is recorded
#   saga_done                        fail naming every recorded case failure

SAGA_SCENARIO="$MB_ROOT/tests/fixtures/cloudsim/saga.json"
SAGA_SCHEMA="$MB_ROOT/schemas/mesh-status.schema.json"
SAGA_STATUS="$TEST_TMP/status.jsonl"
SAGA_REGION=r1

need_bin meshworker meshbuy devkafka cloudsim
need_tool jq kcat curl redis-server redis-cli
need_py jsonschema

# ------------------------------------------------------------------ stack and workers

saga_stack_up() {
    stack_up --cloudsim "$SAGA_SCENARIO"
    CS_URL=$MESHBUY_CCE_URL
    export CS_URL
    cs_config '{"release_install_ms": 400, "release_delete_ms": 200}' >/dev/null
    # One consumer for the whole suite: cases wait on this file instead of each starting kcat.
    kcat -C -b "$KAFKA_BROKERS" -t mesh.status -o beginning -J -u -q \
        >"$SAGA_STATUS" 2>"$TEST_TMP/status-tail.err" </dev/null &
    echo $! >"$TEST_TMP/status-tail.pid"
    on_exit "mb_stop status-tail TERM 5 >/dev/null 2>&1 || true"
}

_saga_worker_start() {
    local name=$1 port
    shift
    port=$(free_port)
    echo "$port" >"$TEST_TMP/$name.port"
    # env -u: a MESHBUY_* the worker does not know would make it refuse to start.
    mb_start "$name" env MESHBUY_HTTP_PORT="$port" MESHBUY_WORKER_ID="$name" \
        MESHBUY_LEASE_MS=10000 MESHBUY_HTTP_TIMEOUT_MS=3000 MESHBUY_LEASE_MARGIN_MS=1000 \
        MESHBUY_POLL_MS=100 MESHBUY_BACKOFF_BASE_MS=50 \
        MESHBUY_BACKOFF_MAX_MS=500 MESHBUY_DRAIN_MS=3000 MESHBUY_LOG_LEVEL=info \
        MESHBUY_CATALOG="$MB_ROOT/schemas/istio-catalog.json" \
        "$@" "$MB_BIN/meshworker"
}

saga_worker() {
    local name=$1
    _saga_worker_start "$@"
    wait_for 60 curl -sf --max-time 2 "http://127.0.0.1:$(cat "$TEST_TMP/$name.port")/readyz"
}

saga_worker_nowait() {
    _saga_worker_start "$@"
}

# ------------------------------------------------------------------ orders

saga_buy() {
    local id=$1 acct=$2 mesh=$3 project=$4 cluster=$5
    shift 5
    "$MB_BIN/meshbuy" --order-id "$id" --account "$acct" --project "$project" \
        --region "$SAGA_REGION" --name "$mesh" --istio 1.18 --cluster "$cluster" "$@" \
        >/dev/null 2>"$TEST_TMP/meshbuy.err" ||
        fail "meshbuy could not publish $id: $(cat "$TEST_TMP/meshbuy.err")"
}

saga_cancel() {
    "$MB_BIN/meshbuy" --cancel "$1" --account "$2" --name "$3" --reason "test" \
        >/dev/null 2>"$TEST_TMP/meshbuy.err" ||
        fail "meshbuy could not cancel $1: $(cat "$TEST_TMP/meshbuy.err")"
}

# ------------------------------------------------------------------ status stream

saga_events() {
    # A line the tail is still writing does not parse yet: skipped, seen on the next read.
    jq -R -c --arg k "$1" 'fromjson? | select(.key == $k)' "$SAGA_STATUS"
}

# Checks and deduplicates the stream of one key (the events of a key share a partition, so
# the file holds them in offset order).
saga_stream() {
    local out
    out=$(saga_events "$1" | /usr/bin/python3 -c '
import json, sys
key = sys.argv[1]
seen = {}
last = 0
for line in sys.stdin:
    env = json.loads(line)
    raw = env["payload"]
    ev = json.loads(raw)
    seq = ev.get("data", {}).get("seq")
    where = "%s partition %s offset %s" % (key, env.get("partition"), env.get("offset"))
    if not isinstance(seq, int) or isinstance(seq, bool):
        sys.exit("%s: seq is not an integer: %r" % (where, seq))
    if seq <= last:
        if seen.get(seq) != raw:
            sys.exit("%s: seq %d again, not an identical copy:\n  first: %s\n  again: %s"
                     % (where, seq, seen.get(seq), raw))
        continue
    if seq != last + 1:
        sys.exit("%s: gap: seq %d after %d" % (where, seq, last))
    if ev.get("id") != "%s#%d" % (key, seq):
        sys.exit("%s: id %r does not name key and seq %d" % (where, ev.get("id"), seq))
    seen[seq] = raw
    last = seq
    print(json.dumps(ev, separators=(",", ":")))
' "$1" 2>&1) || fail "status stream of $1: $out"
    printf '%s\n' "$out"
}

saga_terminal() {
    saga_events "$1" | jq -r --arg o "$2" '.payload | fromjson | .data |
        select(.order_id == $o and (.status == "Running" or .status == "Failed" or
        .status == "Cancelled" or .status == "Deleted")) | .status' | head -n 1
}

_saga_has_terminal() {
    [ -n "$(saga_terminal "$1" "$2")" ]
}

saga_wait_terminal() {
    local secs=$1 key=$2 order=$3 deadline
    deadline=$(($(date +%s) + secs))
    while ! _saga_has_terminal "$key" "$order"; do
        saga_workers_alive
        if [ "$(date +%s)" -ge "$deadline" ]; then
            fail "no terminal status for $order on $key within ${secs}s; its events: $(
                saga_events "$key" | jq -c '.payload | fromjson | .data |
                [.seq, .order_id, .status, .step, .message, .error.code]' | tr '\n' ' ')"
        fi
        sleep 0.1
    done
    saga_terminal "$key" "$order"
}

# Fails at once when every worker started with saga_worker* has died (a crash would otherwise
# show only as a timeout), naming the first sanitizer or fatal line of each log.
saga_workers_alive() {
    local f name any=0
    for f in "$TEST_TMP"/*.port; do
        [ -f "$f" ] || continue
        name=$(basename "$f" .port)
        [ -f "$TEST_TMP/$name.pid" ] || continue
        any=1
        mb_alive "$name" && return 0
    done
    [ "$any" = 1 ] || return 0
    for f in "$TEST_TMP"/*.port; do
        name=$(basename "$f" .port)
        note "$name: $(grep -m1 -E 'ERROR: AddressSanitizer|runtime error|"level":"(error|fatal)"' \
            "$TEST_TMP/$name.log" 2>/dev/null | cut -c1-300)"
    done
    fail "every worker died"
}

saga_wait_all() {
    local secs=$1 p deadline pending
    shift
    deadline=$(($(date +%s) + secs))
    while :; do
        saga_workers_alive
        pending=()
        for p in "$@"; do
            _saga_has_terminal "${p%%:*}" "${p#*:}" || pending+=("$p")
        done
        [ "${#pending[@]}" = 0 ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            for p in "${pending[@]}"; do
                note "pending ${p}: $(saga_events "${p%%:*}" | jq -c '.payload | fromjson |
                    .data | [.seq, .order_id, .status, .step, .message, .error.code]' |
                    tr '\n' ' ')"
            done
            fail "no terminal status within ${secs}s for: ${pending[*]}"
        fi
        sleep 0.2
    done
}

# Prints ORDER's data objects (deduplicated, in order) after the checks.
saga_check_order() {
    local key=$1 order=$2 want=$3 evs data n
    evs=$(saga_stream "$key")
    data=$(printf '%s\n' "$evs" | jq -c --arg o "$order" 'select(.data.order_id == $o) | .data')
    [ -n "$data" ] || fail "no events of $order on $key"
    n=$(printf '%s\n' "$data" | jq -s --arg s "$want" '[.[] | select(.status == $s)] | length')
    assert_eq 1 "$n" "$order on $key: $want events"
    assert_eq "$want" "$(printf '%s\n' "$data" | tail -n 1 | jq -r .status)" \
        "$order on $key: last status (stream $(saga_statuses "$data"))"
    assert_eq "Accepted" "$(printf '%s\n' "$data" | head -n 1 | jq -r .status)" \
        "$order on $key: first status"
    assert_eq 1 "$(printf '%s\n' "$data" | jq -s '[.[] | select(.status == "Accepted")] |
        length')" "$order on $key: Accepted events"
    printf '%s\n' "$data"
}

# The statuses of ORDER's events, one line: "Accepted Installing Installing ... Running".
saga_statuses() {
    printf '%s\n' "$1" | jq -r .status | tr '\n' ' ' | sed 's/ $//'
}

saga_validate_all() {
    local out
    out=$(jq -R -c 'fromjson? | {key, payload}' "$SAGA_STATUS" | /usr/bin/python3 -c '
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
v = cls(schema, format_checker=jsonschema.FormatChecker())
n = bad = 0
for line in sys.stdin:
    env = json.loads(line)
    ev = json.loads(env["payload"])
    n += 1
    for e in sorted(v.iter_errors(ev), key=lambda e: list(e.path)):
        bad += 1
        print("%s seq %s: %s: %s" % (env["key"], ev.get("data", {}).get("seq"),
              "/".join(str(p) for p in e.path) or "(root)", e.message))
print("validated %d events" % n)
sys.exit(1 if bad else 0)
' "$SAGA_SCHEMA" 2>&1) || fail "status events do not match $SAGA_SCHEMA: $out"
    note "$out"
}

# ------------------------------------------------------------------ cloudsim

cs_get() {
    curl -sf --max-time 10 "$CS_URL$1" || fail "cloudsim GET $1 failed"
}

cs_post() {
    curl -sf --max-time 10 -X POST -H 'Content-Type: application/json' --data-binary "$2" \
        "$CS_URL$1" || fail "cloudsim POST $1 failed: $2"
}

cs_delete() {
    curl -sf --max-time 10 -X DELETE "$CS_URL$1" >/dev/null || fail "cloudsim DELETE $1 failed"
}

cs_fault() {
    cs_post /admin/faults "$1" | jq -r .id
}

cs_config() {
    cs_post /admin/config "$1"
}

cs_state() {
    cs_get "/admin/state?cluster=$1" | jq -S .
}

cs_mutations() {
    local sg
    sg=$(cs_get "/admin/state?cluster=$1" | jq -r '.clusters[0].security_group_id')
    cs_get /admin/mutations | jq -r --arg c "$1" --arg sg "$sg" '.mutations[] |
        select(.cluster_id == $c or .security_group_id == $sg) |
        "\(.kind) \(if (.kind | startswith("sg_rule")) then "*" else .target end)\(
        if .changed then "" else " (unchanged)" end)"' | LC_ALL=C sort
}

assert_mutations() {
    local cluster=$1 want got
    shift
    want=$(for l in "$@"; do echo "$l"; done | LC_ALL=C sort)
    got=$(cs_mutations "$cluster")
    [ "$want" == "$got" ] ||
        fail "mutations of $cluster: expected [$(echo "$want" | paste -sd,)], got [$(
            echo "$got" | paste -sd,)]"
}

cs_requests_match() {
    cs_get "/admin/requests" | jq -e --arg m "$1" --arg s "$2" "
        [.requests[] | select(.method == \$m and (.path | contains(\$s))) | select(${3:-true})]
        | length > 0" >/dev/null
}

cs_rule_ids() {
    cs_get "/admin/state?cluster=$1" | jq -r '.security_groups[0].rules[] |
        select(.direction == "ingress" and .multiport == "7443") | .id'
}

# ------------------------------------------------------------------ cases

SAGA_FAILED=()

# Runs CMD in a subshell under set -e: a failing case is recorded and the suite goes on to
# the next, so one run reports every broken case.  saga_done fails if any did.
saga_case() {
    local name=$1 rc
    shift
    note "case $name"
    set +e
    (
        set -e
        "$@"
    )
    rc=$?
    set -e
    [ "$rc" = 0 ] && return 0
    note "case $name FAILED (exit $rc)"
    SAGA_FAILED+=("$name")
}

saga_done() {
    [ "${#SAGA_FAILED[@]}" = 0 ] || fail "failed cases: ${SAGA_FAILED[*]}"
}
