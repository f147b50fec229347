/* test_json_dump.c: the compact writer (mb_json_dump, mb_json_dump_members, mb_json_dumps)
 * against jansson's json_dumps(JSON_COMPACT): hand-picked cases with the expected bytes
 * spelled out, thousands of random trees, and round-trips through json_loadb. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "mb_buf.h"
#include "mb_json.h"

/* ---------------------------------------------------------------- comparison */

/* The writer's output for v (any value) must be json_dumps' byte for byte, or both refuse.
 * Returns the jansson text (new, free()) or NULL when both refused. */
static char *same_as_jansson(const json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    mb_buf b = {0};
    int rc;

    mb_buf_puts(&b, "prefix"); /* appends after what is there, rolls back to it */
    rc = mb_json_dump(&b, v);
    if (want == NULL) {
        assert_int_equal(rc, -1);
        assert_int_equal(b.len, 6);
        assert_string_equal(b.p, "prefix");
    } else {
        if (rc != 0 || strcmp(b.p + 6, want) != 0)
            fail_msg("writer: rc %d '%s'\njansson: '%s'", rc, b.p ? b.p + 6 : "(null)", want);
        assert_int_equal(b.len, 6 + strlen(want));
    }
    mb_buf_free(&b);

    /* mb_json_dumps is json_dumps without JSON_ENCODE_ANY: containers only */
    char *top = json_dumps(v, JSON_COMPACT);
    char *mine = mb_json_dumps(v);
    if (top == NULL)
        assert_null(mine);
    else
        assert_string_equal(mine, top);
    free(top);
    free(mine);
    return want;
}

static void check_is(const json_t *v, const char *expect)
{
    char *got = same_as_jansson(v);
    if (expect == NULL)
        assert_null(got);
    else
        assert_string_equal(got, expect);
    free(got);
}

/* Takes v over (decref'd here). */
static void check_new(json_t *v, const char *expect)
{
    assert_non_null(v);
    check_is(v, expect);
    json_decref(v);
}

/* What ev_split used to do: copy obj, delete the skipped keys, dump, strip the braces.
 * The copy is made key length and all: json_copy would cut a key at a NUL inside it. */
static char *members_by_copy(const json_t *obj, const char *const *skip)
{
    json_t *copy = json_object();
    void *it = json_object_iter((json_t *)obj);
    char *s;
    size_t n;

    assert_non_null(copy);
    for (; it; it = json_object_iter_next((json_t *)obj, it))
        json_object_setn_nocheck(copy, json_object_iter_key(it), json_object_iter_key_len(it),
                                 json_object_iter_value(it));
    for (; skip && *skip; skip++)
        json_object_del(copy, *skip);
    s = json_dumps(copy, JSON_COMPACT);
    json_decref(copy);
    if (s == NULL)
        return NULL;
    n = strlen(s);
    memmove(s, s + 1, n - 1);
    s[n - 2] = '\0';
    return s;
}

static void same_members(const json_t *obj, const char *const *skip)
{
    char *want = members_by_copy(obj, skip);
    mb_buf b = {0};
    int rc = mb_json_dump_members(&b, obj, skip);

    if (want == NULL) {
        assert_int_equal(rc, -1);
        assert_int_equal(b.len, 0);
    } else {
        assert_int_equal(rc, 0);
        assert_string_equal(b.p ? b.p : "", want);
    }
    mb_buf_free(&b);
    free(want);
}

/* ---------------------------------------------------------------- hand-picked */

static void scalars_and_empties(void **state)
{
    (void)state;
    check_new(json_null(), "null");
    check_new(json_true(), "true");
    check_new(json_false(), "false");
    check_new(json_array(), "[]");
    check_new(json_object(), "{}");
    check_new(json_loads("[[],{},[[]],{\"a\":{}},[{}]]", 0, NULL), "[[],{},[[]],{\"a\":{}},[{}]]");
    check_new(json_pack("{s:[i,s,b,n],s:{s:{s:{}}}}", "x", 1, "y", 0, "z", "w", "v"),
              "{\"x\":[1,\"y\",false,null],\"z\":{\"w\":{\"v\":{}}}}");
    check_new(json_string(""), "\"\"");
    /* a scalar at the top is JSON_ENCODE_ANY's; mb_json_dumps refuses it as json_dumps does */
    json_t *s = json_string("x");
    assert_null(mb_json_dumps(s));
    json_decref(s);
    /* NULL is refused, and so is a non-object for the members writer */
    mb_buf b = {0};
    assert_int_equal(mb_json_dump(&b, NULL), -1);
    json_t *a = json_array();
    assert_int_equal(mb_json_dump_members(&b, a, NULL), -1);
    json_decref(a);
    mb_buf_free(&b);
}

static void integers(void **state)
{
    (void)state;
    static const struct {
        json_int_t v;
        const char *s;
    } cases[] = {
        {0, "0"},
        {1, "1"},
        {-1, "-1"},
        {9, "9"},
        {10, "10"},
        {99, "99"},
        {100, "100"},
        {-100, "-100"},
        {101, "101"},
        {999999999, "999999999"},
        {1000000000, "1000000000"},
        {4294967296LL, "4294967296"},
        {INT64_MAX, "9223372036854775807"},
        {INT64_MIN, "-9223372036854775808"},
        {INT64_MIN + 1, "-9223372036854775807"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_new(json_integer(cases[i].v), cases[i].s);
}

static void integers_near_powers(void **state)
{
    (void)state;
    /* every power of ten up to 10^18 and its neighbours, both signs */
    for (json_int_t e = 0, p = 1; e <= 18; e++, p = e <= 18 ? p * 10 : p) {
        for (json_int_t d = -1; d <= 1; d++) {
            json_t *v = json_pack("[I,I]", p + d, -(p + d));
            char *s = same_as_jansson(v);
            assert_non_null(s);
            free(s);
            json_decref(v);
        }
    }
}

/* The shapes of the request bodies mb_cloud now writes with mb_json_dumps: the cloud sees
 * the bytes json_dumps wrote. */
static void request_bodies(void **state)
{
    (void)state;
    json_t *values =
        json_pack("{s:{s:s, s:b, s:i}, s:[s, s]}", "global", "hub", "swr.example/istio", "mtls", 1,
                  "replicas", 2, "tags", "a\"b", "caf\xc3\xa9");
    json_t *bodies[] = {
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:s}", "chart_id", "asm-istio-1-18", "name",
                  "istiod-acc1", "namespace", "istio-system", "version", "1.18.7", "values", values,
                  "description", "mesh \xe2\x98\x83 / x"),
        json_pack("{s:{s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:I, s:s}}", "security_group_rule",
                  "security_group_id", "sg-1", "direction", "ingress", "protocol", "tcp",
                  "port_range_min", 15017, "port_range_max", 15017, "remote_ip_prefix",
                  "10.0.0.0/8", "action", "allow", "priority", (json_int_t)1, "description", ""),
        json_pack("{s{s{so}}}", "metadata", "labels", "istio-injection", json_string("enabled")),
        json_pack("{s{s{so}}}", "metadata", "labels", "istio.io/rev", json_null()),
        json_pack("{s{s{s{s{ss}}}}}", "spec", "template", "metadata", "annotations",
                  "kubectl.kubernetes.io/restartedAt", "2024-05-01T12:00:03.250Z"),
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        assert_non_null(bodies[i]);
        char *want = json_dumps(bodies[i], JSON_COMPACT), *got = mb_json_dumps(bodies[i]);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(want);
        free(got);
        json_decref(bodies[i]);
    }
}

/* mb_json_fmt_ll, shared with the store's arguments and the timestamps, is "%lld". */
static void fmt_ll_is_printf(void **state)
{
    static const long long cases[] = {0,         1,           -1,        9,         10,
                                      99,        100,         -100,      12345,     -99999,
                                      INT_MAX,   INT_MIN,     LLONG_MAX, LLONG_MIN, LLONG_MIN + 1,
                                      1LL << 40, -(1LL << 53)};
    char got[MB_JSON_LL_MAX], want[32];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = mb_json_fmt_ll(got, cases[i]);
        snprintf(want, sizeof(want), "%lld", cases[i]);
        assert_string_equal(got, want);
        assert_int_equal(n, strlen(want));
    }
    for (long long p = 1, e = 0; e <= 18; e++, p = e <= 18 ? p * 10 : p)
        for (long long d = -1; d <= 1; d++) {
            mb_json_fmt_ll(got, -(p + d));
            snprintf(want, sizeof(want), "%lld", -(p + d));
            assert_string_equal(got, want);
        }
}

static void reals(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *s;
    } cases[] = {
        {0.1, "0.10000000000000001"},
        {1e300, "1.0000000000000001e300"},
        {-0.0, "-0.0"},
        {0.0, "0.0"},
        {3.0, "3.0"},
        {-2.5, "-2.5"},
        {1e-5, "1.0000000000000001e-5"},
        {1e16, "10000000000000000.0"},
        {1e17, "1e17"},
        {1e21, "1e21"},
        {5e-324, "4.9406564584124654e-324"},
        {DBL_MAX, "1.7976931348623157e308"},
        {123456789012345678.0, "1.2345678901234568e17"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_new(json_real(cases[i].v), cases[i].s);
    check_new(json_pack("{s:f,s:[f,f]}", "a", 0.5, "b", -1e-300, 2.2250738585072014e-308),
              "{\"a\":0.5,\"b\":[-1e-300,2.2250738585072014e-308]}");
}

static void escapes(void **state)
{
    (void)state;
    check_new(json_string("\"\\/\b\f\n\r\t"), "\"\\\"\\\\/\\b\\f\\n\\r\\t\"");
    check_new(json_string("a\x01z\x1f\x7f~"), "\"a\\u0001z\\u001F\x7f~\"");
    check_new(json_stringn("a\0b", 3), "\"a\\u0000b\"");
    /* every ASCII byte alone, and in the middle of plain text, as jansson writes it */
    for (int c = 0; c < 0x80; c++) {
        char one = (char)c;
        char mid[3] = {'x', (char)c, 'y'};
        char *s;
        json_t *v = json_stringn(&one, 1);
        s = same_as_jansson(v);
        assert_non_null(s);
        if (c >= 0x20 && c != '"' && c != '\\')
            assert_int_equal(strlen(s), 3); /* as is */
        free(s);
        json_decref(v);
        v = json_stringn(mid, 3);
        s = same_as_jansson(v);
        assert_non_null(s);
        free(s);
        json_decref(v);
    }
    /* and as keys */
    json_t *o = json_object();
    for (int c = 0; c < 0x80; c++) {
        char k[2] = {(char)c, 'k'};
        json_object_setn_new(o, k, 2, json_integer(c));
    }
    char *s = same_as_jansson(o);
    assert_non_null(s);
    free(s);
    json_decref(o);
}

static void unicode(void **state)
{
    (void)state;
    /* passed through as UTF-8, never \u-escaped (no JSON_ENSURE_ASCII) */
    check_new(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xc2\x80"),
              "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xc2\x80\"");
    check_new(json_pack("{s:s}", "\xe6\x97\xa5\xe6\x9c\xac", "\xed\x9f\xbf\xee\x80\x80"),
              "{\"\xe6\x97\xa5\xe6\x9c\xac\":\"\xed\x9f\xbf\xee\x80\x80\"}");
}

/* Strings jansson holds only through the *_nocheck setters: a value is refused, a key is
 * written as far as json_dumps had flushed it (the quirk the header describes). */
static void invalid_utf8(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "\xff",         "\x80",         "\xc0\x80",         "\xc1\xbf",         "\xe0\x80\x80",
        "\xed\xa0\x80", "\xed\xbf\xbf", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
        "\xe2\x82",     "\xc2",         "\xc3\x28",         "\xe2\x28\xa1",     "\xf0\x9f\x98",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[32] = "ok\n";
        strncat(text, bad[i], sizeof text - strlen(text) - 3);
        strncat(text, "z", sizeof text - strlen(text) - 1);
        json_t *v = json_string_nocheck(text);
        check_is(v, NULL);
        json_t *arr = json_pack("[i,O]", 1, v);
        check_is(arr, NULL);
        json_decref(arr);
        json_t *obj = json_object();
        json_object_set_new_nocheck(obj, text, json_integer(1));
        json_object_set_new(obj, "after", json_true());
        char *s = same_as_jansson(obj);
        assert_non_null(s);
        free(s);
        json_decref(obj);
        json_decref(v);
    }
    /* spelled out: '"', "ok\n" flushed at the escape, the rest dropped, no closing quote */
    json_t *obj = json_object();
    json_object_set_new_nocheck(obj, "ok\nab\xff", json_integer(1));
    check_is(obj, "{\"ok\\n:1}");
    json_decref(obj);
}

/* a = [b], b = [a]: json_dumps refuses a container inside itself; so does the writer, at
 * shallow depth (linear check) and deep (hash set). */
static void cycles(void **state)
{
    (void)state;
    json_t *a = json_array(), *b = json_array();
    json_array_append(a, b);
    json_array_append(b, a);
    check_is(a, NULL);
    json_array_clear(b);

    json_t *o = json_object(), *p = json_object();
    json_object_set(o, "p", p);
    json_object_set(p, "o", o);
    check_is(o, NULL);
    const char *const skip[] = {"x", NULL};
    same_members(o, skip);
    json_object_clear(p);
    json_decref(o);
    json_decref(p);
    json_decref(a);
    json_decref(b);

    /* a chain of 300 arrays whose last holds the first; then the same chain without the
     * back edge but with one container shared by every level (allowed: not a cycle) */
    for (int back = 1; back >= 0; back--) {
        json_t *first = json_array(), *cur = first, *shared = json_pack("{s:[]}", "s");
        for (int i = 0; i < 300; i++) {
            json_t *next = json_array();
            json_array_append(cur, shared);
            json_array_append_new(cur, json_integer(i));
            json_array_append_new(cur, next);
            cur = next;
        }
        if (back)
            json_array_append(cur, first);
        char *s = same_as_jansson(first);
        if (back)
            assert_null(s);
        else
            assert_non_null(s);
        free(s);
        json_array_clear(cur);
        json_decref(first);
        json_decref(shared);
    }
}

/* Depth well past the linear check, with wide levels so that the hash set sees many
 * deletions; jansson recurses, the writer does not. */
static void deep(void **state)
{
    (void)state;
    json_t *root = json_object(), *cur = root;
    for (int i = 0; i < 3000; i++) {
        json_t *next = json_object();
        json_object_set_new(cur, "leaf", json_pack("[[],{},[[1]]]"));
        json_object_set_new(cur, "n", next);
        json_object_set_new(cur, "tail", json_pack("{s:[i]}", "t", i));
        cur = next;
    }
    char *s = same_as_jansson(root);
    assert_non_null(s);
    free(s);
    json_decref(root);
}

static void members(void **state)
{
    (void)state;
    static const char *const skip_top[] = {"id", "data", NULL};
    static const char *const skip_data[] = {"seq", NULL};
    json_t *ev = json_pack("{s:s,s:s,s:{s:s,s:i,s:s},s:s}", "id", "e1", "type", "x.y", "data",
                           "orderId", "o-1", "seq", 7, "step", "\"q\"", "traceparent", "00-ab");
    mb_buf b = {0};

    assert_int_equal(mb_json_dump_members(&b, ev, skip_top), 0);
    assert_string_equal(b.p, "\"type\":\"x.y\",\"traceparent\":\"00-ab\"");
    mb_buf_free(&b);
    assert_int_equal(mb_json_dump_members(&b, json_object_get(ev, "data"), skip_data), 0);
    assert_string_equal(b.p, "\"orderId\":\"o-1\",\"step\":\"\\\"q\\\"\"");
    mb_buf_free(&b);
    same_members(ev, skip_top);
    same_members(json_object_get(ev, "data"), skip_data);
    same_members(ev, NULL);
    json_decref(ev);

    /* all members skipped: an empty string, as "{}" without its braces */
    json_t *only = json_pack("{s:i}", "id", 1);
    assert_int_equal(mb_json_dump_members(&b, only, skip_top), 0);
    assert_string_equal(b.p ? b.p : "", "");
    mb_buf_free(&b);
    same_members(only, skip_top);
    json_decref(only);

    /* "id\0x" is not "id": json_object_del would keep it */
    json_t *nul = json_object();
    json_object_setn_new(nul, "id\0x", 4, json_integer(1));
    json_object_set_new(nul, "id", json_integer(2));
    same_members(nul, skip_top);
    assert_int_equal(mb_json_dump_members(&b, nul, skip_top), 0);
    assert_string_equal(b.p, "\"id\\u0000x\":1");
    mb_buf_free(&b);
    json_decref(nul);
}

/* ---------------------------------------------------------------- random trees */

static uint64_t rng = 0x2545F4914F6CDD1DULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static unsigned rnd_below(unsigned n)
{
    return (unsigned)(rnd() % n);
}

/* Text from pieces that exercise the writer: plain runs, escapes, multi-byte UTF-8, NUL
 * (unless no_nul), DEL, '/', and (when bad) bytes that are not UTF-8. */
static size_t rnd_text(char *out, size_t cap, int bad, int no_nul)
{
    static const char *const pieces[] = {
        "a",
        "meshbuy",
        "-",
        " ",
        "/",
        "\"",
        "\\",
        "\n",
        "\t",
        "\r",
        "\b",
        "\f",
        "\x01",
        "\x1f",
        "\x7f",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "\xed\x9f\xbf",
        "\xef\xbf\xbf",
        "0123456789abcdef",
        "\x00",
    };
    static const char *const broken[] = {"\xff", "\xc0\x80", "\xed\xa0\x80", "\xe2\x82",
                                         "\xf4\x90\x80\x80"};
    size_t n = 0, parts = rnd_below(8);

    for (size_t i = 0; i < parts; i++) {
        const char *p = pieces[rnd_below(sizeof pieces / sizeof pieces[0])];
        size_t len = p[0] ? strlen(p) : 1; /* the "\x00" piece is one NUL byte */
        if (len == 1 && p[0] == '\0' && no_nul)
            continue;
        if (n + len > cap)
            break;
        memcpy(out + n, p, len);
        n += len;
    }
    if (bad && n + 4 <= cap) {
        const char *p = broken[rnd_below(sizeof broken / sizeof broken[0])];
        size_t at = n ? rnd_below((unsigned)n + 1) : 0;
        size_t len = strlen(p);
        memmove(out + at + len, out + at, n - at);
        memcpy(out + at, p, len);
        n += len;
    }
    return n;
}

static double rnd_real(void)
{
    static const double nice[] = {0.0,    -0.0, 0.1,  0.5,  1.0,    3.0,     -2.5,    1e300,
                                  1e-300, 1e16, 1e17, 1e21, 5e-324, DBL_MAX, 123.456, -1e-7};
    if (rnd_below(2))
        return nice[rnd_below(sizeof nice / sizeof nice[0])];
    for (;;) {
        uint64_t bits = rnd();
        double d;
        memcpy(&d, &bits, sizeof d);
        if (d == d && d - d == 0) /* finite: json_real refuses NaN and infinities */
            return d;
    }
}

static json_int_t rnd_int(void)
{
    switch (rnd_below(4)) {
    case 0: return (json_int_t)rnd_below(200) - 100;
    case 1: return (json_int_t)(rnd() % 10000000000ULL) * (rnd_below(2) ? 1 : -1);
    case 2: return (json_int_t)rnd();
    default:
        return rnd_below(2) ? INT64_MAX - (json_int_t)rnd_below(3)
                            : INT64_MIN + (json_int_t)rnd_below(3);
    }
}

/* A random tree; bad: some strings or keys are invalid UTF-8 (nocheck setters).  Keys have
 * no NUL inside when loadable is set (json_loadb refuses one in a key). */
static int loadable;

static json_t *rnd_tree(int depth, int bad)
{
    char text[64];
    size_t n;
    unsigned kind = depth <= 0 ? rnd_below(6) : rnd_below(9);

    switch (kind) {
    case 0: return json_null();
    case 1: return json_boolean(rnd_below(2));
    case 2: return json_integer(rnd_int());
    case 3: return json_real(rnd_real());
    case 4:
    case 5:
        n = rnd_text(text, sizeof text - 8, bad && rnd_below(8) == 0, 0);
        return json_stringn_nocheck(text, n);
    case 6:
    case 7: {
        json_t *o = json_object();
        unsigned members = rnd_below(7);
        for (unsigned i = 0; i < members; i++) {
            n = rnd_text(text, sizeof text - 8, bad && rnd_below(16) == 0, loadable);
            json_object_setn_new_nocheck(o, text, n, rnd_tree(depth - 1, bad));
        }
        /* deletions and re-insertions move keys in the iteration order */
        if (members > 2 && rnd_below(3) == 0) {
            const char *k = json_object_iter_key(json_object_iter(o));
            size_t kl = json_object_iter_key_len(json_object_iter(o));
            char copy[64];
            memcpy(copy, k, kl);
            json_object_deln(o, copy, kl);
            json_object_setn_new_nocheck(o, copy, kl, json_integer(0));
        }
        return o;
    }
    default: {
        json_t *a = json_array();
        unsigned items = rnd_below(7);
        for (unsigned i = 0; i < items; i++)
            json_array_append_new(a, rnd_tree(depth - 1, bad));
        return a;
    }
    }
}

static void random_trees(void **state)
{
    (void)state;
    static const char *const skip[] = {"a", "meshbuy", "/", NULL};
    int refused = 0;

    for (int i = 0; i < 5000; i++) {
        json_t *v = rnd_tree(1 + (int)rnd_below(6), i % 4 == 0);
        char *s = same_as_jansson(v);
        refused += s == NULL;
        if (json_is_object(v))
            same_members(v, skip);
        free(s);
        json_decref(v);
    }
    /* the invalid strings were reached: the refusal path is compared, not just assumed */
    assert_true(refused > 50);
}

/* A valid tree's text loads back to an equal tree that writes the same text. */
static void round_trips(void **state)
{
    (void)state;
    loadable = 1;
    for (int i = 0; i < 2000; i++) {
        json_t *v = rnd_tree(1 + (int)rnd_below(6), 0);
        char *s = mb_json_dumps(v);
        json_error_t e;
        if (s == NULL) { /* a scalar at the top */
            assert_false(json_is_array(v) || json_is_object(v));
            json_decref(v);
            continue;
        }
        json_t *back = json_loadb(s, strlen(s), JSON_ALLOW_NUL, &e);
        if (back == NULL)
            fail_msg("reload '%s': %s", s, e.text);
        assert_true(json_equal(v, back));
        char *again = mb_json_dumps(back);
        assert_string_equal(again, s);
        free(again);
        free(s);
        json_decref(back);
        json_decref(v);
    }
    loadable = 0;
}

/* A state document of the shape the worker checkpoints, written into a reused buffer. */
static void reused_buffer(void **state)
{
    (void)state;
    json_t *doc = json_pack("{s:s,s:{s:s,s:i,s:[{s:s,s:b}]},s:n,s:f}", "orderId", "o-1", "steps",
                            "name", "precheck", "attempt", 3, "history", "at",
                            "2024-05-01T12:00:00.123Z", "ok", 1, "error", "ratio", 0.25);
    char *want = json_dumps(doc, JSON_COMPACT);
    mb_buf b = {0};

    for (int i = 0; i < 3; i++) {
        b.len = 0;
        assert_int_equal(mb_json_dump(&b, doc), 0);
        assert_string_equal(b.p, want);
    }
    mb_buf_free(&b);
    free(want);
    json_decref(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scalars_and_empties),
        cmocka_unit_test(integers),
        cmocka_unit_test(integers_near_powers),
        cmocka_unit_test(fmt_ll_is_printf),
        cmocka_unit_test(request_bodies),
        cmocka_unit_test(reals),
        cmocka_unit_test(escapes),
        cmocka_unit_test(unicode),
        cmocka_unit_test(invalid_utf8),
        cmocka_unit_test(cycles),
        cmocka_unit_test(deep),
        cmocka_unit_test(members),
        cmocka_unit_test(random_trees),
        cmocka_unit_test(round_trips),
        cmocka_unit_test(reused_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
