#!/usr/bin/env bash
# test_compose: docker-compose.yml is valid for Debian's docker-compose, has the services,
# env names (DESIGN.md section 5), healthchecks and topic set-up production relies on; the
# Dockerfile's runtime stage installs the package of every library the binaries link.  No
# container engine runs here: this checks the files, not a running stack.
. "$MB_ROOT/tests/lib.sh"

need_tool docker-compose
cd "$MB_ROOT"
# Check the file as shipped, not as this shell's environment would interpolate it.
unset CLOUDSIM_SCENARIO MESHBUY_CCE_URL MESHBUY_VPC_URL MESHBUY_K8S_URL MESHBUY_AK MESHBUY_SK

docker-compose -f docker-compose.yml config -q || fail "docker-compose config rejects docker-compose.yml"

# check_compose FILE: structural checks on the resolved configuration.
check_compose() {
    docker-compose --project-directory "$MB_ROOT" -f "$1" config >"$TEST_TMP/resolved.yml" ||
        return 1
    /usr/bin/python3 - "$TEST_TMP/resolved.yml" "$MB_ROOT/lib/mb_conf.c" "$MB_ROOT" <<'PY'
import os, re, sys, yaml

cfg = yaml.safe_load(open(sys.argv[1]))
known = set(re.findall(r'"(MESHBUY_[A-Z0-9_]+)"', open(sys.argv[2]).read()))
svc = cfg["services"]
errors = []

def need(cond, msg):
    if not cond:
        errors.append(msg)

for name in ["kafka", "kafka-init", "redis", "cloudsim", "meshworker-1", "meshworker-2"]:
    need(name in svc, f"service {name} missing")
if errors:
    print("\n".join(errors)); sys.exit(1)

k = svc["kafka"]
need(k["image"].startswith("apache/kafka:"), "kafka must use the official apache/kafka image")
roles = str(k["environment"].get("KAFKA_PROCESS_ROLES", ""))
need("controller" in roles and "broker" in roles, "kafka must run KRaft broker+controller")
need("healthcheck" in k, "kafka needs a healthcheck")

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

contract = ["KAFKA_BROKERS", "MESHBUY_ORDERS_TOPIC", "MESHBUY_STATUS_TOPIC", "MESHBUY_DLQ_TOPIC",
            "REDIS_URL", "MESHBUY_CCE_URL", "MESHBUY_VPC_URL", "MESHBUY_K8S_URL", "MESHBUY_AK"]
groups, ids = set(), set()
for w in ["meshworker-1", "meshworker-2"]:
    s = svc[w]
    env = s.get("environment", {})
    for v in contract:
        need(v in env, f"{w}: {v} not set")
    need("MESHBUY_SK" in env or "MESHBUY_SK_FILE" in env, f"{w}: MESHBUY_SK(_FILE) not set")
    for v in env:
        if v.startswith("MESHBUY_"):
            need(v in known, f"{w}: {v} is not a MESHBUY_* name lib/mb_conf.c knows")
    need("{cluster_id}" in str(env.get("MESHBUY_K8S_URL", "")), f"{w}: K8S URL lacks {{cluster_id}}")
    need(env.get("REDIS_URL", "").startswith("redis://redis:"), f"{w}: REDIS_URL not the redis service")
    need(env.get("KAFKA_BROKERS", "").startswith("kafka:"), f"{w}: KAFKA_BROKERS not the kafka service")
    groups.add(env.get("MESHBUY_GROUP"))
    ids.add(env.get("MESHBUY_WORKER_ID"))
    need("build" in s, f"{w}: must be built from the Dockerfile")
    hc = " ".join(s.get("healthcheck", {}).get("test", []))
    port = str(env.get("MESHBUY_HTTP_PORT", "9464"))
    need(f":{port}/healthz" in hc, f"{w}: healthcheck must GET /healthz on MESHBUY_HTTP_PORT")
    deps = s.get("depends_on", {})
    need(deps.get("kafka-init", {}).get("condition") == "service_completed_successfully",
         f"{w}: must start after the topics exist")
    need(deps.get("redis", {}).get("condition") == "service_healthy", f"{w}: must wait for redis")
need(len(groups) == 1 and None not in groups, "workers must share one MESHBUY_GROUP")
need(len(ids) == 2, "workers need distinct MESHBUY_WORKER_IDs")

c = svc["cloudsim"]
ccmd = c.get("command") or []
need(ccmd and ccmd[0] == "cloudsim" and "--scenario" in ccmd and "--listen" in ccmd,
     "cloudsim must run cloudsim --listen ... --scenario ...")
need("healthcheck" in c, "cloudsim needs a healthcheck")
if "--scenario" in ccmd:
    scen = ccmd[ccmd.index("--scenario") + 1]
    # The image ships ops/cloudsim/scenarios/ as /usr/share/meshbuy/scenarios/.
    need(scen.startswith("/usr/share/meshbuy/scenarios/") and
         os.path.isfile(os.path.join(sys.argv[3], "ops/cloudsim/scenarios", os.path.basename(scen))),
         f"cloudsim scenario {scen} is not one of ops/cloudsim/scenarios/")

print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
}

out=$(check_compose docker-compose.yml) || fail "docker-compose.yml: $out"

# The checker must catch a missing contract variable and a wrong partition count.
sed -e '/^  REDIS_URL: /d' docker-compose.yml >"$TEST_TMP/no-redis-url.yml"
if out=$(check_compose "$TEST_TMP/no-redis-url.yml"); then fail "checker missed a dropped REDIS_URL"; fi
assert_contains "$out" "REDIS_URL not set"
sed -e 's/--partitions 6/--partitions 4/' docker-compose.yml >"$TEST_TMP/four.yml"
if out=$(check_compose "$TEST_TMP/four.yml"); then fail "checker missed 4 partitions"; fi
assert_contains "$out" "6 partitions"

# Dockerfile: build stage = bookworm + ops/deps + make; runtime = slim + the libraries.
df=$(cat Dockerfile)
assert_contains "$df" "FROM debian:bookworm AS build"
assert_contains "$df" "FROM debian:bookworm-slim"
assert_contains "$df" "RUN ops/deps"
assert_contains "$df" "make "
for p in .git build/ bin/; do
    grep -qxF "$p" .dockerignore || fail ".dockerignore lacks $p"
done

# Every shared library a built binary loads directly must come from a package the runtime
# stage installs (sanitizer runtimes and libc aside).
runtime_pkgs=$(sed -n '/^FROM debian:bookworm-slim/,$p' Dockerfile)
needed=$(for b in "$MB_BIN"/*; do
    [[ -x "$b" && -f "$b" ]] || continue
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
        fail "$bin links $so (package $pkg) but the Dockerfile's runtime stage does not install $pkg"
    checked=$((checked + 1))
done <<<"$needed"
[ "$checked" -gt 0 ] || note "no binaries in $MB_BIN: runtime library check skipped"
note "checked $checked libraries"
