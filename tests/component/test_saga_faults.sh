#!/usr/bin/env bash
# test_saga_faults.sh: the create-mesh saga under cloud faults and worker crashes, against
# devkafka + redis + cloudsim (tests/fixtures/cloudsim/saga.json), one cluster per case:
#   flaky     30% 5xx (500/503) and 10% 429 (Retry-After: 1) on every cloud endpoint of its
#             cluster and project: still Running, each side effect exactly once
#   kill-a-*  a worker is SIGKILLed while a call of one step is in flight, the call having
#             taken effect (cloudsim applies it and never answers), for each step that calls
#             the cloud: precheck, label_nodes, install_release, open_port, inject, restart;
#             another worker resumes once the lease (31 s) expires: Running, each effect once
#   kill-b-*  the same, the call never reaching the cloud (cloudsim holds it unanswered)
# The flaky order runs through both crashes.  Every stream is gapless, every event matches
# the schema, cloudsim's mutation log shows each side effect once.
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

saga_stack_up
# Hung calls should outlive the wait for all of them (10 s calls), and a worker's lease must
# be at least 3 call timeouts + the margin: the takeovers wait 31 s.  A call that times out
# anyway is retried into a second hold that never acts, lifted after the kill.
W_ENV=(MESHBUY_HTTP_TIMEOUT_MS=10000 MESHBUY_LEASE_MARGIN_MS=1000 MESHBUY_LEASE_MS=31000)

STEPS=(pre lab rel port inj rst)
# step -> "METHOD path-match" of the call to hold (%s: the case's cluster / project)
declare -A HOLD=(
    [pre]='GET path_contains /clusters/c-%s'
    [lab]='PATCH path_contains /k8s/c-%s/api/v1/nodes/'
    [rel]='POST path_contains /cce/cam/v3/clusters/c-%s/releases'
    [port]='POST path_prefix /v3/proj-%s/vpc/security-group-rules'
    [inj]='PATCH path_contains /k8s/c-%s/api/v1/namespaces/'
    [rst]='PATCH path_contains /k8s/c-%s/apis/apps/v1/namespaces/'
)

# ---- faults on flaky: the first VPC listing is throttled and the first rule creation fails
# (its project sees only a few calls), then 10% 429 and ~30% 5xx (503, 500) on everything
cs_fault '{"match": {"method": "GET", "path_prefix": "/v3/proj-flaky/"}, "throttle": true,
    "retry_after": 1, "count": 1}' >/dev/null
cs_fault '{"match": {"method": "POST", "path_prefix": "/v3/proj-flaky/"}, "error_status": 503,
    "count": 1}' >/dev/null
for m in '"path_contains": "/c-flaky"' '"path_prefix": "/v3/proj-flaky/"'; do
    cs_fault "{\"match\": {$m}, \"throttle_rate\": 0.1, \"retry_after\": 1}" >/dev/null
    cs_fault "{\"match\": {$m}, \"error_rate\": 0.17, \"error_status\": 503}" >/dev/null
    cs_fault "{\"match\": {$m}, \"error_rate\": 0.2, \"error_status\": 500}" >/dev/null
done
buy_case() { # id [namespace...]: two nodes in two AZs, restart (default shop, payments)
    local id=$1 n ns=()
    shift
    [ $# -gt 0 ] || set -- shop payments
    for n in "$@"; do ns+=(--namespace "$n"); done
    saga_buy "o-$id" "acct-$id" "$id-mesh" "proj-$id" "c-$id" --node "n-$id-1" --node "n-$id-2" \
        "${ns[@]}" --restart
}

# Holds the first matching call of each step of batch B ("a": after the cloud applied it),
# and every later one before it acts, until unhold_batch B.
hold_batch() { # a|b
    local b=$1 s method how path after=false
    [ "$b" = a ] && after=true
    for s in "${STEPS[@]}"; do
        read -ra w <<<"${HOLD[$s]}" && set -- "${w[@]}"
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

held() { # batch step
    local b=$1 s=$2
    read -ra w <<<"${HOLD[$s]}" && set -- "${w[@]}"
    # shellcheck disable=SC2059
    cs_requests_match "$1" "$(printf "$3" "k$b-$s")" '.fault == "hang"'
}

all_held() { # batch
    local b=$1 s
    for s in "${STEPS[@]}"; do
        held "$b" "$s" || return 1
    done
}

# ---- batch a: w1 alone takes the orders, the flaky one with them, and stops at the holds
hold_batch a
saga_worker w1 "${W_ENV[@]}"
buy_case flaky shop
for s in "${STEPS[@]}"; do buy_case "ka-$s"; done
wait_for 120 all_held a
note "batch a: every step held; SIGKILL w1"
mb_stop w1 KILL 5 || true
unhold_batch a

# ---- batch b: w2 resumes batch a (and flaky) and takes batch b up to its holds
hold_batch b
saga_worker w2 "${W_ENV[@]}"
for s in "${STEPS[@]}"; do buy_case "kb-$s"; done
wait_for 120 all_held b
note "batch b: every step held; SIGKILL w2"
mb_stop w2 KILL 5 || true
unhold_batch b

# ---- two fresh workers finish everything
saga_worker_nowait w3
saga_worker_nowait w4
waits=(acct-flaky/flaky-mesh:o-flaky)
for b in a b; do
    for s in "${STEPS[@]}"; do waits+=("acct-k$b-$s/k$b-$s-mesh:o-k$b-$s"); done
done
saga_wait_all 200 "${waits[@]}"

# The effects of one order of this suite, each exactly once, and the cluster that shows them.
check_installed() { # id [shop-only]
    local id=$1 st c='.clusters[0]' pay=()
    [ "${2:-}" = shop-only ] ||
        pay=("namespace_label_patch payments" "workload_patch deployments/payments/pay")
    saga_check_order "acct-$id/$id-mesh" "o-$id" Running >/dev/null
    assert_mutations "c-$id" "node_label_patch $id-node-1" "node_label_patch $id-node-2" \
        "release_create istio-system/istio-master" "sg_rule_create *" \
        "namespace_label_patch shop" "workload_patch deployments/shop/web" \
        "workload_patch statefulsets/shop/db" "workload_patch daemonsets/shop/agent" "${pay[@]}"
    st=$(cs_state "c-$id")
    assert_eq "master master null" "$(json_get "$st" "[$c.nodes[] | .labels.istio] |
        map(tostring) | join(\" \")")" "$id: node labels"
    assert_json "$st" "[$c.releases[]] | length == 1 and .[0].status == \"DEPLOYED\"" \
        "$id: one release, DEPLOYED"
    assert_eq 1 "$(cs_rule_ids "c-$id" | grep -c .)" "$id: one 7443 rule"
    assert_eq $((1 + ${#pay[@]} / 2)) "$(json_get "$st" "[$c.namespaces[] |
        select(.labels[\"istio-injection\"] == \"enabled\")] | length")" "$id: injection labels"
    assert_eq $((3 + ${#pay[@]} / 2)) "$(json_get "$st" "[$c.workloads[] |
        select(.template_annotations[\"kubectl.kubernetes.io/restartedAt\"])] | length")" \
        "$id: restarted workloads"
}

flaky_case() {
    local fired
    check_installed flaky shop-only
    fired=$(cs_get /admin/faults | jq -c '[.faults[] | select(.match.path_contains == "/c-flaky"
        or .match.path_prefix == "/v3/proj-flaky/") | .fired]')
    note "flaky: faults fired (cluster paths 429, 503, 500; VPC paths 429, 503, 500): $fired"
    # the two one-shot VPC rules are gone once fired; the random ones fired on cluster paths
    assert_json "$fired" 'length == 6 and .[0] > 0 and .[1] > 0 and .[2] > 0' \
        "flaky: the faults fired"
}
saga_case flaky flaky_case
for b in a b; do
    for s in "${STEPS[@]}"; do
        saga_case "kill-$b-$s" check_installed "k$b-$s"
    done
done
saga_case schema saga_validate_all
mb_alive w3 || fail "w3 died"
mb_alive w4 || fail "w4 died"
saga_done
