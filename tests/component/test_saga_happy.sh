#!/usr/bin/env bash
# test_saga_happy.sh: the create-mesh saga end to end on its success paths, two meshworkers in
# one group against devkafka + redis + cloudsim (tests/fixtures/cloudsim/saga.json), one
# cluster per case, all cases in flight at once:
#   happy     HA nodes in two AZs, two namespaces, restart: labels, one release, one 7443 rule,
#             injection labels, workloads restarted except the paused one (named in Running);
#             the order's traceparent on every event and every call to its cluster
#   single    one node, no namespaces: no namespace or workload touched
#   open      the node security group already allows 7443: no rule created
#   dup       the same order id three times (and once more after Running): one job, one
#             Running, each side effect once
#   conflict  a second order for the same account and name: Failed NameConflict, no mutation
# In every case cloudsim's mutation log must list each side effect exactly once, and the
# status stream of the mesh must be gapless (seq 1..n, repeats only as identical copies).
# w2 runs with an open-file limit of 700, below its calls and idle connections (3,072 and
# 2,048 by default): it says so and cuts them to fit, and takes its share of the cases.
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

saga_stack_up
saga_worker_nowait w1
saga_worker_nowait w2 prlimit --nofile=700:700
wait_for 60 curl -sf --max-time 2 "http://127.0.0.1:$(cat "$TEST_TMP/w1.port")/readyz"
wait_for 60 curl -sf --max-time 2 "http://127.0.0.1:$(cat "$TEST_TMP/w2.port")/readyz"

HAPPY0=$(cs_state c-happy)
OPEN0=$(cs_state c-open)
CONFLICT2_0=$(cs_state c-conflict2)

# ---- publish every case at once
saga_buy o-happy acct-happy happy-mesh proj-a c-happy --node n-happy-1 --node n-happy-2 \
    --namespace shop --namespace payments --restart
saga_buy o-single acct-single single-mesh proj-a c-single --node n-single-1
saga_buy o-open acct-open open-mesh proj-a c-open --node n-open-1 --node n-open-2 \
    --namespace shop
for _ in 1 2 3; do
    saga_buy o-dup acct-dup dup-mesh proj-a c-dup --node n-dup-1 --node n-dup-2 \
        --namespace payments --restart
done
saga_buy o-conf-a acct-conf conf-mesh proj-a c-conflict --node n-conflict-1 --node n-conflict-2
saga_buy o-conf-b acct-conf conf-mesh proj-a c-conflict2 --node n-conflict2-1

saga_wait_all 120 acct-happy/happy-mesh:o-happy acct-single/single-mesh:o-single \
    acct-open/open-mesh:o-open acct-dup/dup-mesh:o-dup acct-conf/conf-mesh:o-conf-a \
    acct-conf/conf-mesh:o-conf-b

# Names of the steps whose "<step> done" event is in the data lines, in stream order.
steps_done() {
    printf '%s\n' "$1" | jq -r 'select(.status == "Installing" and
        (.message | endswith(" done"))) | .step' | tr '\n' ' ' | sed 's/ $//'
}
HAPPY_MUTATIONS=("release_create istio-system/istio-master" "sg_rule_create *"
    "namespace_label_patch shop" "namespace_label_patch payments"
    "workload_patch deployments/shop/web" "workload_patch statefulsets/shop/db"
    "workload_patch daemonsets/shop/agent" "workload_patch deployments/payments/pay")
RESTARTED='.template_annotations["kubectl.kubernetes.io/restartedAt"]'

# ---- happy: HA, two namespaces, restart
case_happy() {
    local d run st c='.clusters[0]'
    d=$(saga_check_order acct-happy/happy-mesh o-happy Running)
    assert_eq "Accepted Installing" "$(saga_statuses "$d" | awk '{ print $1, $2 }')" \
        "stream start"
    assert_eq 0 "$(printf '%s\n' "$d" | jq -s '[.[] | select(.status != "Accepted" and
        .status != "Installing" and .status != "Running")] | length')" "only progress statuses"
    assert_eq "validate reserve precheck label_nodes install_release open_port inject restart" \
        "$(steps_done "$d")" "every step reports its completion, in saga order"
    # the only worker is on this layout: its checkpoints keep one field per step record
    assert_eq "step:00:validate step:08:finish 9" "$(redis_cli HKEYS \
        "mb:{s$(redis_cli GET mb:order:o-happy)}:job:o-happy" | grep '^step:' | sort |
        awk 'NR == 1 { f = $0 } { l = $0 } END { print f, l, NR }')" "split job record"
    assert_eq 1 "$(printf '%s\n' "$d" | jq -s '[.[] | select(.status != "Accepted") |
        .mesh_id] | unique | length')" "one mesh_id"
    run=$(printf '%s\n' "$d" | tail -n 1)
    assert_json "$run" '.step == "finish" and .step_index == 9 and .step_total == 9 and
        .cluster_id == "c-happy" and .mesh_name == "happy-mesh" and (has("error") | not)'
    assert_contains "$(json_get "$run" .message)" "paused" "Running reports the paused deployment"
    assert_mutations c-happy "node_label_patch happy-node-1" "node_label_patch happy-node-2" \
        "${HAPPY_MUTATIONS[@]}"
    st=$(cs_state c-happy)
    assert_eq "master master null" "$(json_get "$st" "[$c.nodes[] | .labels.istio] |
        map(tostring) | join(\" \")")" "istio=master on the two chosen nodes only"
    assert_json "$st" "[$c.releases[]] | length == 1"
    assert_json "$st" "$c.releases[0] | .name == \"istio-master\" and
        .namespace == \"istio-system\" and .status == \"DEPLOYED\" and
        .values.nodeSelector.istio == \"master\" and .chart_version == \"1.18.7-r1\""
    assert_eq 1 "$(cs_rule_ids c-happy | grep -c .)" "one 7443 rule"
    assert_json "$st" '[.security_groups[0].rules[] | select(.multiport == "7443")][0] |
        .direction == "ingress" and .protocol == "tcp" and .action == "allow"'
    assert_eq "$(json_get "$HAPPY0" '.security_groups[0].rules | length + 1')" \
        "$(json_get "$st" '.security_groups[0].rules | length')" "exactly one rule added"
    assert_eq '{"default":null,"payments":"enabled","shop":"enabled"}' \
        "$(json_get "$st" "[$c.namespaces[] | select(.name == \"shop\" or
        .name == \"payments\" or .name == \"default\") | {(.name):
        .labels[\"istio-injection\"]}] | add | to_entries | sort_by(.key) | from_entries |
        tojson")" "injection on the two namespaces only"
    assert_eq "shop" "$(json_get "$st" "$c.namespaces[] | select(.labels.team) | .name")" \
        "other labels kept"
    assert_eq "payments/pay shop/agent shop/db shop/web" "$(json_get "$st" "[$c.workloads[] |
        select($RESTARTED) | \"\(.namespace)/\(.name)\"] | sort | join(\" \")")" \
        "restarted workloads: all but the paused one and kube-system's"
    assert_eq 1 "$(json_get "$st" "[$c.workloads[] | select($RESTARTED) | $RESTARTED] |
        unique | length")" "one restart timestamp per job"
    # The order's W3C traceparent is on its status events and on every call to its cluster.
    local tp calls
    tp=$(saga_events acct-happy/happy-mesh | jq -r '.payload | fromjson |
        select(.data.order_id == "o-happy") | .traceparent' | sort -u)
    assert_eq 1 "$(printf '%s
' "$tp" | grep -c '^00-')" "one traceparent on every event"
    calls=$(cs_get "/admin/requests?limit=100000" | jq -c '[.requests[] |
        select(.path | contains("/c-happy"))]')
    assert_eq "[\"$tp\"]" "$(jq -c '[.[].traceparent] | unique' <<<"$calls")" \
        "every call to the cluster carries the order's traceparent"
    # A first attempt creates the release without reading it first (precheck found no
    # istio-system); what it reads after is the install's progress.
    assert_eq POST "$(jq -r '[.[] | select(.path | contains("releases"))][0].method' \
        <<<"$calls")" "the release is created first"
}
saga_case happy case_happy

# ---- single node, no namespaces
case_single() {
    local d
    d=$(saga_check_order acct-single/single-mesh o-single Running)
    assert_mutations c-single "node_label_patch single-node-1" \
        "release_create istio-system/istio-master" "sg_rule_create *"
    assert_not_contains "$(printf '%s\n' "$d" | tail -n 1 | jq -r .message)" "paused"
    # The checkpoints of this buy (no namespace, no restart): after reserve, precheck,
    # label_nodes' prior values, install_release's intent, its completion, open_port's intent
    # and completion, then inject, restart and finish as one (9 when restart wrote its own).
    assert_eq 8 "$(redis_cli HGET "mb:{s$(redis_cli GET mb:order:o-single)}:job:o-single" ck)" \
        "checkpoints of the buy"
}
saga_case single case_single

# ---- the security group already allows 7443 (rule 7000-8000): nothing created
case_open() {
    saga_check_order acct-open/open-mesh o-open Running >/dev/null
    assert_mutations c-open "node_label_patch open-node-1" "node_label_patch open-node-2" \
        "release_create istio-system/istio-master" "namespace_label_patch shop"
    assert_eq "$(json_get "$OPEN0" .security_groups)" \
        "$(json_get "$(cs_state c-open)" .security_groups)" "security group untouched"
}
saga_case open case_open

# ---- duplicate delivery
dup_total() { # duplicate deliveries counted by the workers
    local w n=0 v
    for w in w1 w2; do
        v=$(mb_metric "$(cat "$TEST_TMP/$w.port")" meshbuy_orders_duplicate_total)
        n=$((n + ${v%.*}))
    done
    echo "$n"
}
dup_grew() { [ "$(dup_total)" -gt "$1" ]; }
dup_mutations() {
    assert_mutations c-dup "node_label_patch dup-node-1" "node_label_patch dup-node-2" \
        "release_create istio-system/istio-master" "sg_rule_create *" \
        "namespace_label_patch payments" "workload_patch deployments/payments/pay"
}
case_dup() {
    local d dups n
    d=$(saga_check_order acct-dup/dup-mesh o-dup Running)
    dup_mutations
    assert_eq 1 "$(printf '%s\n' "$d" | jq -s '[.[] | select(.status != "Accepted") |
        .mesh_id] | unique | length')" "one job"
    dups=$(dup_total)
    [ "$dups" -ge 2 ] || fail "workers counted $dups duplicate deliveries, want at least 2"
    # once more after Running: counted as a duplicate, nothing else happens
    n=$(saga_stream acct-dup/dup-mesh | grep -c .)
    saga_buy o-dup acct-dup dup-mesh proj-a c-dup --node n-dup-1 --node n-dup-2 \
        --namespace payments --restart
    wait_for 30 dup_grew "$dups"
    assert_eq "$n" "$(saga_stream acct-dup/dup-mesh | grep -c .)" "no event after redelivery"
    dup_mutations
}
saga_case dup case_dup

# ---- name conflict: the second order fails without touching its cluster
case_conflict() {
    local b
    saga_check_order acct-conf/conf-mesh o-conf-a Running >/dev/null
    b=$(saga_stream acct-conf/conf-mesh | jq -c 'select(.data.order_id == "o-conf-b") | .data')
    assert_eq 1 "$(printf '%s\n' "$b" | grep -c .)" "one event for the second order"
    assert_json "$b" '.status == "Failed" and .error.code == "NameConflict" and
        .error.retryable == false'
    assert_mutations c-conflict "node_label_patch conflict-node-1" \
        "node_label_patch conflict-node-2" "release_create istio-system/istio-master" \
        "sg_rule_create *"
    assert_mutations c-conflict2
    assert_eq "$CONFLICT2_0" "$(cs_state c-conflict2)" "second cluster untouched"
}
saga_case conflict case_conflict

saga_case schema saga_validate_all
assert_contains "$(grep 'open files limit' "$TEST_TMP/w2.log")" \
    "open files limit 700 is below MESHBUY_HTTP_MAX_ACTIVE + MESHBUY_HTTP_MAX_CONNECTIONS (5120) + 128 for Kafka, Redis and the admin server: using 286 calls on the wire and 286 idle connections"
mb_alive w1 || fail "w1 died"
mb_alive w2 || fail "w2 died"
saga_done
