#!/usr/bin/env bash
# test_fixtures.sh: every fixture gets the same verdict from the JSON Schemas (python3-jsonschema,
# Draft 2020-12, format checking on) and from the C parser behind `meshbuy --validate`.
#
# tests/fixtures/order/        messages on mesh.orders   -> schemas/order.schema.json
#                                                           (oneOf order-buy / order-cancel)
#                                                           and `meshbuy --validate`
#   *.kafka.json                 a whole Kafka message {"headers": {...}, "value": ...} (the value
#                                as text when a string, else as compact JSON): the schemas judge
#                                the envelope the CloudEvents Kafka binding maps it to (canonical()
#                                below, the same mapping as lib/mb_order.c mb_order_canonical)
# tests/fixtures/mesh-status/  events on mesh.status     -> schemas/mesh-status.schema.json
#                                                           and `meshbuy --validate-status`
# Also: every schema is itself a valid 2020-12 schema, and schemas/istio-catalog.json is valid.
. "$MB_ROOT/tests/lib.sh"

MESHBUY="$MB_BIN/meshbuy"
[ -x "$MESHBUY" ] || fail "no $MESHBUY (build first)"
PY=/usr/bin/python3
need_py jsonschema

# One line per fixture: "<file> valid|invalid <first error>", judged by the schemas.
cat >"$TEST_TMP/judge.py" <<'PYEOF'
import glob, json, os, re, sys
import jsonschema
root = sys.argv[1]
V = jsonschema.Draft202012Validator
store = {}
for p in sorted(glob.glob(os.path.join(root, "schemas", "*.schema.json"))):
    s = json.load(open(p))
    V.check_schema(s)
    store[s["$id"]] = s
def validator(name):
    s = store["https://meshbuy.example/schemas/%s.schema.json" % name]
    return V(s, resolver=jsonschema.RefResolver.from_schema(s, store=store),
             format_checker=V.FORMAT_CHECKER)
def strict_json(text):
    def no_dups(pairs):
        keys = [k for k, _ in pairs]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate key")
        return dict(pairs)
    return json.loads(text, object_pairs_hook=no_dups)
def canonical(msg):
    """The CloudEvents Kafka binding: (envelope, None) or (None, why it is refused)."""
    if not isinstance(msg, dict) or not isinstance(msg.get("headers", {}), dict):
        return None, "not a message file"
    hs, v = msg.get("headers", {}), msg.get("value")
    raw = v if isinstance(v, str) else "" if v is None else json.dumps(v, separators=(",", ":"))
    ct = None
    for k, val in hs.items():
        if k.lower() == "content-type":
            ct = val
    if ct is not None and ct.lower().startswith("application/cloudevents"):
        if not re.match(r"(?i)application/cloudevents\+json([; \t]|$)", ct):
            return None, "structured mode is application/cloudevents+json only"
        try:
            return strict_json(raw), None
        except ValueError:
            return None, "not JSON"
    if "ce_specversion" not in hs:
        # Neither mode's marker: an object carrying specversion is read as structured
        # mode (plain producers send the event with no header), as intake does.
        try:
            v = strict_json(raw)
        except ValueError:
            return None, "not a CloudEvent"
        if isinstance(v, dict) and "specversion" in v:
            return v, None
        return None, "not a CloudEvent"
    env = {}
    for k, val in hs.items():
        if not k.startswith("ce_"):
            continue
        if not re.fullmatch(r"[a-z0-9]{1,20}", k[3:]) or k[3:] in ("data", "datacontenttype"):
            return None, "bad ce_ header " + k
        env[k[3:]] = val
    if ct is not None:
        if len(ct) >= 128 or not re.fullmatch(r"application/json[ \t]*(;[\x20-\x7e]*)?", ct):
            return None, "data content type not JSON"
        env["datacontenttype"] = ct
    if raw == "":
        return None, "empty value"
    try:
        env["data"] = strict_json(raw)
    except ValueError:
        return None, "data not JSON"
    return env, None
cat = json.load(open(os.path.join(root, "schemas", "istio-catalog.json")))
validator("istio-catalog").validate(cat)
for f in sys.argv[2:]:
    schema = os.path.basename(os.path.dirname(os.path.dirname(f)))
    try:
        doc = json.loads(open(f, "rb").read())
    except ValueError:
        print(f, "invalid", "not JSON"); continue
    if f.endswith(".kafka.json"):
        doc, why = canonical(doc)
        if doc is None:
            print(f, "invalid", why); continue
    err = next(iter(validator(schema).iter_errors(doc)), None)
    print(f, "valid" if err is None else "invalid", "" if err is None else err.message[:120])
PYEOF

cd "$MB_ROOT"
files=(tests/fixtures/order/*/*.json tests/fixtures/mesh-status/*/*.json)
[ "${#files[@]}" -ge 60 ] || fail "only ${#files[@]} fixtures found"
$PY "$TEST_TMP/judge.py" "$MB_ROOT" "${files[@]}" >"$TEST_TMP/schema.txt" ||
    fail "schema judge failed: $(tail -3 "$TEST_TMP/schema.txt")"

# The C verdicts: one meshbuy run per schema, one "FILE: valid|invalid: reason" line per file.
order_files=(tests/fixtures/order/*/*.json)
status_files=(tests/fixtures/mesh-status/*/*.json)
set +e
"$MESHBUY" --validate "${order_files[@]}" >"$TEST_TMP/c.txt" 2>"$TEST_TMP/c.err"
rc1=$?
"$MESHBUY" --validate-status "${status_files[@]}" >>"$TEST_TMP/c.txt" 2>>"$TEST_TMP/c.err"
rc2=$?
set -e
assert_eq 2 "$rc1" "meshbuy --validate over fixtures with invalid ones: $(cat "$TEST_TMP/c.err")"
assert_eq 2 "$rc2" "meshbuy --validate-status over fixtures with invalid ones"
declare -A cverdict creason
while IFS= read -r line; do
    f=${line%%: *}
    rest=${line#*: }
    cverdict[$f]=${rest%%:*}
    creason[$f]=${rest#*: }
done <"$TEST_TMP/c.txt"

mismatches=0
checked=0
while read -r f verdict why; do
    expected=$(basename "$(dirname "$f")") # the directory says what it should be
    c=${cverdict[$f]:-missing}
    if [ "$verdict" != "$expected" ] || [ "$c" != "$expected" ]; then
        note "$f: directory says $expected, schema says $verdict ($why), C says $c (${creason[$f]:-})"
        mismatches=$((mismatches + 1))
    fi
    if [ "$c" = invalid ] && [ -z "${creason[$f]:-}" ]; then
        note "$f: no reason given"
        mismatches=$((mismatches + 1))
    fi
    checked=$((checked + 1))
done <"$TEST_TMP/schema.txt"

assert_eq "${#files[@]}" "$checked" "every fixture judged"
assert_eq 0 "$mismatches" "fixtures judged differently"

# one file: verdict by exit status; stdin works the same as a file
"$MESHBUY" --validate-status tests/fixtures/mesh-status/valid/running.json >/dev/null ||
    fail "--validate-status refused a valid event"
"$MESHBUY" --validate - <tests/fixtures/order/valid/buy-full.json >/dev/null || fail "--validate - refused a valid order"
set +e
"$MESHBUY" --validate - <tests/fixtures/order/invalid/buy-name-ends-dash.json 2>"$TEST_TMP/e"
rc=$?
set -e
assert_eq 2 "$rc" "invalid order on stdin"
assert_contains "$(cat "$TEST_TMP/e")" "data.mesh.name: must end with a letter or digit"
note "$checked fixtures, schema and C agree"
