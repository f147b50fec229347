#!/usr/bin/env bash
# test_delete.sh: the delete saga end to end (devkafka + redis + cloudsim on
# tests/fixtures/cloudsim/delete.json, one cluster per case), after the create of the same mesh:
#   pre      a node already istio=canary, namespace shop already istio-injection=disabled, the
#            security group already allows 7443 (7000-8000): after Deleted, cloudsim's state is
#            the one before the create; a new buy of the same name is Running again
#   new      nothing there before (the create made the 7443 rule), restart on both sagas:
#            after Deleted the state is the one before the create, restart annotations aside
#            (a restart cannot be undone); release, rule and labels removed once each
#   cust     labels the customer changed after the purchase are left as set and named in
#            the Deleted message
#   unknown  a delete of a mesh never bought: Failed MeshNotFound, no cloud call at all
#   busy     a delete while the create installs: Failed MeshBusy, the create still Running
#   dup      the same delete delivered three times: one delete
#   fail     a delete step failing permanently (403 on the release DELETE): Failed at
#            uninstall_release with its code; what was removed stays removed, nothing re-made
#   kill-*   a worker is SIGKILLed at uninject, restart, uninstall_release, close_port and
#            unlabel_nodes (the steps that change the cloud),
#            its call held by cloudsim after (a) or before (b) it took effect; another worker
#            finishes: Deleted, each deletion once
# Every mesh's status stream is gapless across both sagas (seq 1..n under the key), every event
# matches the schema.
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

SAGA_SCENARIO="$MB_ROOT/tests/fixtures/cloudsim/delete.json"
saga_stack_up
# Hung calls should outlive the wait for all of them (10 s calls), and a worker's lease must
# be at least 3 call timeouts + the margin: the takeovers wait 31 s.  A call that times out
# anyway is retried into a second hold that never acts, lifted after the kill.
W_ENV=(MESHBUY_HTTP_TIMEOUT_MS=10000 MESHBUY_LEASE_MARGIN_MS=1000 MESHBUY_LEASE_MS=31000)
saga_worker w1 "${W_ENV[@]}"

saga_delete() { # ID ACCOUNT MESH [meshbuy args]; project $DEL_PROJECT (default proj-a)
    local id=$1 acct=$2 mesh=$3
    shift 3
    "$MB_BIN/meshbuy" --delete --order-id "$id" --account "$acct" --name "$mesh" \
        --project "${DEL_PROJECT:-proj-a}" --region "$SAGA_REGION" "$@" >/dev/null 2>"$TEST_TMP/meshbuy.err" ||
        fail "meshbuy could not publish delete $id: $(cat "$TEST_TMP/meshbuy.err")"
}

# A cluster's state as compared across a create and its delete: the labels Kubernetes sets by
# itself (kubernetes.io/metadata.name), kube-system and the bookkeeping fields that change on
# any write (resourceVersion, generation) aside.
cs_norm() {
    cs_state "$1" | jq -S 'del(.. | .resource_version?, .resourceVersion?, .generation?,
        .observed_generation?, .observedGeneration?) |
        (.clusters[].namespaces) |= map(select(.name != "kube-system") |
            .labels |= (del(.["kubernetes.io/metadata.name"])))'
}

# Workloads' template annotations (a restart's trace) left out too.
cs_norm_norestart() {
    cs_norm "$1" | jq -S 'del(.clusters[].workloads[].template_annotations)'
}

# ORDER's data objects on KEY after checking the stream: it ends with exactly one WANT, the
# first event is Deleting, and it has no event after the end.
check_delete() { # KEY ORDER WANT
    local key=$1 order=$2 want=$3 evs data
    evs=$(saga_stream "$key")
    data=$(printf '%s\n' "$evs" | jq -c --arg o "$order" 'select(.data.order_id == $o) | .data')
    [ -n "$data" ] || fail "no events of $order on $key"
    assert_eq 1 "$(printf '%s\n' "$data" | jq -s --arg s "$want" '[.[] | select(.status == $s)] |
        length')" "$order: $want events"
    assert_eq "$want" "$(printf '%s\n' "$data" | tail -n 1 | jq -r .status)" \
        "$order: last status ($(saga_statuses "$data"))"
    assert_eq Deleting "$(printf '%s\n' "$data" | head -n 1 | jq -r .status)" "$order: first"
    assert_eq 0 "$(printf '%s\n' "$data" | jq -s '[.[] | select(.step_total != 9)] | length')" \
        "$order: step_total 9 on every event"
    printf '%s\n' "$data"
}

mutation_count() { # KIND CLUSTER-or-SG
    cs_get /admin/mutations | jq --arg k "$1" --arg c "$2" '[.mutations[] | select(.kind == $k
        and (.cluster_id == $c or .security_group_id == $c))] | length'
}

# ---- unknown: first, while nothing else runs, so "no call" is global
unknown_case() {
    local d tp
    saga_delete d-unknown acct-none none-mesh
    assert_eq Failed "$(saga_wait_terminal 60 acct-none/none-mesh d-unknown)"
    d=$(check_delete acct-none/none-mesh d-unknown Failed)
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" '.step == "precheck" and
        .error.code == "MeshNotFound" and .step_index == 2' "MeshNotFound at precheck"
    # the order's traceparent travels on every call it makes: none carries it
    tp=$(saga_events acct-none/none-mesh | jq -r '.payload | fromjson | .traceparent' | sort -u)
    assert_eq 1 "$(printf '%s\n' "$tp" | grep -c '^00-')" "one traceparent on its events"
    assert_eq 0 "$(cs_get "/admin/requests?limit=100000" | jq --arg tp "$tp" '[.requests[] |
        select(.traceparent == $tp)] | length')" "no cloud request for an unknown mesh"
    assert_eq 0 "$(cs_get /admin/mutations | jq .total)" "no mutation at all"
}
saga_case unknown unknown_case

saga_worker w2 "${W_ENV[@]}"

# ---- creates of every case, at once
PRE0=$(cs_norm c-pre)
NEW0=$(cs_norm_norestart c-new)
saga_buy o-pre acct-pre pre-mesh proj-a c-pre --node n-pre-1 --node n-pre-2 \
    --namespace shop --namespace payments
saga_buy o-new acct-new new-mesh proj-a c-new --node n-new-1 --namespace shop --restart
saga_buy o-cust acct-cust cust-mesh proj-a c-cust --node n-cust-1 --node n-cust-2 \
    --namespace shop --namespace payments
saga_buy o-dup acct-dup dup-mesh proj-a c-dup --node n-dup-1 --namespace shop
saga_buy o-fail acct-fail fail-mesh proj-a c-fail --node n-fail-1 --namespace shop
KILLS=(uninject restart uninstall close unlabel)
waits=()
for b in a b; do
    for s in "${KILLS[@]}"; do
        saga_buy "o-k$b-$s" "acct-k$b-$s" "k$b-$s-mesh" "proj-k$b-$s" "c-k$b-$s" --node "n-k$b-$s-1" \
            --namespace shop
        waits+=("acct-k$b-$s/k$b-$s-mesh:o-k$b-$s")
    done
done
saga_wait_all 180 acct-pre/pre-mesh:o-pre acct-new/new-mesh:o-new acct-cust/cust-mesh:o-cust \
    acct-dup/dup-mesh:o-dup acct-fail/fail-mesh:o-fail "${waits[@]}"

# ---- busy: the create's release creation is slowed; the delete lands while it installs
busy_case() {
    local d
    cs_fault '{"match": {"method": "POST", "path_contains": "/clusters/c-busy/releases"},
        "latency_ms": 4000, "count": 1}' >/dev/null
    saga_buy o-busy acct-busy busy-mesh proj-a c-busy --node n-busy-1 --namespace shop
    wait_for 60 cs_requests_match POST /clusters/c-busy/releases
    saga_delete d-busy acct-busy busy-mesh
    assert_eq Failed "$(saga_wait_terminal 60 acct-busy/busy-mesh d-busy)"
    assert_eq Running "$(saga_wait_terminal 60 acct-busy/busy-mesh o-busy)" "the create goes on"
    d=$(check_delete acct-busy/busy-mesh d-busy Failed)
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" '.step == "precheck" and
        .error.code == "MeshBusy"' "MeshBusy at precheck"
    assert_eq 0 "$(mutation_count release_delete c-busy)" "no deletion on a busy mesh"
    assert_eq 0 "$(mutation_count sg_rule_delete sg-busy)" "no rule deletion on a busy mesh"
}
saga_case busy busy_case

# ---- the deletes (dup three times, the same order id); kill cases later
cs_fault '{"match": {"method": "DELETE", "path_contains": "/clusters/c-fail/namespace/"},
    "error_status": 403, "count": 1}' >/dev/null
saga_delete d-pre acct-pre pre-mesh
saga_delete d-new acct-new new-mesh --restart
for _ in 1 2 3; do saga_delete d-dup acct-dup dup-mesh; done
saga_delete d-fail acct-fail fail-mesh
# cust: the customer changes labels after the purchase, through the signed APIs
k8s_patch() { # CLUSTER PATH JSON
    local url="$MESHBUY_CCE_URL/k8s/$1$2" h
    mapfile -t h < <("$MB_BIN/cloudsim" --sign PATCH "$url" "$3")
    curl -sf --max-time 10 -X PATCH -H 'Content-Type: application/merge-patch+json' \
        "${h[@]/#/-H}" --data-binary "$3" "$url" >/dev/null || fail "PATCH $url failed"
}
k8s_patch c-cust /api/v1/namespaces/shop '{"metadata":{"labels":{"istio-injection":"disabled"}}}'
k8s_patch c-cust /api/v1/nodes/cust-node-2 '{"metadata":{"labels":{"istio":"edge"}}}'
saga_delete d-cust acct-cust cust-mesh
saga_wait_all 120 acct-pre/pre-mesh:d-pre acct-new/new-mesh:d-new acct-dup/dup-mesh:d-dup \
    acct-fail/fail-mesh:d-fail acct-cust/cust-mesh:d-cust

pre_case() {
    local d
    d=$(check_delete acct-pre/pre-mesh d-pre Deleted)
    assert_eq "validate precheck uninject restart uninstall_release close_port unlabel_nodes release_name" \
        "$(printf '%s\n' "$d" | jq -r 'select(.status == "Deleting" and
        (.message | endswith(" done"))) | .step' | tr '\n' ' ' | sed 's/ $//')" "steps in order"
    assert_eq 1 "$(printf '%s\n' "$d" | jq -s '[.[].mesh_id | select(.)] | unique | length')" \
        "one mesh_id"
    assert_eq "$(saga_events acct-pre/pre-mesh | jq -r '.payload | fromjson |
        select(.data.order_id == "o-pre") | .data.mesh_id // empty' | sort -u)" \
        "$(printf '%s\n' "$d" | jq -r '.mesh_id // empty' | sort -u)" \
        "the delete reports the create's mesh_id"
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" '.cluster_id == "c-pre" and
        .step == "finish" and .step_index == 9'
    assert_eq "$PRE0" "$(cs_norm c-pre)" "c-pre after Deleted is as before the purchase"
    assert_eq 0 "$(mutation_count sg_rule_delete sg-pre)" "the rule that was there stays"
    # the name is free again: a new buy is a new mesh
    saga_buy o-pre2 acct-pre pre-mesh proj-a c-pre --node n-pre-1 --namespace shop
    assert_eq Running "$(saga_wait_terminal 90 acct-pre/pre-mesh o-pre2)" "a new buy of the name"
    saga_stream acct-pre/pre-mesh >/dev/null
}
saga_case pre pre_case

new_case() {
    local st
    check_delete acct-new/new-mesh d-new Deleted >/dev/null
    assert_eq "$NEW0" "$(cs_norm_norestart c-new)" "c-new after Deleted is as before the purchase"
    assert_eq 1 "$(mutation_count release_delete c-new)" "one release deletion"
    assert_eq 1 "$(mutation_count sg_rule_delete sg-new)" "the create's rule deleted once"
    assert_eq 2 "$(mutation_count namespace_label_patch c-new)" "shop labeled, then restored"
    assert_eq 2 "$(mutation_count node_label_patch c-new)" "node labeled, then restored"
    # restart on both sagas: web restarted twice (the paused legacy never); pay not labeled
    assert_eq 2 "$(cs_get /admin/mutations | jq '[.mutations[] | select(.kind == "workload_patch"
        and .cluster_id == "c-new" and .target == "deployments/shop/web")] | length')" \
        "web restarted by the create and by the delete"
    assert_contains "$(saga_events acct-new/new-mesh | jq -r '.payload | fromjson | .data |
        select(.order_id == "d-new" and .status == "Deleted") | .message')" \
        "shop/Deployment/legacy" "Deleted names the paused deployment the restart skipped"
    st=$(cs_state c-new)
    assert_json "$st" '[.clusters[0].releases[]] | length == 0' "no release left"
    assert_json "$st" '[.clusters[0].namespaces[] | select(.name == "istio-system")] |
        length == 0' "istio-system gone with its release"
}
saga_case new new_case

cust_case() {
    local d st msg
    d=$(check_delete acct-cust/cust-mesh d-cust Deleted)
    msg=$(printf '%s\n' "$d" | tail -n 1 | jq -r .message)
    assert_contains "$msg" "namespace shop istio-injection=disabled" "the namespace is named"
    assert_contains "$msg" "node cust-node-2 istio=edge" "the node is named"
    st=$(cs_state c-cust)
    assert_eq "disabled null" "$(json_get "$st" '[.clusters[0].namespaces[] |
        select(.name == "shop" or .name == "payments") | .labels["istio-injection"]] |
        map(tostring) | join(" ")')" "shop left as the customer set it, payments restored"
    assert_eq "null edge" "$(json_get "$st" '[.clusters[0].nodes[] | .labels.istio] |
        map(tostring) | join(" ")')" "node 1 restored, node 2 left as set"
}
saga_case cust cust_case

dup_case() {
    check_delete acct-dup/dup-mesh d-dup Deleted >/dev/null
    assert_eq 1 "$(mutation_count release_delete c-dup)" "one release deletion"
    assert_eq 1 "$(mutation_count sg_rule_delete sg-dup)" "one rule deletion"
}
saga_case dup dup_case

fail_case() {
    local d st
    d=$(check_delete acct-fail/fail-mesh d-fail Failed)
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" '.step == "uninstall_release" and
        .step_index == 5 and .error.retryable == false and (.error.code | length > 0)' \
        "Failed at uninstall_release"
    assert_contains "$(printf '%s\n' "$d" | tail -n 1 | jq -r .message)" "stays removed" \
        "the Failed message says what was removed stays removed"
    assert_eq 0 "$(printf '%s\n' "$d" | jq -s '[.[] | select(.status == "RollingBack")] |
        length')" "no compensation"
    st=$(cs_state c-fail)
    assert_json "$st" '[.clusters[0].namespaces[] | select(.name == "shop") |
        .labels["istio-injection"]] == [null]' "uninject's effect kept"
    assert_json "$st" '[.clusters[0].releases[]] | length == 1' "the release is still there"
    assert_eq 2 "$(mutation_count namespace_label_patch c-fail)" "labeled once, restored once"
    assert_eq 1 "$(mutation_count release_create c-fail)" "nothing re-installed"
}
saga_case fail fail_case

# ---- kill: w2 goes, w1 alone takes the deletes and stops at the held calls, SIGKILL, w3
mb_stop w2 TERM 10 || true
declare -A HOLD=(
    [uninject]='PATCH path_contains /k8s/c-%s/api/v1/namespaces/'
    [restart]='PATCH path_contains /k8s/c-%s/apis/apps/v1/namespaces/'
    [uninstall]='DELETE path_contains /clusters/c-%s/namespace/'
    [close]='DELETE path_prefix /v3/proj-%s/vpc/security-group-rules/'
    [unlabel]='PATCH path_contains /k8s/c-%s/api/v1/nodes/'
)
hold_batch() { # a|b: the first matching call of each kill case ("a": after it took effect),
    # and every later one before it acts, until unhold_batch
    local b=$1 s method how path after=false
    [ "$b" = a ] && after=true
    for s in "${KILLS[@]}"; do
        # shellcheck disable=SC2086
        set -- ${HOLD[$s]}
        method=$1 how=$2
        # shellcheck disable=SC2059
        path=$(printf "$3" "k$b-$s")
        cs_fault "{\"match\": {\"method\": \"$method\", \"$how\": \"$path\"}, \"hang\": true,
            \"after\": $after, \"count\": 1}" >/dev/null
        cs_fault "{\"match\": {\"method\": \"$method\", \"$how\": \"$path\"}, \"hang\": true}" \
            >>"$TEST_TMP/holds-$b"
    done
}

unhold_batch() { # a|b
    local id
    while read -r id; do cs_delete "/admin/faults/$id"; done <"$TEST_TMP/holds-$1"
}

all_held() { # batch
    local b=$1 s
    for s in "${KILLS[@]}"; do
        # shellcheck disable=SC2086
        set -- ${HOLD[$s]}
        # shellcheck disable=SC2059
        cs_requests_match "$1" "$(printf "$3" "k$b-$s")" '.fault == "hang"' || return 1
    done
}

kill_batch() { # a|b
    local b=$1 s args
    hold_batch "$b"
    for s in "${KILLS[@]}"; do
        args=()
        [ "$s" = restart ] && args=(--restart)
        DEL_PROJECT="proj-k$b-$s" saga_delete "d-k$b-$s" "acct-k$b-$s" "k$b-$s-mesh" "${args[@]}"
    done
    wait_for 120 all_held "$b"
    note "batch $b: every delete held at its step; SIGKILL $2"
    mb_stop "$2" KILL 5 || true
    unhold_batch "$b"
}

kill_batch a w1
saga_worker w3 "${W_ENV[@]}"
kill_batch b w3
saga_worker_nowait w4
waits=()
for b in a b; do
    for s in "${KILLS[@]}"; do waits+=("acct-k$b-$s/k$b-$s-mesh:d-k$b-$s"); done
done
saga_wait_all 180 "${waits[@]}"

kill_case() { # b s
    local b=$1 s=$2 id="k$1-$2" d
    d=$(check_delete "acct-$id/$id-mesh" "d-$id" Deleted)
    assert_json "$(printf '%s\n' "$d" | jq -s 'map(.attempt) | max')" '. >= 1'
    assert_eq 1 "$(mutation_count release_delete "c-$id")" "$id: one release deletion"
    assert_eq 1 "$(mutation_count sg_rule_delete "sg-$id")" "$id: one rule deletion"
    assert_eq 2 "$(mutation_count node_label_patch "c-$id")" "$id: node labeled, restored once"
    assert_eq 2 "$(mutation_count namespace_label_patch "c-$id")" \
        "$id: shop labeled, restored once"
    if [ "$s" = restart ]; then
        assert_eq "deployments/shop/web" "$(cs_get /admin/mutations | jq -r --arg c "c-$id" \
            '[.mutations[] | select(.kind == "workload_patch" and .cluster_id == $c) |
            .target] | join(" ")')" "$id: web restarted once, the paused legacy never"
    fi
    assert_json "$(cs_state "c-$id")" '([.clusters[0].releases[]] | length == 0) and
        ([.clusters[0].nodes[] | .labels.istio | select(. != null)] | length == 0) and
        ([.clusters[0].namespaces[] | .labels["istio-injection"] | select(. != null)] |
        length == 0)' "$id: nothing of the purchase left"
}
for b in a b; do
    for s in "${KILLS[@]}"; do
        saga_case "kill-$b-$s" kill_case "$b" "$s"
    done
done

metrics_case() { # the worker that finished batch b: its metrics name the delete saga's steps
    local m
    m=$(curl -sf --max-time 10 "http://127.0.0.1:$(cat "$TEST_TMP/w4.port")/metrics") ||
        fail "no /metrics from w4"
    assert_eq "" "$(printf '%s\n' "$m" | grep -v '^#' | awk '{ print $1 }' | sort | uniq -d)" \
        "no series twice (the sagas share step names)"
    assert_json "$(printf '%s\n' "$m" | awk '/^meshbuy_sagas_ended_total\{status="Deleted"\}/ {
        print $2 }')" '. >= 1' "Deleted counted"
    assert_contains "$m" 'meshbuy_step_execution_seconds_count{saga="delete",step="uninject"}'
}
saga_case metrics metrics_case

saga_validate_all
saga_done
