#!/usr/bin/env bash
# Component test of cloudsim (ops/cloudsim): signatures, every API's happy path and error
# shape, release lifecycle, security-group rules, Kubernetes reads/patches and kubectl,
# faults (5xx, 429, latency, hang, after-effect errors), mutation counts, admin reset/load.
. "$MB_ROOT/tests/lib.sh"

CS="$MB_BIN/cloudsim"
SCEN="$MB_ROOT/ops/cloudsim/scenarios"
export MESHBUY_AK=MESHBUYDEVACCESSKEY0 MESHBUY_SK=meshbuy-dev-secret-key-0000000000000000
export KUBECONFIG=/dev/null
[ -x "$CS" ] || fail "no cloudsim in $MB_BIN"

# call [-u] METHOD PATH [BODY [curl args...]]: signed (unless -u) request; sets ST and BODY.
call() {
    local sign=1
    if [ "$1" = -u ]; then
        sign=0
        shift
    fi
    local m=$1 body=${3-} url="http://$ADDR$2" args=() h out
    shift 2
    [ $# -gt 0 ] && shift
    if [ $sign = 1 ]; then
        mapfile -t H < <("$CS" --sign "$m" "$url" ${body:+"$body"})
        for h in "${H[@]}"; do args+=(-H "$h"); done
    fi
    if [ -n "$body" ]; then
        args+=(--data-binary "$body")
        [[ " $* " == *"Content-Type:"* ]] || args+=(-H 'Content-Type: application/json')
    fi
    out=$(curl -sS -X "$m" "${args[@]}" "$@" -w '\n%{http_code}' "$url") || true
    ST=${out##*$'\n'}
    BODY=${out%$'\n'*}
}
admin() { curl -sS -X "$1" "http://$ADDR$2" ${3:+--data-binary "$3"}; }
expect() { # expect STATUS JQ_FILTER MSG
    [ "$ST" = "$1" ] || fail "$3: HTTP $ST (want $1): $BODY"
    [ -z "$2" ] || assert_json "$BODY" "$2" "$3"
}

note "--help and usage errors"
"$CS" --help | grep -q -- '--addr-file' || fail "--help lacks --addr-file"
rc=0
"$CS" --listen 127.0.0.1:0 >/dev/null 2>&1 || rc=$?
assert_eq 2 "$rc" "missing --scenario must exit 2"

mb_start cloudsim "$CS" --listen 127.0.0.1:0 --addr-file "$TEST_TMP/cs.addr" \
    --scenario "$SCEN/basic.json" --release-install-ms 300 --release-delete-ms 3000 \
    --kubectl-read --seed 7 --threads 4
wait_for 10 test -s "$TEST_TMP/cs.addr"
ADDR=$(cat "$TEST_TMP/cs.addr")
[[ "$ADDR" =~ ^127\.0\.0\.1:[0-9]+$ ]] || fail "bad addr file: $ADDR"
assert_json "$(admin GET /healthz)" '.status == "ok"'

# ------------------------------------------------------------------ signatures
note "signatures"
CL=/api/v3/projects/proj-a/clusters/c-good
call -u GET $CL
expect 401 '.error_code == "APIGW.0301" and (.error_msg | contains("Authorization not found"))' \
    "unsigned request"
assert_json "$BODY" '.request_id | length > 0' "401 carries a request_id"

bad=$(MESHBUY_SK=wrong-secret "$CS" --sign GET "http://$ADDR$CL" | tr '\n' '\t')
IFS=$'\t' read -r h1 h2 h3 <<<"$bad"
call -u GET $CL "" -H "$h1" -H "$h2" -H "$h3"
expect 401 '.error_code == "APIGW.0301"' "wrong signature"
assert_contains "$BODY" "verify aksk signature fail,canonicalRequest:GET|$CL/||host:$ADDR|x-sdk-date:"
assert_contains "$BODY" "||host;x-sdk-date|e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

stale=$("$CS" --sign --date 20200101T000000Z GET "http://$ADDR$CL" | tr '\n' '\t')
IFS=$'\t' read -r h1 h2 h3 <<<"$stale"
call -u GET $CL "" -H "$h1" -H "$h2" -H "$h3"
expect 401 '.error_code == "APIGW.0301" and (.error_msg | contains("expired"))' "stale X-Sdk-Date"

# body tampering: signed for one body, another sent
signed=$("$CS" --sign POST "http://$ADDR/cce/cam/v3/clusters/c-good/releases" '{"a":1}' | tr '\n' '\t')
IFS=$'\t' read -r h1 h2 h3 <<<"$signed"
call -u POST /cce/cam/v3/clusters/c-good/releases "" -H "$h1" -H "$h2" -H "$h3" --data-binary '{"a":2}'
expect 401 '.error_code == "APIGW.0301"' "tampered body"

unknown=$(MESHBUY_AK=NOSUCHKEY "$CS" --sign GET "http://$ADDR$CL" | tr '\n' '\t')
IFS=$'\t' read -r h1 h2 h3 <<<"$unknown"
call -u GET $CL "" -H "$h1" -H "$h2" -H "$h3"
expect 401 '.error_msg | contains("NOSUCHKEY")' "unknown AK"

# a credential limited to proj-a
MESHBUY_AK=MESHBUYPROJAONLYKEY0 MESHBUY_SK=meshbuy-proj-a-only-secret-000000000000 call GET $CL
expect 200 '.kind == "Cluster"' "limited credential, own project"
MESHBUY_AK=MESHBUYPROJAONLYKEY0 MESHBUY_SK=meshbuy-proj-a-only-secret-000000000000 \
    call GET /api/v3/projects/proj-b/clusters/c-otherproj
expect 403 '.error_code == "APIGW.0302"' "limited credential, other project"
MESHBUY_AK=MESHBUYPROJAONLYKEY0 MESHBUY_SK=meshbuy-proj-a-only-secret-000000000000 \
    call GET /k8s/c-otherproj/api/v1/nodes
expect 403 '' "limited credential, other project's cluster via /k8s"

# ------------------------------------------------------------------ CCE
note "CCE clusters and nodes"
call GET $CL
expect 200 '.kind == "Cluster" and .metadata.uid == "c-good" and .metadata.name == "good"
    and .spec.version == "v1.25" and .spec.hostNetwork.SecurityGroup == "sg-good"
    and .status.phase == "Available"' "cluster"
call GET /api/v3/projects/proj-a/clusters/c-unavailable
expect 200 '.status.phase == "Unavailable"' "unavailable cluster"
call GET /api/v3/projects/proj-a/clusters/nope
expect 404 '.error_code == "CCE.01404001" and (.error_msg | length > 0)' "absent cluster"
call GET /api/v3/projects/proj-a/clusters/c-otherproj
expect 404 '.error_code == "CCE.01404001"' "cluster of another project"
call GET $CL/nodes
expect 200 '.kind == "List" and .apiVersion == "v3" and (.items | length) == 3
    and .items[0].metadata.uid == "n-good-1" and .items[0].metadata.name == "good-node-1"
    and .items[1].spec.az == "az2" and .items[0].status.phase == "Active"
    and (.items[0].status.privateIP | length > 0)' "nodes"
call GET /api/v3/projects/proj-a/clusters/c-inactive/nodes
expect 200 '.items[1].status.phase == "Abnormal"' "inactive node"
call GET /api/v3/projects/proj-a/clusters/c-singleaz/nodes
expect 200 '[.items[].spec.az] | unique == ["az1"]' "single-AZ nodes"
call GET /api/v3/projects/proj-a/clusters/c-old
expect 200 '.spec.version == "v1.19"' "old version"
call GET /nope/at/all
expect 404 '.error_code == "APIGW.0101"' "unknown API"

# ------------------------------------------------------------------ releases
note "releases"
RB='{"chart_id":"asm-istio-1-18","name":"istio-master","namespace":"istio-system","version":"1.18.7-r1","values":{"global":{"nodeSelector":{"istio":"master"}}},"description":"asm"}'
REL=/cce/cam/v3/clusters/c-good/namespace/istio-system/releases/istio-master
call GET /k8s/c-good/api/v1/namespaces/istio-system
expect 404 '.kind == "Status" and .reason == "NotFound" and .code == 404
    and .message == "namespaces \"istio-system\" not found"
    and .details.name == "istio-system" and .details.kind == "namespaces"' "no istio-system yet"
call POST /cce/cam/v3/clusters/c-good/releases "$RB"
expect 201 '.status == "PENDING_INSTALL" and .name == "istio-master" and .chart_version == "1.18.7-r1"
    and .cluster_id == "c-good" and .values.global.nodeSelector.istio == "master"' "create release"
call POST /cce/cam/v3/clusters/c-good/releases "$RB"
expect 409 '.error_code | startswith("CCE.")' "duplicate release"
call POST /cce/cam/v3/clusters/c-good/releases "${RB/asm-istio-1-18/no-such-chart}"
expect 400 '.error_msg | contains("no-such-chart")' "unknown chart"
call POST /cce/cam/v3/clusters/c-good/releases "${RB/1.18.7-r1/9.9.9}"
expect 400 '' "chart version mismatch"
call POST /cce/cam/v3/clusters/c-good/releases '{"name":'
expect 400 '.error_code == "CCE.01400001"' "malformed body"
call POST /cce/cam/v3/clusters/nope/releases "$RB"
expect 404 '.error_code == "CCE.01404001"' "release in absent cluster"
call GET /k8s/c-good/api/v1/namespaces/istio-system
expect 200 '.metadata.name == "istio-system"' "install creates istio-system"
rel_status() { call GET $REL && [ "$ST" = 200 ] && json_get "$BODY" .status; }
release_is() { [ "$(rel_status)" = "$1" ]; }
wait_for 10 release_is DEPLOYED
call GET $REL
expect 200 '.status == "DEPLOYED" and .namespace == "istio-system" and .chart_name == "asm-istio"
    and (.create_at | length > 0) and (.update_at | length > 0) and .version == 1
    and (.status_description | length > 0)' "release shape"
call DELETE $REL
expect 204 '' "delete release"
call GET $REL
expect 200 '.status == "DELETING"' "deleting"
release_gone() { call GET $REL && [ "$ST" = 404 ]; }
wait_for 10 release_gone
call GET /k8s/c-good/api/v1/namespaces/istio-system
expect 404 '' "istio-system removed with the release"
call DELETE $REL
expect 404 '' "delete absent release"

call POST /cce/cam/v3/clusters/c-relfail/releases "$RB"
expect 201 '' "create release (scenario release_fail)"
rf_failed() { call GET /cce/cam/v3/clusters/c-relfail/namespace/istio-system/releases/istio-master && json_get "$BODY" .status | grep -qx FAILED; }
wait_for 10 rf_failed
assert_json "$(admin POST /admin/faults '{"release_fail":{"cluster_id":"c-labeled","count":1}}')" '.id > 0'
call POST /cce/cam/v3/clusters/c-labeled/releases "$RB"
expect 201 '' "create release (fault release_fail)"
lab_failed() { call GET /cce/cam/v3/clusters/c-labeled/namespace/istio-system/releases/istio-master && json_get "$BODY" .status | grep -qx FAILED; }
wait_for 10 lab_failed
call POST /cce/cam/v3/clusters/c-unavailable/releases "$RB"
expect 400 '' "release on an Unavailable cluster"

# ------------------------------------------------------------------ VPC
note "security group rules"
RULES=/v3/proj-a/vpc/security-group-rules
call GET "$RULES?security_group_id=sg-open&direction=ingress&protocol=tcp"
expect 200 '(.request_id | length > 0) and (.security_group_rules | map(.multiport)) == ["22","7000-8000"]
    and .page_info.current_count == 2' "list filtered"
call GET "$RULES?security_group_id=sg-open&direction=egress"
expect 200 '(.security_group_rules | length) == 1 and .security_group_rules[0].protocol == "any"' \
    "egress filter"
call GET "$RULES?security_group_id=sg-open&security_group_id=sg-good&protocol=tcp"
expect 200 '(.security_group_rules | length) == 3' "repeated filter"
call GET "/v3/proj-a/vpc/security-group-rules?security_group_id=sg-other"
expect 200 '(.security_group_rules | length) == 0' "another project's SG is invisible"
SR='{"security_group_rule":{"security_group_id":"sg-good","direction":"ingress","ethertype":"IPv4","protocol":"tcp","multiport":"7443","remote_ip_prefix":"0.0.0.0/0","action":"allow","priority":1,"description":"asm webhook"}}'
call POST $RULES "$SR"
expect 201 '(.request_id | length > 0) and .security_group_rule.multiport == "7443"
    and .security_group_rule.security_group_id == "sg-good" and (.security_group_rule.id | length > 0)' \
    "create rule"
RID=$(json_get "$BODY" .security_group_rule.id)
call POST $RULES "$SR"
expect 409 ".error_code == \"VPC.9902\" and .error_msg == \"Security group rule already exists. Rule id is $RID.\"
    and (.request_id | length > 0)" "duplicate rule"
call POST $RULES "${SR/sg-good/sg-nope}"
expect 404 '.error_code == "VPC.9904"' "unknown SG"
call POST $RULES "${SR/sg-good/sg-other}"
expect 404 '.error_code == "VPC.9904"' "SG of another project"
call POST $RULES "${SR/ingress/sideways}"
expect 400 '' "bad direction"
call POST $RULES "${SR/7443/70000}"
expect 400 '' "bad port"
call POST $RULES '{"security_group_rule":'
expect 400 '' "malformed body"
call POST $RULES "${SR/sg-good/sg-full}"
expect 409 '.error_code == "VPC.9905"' "quota"
call GET "$RULES?security_group_id=sg-good&protocol=tcp"
expect 200 "[.security_group_rules[].id] | index(\"$RID\") != null" "created rule listed"
call DELETE "$RULES/$RID"
expect 204 '' "delete rule"
call DELETE "$RULES/$RID"
expect 404 '.error_code == "VPC.9904"' "delete absent rule"

# ------------------------------------------------------------------ Kubernetes
note "kubernetes"
K=/k8s/c-good
call GET $K/version
expect 200 '.gitVersion | startswith("v1.25.")' "version"
call GET /k8s/c-old/version
expect 200 '.gitVersion | startswith("v1.19.")' "old version"
call GET $K/api/v1/nodes
expect 200 '.kind == "NodeList" and (.items | length) == 3 and .items[0].apiVersion == "v1"
    and .items[0].kind == "Node" and (.items[0].metadata.uid | length > 0)
    and (.items[0].metadata.resourceVersion | length > 0)
    and (.items[0].metadata.creationTimestamp | length > 0)' "node list"
call GET /k8s/c-labeled/api/v1/nodes/lab-node-1
expect 200 '.metadata.labels.istio == "master"' "pre-labeled node"
call PATCH $K/api/v1/nodes/good-node-1 '{"metadata":{"labels":{"istio":"master"}}}' \
    -H 'Content-Type: application/merge-patch+json'
expect 200 '.metadata.labels.istio == "master"' "label node"
call PATCH $K/api/v1/nodes/good-node-1 '{"metadata":{"labels":{"istio":"master"}}}' \
    -H 'Content-Type: application/merge-patch+json'
expect 200 '' "label node again (no change)"
call PATCH $K/api/v1/nodes/good-node-2 '{"metadata":{"labels":{"istio":"master"}}}' \
    -H 'Content-Type: application/json-patch+json'
expect 415 '.kind == "Status" and .reason == "UnsupportedMediaType" and .code == 415' "json-patch"
call PATCH $K/api/v1/nodes/good-node-2 '{"metadata":{"labels":{"istio":5}}}' \
    -H 'Content-Type: application/merge-patch+json'
expect 422 '.reason == "Invalid"' "non-string label"
call PATCH $K/api/v1/nodes/ghost '{"metadata":{"labels":{"istio":"master"}}}' \
    -H 'Content-Type: application/merge-patch+json'
expect 404 '.reason == "NotFound" and .message == "nodes \"ghost\" not found"' "absent node"
call GET $K/api/v1/nodes/good-node-1
expect 200 '.metadata.labels.istio == "master"' "label persisted"
call GET "$K/api/v1/nodes?labelSelector=istio%3Dmaster"
expect 200 '[.items[].metadata.name] == ["good-node-1"]' "label selector"
call PATCH $K/api/v1/namespaces/shop '{"metadata":{"labels":{"istio-injection":"enabled"}}}' \
    -H 'Content-Type: application/merge-patch+json'
expect 200 '.metadata.labels["istio-injection"] == "enabled" and .metadata.labels.team == "shop"' \
    "label namespace"
call GET $K/api/v1/namespaces
expect 200 '.kind == "NamespaceList" and ([.items[].metadata.name] | sort)
    == ["default","kube-public","kube-system","payments","shop"]' "namespace list"
call GET /k8s/c-leftover/api/v1/namespaces/istio-system
expect 200 '' "leftover istio-system"
call GET /k8s/nope/version
expect 404 '.kind == "Status"' "absent cluster under /k8s"

note "pods paging"
P=/k8s/c-bigpods/api/v1/pods
call GET "$P?limit=100"
expect 200 '.kind == "PodList" and (.items | length) == 100 and (.metadata.continue | length > 0)' \
    "pods page 1"
total=100
tok=$(json_get "$BODY" .metadata.continue)
first_tok=$tok
while [ -n "$tok" ] && [ "$tok" != null ]; do
    call GET "$P?limit=100&continue=$tok"
    expect 200 '' "pods next page"
    total=$((total + $(json_get "$BODY" '.items | length')))
    tok=$(json_get "$BODY" '.metadata.continue // empty')
done
assert_eq 250 "$total" "pod count over pages"
call GET "$P?limit=100&continue=garbage"
expect 410 '.kind == "Status" and .reason == "Expired" and .code == 410' "bad continue token"
admin POST /admin/expire-continue >/dev/null
call GET "$P?limit=100&continue=$first_tok"
expect 410 '.reason == "Expired"' "expired continue token"
call GET /k8s/c-good/api/v1/pods
expect 200 '(.items | length) == 40' "unpaged pods"

note "pods as PartialObjectMetadataList (kubectl's metadata-only read)"
META='application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1'
call GET "$P?limit=100" '' -H "Accept: $META,application/json"
expect 200 '.kind == "PartialObjectMetadataList" and .apiVersion == "meta.k8s.io/v1"
    and (.items | length) == 100 and all(.items[]; .kind == "PartialObjectMetadata"
    and .apiVersion == "meta.k8s.io/v1" and .metadata.name != null and .spec == null
    and .status == null) and .metadata.remainingItemCount == 150' "metadata page 1"
total=100
tok=$(json_get "$BODY" .metadata.continue)
while [ -n "$tok" ] && [ "$tok" != null ]; do
    call GET "$P?limit=100&continue=$tok" '' -H "Accept: $META,application/json"
    expect 200 '.kind == "PartialObjectMetadataList"' "metadata next page"
    total=$((total + $(json_get "$BODY" '.items | length')))
    tok=$(json_get "$BODY" '.metadata.continue // empty')
done
assert_eq 250 "$total" "pod count over metadata pages"
ctype=$(curl -sS -o /dev/null -w '%{content_type}' -H "Accept: $META,application/json" \
    "http://$ADDR/k8s/c-good/api/v1/pods")
assert_eq "$META" "$ctype" "Content-Type of a metadata list"
ctype=$(curl -sS -o /dev/null -w '%{content_type}' "http://$ADDR/k8s/c-good/api/v1/pods")
assert_eq application/json "$ctype" "Content-Type of a full list"
call GET /k8s/c-good/api/v1/pods '' -H 'Accept: application/json'
expect 200 '.kind == "PodList" and (.items | length) == 40 and .items[0].spec.nodeName != null' \
    "plain Accept: full PodList"
call GET /k8s/c-good/api/v1/pods '' -H 'Accept: application/json;as=Table;g=meta.k8s.io;v=v1, */*'
expect 200 '.kind == "PodList"' "unserved form, then */*: full PodList"
call GET /k8s/c-good/api/v1/pods '' -H 'Accept: application/yaml'
expect 406 '.kind == "Status" and .reason == "NotAcceptable"' "no acceptable form: 406"

note "one object as PartialObjectMetadata (meshbuy's node and namespace reads)"
OMETA='application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1'
call GET /k8s/c-labeled/api/v1/nodes/lab-node-1 '' -H "Accept: $OMETA,application/json"
expect 200 '.kind == "PartialObjectMetadata" and .apiVersion == "meta.k8s.io/v1"
    and .metadata.name == "lab-node-1" and .metadata.labels.istio == "master"
    and (.metadata.resourceVersion | length > 0) and .spec == null and .status == null' \
    "node metadata only"
call GET /k8s/c-good/api/v1/namespaces/kube-system '' -H "Accept: $OMETA,application/json"
expect 200 '.kind == "PartialObjectMetadata" and .metadata.name == "kube-system"' \
    "namespace metadata only"
ctype=$(curl -sS -o /dev/null -w '%{content_type}' -H "Accept: $OMETA,application/json" \
    "http://$ADDR/k8s/c-labeled/api/v1/nodes/lab-node-1")
assert_eq "$OMETA" "$ctype" "Content-Type of one object's metadata"
call GET /k8s/c-labeled/api/v1/nodes/lab-node-1 '' -H 'Accept: application/json'
expect 200 '.kind == "Node" and .status != null' "plain Accept: the whole node"
call GET /k8s/c-labeled/api/v1/nodes/lab-node-1 '' -H 'Accept: application/yaml'
expect 406 '.reason == "NotAcceptable"' "one object, no acceptable form: 406"

note "workloads"
call GET $K/apis/apps/v1/namespaces/kube-system/deployments/coredns
expect 200 '.metadata.generation <= .status.observedGeneration
    and .status.updatedReplicas >= .spec.replicas and .status.availableReplicas >= .status.updatedReplicas' \
    "coredns ready"
call GET /k8s/c-nodns/apis/apps/v1/namespaces/kube-system/deployments/coredns
expect 200 '.status.availableReplicas < .status.updatedReplicas' "coredns not ready"
call GET $K/apis/apps/v1/namespaces/shop/deployments
expect 200 '.kind == "DeploymentList" and ([.items[].metadata.name] | sort) == ["legacy","web"]' \
    "deployments"
assert_json "$BODY" '.items[] | select(.metadata.name == "legacy") | .spec.paused == true' "paused"
call GET $K/apis/apps/v1/namespaces/shop/statefulsets
expect 200 '[.items[].metadata.name] == ["db"]' "statefulsets"
call GET $K/apis/apps/v1/namespaces/shop/daemonsets
expect 200 '[.items[].metadata.name] == ["agent"]' "daemonsets"
RS='{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2024-05-01T00:00:00Z"}}}}}'
call PATCH $K/apis/apps/v1/namespaces/shop/deployments/web "$RS" \
    -H 'Content-Type: application/strategic-merge-patch+json'
expect 200 '.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]
    == "2024-05-01T00:00:00Z" and .metadata.generation == 2 and .status.observedGeneration == 2' \
    "restart annotation"
call PATCH $K/apis/apps/v1/namespaces/shop/statefulsets/db "$RS" \
    -H 'Content-Type: application/strategic-merge-patch+json'
expect 200 '' "restart statefulset"
call PATCH $K/apis/apps/v1/namespaces/shop/deployments/nope "$RS" \
    -H 'Content-Type: application/strategic-merge-patch+json'
expect 404 '.reason == "NotFound"' "absent deployment"

note "kubectl"
KC=(kubectl --server "http://$ADDR/k8s/c-good" --insecure-skip-tls-verify)
out=$("${KC[@]}" get nodes --show-labels 2>&1) || fail "kubectl get nodes: $out"
assert_contains "$out" "good-node-1"
assert_contains "$out" "istio=master"
assert_contains "$out" "topology.kubernetes.io/zone=az2"
out=$("${KC[@]}" get ns --show-labels 2>&1) || fail "kubectl get ns: $out"
assert_contains "$out" "istio-injection=enabled"
out=$("${KC[@]}" get deploy -n shop 2>&1) || fail "kubectl get deploy: $out"
assert_contains "$out" "legacy"
out=$("${KC[@]}" label node good-node-3 x=y 2>&1) && fail "kubectl (unsigned) mutated: $out"
admin POST /admin/config '{"kubectl_read":false}' >/dev/null
call -u GET $K/api/v1/nodes
expect 401 '.error_code == "APIGW.0301"' "unsigned k8s read without kubectl_read"
admin POST /admin/config '{"kubectl_read":true}' >/dev/null

# ------------------------------------------------------------------ mutations
note "mutation counts"
M=$(admin GET /admin/mutations)
assert_json "$M" '.counts.node_label_patch == 2 and .counts.namespace_label_patch == 1
    and .counts.release_create == 3 and .counts.release_delete == 1
    and .counts.sg_rule_create == 1 and .counts.sg_rule_delete == 1
    and .counts.workload_patch == 2' "counts"
assert_json "$M" '[.mutations[] | select(.kind == "node_label_patch")] | map(.changed) == [true,false]' \
    "second identical patch recorded as unchanged"
assert_json "$M" "[.mutations[] | select(.kind == \"sg_rule_create\")][0].target == \"$RID\"" "rule target"
S=$(admin GET '/admin/state?cluster=c-good')
assert_json "$S" '.clusters[0].nodes[0].labels.istio == "master"' "state: node label"
assert_json "$S" '.clusters[0].namespaces[] | select(.name == "shop") | .labels["istio-injection"] == "enabled"' \
    "state: namespace label"
assert_json "$S" '.clusters[0].workloads[] | select(.name == "web")
    | .template_annotations["kubectl.kubernetes.io/restartedAt"] == "2024-05-01T00:00:00Z"' \
    "state: workload annotation"
assert_json "$(admin GET /admin/state)" '(.clusters | length) == 13 and (.security_groups | length) == 13'
R=$(admin GET /admin/requests)
assert_json "$R" '[.requests[] | select(.signature_ok == false)] | length >= 5' "request log"
assert_json "$R" '[.requests[] | select(.status == 415)] | length == 1' "request log status"

# ------------------------------------------------------------------ faults
note "faults"
NODES=/api/v3/projects/proj-a/clusters/c-good/nodes
assert_json "$(admin POST /admin/faults '{"match":{"method":"GET","path_prefix":"/api/v3/"},"error_status":503,"count":2}')" '.id > 0'
call GET $NODES
expect 503 '.error_code | length > 0' "injected 503 #1"
call GET $NODES
expect 503 '' "injected 503 #2"
call GET $NODES
expect 200 '' "fault spent after count"

admin POST /admin/faults '{"match":{"path_prefix":"/k8s/"},"throttle_rate":1,"retry_after":3,"count":1}' >/dev/null
hdrs=$(mktemp -p "$TEST_TMP")
call GET $K/api/v1/nodes "" -D "$hdrs"
expect 429 '.kind == "Status" and .reason == "TooManyRequests"' "throttle"
grep -qi '^Retry-After: 3' "$hdrs" || fail "no Retry-After: $(cat "$hdrs")"

admin POST /admin/faults '{"match":{"path_contains":"/nodes"},"latency_ms":400,"count":1}' >/dev/null
t0=$(date +%s%N)
call GET $NODES
t1=$(date +%s%N)
expect 200 '' "delayed request"
[ $(((t1 - t0) / 1000000)) -ge 400 ] || fail "latency fault not applied: $(((t1 - t0) / 1000000)) ms"

admin POST /admin/faults '{"match":{"path_prefix":"/api/v3/"},"hang":true,"count":1}' >/dev/null
rc=0
curl -sS -o /dev/null --max-time 1 "http://$ADDR$NODES" 2>/dev/null || rc=$?
assert_eq 28 "$rc" "hung request times out on the client"
no_held() { admin GET /healthz | jq -e '.held == 0'; }
wait_for 5 no_held
call GET $NODES
expect 200 '' "after the hang"

# The server's latency (--latency-ms, /admin/config) is counted from a call's arrival and the
# call is handled then: what it changes is there before its answer.  A fault's latency holds
# the call before it is handled: nothing is changed until it is over.
note "latency: the server's counted from arrival; a fault's before handling"
patches() { # patches NODE: node label patches recorded for NODE
    admin GET '/admin/mutations?kind=node_label_patch' |
        jq --arg n "$1" '[.mutations[] | select(.target == $n)] | length'
}
held_calls() { admin GET /healthz | jq -e ".held == $1" >/dev/null; }
patch_done() { # patch_done OUT WHAT: waits for patch_in_bg's answer, 200; its ms in MS
    local code
    wait_for 10 test -s "$1"
    read -r code MS <"$1"
    assert_eq 200 "$code" "$2"
}
patch_in_bg() { # patch_in_bg NODE VALUE OUT: a signed label PATCH, its code and ms in OUT
    local url="http://$ADDR$K/api/v1/nodes/$1" body='{"metadata":{"labels":{"lat":"'"$2"'"}}}'
    local args=() h
    mapfile -t H < <("$CS" --sign PATCH "$url" "$body")
    for h in "${H[@]}"; do args+=(-H "$h"); done
    (
        t0=$(date +%s%N)
        code=$(curl -sS -o /dev/null -w '%{http_code}' -X PATCH "${args[@]}" \
            -H 'Content-Type: application/merge-patch+json' --data-binary "$body" "$url")
        echo "$code $((($(date +%s%N) - t0) / 1000000))" >"$3"
    ) &
}
n0=$(patches good-node-2)
admin POST /admin/config '{"latency_ms":1500}' >/dev/null
patch_in_bg good-node-2 a "$TEST_TMP/lat1"
wait_for 10 held_calls 1
assert_eq $((n0 + 1)) "$(patches good-node-2)" "the server's latency: handled on arrival"
patch_done "$TEST_TMP/lat1" "PATCH under the server's latency"
((MS >= 1500)) || fail "answered ${MS} ms after sending, latency 1500 ms"
admin POST /admin/config '{"latency_ms":0}' >/dev/null
admin POST /admin/faults '{"match":{"method":"PATCH","path_contains":"/good-node-2"},
    "latency_ms":1500,"count":1}' >/dev/null
patch_in_bg good-node-2 b "$TEST_TMP/lat2"
wait_for 10 held_calls 1
assert_eq $((n0 + 1)) "$(patches good-node-2)" "a fault's latency: not handled yet"
patch_done "$TEST_TMP/lat2" "PATCH under a fault's latency"
assert_eq $((n0 + 2)) "$(patches good-node-2)" "handled once its latency was over"
wait_for 5 held_calls 0

# an error after the side effect: the label lands although the caller sees 503
admin POST /admin/faults '{"match":{"method":"PATCH"},"error_status":503,"after":true,"count":1}' >/dev/null
call PATCH $K/api/v1/nodes/good-node-3 '{"metadata":{"labels":{"after":"yes"}}}' \
    -H 'Content-Type: application/merge-patch+json'
expect 503 '.kind == "Status"' "after-effect error"
call GET $K/api/v1/nodes/good-node-3
expect 200 '.metadata.labels.after == "yes"' "side effect applied despite the error"

admin POST /admin/faults '{"match":{"path_prefix":"/api/v3/"},"error_rate":0.5,"error_status":500}' >/dev/null
n500=0
for _ in $(seq 40); do
    call GET $NODES
    [ "$ST" = 500 ] && n500=$((n500 + 1))
done
((n500 >= 8 && n500 <= 32)) || fail "error_rate 0.5 gave $n500/40"
assert_json "$(admin GET /admin/faults)" '.faults | length == 1'
admin DELETE /admin/faults >/dev/null
assert_json "$(admin GET /admin/faults)" '.faults | length == 0'

note "four loops (--threads 4) share one state"
assert_json "$(admin GET /healthz)" '.loops | length == 4' "four loops"
NSU=$K/api/v1/namespaces/default
admin POST /admin/faults '{"match":{"path_prefix":"'"$NSU"'"},"error_status":503,"count":50}' \
    >/dev/null
# never fires (skip outlasts the run): it only counts the calls it saw
admin POST /admin/faults '{"match":{"path_prefix":"'"$NSU"'"},"error_status":500,"skip":1000000}' \
    >/dev/null
codes=$(seq 200 | xargs -P 16 -I{} curl -sS -o /dev/null -w '%{http_code}\n' "http://$ADDR$NSU")
assert_eq 50 "$(grep -c '^503$' <<<"$codes")" "a counted fault fires exactly 50 times"
assert_eq 150 "$(grep -c '^200$' <<<"$codes")" "and the other 150 calls pass"
assert_json "$(admin GET /admin/faults)" '(.faults | length) == 1 and .faults[0].matched == 200 and
    .faults[0].fired == 0' "the counted rule is spent; every call was seen once"
# 200 connections spread by SO_REUSEPORT's hash: more than one loop took calls
assert_json "$(admin GET /healthz)" '[.loops[] | select(. > 0)] | length >= 2' "calls on several loops"
admin DELETE /admin/faults >/dev/null
call GET $NODES
expect 200 '' "faults cleared"
bad=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$ADDR/admin/faults" -d '{"error_rate":2}')
assert_eq 400 "$bad" "bad fault spec"

# ------------------------------------------------------------------ reset / load
note "reset and scenario load"
admin POST /admin/reset >/dev/null
call GET $K/api/v1/nodes/good-node-1
expect 200 '.metadata.labels.istio == null' "reset restores labels"
assert_json "$(admin GET /admin/mutations)" '.total == 0'
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @"$SCEN/demo.json" "http://$ADDR/admin/scenario")
assert_eq 200 "$code" "load demo scenario"
call GET /api/v3/projects/0c0a1b2c3d4e5f60718293a4b5c6d7e8/clusters/7b3f2c1e-5d4a-11ee-9c21-0255ac100b05/nodes
expect 200 '(.items | length) == 3 and ([.items[].spec.az] | unique) == ["az1","az2"]' "demo cluster"
call GET $CL
expect 403 '.error_code == "APIGW.0302"' "demo credential is limited to the demo project"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"clusters":[{"id":"x"}]}' "http://$ADDR/admin/scenario")
assert_eq 400 "$code" "invalid scenario refused"

note "cluster sets"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @"$SCEN/bench.json" "http://$ADDR/admin/scenario")
assert_eq 200 "$code" "load bench scenario"
call GET /api/v3/projects/proj-bench/clusters/bench-19999/nodes
expect 200 '.items[0].metadata.uid == "bench-19999-node-1"' "generated cluster"
call GET /api/v3/projects/proj-bench/clusters/bench-20000
expect 404 '' "beyond the set"
call GET /api/v3/projects/proj-bench/clusters/bench-007
expect 404 '' "non-canonical index"
# warm: the first N of the set built now; the one already built above is not built again
assert_json "$(admin GET '/admin/state')" '(.clusters | length) == 1' "one cluster built on use"
assert_json "$(admin POST /admin/warm '{"count":3}')" '.built == 3 and .clusters == 4' "warm 3"
assert_json "$(admin GET '/admin/state')" \
    '([.clusters[].id] | sort) == ["bench-0","bench-1","bench-19999","bench-2"]' "warmed ids"
assert_json "$(admin GET '/admin/state?cluster=bench-2')" \
    '.clusters[0].nodes[0].uid == "bench-2-node-1" and .security_groups[0].id == "bench-2-sg"' \
    "a warmed cluster is the set's cluster"
assert_json "$(admin POST /admin/warm '{"count":3}')" '.built == 0 and .clusters == 4' "warm again"
for bad in '{"count":-1}' '{"count":"3"}' '{}' 'nope'; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d "$bad" "http://$ADDR/admin/warm")
    assert_eq 400 "$code" "warm refuses $bad"
done
bad_set='{"cluster_sets":[{"prefix":"x-","count":2,"template":{"project_id":"p","workloads":[{"name":"w"}]}}]}'
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d "$bad_set" "http://$ADDR/admin/scenario")
assert_eq 200 "$code" "a set whose template fails only when built loads"
out=$(curl -s -w '\n%{http_code}' -X POST -d '{"count":2}' "http://$ADDR/admin/warm")
assert_eq 500 "${out##*$'\n'}" "warm of an unbuildable set"
assert_json "${out%$'\n'*}" '.error | test("template is invalid")' "warm says why"

note "SIGTERM"
rc=0
mb_stop cloudsim TERM 10 || rc=$?
assert_eq 0 "$rc" "clean exit on SIGTERM"
echo "PASS: $TEST_NAME"
