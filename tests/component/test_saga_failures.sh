#!/usr/bin/env bash
# test_saga_failures.sh: the create-mesh saga when it must not or cannot finish, two
# meshworkers against devkafka + redis + cloudsim (tests/fixtures/cloudsim/saga.json), one
# cluster per case:
#   precheck  each precheck failure (ClusterNotFound twice, ClusterNotAvailable,
#             UnsupportedClusterVersion, CoreDNSNotReady, TooManyPods, IstioSystemExists,
#             NamespaceNotFound, NodeNotFound, NodeNotActive, HANeedsTwoAZs): Failed with that
#             code at precheck, no mutating call at all; the name is free again afterwards
#   relfail   the release ends FAILED: Accepted, Installing..., RollingBack, Failed ReleaseFailed;
#             labels restored, release deleted: the cluster is exactly as before
#   late      a permanent error at restart, the last step: everything undone in reverse (rule
#             deleted, namespace labels back to their prior values, release deleted, labels);
#             a node that had istio=master before keeps it and is never patched
#   quota     the security group is full (VPC.9905): Failed at open_port, everything undone
#   cancel    cancelled while the release installs: RollingBack, Cancelled, everything undone
#   taken     another's release appears while this order's create is held: Failed
#             ReleaseExists, the other's release untouched, everything of this order's undone
# Every stream is gapless, every side effect (and its undo) shows exactly once in cloudsim's
# mutation log, every event matches the schema.
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

saga_stack_up
saga_worker_nowait w1
saga_worker_nowait w2
wait_for 60 curl -sf --max-time 2 "http://127.0.0.1:$(cat "$TEST_TMP/w1.port")/readyz"
wait_for 60 curl -sf --max-time 2 "http://127.0.0.1:$(cat "$TEST_TMP/w2.port")/readyz"

# case name -> "cluster code order args"; the account and mesh are named after the case.
declare -A PRE=(
    [other]="c-other ClusterNotFound --node n-other-1"
    [nowhere]="c-nowhere ClusterNotFound --node n-nowhere-1"
    [unav]="c-unav ClusterNotAvailable --node n-unav-1 --node n-unav-2"
    [old]="c-old UnsupportedClusterVersion --node n-old-1"
    [nodns]="c-nodns CoreDNSNotReady --node n-nodns-1"
    [big]="c-big TooManyPods --node n-big-1"
    [left]="c-left IstioSystemExists --node n-left-1"
    [nsmiss]="c-nsmiss NamespaceNotFound --node n-nsmiss-1 --namespace shop --namespace ghost"
    [nodemiss]="c-nodemiss NodeNotFound --node n-nodemiss-1 --node n-ghost"
    [inact]="c-inact NodeNotActive --node n-inact-1 --node n-inact-2"
    [saz]="c-saz HANeedsTwoAZs --node n-saz-1 --node n-saz-2"
)
declare -A BEFORE
for k in "${!PRE[@]}"; do
    read -ra w <<<"${PRE[$k]}" && set -- "${w[@]}"
    [ "$1" = c-nowhere ] || BEFORE[$1]=$(cs_state "$1")
done
for c in c-relfail c-late c-quota c-cancel c-rebuy c-taken; do
    BEFORE[$c]=$(cs_state "$c")
done

# late: listing the workloads of payments is forbidden (permanent), after every other effect
cs_fault '{"match": {"method": "GET",
    "path_contains": "/k8s/c-late/apis/apps/v1/namespaces/payments/"}, "error_status": 403}' \
    >/dev/null

# ---- phase 1: every case but cancel, at once
waits=()
for k in "${!PRE[@]}"; do
    read -ra w <<<"${PRE[$k]}" && set -- "${w[@]}"
    c=$1
    shift 2
    saga_buy "o-pf-$k" "acct-pf-$k" "pf-$k-mesh" proj-a "$c" "$@"
    waits+=("acct-pf-$k/pf-$k-mesh:o-pf-$k")
done
saga_buy o-relfail acct-relfail relfail-mesh proj-a c-relfail --node n-relfail-1 \
    --node n-relfail-2 --namespace shop --namespace payments --restart
saga_buy o-late acct-late late-mesh proj-a c-late --node n-late-1 --node n-late-2 \
    --namespace shop --namespace payments --restart
saga_buy o-quota acct-quota quota-mesh proj-a c-quota --node n-quota-1 --node n-quota-2 \
    --namespace shop
saga_wait_all 150 "${waits[@]}" acct-relfail/relfail-mesh:o-relfail acct-late/late-mesh:o-late \
    acct-quota/quota-mesh:o-quota

# ---- precheck failures: the right code, no mutating call, nothing changed
case_precheck() { # case-key
    local k=$1 c code d f m
    read -ra w <<<"${PRE[$k]}" && set -- "${w[@]}"
    c=$1 code=$2
    d=$(saga_check_order "acct-pf-$k/pf-$k-mesh" "o-pf-$k" Failed)
    f=$(printf '%s\n' "$d" | tail -n 1)
    assert_json "$f" ".step == \"precheck\" and .error.code == \"$code\" and
        .error.retryable == false" "precheck $k: Failed event"
    assert_eq 0 "$(printf '%s\n' "$d" | jq -s '[.[] | select(.status == "Running")] | length')" \
        "precheck $k: never Running"
    [ "$c" != c-nowhere ] || return 0
    assert_mutations "$c"
    for m in POST PATCH PUT DELETE; do
        ! cs_requests_match "$m" "/$c" || fail "precheck $k: a $m request reached $c"
    done
    assert_eq "${BEFORE[$c]}" "$(cs_state "$c")" "precheck $k: $c changed"
}
for k in $(printf '%s\n' "${!PRE[@]}" | sort); do
    saga_case "precheck-$k" case_precheck "$k"
done

# the stream of a failure after the cloud was touched
rolled_back() { # data-lines final-status
    local s
    s=$(saga_statuses "$1")
    [[ "$s" =~ ^Accepted(\ Installing)+\ RollingBack\ $2$ ]] || fail "stream: $s"
}

# ---- relfail: FAILED release, compensation restores the cluster
case_relfail() {
    local d
    d=$(saga_check_order acct-relfail/relfail-mesh o-relfail Failed)
    rolled_back "$d" Failed
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" '.step == "install_release" and
        .error.code == "ReleaseFailed" and .error.retryable == false'
    assert_json "$(printf '%s\n' "$d" | grep RollingBack)" '.error.code == "ReleaseFailed"'
    assert_mutations c-relfail "node_label_patch relfail-node-1" "node_label_patch relfail-node-1" \
        "node_label_patch relfail-node-2" "node_label_patch relfail-node-2" \
        "release_create istio-system/istio-master" "release_delete istio-system/istio-master"
    assert_eq "${BEFORE[c-relfail]}" "$(cs_state c-relfail)" "relfail: cluster not restored"
}
saga_case relfail case_relfail

# ---- late: a failure at the last step undoes everything, keeps the pre-existing label
case_late() {
    local d st
    d=$(saga_check_order acct-late/late-mesh o-late Failed)
    rolled_back "$d" Failed
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" '.step == "restart" and
        .error.retryable == false'
    assert_eq "validate reserve precheck label_nodes install_release open_port inject" \
        "$(printf '%s\n' "$d" | jq -r 'select(.status == "Installing" and
        (.message | endswith(" done"))) | .step' | tr '\n' ' ' | sed 's/ $//')" "late: steps done"
    assert_mutations c-late "node_label_patch late-node-2" "node_label_patch late-node-2" \
        "release_create istio-system/istio-master" "release_delete istio-system/istio-master" \
        "sg_rule_create *" "sg_rule_delete *" \
        "namespace_label_patch shop" "namespace_label_patch shop" \
        "namespace_label_patch payments" "namespace_label_patch payments"
    st=$(cs_state c-late)
    assert_eq "master" "$(json_get "$st" '.clusters[0].nodes[] | select(.name == "late-node-1") |
        .labels.istio')" "late: the label that was there before stays"
    assert_eq "disabled" "$(json_get "$st" '.clusters[0].namespaces[] | select(.name == "shop") |
        .labels["istio-injection"]')" "late: shop's prior injection label is back"
    assert_eq "${BEFORE[c-late]}" "$st" "late: cluster not restored"
}
saga_case late case_late

# ---- quota: the rule cannot be created
case_quota() {
    local d
    d=$(saga_check_order acct-quota/quota-mesh o-quota Failed)
    rolled_back "$d" Failed
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" '.step == "open_port" and
        .error.retryable == false'
    assert_mutations c-quota "node_label_patch quota-node-1" "node_label_patch quota-node-1" \
        "node_label_patch quota-node-2" "node_label_patch quota-node-2" \
        "release_create istio-system/istio-master" "release_delete istio-system/istio-master"
    assert_eq "${BEFORE[c-quota]}" "$(cs_state c-quota)" "quota: cluster not restored"
}
saga_case quota case_quota

# ---- a failed order gives its name back: the same account and name buys again
case_rebuy() {
    saga_buy o-pf-old-2 acct-pf-old pf-old-mesh proj-a c-rebuy --node n-rebuy-1
    saga_wait_terminal 60 acct-pf-old/pf-old-mesh o-pf-old-2 >/dev/null
    saga_check_order acct-pf-old/pf-old-mesh o-pf-old-2 Running >/dev/null
    assert_mutations c-rebuy "node_label_patch rebuy-node-1" \
        "release_create istio-system/istio-master" "sg_rule_create *"
}
saga_case rebuy case_rebuy

# ---- phase 2, alone (release timing is global in cloudsim): cancel while installing
release_pending() {
    cs_get "/admin/state?cluster=c-cancel" | jq -e '.clusters[0].releases[0].status ==
        "PENDING_INSTALL"' >/dev/null
}
case_cancel() {
    local st d
    cs_config '{"release_install_ms": 600000}' >/dev/null
    saga_buy o-cancel acct-cancel cancel-mesh proj-a c-cancel --node n-cancel-1 \
        --node n-cancel-2 --namespace shop
    wait_for 60 release_pending
    saga_cancel o-cancel acct-cancel cancel-mesh
    st=$(saga_wait_terminal 60 acct-cancel/cancel-mesh o-cancel)
    cs_config '{"release_install_ms": 400}' >/dev/null
    assert_eq Cancelled "$st" "cancel: terminal status"
    assert_mutations c-cancel "node_label_patch cancel-node-1" "node_label_patch cancel-node-1" \
        "node_label_patch cancel-node-2" "node_label_patch cancel-node-2" \
        "release_create istio-system/istio-master" "release_delete istio-system/istio-master"
    assert_eq "${BEFORE[c-cancel]}" "$(cs_state c-cancel)" "cancel: cluster not restored"
    d=$(saga_check_order acct-cancel/cancel-mesh o-cancel Cancelled)
    rolled_back "$d" Cancelled
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" 'has("error") | not'
}
saga_case cancel case_cancel

# ---- taken: another's release appears after the precheck, while this order's create is
# held: the create is refused (409), the release read, and the step fails ReleaseExists; the
# other's release is left as it was, everything of this order's undone
other_release() {
    local url="$CS_URL/cce/cam/v3/clusters/c-taken/releases" h l args=() body
    body='{"chart_id":"asm-istio-1-18","name":"istio-master","namespace":"istio-system",
        "version":"1.18.7-r1","values":{},"description":"installed by hand"}'
    mapfile -t h < <(MESHBUY_AK=MESHBUYDEVACCESSKEY0 \
        MESHBUY_SK=meshbuy-dev-secret-key-0000000000000000 "$MB_BIN/cloudsim" --sign POST "$url" \
        "$body")
    for l in "${h[@]}"; do args+=(-H "$l"); done
    curl -sf --max-time 10 -X POST "${args[@]}" -H 'Content-Type: application/json' \
        --data-binary "$body" "$url" >/dev/null || fail "taken: the other release not created"
}
case_taken() {
    local d st
    cs_fault '{"match": {"method": "POST", "path_contains": "/clusters/c-taken/releases"},
        "hang": true, "count": 1}' >/dev/null
    saga_buy o-taken acct-taken taken-mesh proj-a c-taken --node n-taken-1 --node n-taken-2 \
        --namespace shop
    wait_for 60 cs_requests_match POST /clusters/c-taken/releases '.fault == "hang"'
    other_release
    st=$(saga_wait_terminal 60 acct-taken/taken-mesh o-taken)
    assert_eq Failed "$st" "taken: terminal status"
    d=$(saga_check_order acct-taken/taken-mesh o-taken Failed)
    rolled_back "$d" Failed
    assert_json "$(printf '%s\n' "$d" | tail -n 1)" '.step == "install_release" and
        .error.code == "ReleaseExists" and .error.retryable == false'
    assert_mutations c-taken "node_label_patch taken-node-1" "node_label_patch taken-node-1" \
        "node_label_patch taken-node-2" "node_label_patch taken-node-2" \
        "release_create istio-system/istio-master"
    st=$(cs_state c-taken)
    assert_json "$st" '[.clusters[0].releases[]] | length == 1 and
        .[0].description == "installed by hand"'
    assert_eq "$(json_get "${BEFORE[c-taken]}" '.clusters[0].nodes')" \
        "$(json_get "$st" '.clusters[0].nodes')" "taken: node labels not restored"
}
saga_case taken case_taken

saga_case schema saga_validate_all
mb_alive w1 || fail "w1 died"
mb_alive w2 || fail "w2 died"
saga_done
