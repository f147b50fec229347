#!/usr/bin/env bash
# test_runner: tests/run itself cannot lie.  In a scratch copy of the runner and tests/lib.sh
# with made-up suites: a pass, a failure, an allowed skip and a skip for an unlisted reason
# (reported, and a failure with CI=true), a missing binary and a missing tool (failures naming
# them), a missing binaries dir, a missing unit test dir and a run that selects nothing (all
# failures).  The closing line keeps its "N passed, M failed[, K skipped]" form.
. "$MB_ROOT/tests/lib.sh"

R=$TEST_TMP/root
mkdir -p "$R/tests/component" "$TEST_TMP/bin"
cp "$MB_ROOT/tests/run" "$MB_ROOT/tests/lib.sh" "$R/tests/"
printf '# test list\nfake-env  the scratch environment cannot do this\n' >"$R/tests/skips-allowed"

suite() {
    # shellcheck disable=SC2016 # $MB_ROOT is for the made-up suite to expand, not this shell
    printf '#!/usr/bin/env bash\n. "$MB_ROOT/tests/lib.sh"\n%s\n' "$2" >"$R/tests/component/test_$1.sh"
}
suite pass 'true'
suite fail 'fail "boom here"'
suite skipok 'skip fake-env "no such thing in a scratch dir"'
suite skipbad 'skip "jq missing"'
suite needbin 'need_bin nosuchbinary'
suite needtool 'need_tool nosuch-tool-mb'

# run_inner [ENV=VAL...] -- ARGS...: the scratch runner; sets OUT and RC.
run_inner() {
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    RC=0
    OUT=$(env -u CI -u MB_SKIP_FILE "${envs[@]+"${envs[@]}"}" "$R/tests/run" --logs "$TEST_TMP/logs" \
        --timeout 60 "$@" 2>&1) || RC=$?
}

run_inner -- --bin "$TEST_TMP/bin" -k 'pass|skipok'
assert_eq 0 "$RC" "pass + allowed skip: exit"
assert_contains "$OUT" "PASS test_pass ("
assert_contains "$OUT" "SKIP test_skipok ("
assert_contains "$OUT" "): fake-env: no such thing in a scratch dir"
assert_eq "1 passed, 0 failed, 1 skipped" "$(tail -n1 <<<"$OUT")" "closing line"

run_inner -- --bin "$TEST_TMP/bin" -k 'pass'
assert_eq "1 passed, 0 failed" "$(tail -n1 <<<"$OUT")" "closing line without skips"

run_inner -- --bin "$TEST_TMP/bin" -k fail
assert_eq 1 "$RC" "failing suite: exit"
assert_contains "$OUT" "FAIL test_fail ("
assert_contains "$OUT" "exit 1: boom here"
assert_eq "0 passed, 1 failed" "$(tail -n1 <<<"$OUT")"

# A skip for an unlisted reason: reported as not allowed; a failure in CI or with --strict-skips.
run_inner -- --bin "$TEST_TMP/bin" -k skipbad
assert_eq 0 "$RC" "unlisted skip outside CI: exit"
assert_contains "$OUT" "SKIP test_skipbad ("
assert_contains "$OUT" "not allowed"
assert_eq "0 passed, 0 failed, 1 skipped" "$(tail -n1 <<<"$OUT")"
run_inner CI=true -- --bin "$TEST_TMP/bin" -k skipbad
assert_eq 1 "$RC" "unlisted skip with CI=true: exit"
assert_contains "$OUT" "FAIL test_skipbad ("
assert_contains "$OUT" "reason 'jq missing'"
assert_eq "0 passed, 1 failed" "$(tail -n1 <<<"$OUT")"
run_inner -- --bin "$TEST_TMP/bin" --strict-skips -k skipbad
assert_eq 1 "$RC" "unlisted skip with --strict-skips: exit"
run_inner CI=true -- --bin "$TEST_TMP/bin" -k skipok
assert_eq 0 "$RC" "listed skip with CI=true: exit"

run_inner -- --bin "$TEST_TMP/bin" -k 'needbin|needtool'
assert_eq 1 "$RC" "missing binary/tool: exit"
assert_contains "$OUT" "FAIL test_needbin ("
assert_contains "$OUT" "missing binary: $TEST_TMP/bin/nosuchbinary"
assert_contains "$OUT" "FAIL test_needtool ("
assert_contains "$OUT" "missing tool: nosuch-tool-mb"
assert_eq "0 passed, 2 failed" "$(tail -n1 <<<"$OUT")"

run_inner -- --bin "$TEST_TMP/nonexistent" -k pass
assert_eq 1 "$RC" "missing binaries dir: exit"
assert_contains "$OUT" "missing binaries dir: $TEST_TMP/nonexistent"

run_inner -- --units "$TEST_TMP/nounits" --no-component
assert_eq 1 "$RC" "missing unit dir: exit"
assert_contains "$OUT" "FAIL tests/run: missing unit test dir: $TEST_TMP/nounits"

mkdir "$TEST_TMP/emptyunits"
run_inner -- --units "$TEST_TMP/emptyunits" --no-component
assert_eq 1 "$RC" "empty unit dir: exit"
assert_contains "$OUT" "no unit tests"

run_inner -- --bin "$TEST_TMP/bin" -k nothing-matches-this
assert_eq 1 "$RC" "nothing selected: exit"
assert_contains "$OUT" "no test selected"
