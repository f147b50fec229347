# shellcheck shell=bash
# tests/lib.sh: shared helpers for component tests (bash).  Source it first thing:
#
#   . "$MB_ROOT/tests/lib.sh"
#
# Sourcing sets `set -eEuo pipefail`, creates $TEST_TMP (a private temp dir, short path so unix
# sockets fit) and installs an EXIT trap that runs the on_exit commands in reverse order
# (stopping the stack and every mb_start'ed process), prints the tails of the logs when the
# test failed, then removes $TEST_TMP (kept with MB_KEEP_TMP=1).  Do not set your own EXIT
# trap: use on_exit.
#
# Functions:
#   fail MSG...                      print "FAIL: MSG" (with the caller's line) and exit 1
#   skip REASON DETAIL...            print "SKIP: REASON: DETAIL" and exit 77.  REASON must be a key
#                                    of tests/skips-allowed, else tests/run reports the skip as not
#                                    allowed (a failure with CI=true).  Never skip for something
#                                    missing: use need_* (a failure naming it).
#   need_bin NAME...                 fail unless $MB_BIN/NAME is an executable (built binaries)
#   need_tool CMD...                 fail unless CMD is on PATH (ops/deps installs them)
#   need_py MODULE...                fail unless /usr/bin/python3 can import MODULE
#   note MSG...                      progress line on stderr
#   on_exit CMD...                   run CMD at exit (LIFO)
#   assert_eq EXPECTED ACTUAL [MSG]
#   assert_ne UNEXPECTED ACTUAL [MSG]
#   assert_contains HAYSTACK NEEDLE [MSG]
#   assert_not_contains HAYSTACK NEEDLE [MSG]
#   assert_json JSON JQ_FILTER [MSG] jq -e FILTER on the JSON text must be true/non-null
#   json_get JSON JQ_FILTER          print jq -r FILTER of the JSON text
#   validate_schema SCHEMA JSONFILE  JSON Schema check (python3-jsonschema); fails with the reason
#   wait_for SECONDS CMD...          run CMD every 50 ms until it succeeds; fail after SECONDS
#   free_port                        print a free TCP port on 127.0.0.1
#   stack_up [devstack up args...]   ops/devstack up --dir $TEST_TMP/stack (e.g. --cloudsim S),
#                                    exports KAFKA_BROKERS, REDIS_URL, MESHBUY_STACK_DIR,
#                                    DEVKAFKA_CONTROL (+ MESHBUY_CCE_URL... with --cloudsim)
#   stack_down                       ops/devstack down (also done at exit)
#   kafka_ctl COMMAND [ARG...]       devkafka fault injection: broker-down N, broker-up N,
#                                    rtt N MS, push-errors APIKEY COUNT ERR, ... (devkafka --help)
#   redis_cli ARGS...                redis-cli against $REDIS_URL
#   mb_metric PORT NAME              a sample of the /metrics on 127.0.0.1:PORT: NAME with labels
#                                    (name{k="v"}) is that series, a bare name the sum of the
#                                    family's series; 0 when absent; fails if /metrics does not
#                                    answer
#   kcat_produce TOPIC KEY VALUE [HDR=VAL...]    one message, fails if not delivered
#   kcat_consume TOPIC COUNT TIMEOUT [kcat args] read COUNT messages from the beginning of all
#                                    partitions; prints one kcat JSON envelope per line
#                                    ({"key","payload","headers":[k,v,...],"partition",...});
#                                    fails naming how many came within TIMEOUT seconds
#   mb_start NAME CMD...             start CMD in the background, output to $TEST_TMP/NAME.log,
#                                    pid in $TEST_TMP/NAME.pid; stopped at exit
#   mb_pid NAME                      print NAME's pid
#   mb_alive NAME                    true if NAME runs (zombies count as dead)
#   mb_stop NAME [SIGNAL] [SECONDS]  send SIGNAL (TERM), wait SECONDS (10), then SIGKILL;
#                                    returns the exit status when it was our child
#   log_tail FILE [N]                last N (30) lines of FILE on stderr
#
# Environment from tests/run: MB_BIN (built binaries), MB_ROOT (repo root), MB_SKIP_FILE (where
# skip writes its reason).

set -eEuo pipefail

: "${MB_ROOT:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${MB_BIN:=$MB_ROOT/bin}"
export MB_ROOT MB_BIN
MB_BIN=$(cd "$MB_BIN" 2>/dev/null && pwd || echo "$MB_BIN")

TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)
TEST_TMP=$(mktemp -d "/tmp/mbt.XXXXXX")
export TEST_TMP

_MB_EXIT_CMDS=()
_MB_STACK_DIR=""
_MB_FAILED=0
_MB_ERR=""

note() { echo "[$TEST_NAME] $*" >&2; }

fail() {
    local where="${BASH_SOURCE[1]:-?}:${BASH_LINENO[0]:-?}"
    local f=${FUNCNAME[1]:-}
    # Report the test's line, not the helper's, when an assert_* failed.
    if [[ "$f" == assert_* || "$f" == wait_for || "$f" == kcat_* || "$f" == validate_schema ]]; then
        where="${BASH_SOURCE[2]:-?}:${BASH_LINENO[1]:-?}"
    fi
    echo "FAIL: $* ($(basename "${where%%:*}"):${where##*:})" >&2
    _MB_FAILED=1
    exit 1
}

skip() {
    local reason=${1:-}
    shift || true
    echo "SKIP: $reason: $*" >&2
    # tests/run reads the reason from this file, not from the log, so no output can fake one.
    if [ -n "${MB_SKIP_FILE:-}" ]; then
        printf '%s\t%s\n' "$reason" "$*" >"$MB_SKIP_FILE"
    fi
    exit 77
}

# A missing binary or tool fails the test, naming it: a suite that cannot run has not passed.
need_bin() {
    local b
    for b in "$@"; do
        [ -x "$MB_BIN/$b" ] || fail "missing binary: $MB_BIN/$b (build first: make, or make SAN=1 all)"
    done
}

need_tool() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || fail "missing tool: $t (ops/deps installs it)"
    done
}

need_py() {
    local m
    for m in "$@"; do
        /usr/bin/python3 -c "import $m" 2>/dev/null ||
            fail "missing python3 module: $m (ops/deps installs it)"
    done
}

on_exit() {
    _MB_EXIT_CMDS+=("$*")
}

log_tail() {
    local f=$1 n=${2:-30}
    [ -f "$f" ] || return 0
    echo "----- last $n lines of $f" >&2
    tail -n "$n" "$f" >&2
}

_mb_cleanup() {
    local rc=$? i f
    set +e
    # set -e ended the test: say where, or the log would just stop.
    if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ "$_MB_FAILED" = 0 ] && [ -n "$_MB_ERR" ]; then
        echo "FAIL: exit status $rc from: $_MB_ERR" >&2
    fi
    if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
        for f in "$TEST_TMP"/*.log "$TEST_TMP"/stack/*.log; do
            [ -f "$f" ] && log_tail "$f" 20
        done
    fi
    for ((i = ${#_MB_EXIT_CMDS[@]} - 1; i >= 0; i--)); do
        eval "${_MB_EXIT_CMDS[$i]}"
    done
    if [ "${MB_KEEP_TMP:-0}" = 1 ]; then
        echo "[$TEST_NAME] kept $TEST_TMP" >&2
    else
        rm -rf "$TEST_TMP"
    fi
    exit "$rc"
}
trap _mb_cleanup EXIT
# -E above makes functions inherit this: remember the last command set -e may stop on.
trap '_MB_ERR="$BASH_COMMAND ($(basename "${BASH_SOURCE[0]:-?}"):$LINENO)"' ERR
trap 'exit 143' TERM
trap 'exit 130' INT

# Every component test runs built binaries: no binaries dir is a failure, said once, here.
[ -d "$MB_BIN" ] || fail "missing binaries dir: $MB_BIN (build first: make, or make SAN=1 all)"

# ------------------------------------------------------------------ asserts

assert_eq() {
    [ "$1" == "$2" ] || fail "${3:-values differ}: expected '$1', got '$2'"
}

assert_ne() {
    [ "$1" != "$2" ] || fail "${3:-values equal}: did not expect '$1'"
}

assert_contains() {
    [[ "$1" == *"$2"* ]] || fail "${3:-missing text}: '$2' not in: $(printf '%s' "$1" | head -c 2000)"
}

assert_not_contains() {
    [[ "$1" != *"$2"* ]] || fail "${3:-unexpected text}: '$2' found in: $(printf '%s' "$1" | head -c 2000)"
}

assert_json() {
    printf '%s' "$1" | jq -e "$2" >/dev/null 2>&1 ||
        fail "${3:-JSON check failed}: jq '$2' on: $(printf '%s' "$1" | head -c 2000)"
}

json_get() {
    printf '%s' "$1" | jq -r "$2"
}

validate_schema() {
    local out
    out=$(/usr/bin/python3 - "$1" "$2" 2>&1 <<'EOF'
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(open(sys.argv[2]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
errors = sorted(cls(schema, format_checker=jsonschema.FormatChecker()).iter_errors(doc),
                key=lambda e: list(e.path))
for e in errors:
    print("/".join(str(p) for p in e.path) or "(root)", ":", e.message)
sys.exit(1 if errors else 0)
EOF
    ) || fail "$2 does not match $1: $out"
}

# ------------------------------------------------------------------ waiting

wait_for() {
    local secs=$1
    shift
    local deadline
    deadline=$(($(date +%s%N) + secs * 1000000000))
    while ! "$@" >/dev/null 2>&1; do
        if [ "$(date +%s%N)" -ge "$deadline" ]; then
            fail "timed out after ${secs}s waiting for: $*"
        fi
        sleep 0.05
    done
}

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------------ stack

stack_up() {
    local out
    _MB_STACK_DIR="$TEST_TMP/stack"
    on_exit stack_down
    out=$("$MB_ROOT/ops/devstack" up --dir "$_MB_STACK_DIR" --bin "$MB_BIN" "$@") ||
        fail "ops/devstack up failed"
    eval "$out"
}

stack_down() {
    [ -n "$_MB_STACK_DIR" ] || return 0
    [ -d "$_MB_STACK_DIR" ] || return 0
    "$MB_ROOT/ops/devstack" down --dir "$_MB_STACK_DIR" || echo "[$TEST_NAME] devstack down failed" >&2
}

kafka_ctl() {
    "$MB_BIN/devkafka" ctl "${DEVKAFKA_CONTROL:?stack_up first}" "$@"
}

redis_cli() {
    local url=${REDIS_URL:?stack_up first}
    case "$url" in
    unix://*) redis-cli -s "${url#unix://}" "$@" ;;
    *) redis-cli -u "$url" "$@" ;;
    esac
}

mb_metric() {
    curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" |
        awk -v m="$2" 'function at(p) { return index($0, p) == 1 }
            (index(m, "{") ? at(m " ") : at(m " ") || at(m "{")) { s += $NF; f = 1 }
            END { print f ? s : 0 }'
}

# ------------------------------------------------------------------ kafka

# kcat_produce TOPIC KEY VALUE [NAME=VALUE header...]: an order (topic *.orders) without
# headers goes in structured content mode (content-type: application/cloudevents+json).
kcat_produce() {
    local topic=$1 key=$2 value=$3
    shift 3
    local hdr=() h f="$TEST_TMP/kcat.msg.$$.$RANDOM"
    for h in "$@"; do hdr+=(-H "$h"); done
    case "$topic:$#" in
    *.orders:0) hdr+=(-H "content-type=application/cloudevents+json") ;;
    esac
    printf '%s' "$value" >"$f"
    # A file argument is produced as one message, whatever newlines the value holds.
    kcat -P -b "${KAFKA_BROKERS:?stack_up first}" -t "$topic" -k "$key" "${hdr[@]}" \
        -X message.timeout.ms=10000 -q "$f" || fail "kcat_produce: could not produce to $topic"
    rm -f "$f"
}

kcat_consume() {
    local topic=$1 count=$2 secs=$3 out
    shift 3
    out="$TEST_TMP/kcat.$$.$RANDOM"
    timeout --kill-after=2 "$secs" kcat -C -b "${KAFKA_BROKERS:?stack_up first}" -t "$topic" \
        -o beginning -c "$count" -J -q "$@" >"$out" 2>"$out.err" || true
    local got
    got=$(grep -c . "$out" || true)
    if [ "$got" -lt "$count" ]; then
        cat "$out.err" >&2
        fail "kcat_consume: got $got of $count messages on $topic within ${secs}s"
    fi
    cat "$out"
    rm -f "$out" "$out.err"
}

# ------------------------------------------------------------------ processes

mb_start() {
    local name=$1
    shift
    "$@" </dev/null >>"$TEST_TMP/$name.log" 2>&1 &
    echo $! >"$TEST_TMP/$name.pid"
    on_exit "mb_stop $name TERM 10 >/dev/null 2>&1 || true"
}

mb_pid() {
    cat "$TEST_TMP/$1.pid"
}

_mb_pid_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] && [ "${stat%% *}" != X ]
}

mb_alive() {
    [ -f "$TEST_TMP/$1.pid" ] && _mb_pid_alive "$(mb_pid "$1")"
}

mb_stop() {
    local name=$1 sig=${2:-TERM} secs=${3:-10} pid deadline rc=0
    [ -f "$TEST_TMP/$name.pid" ] || return 0
    pid=$(mb_pid "$name")
    kill "-$sig" "$pid" 2>/dev/null || true
    deadline=$(($(date +%s%N) + secs * 1000000000))
    while _mb_pid_alive "$pid" && [ "$(date +%s%N)" -lt "$deadline" ]; do
        sleep 0.05
    done
    if _mb_pid_alive "$pid"; then
        echo "[$TEST_NAME] $name (pid $pid) alive ${secs}s after SIG$sig: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || rc=$?
    rm -f "$TEST_TMP/$name.pid"
    return $rc
}
