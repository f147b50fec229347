#!/usr/bin/env bash
# test_cloudevents_sdk.sh: the messages the CloudEvents JavaScript SDK's Kafka binding builds
# for an order reach Running: Kafka.binary() (ce_ headers, no content-type, data as the value)
# and Kafka.structured() (content-type application/cloudevents+json; charset=utf-8, no
# datacontenttype, a partitionkey extension), each published as built with kcat.
#
# Needs node and npm, and the npm registry: the SDK (npm `cloudevents` 10.0.0, nothing vendored)
# is installed into the test's temp dir at every run.  Without them the test FAILS, it does not
# skip: a machine that cannot run it has not shown that SDK orders work.
. "$MB_ROOT/tests/lib.sh"
. "$MB_ROOT/tests/saga_lib.sh"

need_tool node npm
SDK_VERSION=10.0.0
npm install --prefix "$TEST_TMP/sdk" --no-audit --no-fund --no-save --silent \
    "cloudevents@$SDK_VERSION" >"$TEST_TMP/npm.log" 2>&1 ||
    fail "npm install cloudevents@$SDK_VERSION failed (registry unreachable?): $(tail -5 "$TEST_TMP/npm.log")"

saga_stack_up
saga_worker w1

# One line per message, {"mode", "key", "headers", "value"}: what Kafka.binary() and
# Kafka.structured() return for the same order (a different order id and mesh each).
cat >"$TEST_TMP/sdk.js" <<'JSEOF'
const { CloudEvent, Kafka } = require("cloudevents");
const region = process.argv[2];
const orders = [
  ["binary", "o-sdk-bin", "acct-sdkb", "sdkb-mesh", "c-single", "n-single-1"],
  ["structured", "o-sdk-st", "acct-sdks", "sdks-mesh", "c-open", "n-open-1"],
];
for (const [mode, oid, acct, mesh, cluster, node] of orders) {
  const ev = new CloudEvent({
    source: "billing/sdk-test",
    type: "com.meshbuy.order.buy.v1",
    partitionkey: `${acct}/${mesh}`,
    data: {
      order_id: oid, account_id: acct, project_id: "proj-a", region,
      mesh: { name: mesh, edition: "basic", istio_version: "1.18", cluster_id: cluster,
              control_plane_nodes: [node] },
    },
  });
  const m = mode === "binary" ? Kafka.binary(ev) : Kafka.structured(ev);
  const value = typeof m.value === "string" ? m.value : JSON.stringify(m.value);
  console.log(JSON.stringify({ mode, key: m.key, headers: m.headers, value }));
}
JSEOF
NODE_PATH="$TEST_TMP/sdk/node_modules" node "$TEST_TMP/sdk.js" "$SAGA_REGION" \
    >"$TEST_TMP/sdk.jsonl" 2>"$TEST_TMP/sdk.err" || fail "the SDK script failed: $(cat "$TEST_TMP/sdk.err")"
assert_eq 2 "$(grep -c . "$TEST_TMP/sdk.jsonl")" "two messages from the SDK"

# What the issue reported the SDK sends: binary without content-type, structured with a charset.
bin=$(grep '"mode":"binary"' "$TEST_TMP/sdk.jsonl")
st=$(grep '"mode":"structured"' "$TEST_TMP/sdk.jsonl")
assert_json "$bin" '.headers.ce_specversion == "1.0" and (.headers | has("content-type") | not)'
assert_json "$st" '(.headers["content-type"] | startswith("application/cloudevents+json")) and
    (.value | fromjson | has("datacontenttype") | not) and (.value | fromjson | has("partitionkey"))'

while IFS= read -r m; do
    hdr=()
    while IFS= read -r h; do hdr+=("$h"); done < <(printf '%s' "$m" | jq -r '.headers |
        to_entries[] | "\(.key)=\(.value)"')
    kcat_produce mesh.orders "$(json_get "$m" .key)" "$(json_get "$m" .value)" "${hdr[@]}"
done <"$TEST_TMP/sdk.jsonl"

saga_wait_all 180 acct-sdkb/sdkb-mesh:o-sdk-bin acct-sdks/sdks-mesh:o-sdk-st
saga_check_order acct-sdkb/sdkb-mesh o-sdk-bin Running >/dev/null
saga_check_order acct-sdks/sdks-mesh o-sdk-st Running >/dev/null
saga_validate_all
note "cloudevents $SDK_VERSION: Kafka.binary() and Kafka.structured() orders reach Running"
