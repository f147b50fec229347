#!/usr/bin/env bash
# test_cli.sh: one command-line convention for every binary, checked against README.md's
# "Exit codes" table:
#   --version     exit 0, "<binary> <version>" on stdout, the version the Makefile stamped
#                 (git describe --always --dirty at build time, "dev" without git)
#   -h, --help    exit 0, usage on stdout, nothing on stderr
#   a bad flag    the table's usage code (2 for every binary), one line on stderr naming it,
#                 nothing on stdout
#   meshworker    its --help lists the same codes as the table
. "$MB_ROOT/tests/lib.sh"

BINARIES=(meshworker meshbuy meshctl cloudsim devkafka meshbench)
need_bin "${BINARIES[@]}"
README="$MB_ROOT/README.md"

# The table's row of a binary: "| `name` | codes |".
row() {
    grep -E "^\| \`$1\` \|" "$README" | head -n 1
}

# The code the row gives to usage errors: the number before the first "usage".
usage_code() {
    # shellcheck disable=SC2016 # backquotes are the table's, not the shell's
    row "$1" | sed -E 's/^\| `[^`]*` \| //' | tr ',;' '\n' |
        grep -m1 -E '^ *[0-9]+ [^|]*usage' | grep -oE '^ *[0-9]+' | tr -d ' '
}

stamp=""
for f in "$MB_BIN/../.version" "$MB_ROOT/build/rel/.version"; do
    if [ -f "$f" ] && [ -z "$stamp" ]; then stamp=$(cat "$f"); fi
done

for b in "${BINARIES[@]}"; do
    [ -n "$(row "$b")" ] || fail "README.md's exit-code table has no row for $b"
    code=$(usage_code "$b")
    assert_eq 2 "$code" "$b: README gives usage errors code 2"

    out=$("$MB_BIN/$b" --version 2>"$TEST_TMP/err") || fail "$b --version: exit $?"
    assert_eq "" "$(cat "$TEST_TMP/err")" "$b --version: nothing on stderr"
    [[ "$out" =~ ^$b\ [0-9a-zA-Z._-]+$ ]] || fail "$b --version: '$out' is not '$b <version>'"
    if [ -n "$stamp" ]; then
        assert_eq "$b $stamp" "$out" "$b --version: the version the build stamped"
    fi

    for h in -h --help; do
        out=$("$MB_BIN/$b" "$h" 2>"$TEST_TMP/err") || fail "$b $h: exit $?"
        assert_contains "$out" "usage" "$b $h: usage on stdout"
        assert_eq "" "$(cat "$TEST_TMP/err")" "$b $h: nothing on stderr"
    done

    for bad in --no-such-flag-x --zz; do
        set +e
        out=$("$MB_BIN/$b" "$bad" 2>"$TEST_TMP/err" </dev/null)
        rc=$?
        set -e
        assert_eq "$code" "$rc" "$b $bad: the usage code of README.md"
        assert_eq "" "$out" "$b $bad: nothing on stdout"
        assert_eq 1 "$(grep -c . "$TEST_TMP/err")" "$b $bad: one line on stderr: $(cat "$TEST_TMP/err")"
        assert_contains "$(cat "$TEST_TMP/err")" "$bad" "$b $bad: the error names the flag"
    done
done

# meshworker's --help and the table say the same codes
help=$("$MB_BIN/meshworker" --help | tr '\n' ' ' | tr -s ' ')
for c in "2 usage" "3 invalid configuration" "4 fatal runtime error" "1 forced by a second signal"; do
    assert_contains "$(row meshworker)" "$c" "README row of meshworker"
    assert_contains "$help" "$c" "meshworker --help"
done
# an option that needs a value and got none is a usage error too
set +e
"$MB_BIN/cloudsim" --listen >/dev/null 2>"$TEST_TMP/err"
rc=$?
set -e
assert_eq 2 "$rc" "cloudsim --listen without a value"
assert_contains "$(cat "$TEST_TMP/err")" "--listen" "the error names the flag"
note "${#BINARIES[@]} binaries: --version, -h, --help, bad flags as README.md says"
