#!/usr/bin/env bash
# test_asyncapi.sh: schemas/asyncapi.yaml is a valid AsyncAPI 3.0.0 document and says what the
# code does:
#   - valid against the official AsyncAPI 3.0.0 JSON Schema (schemas/vendor/asyncapi-3.0.0.json,
#     from npm @asyncapi/specs 6.11.1, Apache-2.0), with python3-jsonschema; a broken copy is not
#   - every $ref resolves: local pointers in the document, files next to it (and their pointers)
#   - the channel addresses are the topic defaults of lib/mb_kafka.c
#   - the header schemas accept the headers of every valid .kafka.json order fixture (structured
#     or binary by content mode) and of a status event; refuse an empty traceparent
. "$MB_ROOT/tests/lib.sh"

need_py jsonschema yaml
cd "$MB_ROOT"

out=$(/usr/bin/python3 - 2>&1 <<'PYEOF'
import glob, json, re, sys
import jsonschema, yaml

vendor = json.load(open("schemas/vendor/asyncapi-3.0.0.json"))
doc = yaml.safe_load(open("schemas/asyncapi.yaml"))
V = jsonschema.validators.validator_for(vendor)
V.check_schema(vendor)
bad = 0
def problem(msg):
    global bad
    bad += 1
    print(msg)

for e in V(vendor).iter_errors(doc):
    problem("asyncapi.yaml %s: %s" % ("/".join(map(str, e.absolute_path)), e.message[:200]))

# the check can fail: a wrong action and an unknown field are refused
broken = json.loads(json.dumps(doc))
broken["operations"]["sendStatus"]["action"] = "publish"
broken["channels"]["orders"]["topic"] = "mesh.orders"
if not list(V(vendor).iter_errors(broken)):
    problem("the AsyncAPI schema accepted a broken document")

def pointer(obj, ptr, where):
    for part in [p for p in ptr.split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(obj, dict) or part not in obj:
            problem("%s: $ref pointer /%s does not resolve" % (where, ptr))
            return None
        obj = obj[part]
    return obj

files = 0
def refs(node, path):
    global files
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str):
            f, _, ptr = r.partition("#")
            if f:
                try:
                    target = json.load(open("schemas/" + f.lstrip("./")))
                    files += 1
                except (OSError, ValueError) as e:
                    problem("%s: $ref %s: %s" % (path, r, e))
                    target = None
                if target is not None and ptr:
                    pointer(target, ptr, path)
            else:
                pointer(doc, ptr, path)
        for k, v in node.items():
            refs(v, path + "/" + str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            refs(v, "%s/%d" % (path, i))
refs(doc, "")
if files < 4:
    problem("only %d references to the JSON Schemas" % files)

src = open("lib/mb_kafka.c").read()
for ch, topic in (("orders", "mesh.orders"), ("status", "mesh.status"), ("dlq", "mesh.orders.dlq")):
    if doc["channels"][ch]["address"] != topic or '"%s"' % topic not in src:
        problem("channel %s: address %s is not the default topic %s of lib/mb_kafka.c"
                % (ch, doc["channels"][ch]["address"], topic))

msgs = doc["components"]["messages"]
def headers_ok(name, headers, what):
    # the document's components ride along so that its local $refs resolve
    schema = dict(msgs[name]["headers"], components=doc["components"])
    errs = list(jsonschema.Draft7Validator(schema).iter_errors(headers))
    for e in errs:
        problem("%s: headers not %s: %s" % (what, name, e.message[:200]))

n = 0
for f in sorted(glob.glob("tests/fixtures/order/valid/*.kafka.json")):
    h = json.load(open(f))["headers"]
    ct = h.get("content-type", "")
    headers_ok("orderStructured" if ct.lower().startswith("application/cloudevents") else
               "orderBinary", h, f)
    n += 1
if n < 4:
    problem("only %d .kafka.json fixtures" % n)
print("asyncapi.yaml valid; %d schema references; %d fixtures' headers match" % (files, n))
sys.exit(1 if bad else 0)
PYEOF
) || fail "$out"
note "$out"

# Header samples: 0 when HEADERS match MESSAGE's header schema.
hdr_ok() {
    /usr/bin/python3 -c '
import json, sys, jsonschema, yaml
doc = yaml.safe_load(open("schemas/asyncapi.yaml"))
s = dict(doc["components"]["messages"][sys.argv[1]]["headers"], components=doc["components"])
errs = [e.message for e in jsonschema.Draft7Validator(s).iter_errors(json.loads(sys.argv[2]))]
sys.exit("; ".join(errs) if errs else 0)' "$1" "$2"
}
hdr_ok orderBinary '{"ce_specversion":"1.0","ce_id":"x","ce_source":"s",
    "ce_type":"com.meshbuy.order.buy.v1","content-type":"application/json; charset=utf-8"}' ||
    fail "a binary order with a charset: headers refused"
hdr_ok status '{"content-type":"application/cloudevents+json",
    "traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}' ||
    fail "a status event's headers refused"
if hdr_ok status '{"content-type":"application/cloudevents+json","traceparent":""}' 2>/dev/null; then
    fail "an empty traceparent header passed the status message's headers"
fi
if hdr_ok orderBinary '{"ce_id":"x","ce_source":"s","ce_type":"com.meshbuy.order.buy.v1"}' \
    2>/dev/null; then
    fail "a binary order without ce_specversion passed"
fi
grep -q '"content-type", -1, "application/cloudevents+json"' worker/mb_relay.c ||
    fail "the relay no longer sends content-type application/cloudevents+json"
