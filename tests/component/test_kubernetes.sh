#!/usr/bin/env bash
# test_kubernetes: deploy/kubernetes without a cluster.  Every manifest parses (python3-yaml)
# and is listed by kustomization.yaml; the environment the Deployment gives meshworker
# (the ConfigMap through envFrom, its own env, the image's ENV) passes `meshworker --check`
# with dummy values only where a Secret or the pod supplies one, and names no variable the
# worker does not read; the probes hit /healthz and /readyz on the admin port the worker
# listens on (MESHBUY_HTTP_PORT, MESHBUY_HTTP_ADDR not loopback), as do the scrape
# annotations; terminationGracePeriodSeconds is above MESHBUY_DRAIN_MS; the rest of what
# the deployment needs (PDB, enableServiceLinks: false, resources, secrets as files) is there.
# Each checker is also shown a broken copy it must reject.
. "$MB_ROOT/tests/lib.sh"

need_bin meshworker
need_py yaml
need_tool kubectl

K8S="$MB_ROOT/deploy/kubernetes"

# check_manifests DIR|RENDERED: prints one line per finding; exit 1 if any.  Runs
# meshworker --check.
cat >"$TEST_TMP/check.py" <<'PY'
import os, re, subprocess, sys, tempfile, yaml

kdir, worker, dockerfile, tmp = sys.argv[1:5]
errors = []

def need(cond, msg):
    if not cond:
        errors.append(msg)

docs = []
if os.path.isfile(kdir):
    # A rendered manifest stream (kubectl kustomize): everything in it is deployed.
    docs = [d for d in yaml.safe_load_all(open(kdir)) if d]
    need(all(d.get("metadata", {}).get("namespace") for d in docs),
         "rendered objects without a namespace")
else:
    kust = yaml.safe_load(open(os.path.join(kdir, "kustomization.yaml")))
    for res in kust.get("resources", []):
        path = os.path.join(kdir, res)
        need(os.path.isfile(path), f"kustomization.yaml lists {res}, which does not exist")
        if os.path.isfile(path):
            docs += [d for d in yaml.safe_load_all(open(path)) if d]
    # Every Kubernetes object here but the Secret example is deployed.
    for f in sorted(os.listdir(kdir)):
        if f.endswith((".yaml", ".yml")):
            for d in yaml.safe_load_all(open(os.path.join(kdir, f))):
                if d and "kind" in d and "apiVersion" in d and d["kind"] not in ("Kustomization", "Secret"):
                    need(f in kust.get("resources", []), f"{f} ({d['kind']}) is not in kustomization.yaml")
                if d and d.get("kind") == "Secret":
                    need(f not in kust.get("resources", []), f"{f}: a Secret with example values is deployed")
need(not any(d.get("kind") == "Secret" for d in docs), "a Secret is deployed from the repository")

def one(kind):
    found = [d for d in docs if d.get("kind") == kind]
    need(len(found) == 1, f"want exactly one {kind}, found {len(found)}")
    return found[0] if found else {}

dep, cms, pdb = one("Deployment"), [d for d in docs if d.get("kind") == "ConfigMap"], one("PodDisruptionBudget")
if errors:
    print("\n".join(errors)); sys.exit(1)
pod = dep["spec"]["template"]["spec"]
ctrs = [c for c in pod["containers"] if c["name"] == "meshworker"]
need(len(ctrs) == 1, "no container named meshworker")
c = ctrs[0]
need(pod.get("enableServiceLinks") is False, "enableServiceLinks must be false")
labels = dep["spec"]["template"]["metadata"].get("labels", {})
sel = dep["spec"]["selector"]["matchLabels"]
need(all(labels.get(k) == v for k, v in sel.items()), "selector does not match the pod labels")
need(pdb.get("spec", {}).get("selector", {}).get("matchLabels") == sel,
     "PodDisruptionBudget selects other pods than the Deployment")
need("maxUnavailable" in pdb.get("spec", {}) or "minAvailable" in pdb.get("spec", {}),
     "PodDisruptionBudget sets no budget")
res = c.get("resources", {})
need(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory"),
     "container needs cpu and memory requests")
need(res.get("limits", {}).get("memory"), "container needs a memory limit")

# ---- the environment meshworker gets: image ENV, then envFrom ConfigMaps, then env
env, origin = {}, {}
# Dockerfile instructions with their continuation lines joined; ENV of the stage the runtime
# image is built FROM ("base").
stage = None
for ins in re.sub(r"\\\n", " ", open(dockerfile).read()).splitlines():
    m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", ins, re.I)
    if m:
        stage = m.group(1)
    elif stage == "base" and re.match(r"ENV\s", ins):
        for k, v in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", ins):
            env[k], origin[k] = v, "image"
need(env.get("MESHBUY_HTTP_ADDR") == "0.0.0.0", "the image does not set MESHBUY_HTTP_ADDR=0.0.0.0")
cm_by_name = {d["metadata"]["name"]: d.get("data", {}) for d in cms}
for src in c.get("envFrom", []):
    ref = src.get("configMapRef", {}).get("name")
    need(ref in cm_by_name, f"envFrom names ConfigMap {ref}, which is not deployed")
    for k, v in cm_by_name.get(ref, {}).items():
        need(isinstance(v, str), f"ConfigMap {ref}: {k} is not a string (quote it)")
        env[k], origin[k] = str(v), f"configmap {ref}"
vols = {v["name"]: v for v in pod.get("volumes", [])}
mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts", [])}
secret_files = {}
for e in c.get("env", []):
    k = e["name"]
    if "value" in e:
        v = str(e["value"])
        if k.endswith("_FILE"):
            # Must be a file of a mounted Secret: substitute a dummy file of that key.
            d, base = os.path.dirname(v), os.path.basename(v)
            m = mounts.get(d)
            vol = vols.get(m["name"]) if m else None
            keys = [i["path"] for i in (vol or {}).get("secret", {}).get("items", [])]
            need(vol is not None and "secret" in vol and base in keys,
                 f"{k}={v} is not a key of a mounted Secret volume")
            path = os.path.join(tmp, "secret-" + base)
            with open(path, "w") as f:
                f.write("dummy-" + base + "\n")
            secret_files[k] = v
            v = path
        env[k], origin[k] = v, "env"
    elif "secretKeyRef" in e.get("valueFrom", {}):
        env[k], origin[k] = "DUMMY" + re.sub(r"[^A-Za-z0-9]", "", e["valueFrom"]["secretKeyRef"]["key"]).upper(), "secret"
    elif "fieldRef" in e.get("valueFrom", {}):
        env[k], origin[k] = "meshworker-5d8f7c9b4-x2x7q", "pod field"
    else:
        errors.append(f"env {k}: no value and no supported valueFrom")

# Names: each must be a setting meshworker reads.
helptext = subprocess.run([worker, "--help"], capture_output=True, text=True).stdout
settings = set(re.findall(r"^  ([A-Z][A-Z0-9_]+) ", helptext, re.M))
need(len(settings) > 10, "could not read the settings from meshworker --help")
for k in env:
    ok = (k in settings or k.startswith("KAFKA_") or k in ("REDIS_PASSWORD", "REDIS_PASSWORD_FILE")
          or (k.endswith("_FILE") and k[:-5] in settings and "secret" in
              re.search(rf"^  {k[:-5]} +(.*)$", helptext, re.M).group(1)))
    need(ok, f"{k} ({origin[k]}) is not a setting meshworker reads")
need(env.get("MESHBUY_AK") and origin.get("MESHBUY_AK") == "secret", "MESHBUY_AK must come from a Secret")
need("MESHBUY_SK_FILE" in secret_files or origin.get("MESHBUY_SK") == "secret",
     "MESHBUY_SK must come from a Secret (file or secretKeyRef)")
need("REDIS_PASSWORD_FILE" in secret_files or origin.get("REDIS_PASSWORD") == "secret",
     "the Redis password must come from a Secret")
for k, o in origin.items():
    need(not (o.startswith("configmap") and re.search(r"(^|_)(SK|PASSWORD|SECRET)($|_)", k)),
         f"{k} is a secret but sits in a ConfigMap")

# ---- meshworker --check on exactly that environment
run = subprocess.run([worker, "--check"], env={"PATH": "/usr/bin:/bin", **env},
                     capture_output=True, text=True)
if run.returncode != 0 or "configuration ok" not in run.stdout:
    errors.append(f"meshworker --check refuses the manifests' environment (exit "
                  f"{run.returncode}): {run.stderr.strip()}")
    print("\n".join(errors)); sys.exit(1)
eff = dict(l.split("=", 1) for l in run.stdout.splitlines() if "=" in l)
for k, v in env.items():
    if k in eff and origin[k] != "secret" and not k.endswith("_FILE"):
        need(eff[k] == v, f"{k}: set to {v!r}, meshworker runs with {eff[k]!r}")

# ---- probes, port and scrape annotations against the admin port
port = int(eff["MESHBUY_HTTP_PORT"])
need(port > 0, "MESHBUY_HTTP_PORT is 0: no probes or metrics")
need(eff["MESHBUY_HTTP_ADDR"] not in ("127.0.0.1", "localhost", "::1"),
     f"MESHBUY_HTTP_ADDR {eff['MESHBUY_HTTP_ADDR']}: probes and scrapes cannot reach loopback")
named = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
need(port in named.values(), f"no containerPort {port} (MESHBUY_HTTP_PORT)")
for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
    g = c.get(probe, {}).get("httpGet")
    need(g is not None, f"{probe} must be an httpGet")
    if g:
        p = named.get(g["port"], g["port"])
        need(g.get("path") == path, f"{probe} path {g.get('path')}, want {path}")
        need(p == port, f"{probe} port {g['port']} is not the admin port {port}")
ann = dep["spec"]["template"]["metadata"].get("annotations", {})
need(ann.get("prometheus.io/scrape") == "true", "pod lacks prometheus.io/scrape: \"true\"")
need(ann.get("prometheus.io/port") == str(port), f"prometheus.io/port is not {port}")
need(ann.get("prometheus.io/path", "/metrics") == "/metrics", "prometheus.io/path is not /metrics")

# ---- grace period above the drain bound (plus the producer's final flush, up to 1 s)
drain_ms = int(eff["MESHBUY_DRAIN_MS"])
grace = pod.get("terminationGracePeriodSeconds", 30)
need(grace * 1000 >= drain_ms + 5000,
     f"terminationGracePeriodSeconds {grace} is not above MESHBUY_DRAIN_MS {drain_ms} + 5 s")
print("\n".join(errors) if errors else
      f"{len(env)} variables pass meshworker --check; admin port {port}; grace {grace}s > drain {drain_ms} ms")
sys.exit(1 if errors else 0)
PY

check_manifests() { # DIR
    /usr/bin/python3 "$TEST_TMP/check.py" "$1" "$MB_BIN/meshworker" "$MB_ROOT/Dockerfile" "$TEST_TMP"
}

out=$(check_manifests "$K8S") || fail "deploy/kubernetes:
$out"
note "$out"
# The same checks on what `kubectl apply -k` would send (no cluster needed to render).
kubectl kustomize "$K8S" >"$TEST_TMP/rendered.yaml" 2>"$TEST_TMP/kustomize.err" ||
    fail "kubectl kustomize deploy/kubernetes: $(cat "$TEST_TMP/kustomize.err")"
out=$(check_manifests "$TEST_TMP/rendered.yaml") || fail "kubectl kustomize output:
$out"
image=$(/usr/bin/python3 -c '
import sys, yaml
d = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Deployment"][0]
print(d["spec"]["template"]["spec"]["containers"][0]["image"])' "$TEST_TMP/rendered.yaml")
assert_eq "meshbuy:latest" "$image" "the kustomization's image (kustomize edit set image changes it)"

# Every YAML file in the directory parses (the example Secret and the scrape job too).
for f in "$K8S"/*.yaml; do
    /usr/bin/python3 -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f" ||
        fail "$f does not parse"
done

# ---- the checker rejects broken copies
broken() { # NAME SED-EXPR FILE EXPECTED-TEXT
    rm -rf "$TEST_TMP/k-$1"
    cp -r "$K8S" "$TEST_TMP/k-$1"
    sed -i -e "$2" "$TEST_TMP/k-$1/$3"
    cmp -s "$K8S/$3" "$TEST_TMP/k-$1/$3" && fail "broken copy $1: the edit changed nothing"
    if out=$(check_manifests "$TEST_TMP/k-$1"); then fail "checker accepted $1"; fi
    assert_contains "$out" "$4" "checker's reason for $1"
}
broken typo 's/MESHBUY_LOG_LEVEL: info/MESHBUY_LOGLEVEL: info/' configmap.yaml \
    "MESHBUY_LOGLEVEL (configmap meshbuy-config) is not a setting"
broken badvalue 's/MESHBUY_ON_FAILURE: compensate/MESHBUY_ON_FAILURE: retry/' configmap.yaml \
    "refuses the manifests' environment"
broken loopback 's/MESHBUY_HTTP_ADDR: 0.0.0.0/MESHBUY_HTTP_ADDR: 127.0.0.1/' configmap.yaml \
    "cannot reach loopback"
broken port 's/MESHBUY_HTTP_PORT: "9464"/MESHBUY_HTTP_PORT: "9465"/' configmap.yaml \
    "is not the admin port 9465"
broken drain 's/MESHBUY_DRAIN_MS: "10000"/MESHBUY_DRAIN_MS: "60000"/' configmap.yaml \
    "is not above MESHBUY_DRAIN_MS 60000"
broken path 's|path: /readyz|path: /ready|' deployment.yaml "readinessProbe path /ready"
broken links 's/enableServiceLinks: false/enableServiceLinks: true/' deployment.yaml \
    "enableServiceLinks must be false"
broken skfile 's|value: /etc/meshbuy/secrets/sk$|value: /etc/meshbuy/sk|' deployment.yaml \
    "MESHBUY_SK_FILE=/etc/meshbuy/sk is not a key of a mounted Secret volume"
broken pdb 's/- poddisruptionbudget.yaml/# no pdb/' kustomization.yaml \
    "want exactly one PodDisruptionBudget"
broken plainsk 's/  MESHBUY_LOG_LEVEL: info/  MESHBUY_LOG_LEVEL: info\n  MESHBUY_SK: hunter2/' \
    configmap.yaml "MESHBUY_SK is a secret but sits in a ConfigMap"
