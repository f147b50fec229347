#!/usr/bin/env bash
# test_compose: docker-compose.yml under Debian's docker-compose (1.29), for the default, sim
# (deploy/compose/sim.env), monitoring and cli profiles: `docker-compose config` accepts it;
# the services, env names, healthchecks and topic set-up production relies on; Kafka reachable
# from the host (EXTERNAL listener advertised as localhost on the published port); one
# meshworker service that `--scale` applies to (no fixed name, id or host port); nothing
# outside the sim profile waits for cloudsim or carries default credentials, and the worker
# given the default profile's environment refuses to start naming what is missing; a
# MESHBUY_K8S_URL override with {cluster_id} arrives unchanged (docker-compose 1.29 once
# added a stray `}`); the monitoring profile mounts the rules and dashboard that exist and
# scrapes the worker's port.  The Dockerfile: a runtime stage (the default) without cloudsim,
# devkafka or scenarios, a dev stage with them, every linked library installed.  No container
# engine runs here: this checks the files and the binaries, not a running stack.
. "$MB_ROOT/tests/lib.sh"

need_tool docker-compose
need_py yaml
need_bin meshworker
cd "$MB_ROOT"
# Check the file as shipped, not as this shell's environment would interpolate it.
unset COMPOSE_PROFILES COMPOSE_FILE CLOUDSIM_SCENARIO MB_KAFKA_PORT MB_LOG_LEVEL \
    MB_PROMETHEUS_PORT MB_GRAFANA_PORT
for v in $(compgen -e); do
    case "$v" in MESHBUY_* | KAFKA_* | REDIS_*) unset "$v" ;; esac
done
SIM_ENV=deploy/compose/sim.env

dc() { docker-compose --project-directory "$MB_ROOT" "$@"; }

for args in "" "--profile sim" "--env-file $SIM_ENV" "--profile monitoring" \
    "--profile sim --profile monitoring" "--profile cli"; do
    # shellcheck disable=SC2086 # the profile arguments split on purpose
    out=$(dc -f docker-compose.yml $args config -q 2>&1) ||
        fail "docker-compose ${args:-(default profile)} config rejects docker-compose.yml: $out"
done
grep -qx 'COMPOSE_PROFILES=sim' "$SIM_ENV" || fail "$SIM_ENV does not turn the sim profile on"

# check_compose FILE MODE [docker-compose args]: structural checks on the resolved
# configuration.  MODE: default (no credentials anywhere) or sim (cloudsim and dev keys).
check_compose() {
    local file=$1 mode=$2
    shift 2
    dc -f "$file" "$@" config >"$TEST_TMP/resolved.yml" 2>"$TEST_TMP/config.err" || {
        cat "$TEST_TMP/config.err"
        return 1
    }
    /usr/bin/python3 - "$TEST_TMP/resolved.yml" "$MB_ROOT" "$mode" "$file" <<'PY'
import os, re, sys, yaml

cfg = yaml.safe_load(open(sys.argv[1]))
root, mode, raw = sys.argv[2], sys.argv[3], open(sys.argv[4]).read()
known = set(re.findall(r'"(MESHBUY_[A-Z0-9_]+)"', open(os.path.join(root, "lib/mb_conf.c")).read()))
svc = cfg["services"]
errors = []

def need(cond, msg):
    if not cond:
        errors.append(msg)

def port(p):
    """docker-compose 1.29 prints ports as [[HOST_IP:]PUBLISHED:]TARGET[/PROTO] strings."""
    if isinstance(p, dict):
        return {k: str(p.get(k) or "") for k in ("host_ip", "published", "target")}
    parts = str(p).split("/")[0].split(":")
    parts = [""] * (3 - len(parts)) + parts
    return dict(zip(("host_ip", "published", "target"), parts))

def vol(v):
    if isinstance(v, dict):
        return {"source": str(v.get("source", "")), "target": str(v.get("target", "")),
                "bind": v.get("type") == "bind"}
    parts = str(v).split(":")
    return {"source": parts[0], "target": parts[1] if len(parts) > 1 else "",
            "bind": parts[0].startswith("/")}

for name in ["kafka", "kafka-init", "redis", "meshworker", "cloudsim", "prometheus", "grafana",
             "meshbuy-cli"]:
    need(name in svc, f"service {name} missing")
if errors:
    print("\n".join(errors)); sys.exit(1)
workers = [n for n, s in svc.items() if (s.get("command") or [""])[0] == "meshworker"]
need(workers == ["meshworker"], f"want one worker service named meshworker, found {workers}")

# ---- profiles: the default stack depends on nothing a profile turns on
prof = {n: s.get("profiles", []) for n, s in svc.items()}
need(prof["cloudsim"] == ["sim"], "cloudsim must be in the sim profile only")
need(prof["prometheus"] == ["monitoring"] and prof["grafana"] == ["monitoring"],
     "prometheus and grafana must be in the monitoring profile only")
for n, s in svc.items():
    if not prof[n]:
        for d in s.get("depends_on", {}):
            need(not prof.get(d), f"{n} (default profile) depends on {d} (profile {prof.get(d)})")

# ---- Kafka: KRaft, an internal and an EXTERNAL listener for the host
k = svc["kafka"]
kenv = k["environment"]
need(k["image"].startswith("apache/kafka:"), "kafka must use the official apache/kafka image")
roles = str(kenv.get("KAFKA_PROCESS_ROLES", ""))
need("controller" in roles and "broker" in roles, "kafka must run KRaft broker+controller")
need("healthcheck" in k, "kafka needs a healthcheck")
listeners = dict(l.split("://", 1) for l in str(kenv.get("KAFKA_LISTENERS", "")).split(","))
adv = dict(l.split("://", 1) for l in str(kenv.get("KAFKA_ADVERTISED_LISTENERS", "")).split(","))
protos = dict(p.split(":", 1) for p in str(kenv.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "")).split(","))
need(adv.get("PLAINTEXT", "").startswith("kafka:"), "the internal listener must be advertised as kafka:PORT")
need("EXTERNAL" in listeners and "EXTERNAL" in protos, "kafka needs an EXTERNAL listener")
ext_port = listeners.get("EXTERNAL", ":0").rsplit(":", 1)[1]
adv_ext = adv.get("EXTERNAL", "")
need(adv_ext.startswith("localhost:"), f"EXTERNAL must be advertised as localhost:PORT, not {adv_ext!r}")
pub = [port(p) for p in k.get("ports", []) if port(p)["target"] == ext_port]
need(len(pub) == 1, f"the EXTERNAL listener's port {ext_port} is not published")
if pub:
    need(pub[0]["published"] == adv_ext.rsplit(":", 1)[-1],
         f"published port {pub[0]['published']} is not the advertised {adv_ext}")
    need(pub[0]["host_ip"] == "127.0.0.1", "Kafka's plaintext port must bind the host's loopback only")

init = svc["kafka-init"]
cmd = " ".join(init.get("command") or []) + " " + " ".join(init.get("entrypoint") or [])
need("kafka-topics.sh" in cmd, "kafka-init must use kafka-topics.sh")
for t in ["mesh.orders", "mesh.status", "mesh.orders.dlq"]:
    need(t in cmd, f"kafka-init does not create {t}")
need("--partitions 6" in cmd, "kafka-init must create 6 partitions")
need(init.get("depends_on", {}).get("kafka", {}).get("condition") == "service_healthy",
     "kafka-init must wait for a healthy kafka")

r = svc["redis"]
need(r["image"].split(":")[0] == "redis" and r["image"].split(":")[1].startswith("7"),
     "redis must be redis:7")
need("healthcheck" in r, "redis needs a healthcheck")
need("always" in (r.get("command") or []), "redis must run with appendfsync always")

# ---- the worker: scalable, the contract's variables, no default credentials
w = svc["meshworker"]
env = w.get("environment", {})
need("build" in w and w["build"].get("target") == "runtime", "meshworker: build the runtime target")
for key in ["container_name", "hostname"]:
    need(key not in w, f"meshworker: {key} is fixed, --scale would clash")
need("MESHBUY_WORKER_ID" not in env, "meshworker: a fixed MESHBUY_WORKER_ID; replicas need their own")
for p in map(port, w.get("ports", [])):
    need(not p["published"], f"meshworker: host port {p['published']} is fixed, --scale would clash")
    need(p["host_ip"] == "127.0.0.1", "meshworker: metrics must bind the host's loopback")
aport = str(env.get("MESHBUY_HTTP_PORT", "9464"))
need(any(port(p)["target"] == aport for p in w.get("ports", [])), f"meshworker: port {aport} not published")
hc = " ".join(w.get("healthcheck", {}).get("test", []))
need(f":{aport}/healthz" in hc, "meshworker: healthcheck must GET /healthz on MESHBUY_HTTP_PORT")
deps = w.get("depends_on", {})
need(deps.get("kafka-init", {}).get("condition") == "service_completed_successfully",
     "meshworker: must start after the topics exist")
need(deps.get("redis", {}).get("condition") == "service_healthy", "meshworker: must wait for redis")
grace = str(w.get("stop_grace_period", "10s"))
need(re.fullmatch(r"\d+s", grace) and int(grace[:-1]) * 1000 >= int(env.get("MESHBUY_DRAIN_MS", 10000)) + 5000,
     f"meshworker: stop_grace_period {grace} not above MESHBUY_DRAIN_MS")
for v in ["KAFKA_BROKERS", "MESHBUY_ORDERS_TOPIC", "MESHBUY_STATUS_TOPIC", "MESHBUY_DLQ_TOPIC",
          "REDIS_URL", "MESHBUY_CCE_URL", "MESHBUY_VPC_URL", "MESHBUY_K8S_URL", "MESHBUY_AK",
          "MESHBUY_SK"]:
    need(v in env, f"meshworker: {v} not listed")
for v in env:
    if v.startswith("MESHBUY_"):
        need(v in known, f"meshworker: {v} is not a MESHBUY_* name lib/mb_conf.c knows")
need(env.get("REDIS_URL", "").startswith("redis://redis:"), "meshworker: REDIS_URL not the redis service")
need(env.get("KAFKA_BROKERS", "").startswith("kafka:"), "meshworker: KAFKA_BROKERS not the kafka service")
cloud = ["MESHBUY_CCE_URL", "MESHBUY_VPC_URL", "MESHBUY_K8S_URL", "MESHBUY_AK", "MESHBUY_SK"]
if mode == "default":
    for v in cloud + ["MESHBUY_SK_FILE"]:
        need(env.get(v) in (None, ""), f"meshworker: {v} defaults to {env.get(v)!r} outside the sim profile")
else:
    for v in cloud[:3]:
        need(str(env.get(v, "")).startswith("http://cloudsim:8080"), f"sim: {v} is not cloudsim: {env.get(v)!r}")
    need(env.get("MESHBUY_AK") and env.get("MESHBUY_SK"), "sim: no dev AK/SK")
# No credential in the compose file itself: the dev keys live in the sim profile's file only.
need("MESHBUYDEVACCESSKEY0" not in raw and "meshbuy-dev-secret" not in raw,
     "docker-compose.yml carries the dev AK/SK")

# ---- cloudsim (sim profile) from the dev image
c = svc["cloudsim"]
ccmd = c.get("command") or []
need(c.get("build", {}).get("target") == "dev", "cloudsim: build the dev target (the runtime image has none)")
need(ccmd and ccmd[0] == "cloudsim" and "--scenario" in ccmd and "--listen" in ccmd,
     "cloudsim must run cloudsim --listen ... --scenario ...")
need("healthcheck" in c, "cloudsim needs a healthcheck")
if "--scenario" in ccmd:
    scen = ccmd[ccmd.index("--scenario") + 1]
    need(scen.startswith("/usr/share/meshbuy/scenarios/") and
         os.path.isfile(os.path.join(root, "ops/cloudsim/scenarios", os.path.basename(scen))),
         f"cloudsim scenario {scen} is not one of ops/cloudsim/scenarios/")
if "--listen" in ccmd:
    need(ccmd[ccmd.index("--listen") + 1].endswith(":8080"), "cloudsim must listen on 8080")

# ---- monitoring: mounts that exist, a scrape of the worker's port
for n in ["prometheus", "grafana"]:
    for v in map(vol, svc[n].get("volumes", [])):
        if v["bind"]:
            need(os.path.exists(v["source"]), f"{n}: mounts {v['source']}, which does not exist")
pvols = {v["target"]: v["source"] for v in map(vol, svc["prometheus"].get("volumes", []))}
pcfg = pvols.get("/etc/prometheus/prometheus.yml")
need(pcfg, "prometheus: no /etc/prometheus/prometheus.yml mounted")
if pcfg and os.path.exists(pcfg):
    p = yaml.safe_load(open(pcfg))
    rules = set(p.get("rule_files", []))
    need(rules and rules <= set(pvols), f"prometheus: rule files {rules} are not mounted")
    jobs = [j for j in p.get("scrape_configs", []) if j.get("job_name") == "meshworker"]
    need(len(jobs) == 1, "prometheus: no meshworker scrape job")
    for j in jobs:
        sd = [d for d in j.get("dns_sd_configs", []) if "meshworker" in d.get("names", [])]
        need(sd and str(sd[0].get("port")) == aport,
             f"prometheus: must find every meshworker replica by DNS on port {aport}")
gvols = {v["target"]: v["source"] for v in map(vol, svc["grafana"].get("volumes", []))}
prov = gvols.get("/etc/grafana/provisioning", "")
need(os.path.isfile(os.path.join(prov, "dashboards", "meshbuy.yml")), "grafana: no dashboard provider")
for f in [os.path.join(prov, "dashboards", "meshbuy.yml")] if prov else []:
    if os.path.isfile(f):
        path = yaml.safe_load(open(f))["providers"][0]["options"]["path"]
        src = gvols.get(path, "")
        need(os.path.isfile(os.path.join(src, "meshbuy.json")),
             f"grafana: the provider reads {path}, where meshbuy.json is not mounted")

print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}

out=$(check_compose docker-compose.yml default) || fail "docker-compose.yml (default): $out"
out=$(check_compose docker-compose.yml sim --env-file "$SIM_ENV") ||
    fail "docker-compose.yml with $SIM_ENV: $out"

# The checker must catch a missing contract variable, a wrong partition count, a fixed
# worker id, a dependency on cloudsim and a default credential.
bad() { # NAME SED-EXPR EXPECTED
    sed -e "$2" docker-compose.yml >"$TEST_TMP/bad-$1.yml"
    cmp -s docker-compose.yml "$TEST_TMP/bad-$1.yml" && fail "bad copy $1: the edit changed nothing"
    if out=$(check_compose "$TEST_TMP/bad-$1.yml" default); then fail "checker missed $1"; fi
    assert_contains "$out" "$3" "checker's reason for $1"
}
bad no-redis-url '/^  REDIS_URL: /d' "REDIS_URL not listed"
bad four 's/--partitions 6/--partitions 4/' "6 partitions"
bad fixed-id 's/^      MESHBUY_HTTP_PORT: "9464"/&\n      MESHBUY_WORKER_ID: w1/' "fixed MESHBUY_WORKER_ID"
bad cloudsim-dep 's/^      redis:$/      cloudsim:\n        condition: service_healthy\n&/' \
    "depends on cloudsim"
# shellcheck disable=SC2016 # a literal ${...}, as a compose file would carry it
bad default-ak 's/^  MESHBUY_AK:$/  MESHBUY_AK: ${MESHBUY_AK:-MESHBUYDEVACCESSKEY0}/' "MESHBUY_AK defaults to"
bad fixed-port 's/"127.0.0.1::9464"/"127.0.0.1:9464:9464"/' "host port 9464 is fixed"

# ---- MESHBUY_K8S_URL override: arrives exactly as given (docker-compose 1.29 cut a
# `${VAR:-default}` default at its first `}` and appended the rest to the value)
k8s_url_of() { # FILE [args] -> the worker's resolved MESHBUY_K8S_URL
    local f=$1
    shift
    dc -f "$f" "$@" config 2>/dev/null | /usr/bin/python3 -c '
import sys, yaml
print(yaml.safe_load(sys.stdin)["services"]["meshworker"]["environment"].get("MESHBUY_K8S_URL"))'
}
want='https://{cluster_id}.cce.{region}.example'
got=$(MESHBUY_K8S_URL=$want k8s_url_of docker-compose.yml)
assert_eq "$want" "$got" "MESHBUY_K8S_URL override through docker-compose"
got=$(MESHBUY_K8S_URL=$want k8s_url_of docker-compose.yml --env-file "$SIM_ENV")
assert_eq "$want" "$got" "the shell's MESHBUY_K8S_URL wins over $SIM_ENV"
assert_eq 'http://cloudsim:8080/k8s/{cluster_id}' "$(k8s_url_of docker-compose.yml --env-file "$SIM_ENV")" \
    "sim profile's MESHBUY_K8S_URL"
# The old form shows the bug under this docker-compose, so the check above can fail.
# shellcheck disable=SC2016 # a literal ${...}, as the old compose file carried it
sed -e 's|^  MESHBUY_K8S_URL:$|  MESHBUY_K8S_URL: ${MESHBUY_K8S_URL:-http://cloudsim:8080/k8s/{cluster_id}}|' \
    docker-compose.yml >"$TEST_TMP/old-k8s.yml"
got=$(MESHBUY_K8S_URL=$want k8s_url_of "$TEST_TMP/old-k8s.yml")
assert_eq "$want}" "$got" "docker-compose $(docker-compose version --short) no longer shows the old bug"

# ---- the worker refuses the default profile's environment without credentials, and
# accepts the sim profile's (run the real binary's --check on the resolved variables)
worker_check() { # [docker-compose args] -> meshworker --check output, its exit status
    dc -f docker-compose.yml "$@" config 2>/dev/null | /usr/bin/python3 -c '
import sys, yaml
env = yaml.safe_load(sys.stdin)["services"]["meshworker"]["environment"]
for k, v in env.items():
    if v is not None:
        print(f"{k}={v}")' >"$TEST_TMP/worker.env"
    local vars
    mapfile -t vars <"$TEST_TMP/worker.env"
    env -i PATH=/usr/bin:/bin MESHBUY_HTTP_ADDR=0.0.0.0 "${vars[@]}" "$MB_BIN/meshworker" --check 2>&1
}
set +e
out=$(worker_check)
rc=$?
set -e
assert_eq 3 "$rc" "meshworker without credentials must refuse (exit 3): $out"
assert_contains "$out" "MESHBUY_CCE_URL: required when sagas run"
out=$(MESHBUY_CCE_URL=https://cce.example MESHBUY_VPC_URL=https://vpc.example \
    MESHBUY_K8S_URL=$want worker_check) && fail "meshworker started without AK/SK: $out"
assert_contains "$out" "MESHBUY_AK: required when sagas run"
assert_contains "$out" "MESHBUY_SK_FILE"
out=$(worker_check --env-file "$SIM_ENV") || fail "meshworker refuses the sim profile: $out"
assert_contains "$out" "configuration ok"

# ---- Dockerfile: build stage = bookworm + ops/deps + make; runtime = slim + the libraries;
# runtime (the last stage, what a plain `docker build` makes) without the dev tools.
df=$(cat Dockerfile)
assert_contains "$df" "FROM debian:bookworm AS build"
assert_contains "$df" "FROM debian:bookworm-slim AS base"
assert_contains "$df" "RUN ops/deps"
assert_contains "$df" "make "
out=$(/usr/bin/python3 - Dockerfile <<'PY'
import re, sys
text = re.sub(r"\\\n", " ", open(sys.argv[1]).read())
stages, cur = {}, None
order = []
for ins in text.splitlines():
    m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", ins, re.I)
    if m:
        cur = m.group(2) or f"stage{len(order)}"
        order.append(cur)
        stages[cur] = {"from": m.group(1), "lines": []}
    elif cur:
        stages[cur]["lines"].append(ins)
errors = []
if order[-1] != "runtime":
    errors.append(f"the last stage (the default target) is {order[-1]}, not runtime")
for name in ("runtime", "dev"):
    if name not in stages:
        errors.append(f"no {name} stage")
if errors:
    print("\n".join(errors)); sys.exit(1)
run_copies = " ".join(l for l in stages["runtime"]["lines"] if l.startswith("COPY"))
for tool in ("cloudsim", "devkafka", "scenarios", "/out/dev"):
    if tool in run_copies:
        errors.append(f"the runtime stage copies {tool}")
build = " ".join(stages["build"]["lines"])
m = re.search(r"cp (bin/\S+(?: bin/\S+)*) /out/runtime/bin/", build)
if not m or set(m.group(1).split()) != {"bin/meshworker", "bin/meshbuy", "bin/meshctl"}:
    errors.append("the runtime bin set must be exactly meshworker, meshbuy, meshctl")
dev = " ".join(stages["dev"]["lines"])
for part in ("/out/dev/bin/", "/out/dev/share/meshbuy/", "/out/runtime/bin/"):
    if part not in dev:
        errors.append(f"the dev stage does not copy {part}")
if "cloudsim" not in build or "/out/dev/share/meshbuy/scenarios" not in build:
    errors.append("the build stage does not collect cloudsim and the scenarios for dev")
base = " ".join(stages["base"]["lines"])
if "MESHBUY_HTTP_ADDR=0.0.0.0" not in base:
    errors.append("the image must set MESHBUY_HTTP_ADDR=0.0.0.0 (probes, scrapes)")
print("\n".join(errors)); sys.exit(1 if errors else 0)
PY
) || fail "Dockerfile: $out"
for p in .git build/ bin/; do
    grep -qxF "$p" .dockerignore || fail ".dockerignore lacks $p"
done

# Every shared library a built binary loads directly must come from a package the base stage
# installs (sanitizer runtimes and libc aside).
runtime_pkgs=$(sed -n '/^FROM debian:bookworm-slim AS base/,/^FROM /p' Dockerfile)
needed=$(for b in "$MB_BIN"/*; do
    if [ ! -x "$b" ] || [ ! -f "$b" ]; then continue; fi
    readelf -d "$b" | sed -n "s|.*NEEDED.*\[\(.*\)\]|\1 $(basename "$b")|p"
done | sort -u -k1,1)
checked=0
while read -r so bin; do
    [ -n "$so" ] || continue
    case "$so" in libc.so.* | libm.so.* | libasan.so.* | libubsan.so.* | libgcc_s.so.* | \
        libpthread.so.* | libdl.so.* | ld-linux*) continue ;; esac
    path=$(ldconfig -p | awk -v s="$so" '$1 == s && !found { print $NF; found = 1 }')
    [ -n "$path" ] || fail "$bin needs $so, which is not installed here"
    pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null | sed -n '1s/:.*//p' || true)
    [ -n "$pkg" ] || pkg=$(dpkg -S "$path" 2>/dev/null | sed -n '1s/:.*//p' || true)
    [ -n "$pkg" ] || fail "no package owns $path"
    grep -qw -- "$pkg" <<<"$runtime_pkgs" ||
        fail "$bin links $so (package $pkg) but the Dockerfile's base stage does not install $pkg"
    checked=$((checked + 1))
done <<<"$needed"
[ "$checked" -gt 0 ] || fail "no binaries in $MB_BIN to check the runtime libraries of"
note "checked $checked libraries"
