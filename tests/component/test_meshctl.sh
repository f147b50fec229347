#!/usr/bin/env bash
# test_meshctl: meshctl against a private Redis, devkafka and cloudsim, no worker: jobs are
# seeded as the saga leaves them (parked, compensated, leased, stuck, running), then jobs,
# show, replay (one, dry-run, refused, bulk at a bounded rate), rollback and cancel are checked
# on what they write to Redis and on what they do not write (Redis dump, cloudsim mutations).
. "${MB_ROOT:-.}/tests/lib.sh"

stack_up --cloudsim "$MB_ROOT/ops/cloudsim/scenarios/basic.json"
MC="$MB_BIN/meshctl"
CS=${MESHBUY_CCE_URL:?}
export MESHBUY_LOG_LEVEL=error

# ------------------------------------------------------------------ seeding
# A job record as mb_store writes it (key layout: top of lib/mb_store.c).  Fixtures only.
seed() { # id key status step state [field value...]
    local id=$1 key=$2 status=$3 step=$4 state=$5
    shift 5
    local shard now
    shard=$(/usr/bin/python3 -c '
import sys
h = 0x811c9dc5
for b in sys.argv[1].encode():
    h = ((h ^ b) * 0x01000193) & 0xffffffff
print(h % 16)' "$key")
    now=$(($(date +%s%N) / 1000000))
    local acct=${key%%/*} name=${key#*/}
    local order
    order=$(jq -cn --arg id "$id" --arg a "$acct" --arg n "$name" '{specversion:"1.0",
        id:("ev-" + $id), source:"test", type:"com.meshbuy.order.buy.v1",
        time:"2024-05-01T12:00:00Z", datacontenttype:"application/json",
        data:{order_id:$id, account_id:$a, project_id:"proj-a", region:"r1",
              mesh:{name:$n, edition:"basic", istio_version:"1.18", cluster_id:"c-good",
                    control_plane_nodes:["n-good-1","n-good-2"],
                    sidecar:{namespaces:["shop"], restart_existing:false}}}}')
    redis_cli HSET "mb:{s$shard}:job:$id" id "$id" key "$key" shard "$shard" order "$order" \
        state "$state" status "$status" step "$step" attempt 1 fence 3 cancel 0 tp "" \
        created "$((now - 60000))" updated "$now" next_run 0 lease_owner "" lease_until 0 \
        claims 3 ck 7 error_code "" error_msg "" "$@" >/dev/null
    redis_cli SET "mb:order:$id" "$shard" >/dev/null
    # and its status index entry (what meshctl jobs lists from)
    redis_cli ZADD "mb:{s$shard}:status:$status" "$now" "$id" >/dev/null
    redis_cli SADD "mb:{s$shard}:statuses" "$status" >/dev/null
    echo "$shard" >"$TEST_TMP/shard.$id"
}
jobkey() { echo "mb:{s$(cat "$TEST_TMP/shard.$1")}:job:$1"; }
field() { redis_cli HGET "$(jobkey "$1")" "$2"; }
dump() { # everything meshctl could have written for a job
    local k
    k=$(jobkey "$1")
    redis_cli HGETALL "$k"
    redis_cli LRANGE "${k/:job:/:hist:}" 0 -1
    redis_cli ZSCORE "${k%%:job:*}:due" "$1"
}
mutations() { curl -sf "$CS/admin/mutations"; }

now_ms=$(($(date +%s%N) / 1000000))
ck_pre='{"nodes":{"n-good-1":"good-node-1","n-good-2":"good-node-2"},"security_group_id":"sg-good","cluster_version":"v1.25","pods":40}'
parked_state=$(jq -cn --argjson pre "$ck_pre" --argjson t "$now_ms" '{step:4, phase:"run", attempt:3,
  step_started_ms:($t - 5000), parked:true,
  error:{step:"install_release", code:"ReleaseFailed", message:"release istio-master FAILED", retryable:false},
  steps:{validate:{status:"done", attempts:1, started_ms:($t-9000), ended_ms:($t-8990),
                   ck:{build:"1.18.7-r1", chart_id:"asm-istio-1-18", chart_version:"1.18.7-r1"}},
         reserve:{status:"done", attempts:1, started_ms:($t-8900), ended_ms:($t-8890), ck:{}},
         precheck:{status:"done", attempts:1, started_ms:($t-8800), ended_ms:($t-8700), ck:$pre},
         label_nodes:{status:"done", attempts:1, started_ms:($t-8600), ended_ms:($t-8500),
                      ck:{prior:{"good-node-1":null, "good-node-2":null}, changed:["good-node-1","good-node-2"]}},
         install_release:{status:"failed", attempts:3, started_ms:($t-8400), ended_ms:($t-5000),
                          last_error:{step:"install_release", code:"ReleaseFailed", message:"release istio-master FAILED", retryable:false},
                          ck:{created:true, status:"FAILED"}}}}')
comp_state=$(echo "$parked_state" | jq -c 'del(.parked) | .phase="compensate" | .step=-1 | .outcome="Failed"
  | .steps.label_nodes.status="compensated" | .steps.install_release.status="compensated"
  | .steps.reserve.status="compensated"')
running_state=$(echo "$parked_state" | jq -c 'del(.parked, .error) | .step=9
  | .steps |= with_entries(.value.status="done")
  | .steps.open_port={status:"done", attempts:1, started_ms:1, ended_ms:2, ck:{created:true, rule_id:"r1"}}
  | .steps.finish={status:"done", attempts:1, started_ms:3, ended_ms:4, ck:{}}')

seed ord-parked acct-a/mesh-parked Failed install_release "$parked_state" \
    error_code ReleaseFailed error_msg "release istio-master FAILED"
seed ord-comp acct-a/mesh-comp Failed install_release "$comp_state" \
    error_code ReleaseFailed error_msg "release istio-master FAILED"
seed ord-leased acct-b/mesh-leased Installing install_release "$parked_state" \
    lease_owner worker-7 lease_until "$((now_ms + 600000))" next_run "$now_ms"
seed ord-stuck acct-b/mesh-stuck Installing install_release \
    "$(echo "$parked_state" | jq -c --argjson t "$now_ms" 'del(.parked,.error) | .step_started_ms=($t - 7200000)')" \
    lease_owner "" next_run "$((now_ms + 3600000))"
seed ord-run acct-a/mesh-run Running finish "$running_state"
seed ord-cancelled acct-a/mesh-canc Cancelled label_nodes "$(echo "$comp_state" | jq -c '.outcome="Cancelled"')"
for i in 1 2 3 4; do
    seed "ord-bulk-$i" "acct-c/mesh-bulk-$i" Failed precheck \
        "$(echo "$comp_state" | jq -c '.error.code="HTTP503"')" error_code HTTP503 error_msg "503 from CCE"
done
seed ord-other acct-c/mesh-other Failed precheck "$comp_state" error_code ClusterNotFound error_msg "no cluster"

# ------------------------------------------------------------------ usage, help, exit codes
"$MC" --help | grep -q "exit codes" || fail "meshctl --help has no exit codes"
for c in jobs show replay rollback cancel dlq watch workers outbox completion; do
    "$MC" "$c" --help >/dev/null || fail "meshctl $c --help failed"
done
rc=0; "$MC" frobnicate 2>/dev/null || rc=$?; assert_eq 2 "$rc" "unknown command"
rc=0; "$MC" jobs --status nope 2>/dev/null || rc=$?; assert_eq 2 "$rc" "bad --status"
rc=0; "$MC" show no-such-order 2>/dev/null || rc=$?; assert_eq 4 "$rc" "unknown job"
rc=0; REDIS_URL=unix://$TEST_TMP/none.sock "$MC" jobs 2>"$TEST_TMP/err" || rc=$?
assert_eq 3 "$rc" "Redis unreachable"
assert_contains "$(cat "$TEST_TMP/err")" "REDIS_URL"

# ------------------------------------------------------------------ jobs
out=$("$MC" jobs)
assert_contains "$out" "ord-parked"
assert_contains "$out" "Failed (parked)"
assert_contains "$out" "ReleaseFailed"
assert_contains "$out" "STUCK"
json=$("$MC" jobs --json)
assert_eq 11 "$(json_get "$json" 'length')" "jobs --json count"
assert_json "$json" '[.[] | select(.stuck)] | map(.order_id) == ["ord-stuck"]' "only ord-stuck is stuck"
assert_json "$json" '.[] | select(.order_id=="ord-stuck") | .stuck_reason | test("deadline")'
assert_json "$json" '.[] | select(.order_id=="ord-parked") | .parked == true and .attempts == 3'
assert_eq 7 "$(json_get "$("$MC" jobs --status failed --json)" 'length')" "--status failed"
assert_eq 2 "$(json_get "$("$MC" jobs --account acct-b --json)" 'length')" "--account"
assert_eq ord-stuck "$(json_get "$("$MC" jobs --status stuck --json)" '.[0].order_id')"
assert_eq 11 "$(json_get "$("$MC" jobs --since 1h --json)" 'length')" "--since"
assert_json "$json" 'map(.saga) | unique == ["create"]' "records without a saga field run create"
# filters
assert_eq 4 "$(json_get "$("$MC" jobs --error-code HTTP503 -o json)" 'length')" "--error-code"
assert_json "$("$MC" jobs --step finish -o json)" 'map(.order_id) == ["ord-run"]' "--step"
assert_eq 11 "$(json_get "$("$MC" jobs --saga create --cluster c-good -o json)" 'length')" "--saga --cluster"
assert_eq 0 "$(json_get "$("$MC" jobs --cluster c-other -o json)" 'length')" "--cluster"
rc=0; "$MC" jobs --saga nosuch 2>/dev/null || rc=$?; assert_eq 2 "$rc" "--saga of no saga"
assert_eq "$(json_get "$json" '[.[0:2][].order_id] | join(" ")')" \
    "$(json_get "$("$MC" jobs --limit 2 -o json)" '[.[].order_id] | join(" ")')" "--limit: the newest"
assert_eq 11 "$(json_get "$("$MC" jobs --until 30s -o json)" 'length')" "--until"
assert_eq 0 "$(json_get "$("$MC" jobs --until 1h -o json)" 'length')" "--until 1h"
assert_contains "$out" "SAGA"

# output formats: -o json|yaml|name|wide|table, --json, --output=, --no-headers
need_py jsonschema yaml
validate_jobs() { # JSON array of jobs on stdin
    /usr/bin/python3 -c '
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
jobs = json.load(sys.stdin)
assert jobs, "no jobs"
for j in jobs:
    jsonschema.validate(j, schema)' "$MB_ROOT/schemas/meshctl-job.schema.json"
}
"$MC" jobs -o json | validate_jobs || fail "jobs -o json does not match schemas/meshctl-job.schema.json"
assert_eq "$("$MC" jobs --json | jq -S 'map(del(.age_ms))')" \
    "$("$MC" jobs --output=json | jq -S 'map(del(.age_ms))')" "--json = --output=json"
assert_json "$json" '.[] | select(.order_id=="ord-run") | .error_code == null and .lease_owner == null and .stuck_reason == null'
assert_json "$json" '.[] | select(.order_id=="ord-leased") | (.lease_until_ms | type) == "number" and (.lease_until | test("Z$"))'
assert_json "$json" '.[] | select(.order_id=="ord-parked") | (.created | sub("\\.[0-9]+Z$"; "Z")) == (.created_ms / 1000 | floor | todate)'
yaml_ids=$("$MC" jobs -o yaml | /usr/bin/python3 -c 'import sys, yaml; print(" ".join(sorted(j["order_id"] for j in yaml.safe_load(sys.stdin))))')
assert_eq "$(json_get "$json" '[.[].order_id] | sort | join(" ")')" "$yaml_ids" "jobs -o yaml"
names=$("$MC" jobs -o name)
assert_eq 11 "$(echo "$names" | wc -l)" "jobs -o name"
# -o name feeds xargs meshctl show
shown=$(echo "$names" | xargs "$MC" show -o json --no-events)
assert_json "$shown" 'length == 11 and ([.[].job.order_id] | sort) == ([.[].job.order_id] | unique)'
printf '%s' "$shown" | jq '[.[].job]' | validate_jobs || fail "show -o json .job against the schema"
assert_eq "$(echo "$names" | sort)" "$(printf '%s' "$shown" | jq -r '.[].job.order_id' | sort)"
head=$("$MC" jobs | head -1)
assert_contains "$head" "ORDER"
assert_not_contains "$("$MC" jobs --no-headers)" "ORDER"
assert_contains "$("$MC" jobs -o wide | head -1)" "CLUSTER"
assert_contains "$("$MC" jobs -o wide | grep ord-parked)" "c-good"
# columns fit the data: the ORDER column is as wide as the longest order id, plus two spaces
w=$("$MC" jobs | head -1 | sed 's/MESH.*//' | wc -c)
assert_eq $(($(json_get "$json" '[.[].order_id | length] | max') + 2 + 1)) "$w" "ORDER column width"
rc=0; "$MC" jobs -o xml 2>/dev/null || rc=$?; assert_eq 2 "$rc" "-o xml"
assert_eq ord-parked "$("$MC" show ord-parked -o name)"
"$MC" show ord-parked -o yaml --no-events | /usr/bin/python3 -c '
import sys, yaml; d = yaml.safe_load(sys.stdin); assert d["job"]["order_id"] == "ord-parked", d' ||
    fail "show -o yaml"

# ------------------------------------------------------------------ show
out=$("$MC" show ord-parked --no-events)
assert_contains "$out" "parked: effects kept"
assert_contains "$out" "install_release  failed"
assert_contains "$out" '"changed":["good-node-1","good-node-2"]'
assert_contains "$out" "ReleaseFailed"
json=$("$MC" show ord-parked --json)
assert_json "$json" '.state.steps.precheck.ck.security_group_id == "sg-good"'
assert_json "$json" '.order.data.order_id == "ord-parked" and (.events | type) == "array"'

# ------------------------------------------------------------------ replay refused
rc=0; "$MC" replay ord-leased 2>"$TEST_TMP/err" || rc=$?
assert_eq 1 "$rc" "replay of a leased job"
assert_contains "$(cat "$TEST_TMP/err")" "worker-7"
assert_eq Installing "$(field ord-leased status)"
rc=0; "$MC" replay ord-run 2>/dev/null || rc=$?; assert_eq 1 "$rc" "replay of a Running job"
rc=0; "$MC" replay ord-stuck 2>/dev/null || rc=$?; assert_eq 1 "$rc" "unfinished job without --force"
rc=0; "$MC" replay ord-comp --from-step install_release 2>"$TEST_TMP/err" || rc=$?
assert_eq 1 "$rc" "replay skipping compensated steps"
assert_contains "$(cat "$TEST_TMP/err")" "was undone"
rc=0; "$MC" replay ord-parked --from-step nosuch 2>/dev/null || rc=$?; assert_eq 2 "$rc"

# ------------------------------------------------------------------ replay --dry-run changes nothing
before=$(dump ord-parked); mut_before=$(mutations)
plan=$("$MC" replay ord-parked --dry-run)
assert_contains "$plan" "from install_release"
assert_contains "$plan" "label_nodes      skipped"
assert_contains "$plan" "may call: POST release istio-master"
assert_contains "$plan" "may call: POST security-group rule ingress tcp 7443 on sg-good"
assert_contains "$plan" "may call: PATCH /api/v1/namespaces/shop labels istio-injection=enabled"
assert_not_contains "$plan" "cloud NOT read"
pj=$("$MC" replay ord-parked --dry-run --json)
assert_json "$pj" '.observed == true and .from_step == "install_release"'
assert_json "$pj" '[.steps[] | select(.runs) | .step] == ["install_release","open_port","inject","restart","finish"]'
"$MC" replay ord-comp --dry-run >"$TEST_TMP/plan2"
assert_contains "$(cat "$TEST_TMP/plan2")" "PATCH /api/v1/nodes/good-node-1 labels istio=master (now: absent)"

# Every step plans by its own read-only face.  ord-plan: a compensated job whose order asks
# for restarts, planned from the first step against cloudsim's c-good.
set_order() { # id jq-filter: rewrite the job's stored order
    redis_cli HSET "$(jobkey "$1")" order "$(field "$1" order | jq -c "$2")" >/dev/null
}
seed ord-plan acct-d/mesh-plan Failed precheck "$comp_state" error_code X error_msg x
set_order ord-plan '.data.mesh.sidecar.restart_existing = true'
pj=$("$MC" replay ord-plan --from-step validate --dry-run --json)
step() { printf '%s' "$pj" | jq -c --arg s "$1" '.steps[] | select(.step == $s)'; }
assert_json "$pj" '.saga == "create" and ([.steps[] | .runs] | all) and (.steps | length) == 9'
assert_json "$pj" '[.steps[] | select(.observed and .error == null and .fails == null)] | length == 9' \
    "every step observed, none would fail"
assert_json "$(step validate)" '.in_place[0] | test("Istio 1.18 is offered: build 1.18.7-r1")'
assert_json "$(step reserve)" '.changes == [] and (.in_place[0] | test("mesh-plan"))'
assert_json "$(step precheck)" '.changes == [] and (.in_place[0] | test("c-good is Available .*40 pods.*passes"))'
assert_json "$(step label_nodes)" '.changes == ["PATCH /api/v1/nodes/good-node-1 labels istio=master (now: absent)", "PATCH /api/v1/nodes/good-node-2 labels istio=master (now: absent)"]'
assert_json "$(step install_release)" '.changes[0] | test("^POST release istio-master in istio-system \\(chart asm-istio-1-18 1.18.7-r1\\)")'
assert_json "$(step open_port)" '.changes == ["POST security-group rule ingress tcp 7443 on sg-good (no rule covers it now)"]'
assert_json "$(step inject)" '.changes == ["PATCH /api/v1/namespaces/shop labels istio-injection=enabled (now: absent)"]'
assert_json "$(step restart)" '(.changes | length) == 3 and (.changes | map(test("^PATCH shop/")) | all)' \
    "restart: web, db, agent"
assert_json "$(step restart)" '.in_place == ["shop/Deployment/legacy is paused: skipped, no call"]'
assert_json "$(step finish)" '.changes == [] and (.in_place[0] | test("no cloud call"))'
plan=$("$MC" replay ord-plan --from-step validate --dry-run)
assert_contains "$plan" "may call: PATCH shop/StatefulSet/db restartedAt annotation"
assert_contains "$plan" "in place: shop/Deployment/legacy is paused"

# What run() would fail with, and what cannot be observed yet, each from its own face.
seed ord-badver acct-d/mesh-badver Failed validate '{}' error_code UnsupportedVersion error_msg x
set_order ord-badver '.data.mesh.istio_version = "1.8"'
jq '.istio |= map(select(.minor != "1.8"))' "$MB_ROOT/schemas/istio-catalog.json" >"$TEST_TMP/catalog.json"
cp "$MB_ROOT/schemas/istio-catalog.schema.json" "$TEST_TMP/"
pj=$(MESHBUY_CATALOG=$TEST_TMP/catalog.json "$MC" replay ord-badver --from-step validate --dry-run --json)
assert_json "$(step validate)" '.fails.code == "UnsupportedVersion"'
assert_json "$(step label_nodes)" '.observed == false and .error.code == "NotRecorded"'
assert_json "$(step open_port)" '.observed == false and .error.code == "NotRecorded"'
seed ord-nocl acct-d/mesh-nocl Failed precheck '{}' error_code ClusterNotFound error_msg x
set_order ord-nocl '.data.mesh.cluster_id = "c-nosuch"'
pj=$("$MC" replay ord-nocl --dry-run --json)
assert_json "$(step precheck)" '.fails.code == "ClusterNotFound" and .observed'
assert_contains "$("$MC" replay ord-nocl --dry-run)" "would fail: ClusterNotFound"
# Without the cloud's URLs nothing is read, and every step says so.
pj=$(MESHBUY_K8S_URL='' "$MC" replay ord-plan --from-step validate --dry-run --json)
assert_json "$pj" '.observed == false and ([.steps[] | .error.code] | unique) == ["NotRead"]'

# A saga this build does not know (a newer worker's): listed and shown, never rewritten.
seed ord-future acct-d/mesh-future Failed step1 '{"steps":{"step1":{"status":"failed"}}}' saga frobnicate
assert_json "$("$MC" jobs --json)" '.[] | select(.order_id == "ord-future") | .saga == "frobnicate"'
assert_contains "$("$MC" show ord-future --no-events)" "step1"
rc=0; "$MC" replay ord-future 2>"$TEST_TMP/err" || rc=$?; assert_eq 1 "$rc" "replay of an unknown saga"
assert_contains "$(cat "$TEST_TMP/err")" 'saga "frobnicate"'
rc=0; "$MC" rollback ord-future 2>/dev/null || rc=$?; assert_eq 1 "$rc" "rollback of an unknown saga"

assert_eq "$before" "$(dump ord-parked)" "dry-run changed the job in Redis"
assert_eq "$mut_before" "$(mutations)" "dry-run made a mutating cloud call"

# ------------------------------------------------------------------ replay a parked job
fence0=$(field ord-parked fence)
"$MC" replay ord-parked >/dev/null
assert_eq Installing "$(field ord-parked status)"
assert_eq install_release "$(field ord-parked step)"
assert_eq "$((fence0 + 1))" "$(field ord-parked fence)" "fence bumped"
assert_eq "" "$(field ord-parked lease_owner)"
assert_eq "" "$(field ord-parked error_code)"
st=$(field ord-parked state)
assert_json "$st" '.phase=="run" and .step==4 and .attempt==0 and .step_started_ms==0'
assert_json "$st" '(has("error") or has("parked") or has("outcome")) | not'
assert_json "$st" '.steps.label_nodes.ck.changed == ["good-node-1","good-node-2"]' "ck kept"
assert_json "$st" '.replays[0].from == "install_release"'
due=$(redis_cli ZSCORE "mb:{s$(cat "$TEST_TMP/shard.ord-parked")}:due" ord-parked)
[ "${due%.*}" -le "$(($(date +%s%N) / 1000000))" ] || fail "replayed job not due now ($due)"
hist=$("$MC" show ord-parked --no-events)
assert_contains "$hist" "replay from install_release by ${USER:-$(id -un)}@"

# compensated job: default step is reserve; cancel flag of a cancelled job is cleared
"$MC" replay ord-comp >/dev/null
assert_eq reserve "$(field ord-comp step)"
assert_json "$(field ord-comp state)" '.step == 1 and .phase == "run"'
redis_cli HSET "$(jobkey ord-cancelled)" cancel 1 >/dev/null
"$MC" replay ord-cancelled >/dev/null
assert_eq 0 "$(field ord-cancelled cancel)" "replay keeps a cancel flag"

# ------------------------------------------------------------------ rollback and cancel
rc=0; "$MC" rollback ord-leased 2>/dev/null || rc=$?; assert_eq 1 "$rc" "rollback of a leased job"
rc=0; "$MC" rollback ord-other 2>/dev/null || rc=$?; assert_eq 1 "$rc" "rollback of a compensated job"
"$MC" rollback ord-run >/dev/null
assert_eq RollingBack "$(field ord-run status)"
assert_eq RolledBack "$(field ord-run error_code)"
assert_json "$(field ord-run state)" '.phase=="compensate" and .step==8 and .outcome=="Failed" and .error.code=="RolledBack" and .error.retryable==false'
assert_contains "$("$MC" show ord-run --no-events)" "rollback from finish by"
rc=0; "$MC" cancel ord-parked >/dev/null || rc=$?; assert_eq 0 "$rc" "cancel of an installing job"
assert_eq 1 "$(field ord-parked cancel)"
assert_contains "$("$MC" show ord-parked --no-events)" "cancel requested by"
rc=0; "$MC" cancel ord-other 2>/dev/null || rc=$?; assert_eq 1 "$rc" "cancel of a finished job"

# ------------------------------------------------------------------ bulk replay
before=$(for i in 1 2 3 4; do dump "ord-bulk-$i"; done)
out=$("$MC" replay --status failed --error-class HTTP503 --dry-run)
assert_contains "$out" "would replay 4"
assert_eq "$before" "$(for i in 1 2 3 4; do dump "ord-bulk-$i"; done)" "bulk dry-run changed jobs"
rc=0; "$MC" replay --status failed --error-class HTTP503 2>"$TEST_TMP/err" || rc=$?
assert_eq 2 "$rc" "bulk replay without --reason"
assert_contains "$(cat "$TEST_TMP/err")" "needs --reason"
rc=0; "$MC" replay --status failed --error-code HTTP503 --reason "cce outage" </dev/null \
    >"$TEST_TMP/out" 2>&1 || rc=$?
assert_eq 1 "$rc" "bulk replay off a terminal without --yes"
assert_contains "$(cat "$TEST_TMP/out")" "will replay 4 Failed job(s) with error HTTP503"
assert_contains "$(cat "$TEST_TMP/out")" "add --yes"
assert_eq "$before" "$(for i in 1 2 3 4; do dump "ord-bulk-$i"; done)" "unconfirmed bulk replay changed jobs"
if command -v script >/dev/null; then # on a terminal it asks; anything but y/yes is a no
    rc=0; printf 'n\n' | script -qec "$MC replay --status failed --error-code HTTP503 --reason x" \
        /dev/null >"$TEST_TMP/out" 2>&1 || rc=$?
    assert_contains "$(cat "$TEST_TMP/out")" "replay these 4 job(s)? [y/N]"
    assert_contains "$(cat "$TEST_TMP/out")" "nothing was replayed"
    assert_eq "$before" "$(for i in 1 2 3 4; do dump "ord-bulk-$i"; done)" "declined bulk replay changed jobs"
fi
t0=$(date +%s%N)
out=$("$MC" replay --status failed --error-class HTTP503 --limit 3 --rate 4 --reason "cce outage" --yes)
t1=$(date +%s%N)
assert_contains "$out" "3 replayed, 0 refused"
[ $(((t1 - t0) / 1000000)) -ge 450 ] || fail "3 replays at 4/s took only $(((t1 - t0) / 1000000)) ms"
n=0
for i in 1 2 3 4; do [ "$(field "ord-bulk-$i" status)" = Installing ] && n=$((n + 1)); done
assert_eq 3 "$n" "bulk replayed jobs"
assert_eq Failed "$(field ord-other status)" "another error class was replayed"
assert_contains "$("$MC" show ord-bulk-1 --no-events)" "by ${USER:-$(id -un)}@"
assert_contains "$("$MC" show ord-bulk-1 --no-events)" "(status was Failed): cce outage"

# ------------------------------------------------------------------ deadlines from the definition
# A step's own deadline (restart: 5 min, install_release: 15 min) and the workers' default for
# compensations (600 s, the same setting the worker reads), not a second table.
now_ms=$(($(date +%s%N) / 1000000))
six_min_ago=$(echo "$parked_state" | jq -c --argjson t "$now_ms" 'del(.parked,.error) | .step_started_ms=($t - 360000)')
seed ord-dl-restart acct-e/mesh-dl-1 Installing restart "$(echo "$six_min_ago" | jq -c '.step=7')" \
    next_run "$((now_ms + 3600000))"
seed ord-dl-install acct-e/mesh-dl-2 Installing install_release "$six_min_ago" next_run "$((now_ms + 3600000))"
seed ord-dl-comp acct-e/mesh-dl-3 RollingBack label_nodes "$(echo "$six_min_ago" | jq -c '.phase="compensate" | .step=3')" \
    next_run "$((now_ms + 3600000))"
json=$("$MC" jobs --account acct-e --json)
assert_json "$json" '.[] | select(.order_id=="ord-dl-restart") | .stuck and (.stuck_reason | test("300s deadline"))' \
    "restart past its own 5 min deadline"
assert_json "$json" '[.[] | select(.stuck)] | map(.order_id) == ["ord-dl-restart"]' \
    "install_release (15 min) and a compensation (600 s) are not stuck after 6 min"

# ------------------------------------------------------------------ workers and outbox (seeded)
# ord-leased names worker-7, which has no heartbeat record: a gone worker still holding a job.
# A leased job is in its shard's due set scored by its lease end, as the claim script leaves it.
lease_end=$(field ord-leased lease_until)
redis_cli ZADD "mb:{s$(cat "$TEST_TMP/shard.ord-leased")}:due" "$lease_end" ord-leased >/dev/null
validate_each() { # schema file; a JSON array on stdin
    /usr/bin/python3 -c '
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
items = json.load(sys.stdin)
assert items, "empty"
for i in items:
    jsonschema.validate(i, schema)' "$1"
}
ws=$("$MC" workers -o json)
printf '%s' "$ws" | validate_each "$MB_ROOT/schemas/meshctl-worker.schema.json" ||
    fail "workers -o json does not match schemas/meshctl-worker.schema.json"
assert_json "$ws" 'map(.id) == ["worker-7"]' "the only lease owner"
assert_json "$ws" '.[0] | .state == "gone" and .host == null and .jobs_held == 1 and .jobs_expired == 0'
assert_json "$ws" '.[0].jobs[0] | .order_id == "ord-leased" and .mesh == "acct-b/mesh-leased" and .step == "install_release" and .lease_left_ms > 300000 and (.expired | not)'
out=$("$MC" workers)
assert_contains "$out" "worker-7"
assert_contains "$out" "no heartbeat record (the worker is gone); its jobs wait until their leases run out"
assert_contains "$out" "job ord-leased  acct-b/mesh-leased  Installing at install_release  lease "
assert_eq worker-7 "$("$MC" workers -o name)" "workers -o name"
rc=0; "$MC" workers nosuch >/dev/null 2>&1 || rc=$?; assert_eq 4 "$rc" "workers of an unknown id"
# Two events waiting on shard 3 since 90 s ago (an outbox entry is "<key>\n<traceparent>\n<event>"),
# its relay lease held by worker-9 (token "<worker id>:<n>"), none elsewhere.
t90=$(date -u -d '-90 seconds' +%Y-%m-%dT%H:%M:%S.000Z)
ev() { jq -cn --arg t "$t90" --argjson s "$1" '{specversion:"1.0", id:("acct-x/m1#" + ($s|tostring)),
    type:"com.meshbuy.mesh.status.v1", time:$t, data:{seq:$s, status:"Installing"}}'; }
redis_cli RPUSH 'mb:{s3}:outbox' "$(printf 'acct-x/m1\n\n%s' "$(ev 7)")" \
    "$(printf 'acct-x/m1\n\n%s' "$(ev 8)")" >/dev/null
redis_cli SET 'mb:{s3}:relay' worker-9:4 PX 60000 >/dev/null
ob=$("$MC" outbox -o json)
printf '%s' "$ob" | validate_each "$MB_ROOT/schemas/meshctl-outbox.schema.json" ||
    fail "outbox -o json does not match schemas/meshctl-outbox.schema.json"
assert_json "$ob" 'length == 1 and .[0].shard == 3 and .[0].backlog == 2 and .[0].oldest_id == "acct-x/m1#7"'
assert_json "$ob" '.[0] | .oldest_age_ms >= 89000 and .oldest_age_ms < 150000 and .oldest_status == "Installing"'
assert_json "$ob" '.[0] | .relay_worker == "worker-9" and .relay_token == "worker-9:4" and .relay_ttl_ms > 0 and .relay_ttl_ms <= 60000 and .relay_worker_state == "gone"'
assert_eq 16 "$(json_get "$("$MC" outbox --all -o json)" 'length')" "outbox --all: every shard"
out=$("$MC" outbox)
assert_contains "$out" "2 event(s) waiting; the oldest for 9"
assert_contains "$(echo "$out" | grep '^3 ')" "worker-9"
assert_eq 3 "$("$MC" outbox -o name)" "outbox -o name"
assert_contains "$("$MC" workers worker-9)" "worker-9" # a relay lease holder is a worker too

# ------------------------------------------------------------------ completion bash
"$MC" completion bash >"$TEST_TMP/meshctl.bash" || fail "completion bash"
shellcheck -s bash "$TEST_TMP/meshctl.bash" || fail "the completion script does not pass shellcheck"
rc=0; "$MC" completion zsh 2>/dev/null || rc=$?; assert_eq 2 "$rc" "completion of another shell"
complete_words() { # words... (the last one is being completed): prints COMPREPLY sorted
    MC_BIN=$MC bash -c '
source "$1"; shift
COMP_WORDS=("$MC_BIN" "$@"); COMP_CWORD=$#
_meshctl; [ ${#COMPREPLY[@]} -eq 0 ] || printf "%s\n" "${COMPREPLY[@]}" | LC_ALL=C sort | tr "\n" " "' _ "$TEST_TMP/meshctl.bash" "$@"
}
assert_eq "workers " "$(complete_words wor)" "a command"
assert_eq "watch workers " "$(complete_words w)" "commands"
assert_eq "--status --step " "$(complete_words jobs --st)" "a subcommand's flags"
assert_eq "--until-done " "$(complete_words watch --all --un)" "watch's flag from its own table"
assert_eq "json " "$(complete_words show x -o js)" "-o values"
assert_eq "Failed " "$(complete_words jobs --status Fa)" "--status values"
assert_eq "inject install_release " "$(complete_words replay x --from-step in)" "--from-step: step names"
assert_eq "list redrive show " "$(complete_words dlq '')" "dlq sub-commands"
assert_eq "" "$(complete_words dlq list '')" "nothing after the sub-command"
assert_eq "ord-bulk-1 ord-bulk-2 ord-bulk-3 ord-bulk-4 " "$(complete_words show ord-bu)" "order ids from the store"
assert_eq "worker-7 worker-9 " "$(complete_words workers wor)" "worker ids from the store"
# every command of --help completes, and every option of a command's --help
for c in $("$MC" --help | awk '/^commands:/ {on=1; next} on && /^  [a-z]/ {print $1} /^$/ && on {exit}' | sort -u); do
    assert_contains "$(complete_words "${c:0:2}")" "$c" "completion of $c"
done
for o in $("$MC" jobs --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    assert_contains "$(complete_words jobs "$o")" "$o" "completion of jobs $o"
done

note "ok"
