#!/usr/bin/env bash
# test_monitoring: deploy/monitoring's alert rules, their Prometheus configuration and the
# Grafana dashboard, against promtool and a live worker:
#   - `promtool check rules` and `promtool test rules` (each alert fires on its case and stays
#     silent on a healthy look-alike); `promtool check config` on the compose profile's config
#   - every metric name and label value the rules and the dashboard use is one a live worker
#     exports (a worker that ran a saga and rejected an order, so every family has samples)
#   - `promtool check metrics` on that worker's /metrics: no complaint beyond KNOWN_LINT
#   - a real Prometheus scrapes the worker with the rules loaded: every rule is healthy, every
#     dashboard query parses and runs, and MeshbuyDLQGrowing fires once an order is rejected
#   - the compose and Kubernetes scrape configurations use the job name the rules select on
. "$MB_ROOT/tests/lib.sh"

need_tool promtool prometheus
need_py yaml
. "$MB_ROOT/tests/saga_lib.sh"

MON="$MB_ROOT/deploy/monitoring"
RULES="$MON/meshbuy-rules.yml"
DASH="$MON/grafana/dashboards/meshbuy.json"

# promtool's complaints about /metrics that are known and accepted: none (every family has
# HELP and TYPE).  A line here must say why.
KNOWN_LINT=""

# ---- static: rules, rule unit tests, Prometheus config
out=$(promtool check rules "$RULES" 2>&1) || fail "promtool check rules: $out"
out=$(cd "$MON" && promtool test rules meshbuy-rules.test.yml 2>&1) ||
    fail "promtool test rules: $out"
# The compose config names the rules by their path in the container: check it with the path
# rewritten to the file here, so the rules are loaded as Prometheus would load them.
sed "s|/etc/prometheus/rules/meshbuy-rules.yml|$RULES|" "$MON/prometheus.yml" >"$TEST_TMP/prom-compose.yml"
grep -qF "$RULES" "$TEST_TMP/prom-compose.yml" || fail "prometheus.yml does not load the rules file"
out=$(promtool check config "$TEST_TMP/prom-compose.yml" 2>&1) ||
    fail "promtool check config deploy/monitoring/prometheus.yml: $out"

# Scrape job names: the rules select job="meshworker".
/usr/bin/python3 - "$MON/prometheus.yml" "$MB_ROOT/deploy/kubernetes/prometheus-scrape.yaml" <<'PY' ||
import sys, yaml
for f in sys.argv[1:]:
    doc = yaml.safe_load(open(f))
    jobs = doc["scrape_configs"] if "scrape_configs" in doc else doc
    names = [j.get("job_name") for j in jobs]
    if "meshworker" not in names:
        sys.exit(f"{f}: no scrape job named meshworker (the alert rules select on it): {names}")
PY
    fail "scrape job names"

# The dashboard: a uid (provisioning and links keep it), unique panel ids, panels inside the
# 24-column grid and not on top of each other, every query on the datasource variable.
out=$(/usr/bin/python3 - "$DASH" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
errors = []
if not d.get("uid") or not d.get("title"):
    errors.append("no uid or title")
if not any(v.get("type") == "datasource" and v.get("name") == "datasource"
           for v in d.get("templating", {}).get("list", [])):
    errors.append("no datasource variable")
ids = [p["id"] for p in d["panels"]]
if len(ids) != len(set(ids)):
    errors.append(f"duplicate panel ids: {sorted(ids)}")
cells = {}
for p in d["panels"]:
    g = p["gridPos"]
    if g["x"] < 0 or g["x"] + g["w"] > 24:
        errors.append(f"{p['title']}: outside the 24-column grid")
    for x in range(g["x"], g["x"] + g["w"]):
        for y in range(g["y"], g["y"] + g["h"]):
            if (x, y) in cells:
                errors.append(f"{p['title']} overlaps {cells[(x, y)]}")
                break
            cells[(x, y)] = p["title"]
        else:
            continue
        break
    for t in p.get("targets", []):
        if t.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"{p['title']}: a query not on the datasource variable")
print("\n".join(errors)); sys.exit(1 if errors else 0)
PY
) || fail "dashboard $DASH: $out"

# ---- a live worker that ran one saga to Running and rejected one order
saga_stack_up
saga_worker w1
WPORT=$(cat "$TEST_TMP/w1.port")
saga_buy o-mon acct-single mon-mesh proj-a c-single --node n-single-1
assert_eq Running "$(saga_wait_terminal 120 acct-single/mon-mesh o-mon)" "the saga must end Running"

# A real Prometheus scraping that worker every second with the rules, evaluated every second.
PPORT=$(free_port)
cat >"$TEST_TMP/prom.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
scrape_configs:
  - job_name: meshworker
    static_configs:
      - targets: ["127.0.0.1:$WPORT"]
EOF
mb_start prometheus prometheus --config.file="$TEST_TMP/prom.yml" \
    --storage.tsdb.path="$TEST_TMP/prom-data" --web.listen-address="127.0.0.1:$PPORT"
PROM="http://127.0.0.1:$PPORT"
prom_q() { # PromQL -> the API's JSON
    curl -sf --max-time 10 -G "$PROM/api/v1/query" --data-urlencode "query=$1"
}
target_scraped() {
    prom_q 'meshbuy_orders_dlq_total{job="meshworker"}' | jq -e '.data.result | length == 1'
}
wait_for 60 target_scraped

# Now reject one order, with the counter's 0 already scraped, so increase() sees it.
kcat_produce mesh.orders "acct-mon/garbage" "this is not a CloudEvent"
dlq_alert_fires() {
    curl -sf --max-time 10 "$PROM/api/v1/alerts" |
        jq -e '[.data.alerts[] | select(.labels.alertname == "MeshbuyDLQGrowing" and
                .state == "firing")] | length == 1'
}
wait_for 60 dlq_alert_fires
note "MeshbuyDLQGrowing fired in a real Prometheus"

curl -sf --max-time 10 "http://127.0.0.1:$WPORT/metrics" >"$TEST_TMP/metrics.txt" ||
    fail "cannot read the worker's /metrics"

# A clean saga's expected 404s (observe-before-act reads) are "absent", not errors.
sample() { awk -v m="$1" '$1 == m { print $2; f = 1 } END { if (!f) print "none" }' "$TEST_TMP/metrics.txt"; }
assert_eq 0 "$(sample 'meshbuy_cloud_requests_total{outcome="permanent"}')" \
    "permanent cloud errors after a clean saga"
absent=$(sample 'meshbuy_cloud_requests_total{outcome="absent"}')
if [ "$absent" = none ] || [ "$absent" -lt 1 ]; then
    fail "no expected 404 counted as absent: $absent"
fi
for f in meshbuy_outbox_depth meshbuy_jobs_due meshbuy_consumer_lag meshbuy_saga_duration_seconds_count \
    meshbuy_sagas_inflight meshbuy_ready meshbuy_build_info process_cpu_seconds_total \
    process_resident_memory_bytes process_open_fds; do
    grep -q "^${f}[{ ]" "$TEST_TMP/metrics.txt" || fail "/metrics has no $f"
done
# Every checkpoint the saga wrote is seen once in each of its four phases.
ck=$(sample 'meshbuy_checkpoint_seconds_count{phase="held"}')
if [ "$ck" = none ] || [ "$ck" -lt 1 ]; then
    fail "meshbuy_checkpoint_seconds{phase=\"held\"}: $ck checkpoints after a saga"
fi
for ph in queue redis back; do
    assert_eq "$ck" "$(sample "meshbuy_checkpoint_seconds_count{phase=\"$ph\"}")" \
        "checkpoints seen in phase $ph"
    assert_eq "$ck" "$(sample "meshbuy_checkpoint_seconds_bucket{phase=\"$ph\",le=\"+Inf\"}")" \
        "phase $ph's +Inf bucket"
done
awk -v s="$(sample 'meshbuy_checkpoint_seconds_sum{phase="redis"}')" 'BEGIN { exit !(s + 0 > 0) }' ||
    fail "the checkpoints' round trips to Redis took no time"

# The saga waited for its release (400 ms here): the worker learnt how long that takes.
usual=$(sample 'meshbuy_poll_usual_seconds{saga="create",step="install_release",phase="run"}')
awk -v u="$usual" 'BEGIN { exit !(u + 0 >= 0.2 && u + 0 < 30) }' ||
    fail "meshbuy_poll_usual_seconds of install_release: $usual (a 400 ms install)"

# ---- names: every metric and label value the rules and the dashboard use exists
cat >"$TEST_TMP/names.py" <<'PY'
import json, re, sys, yaml
samples, labels = set(), set()
for line in open(sys.argv[1]):
    if not line.strip() or line.startswith("#"):
        continue
    name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
    samples.add(name)
    for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', line.split(" ")[0]):
        labels.add((name, k, v))
exprs = []
for g in yaml.safe_load(open(sys.argv[2]))["groups"]:
    for r in g["rules"]:
        exprs.append(("rule " + r.get("alert", r.get("record", "?")), r["expr"]))
for p in json.load(open(sys.argv[3]))["panels"]:
    for t in p.get("targets", []):
        exprs.append(("panel " + p["title"], t["expr"]))
errors = []
for where, e in exprs:
    for name, sel in re.findall(r"\b(meshbuy_[a-z0-9_]+)(\{[^}]*\})?", e):
        if name not in samples:
            errors.append(f"{where}: {name} is not exported by the worker")
            continue
        for k, v in re.findall(r'([a-z_]+)="([^"]*)"', sel or ""):
            if (name, k, v) not in labels:
                errors.append(f'{where}: {name} has no sample with {k}="{v}"')
print("\n".join(errors) if errors else f"{len(exprs)} expressions use exported names")
sys.exit(1 if errors else 0)
PY
check_names() { # rules dashboard
    /usr/bin/python3 "$TEST_TMP/names.py" "$TEST_TMP/metrics.txt" "$1" "$2"
}
out=$(check_names "$RULES" "$DASH") || fail "rules/dashboard use metrics the worker does not export:
$out"
note "$out"
# The checker must catch an invented family and an invented label value.
jq '.panels[1].targets[0].expr = "sum(meshbuy_invented_depth)"' "$DASH" >"$TEST_TMP/bad.json"
if out=$(check_names "$RULES" "$TEST_TMP/bad.json"); then fail "meshbuy_invented_depth not caught"; fi
assert_contains "$out" "meshbuy_invented_depth is not exported"
sed 's/status="NeedsAttention"/status="Stuck"/' "$RULES" >"$TEST_TMP/bad-rules.yml"
if out=$(check_names "$TEST_TMP/bad-rules.yml" "$DASH"); then fail "status=Stuck not caught"; fi
assert_contains "$out" 'no sample with status="Stuck"'

# ---- promtool check metrics: nothing beyond the known complaints
lint=$(promtool check metrics <"$TEST_TMP/metrics.txt" 2>&1 || true)
new=$(comm -23 <(printf '%s\n' "$lint" | sed '/^$/d' | sort -u) <(printf '%s\n' "$KNOWN_LINT" | sort -u))
[ -z "$new" ] || fail "promtool check metrics complains beyond KNOWN_LINT:
$new"
fixed=$(comm -13 <(printf '%s\n' "$lint" | sed '/^$/d' | sort -u) <(printf '%s\n' "$KNOWN_LINT" | sort -u))
[ -z "$fixed" ] || note "fixed since, remove from KNOWN_LINT: $(tr '\n' ';' <<<"$fixed")"
note "promtool check metrics: $(printf '%s\n' "$lint" | sed '/^$/d' | wc -l) known complaints"

# ---- the real Prometheus: every rule healthy, every dashboard query runs
curl -sf --max-time 10 "$PROM/api/v1/rules" >"$TEST_TMP/rules.json" || fail "GET /api/v1/rules"
nrules=$(jq '[.data.groups[].rules[]] | length' "$TEST_TMP/rules.json")
want=$(/usr/bin/python3 -c 'import sys, yaml; print(sum(len(g["rules"]) for g in yaml.safe_load(open(sys.argv[1]))["groups"]))' "$RULES")
assert_eq "$want" "$nrules" "Prometheus loaded every rule"
bad=$(jq -r '.data.groups[].rules[] | select(.health != "ok") | "\(.name): \(.lastError)"' "$TEST_TMP/rules.json")
[ -z "$bad" ] || fail "rules failing in Prometheus: $bad"
n=0
while IFS= read -r expr; do
    # Grafana's $__rate_interval and friends are not used: the text runs as it stands.
    res=$(prom_q "$expr") || fail "dashboard query rejected by Prometheus: $expr"
    jq -e '.status == "success"' <<<"$res" >/dev/null || fail "dashboard query failed: $expr: $res"
    n=$((n + 1))
done < <(jq -r '.panels[].targets[]?.expr' "$DASH")
[ "$n" -ge 10 ] || fail "only $n dashboard queries found"
# A figure must come out, not just parse: the saga that ended Running is counted.
assert_json "$(prom_q 'sum(meshbuy_sagas_ended_total{status="Running"})')" \
    '.data.result[0].value[1] | tonumber >= 1' "the Running saga is counted"
note "$n dashboard queries ran in Prometheus"
