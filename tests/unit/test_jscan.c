/* test_jscan.c: values found by path without a tree, the text refused exactly where
 * json_loadb refuses it; and the tree json_loadb would build, built faster. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "mb_jscan.h"

/* Scans text for one path and returns the value found. */
static mb_jval one(const char *text, const char *path)
{
    const char *paths[] = {path};
    mb_jval v;

    if (mb_jscan(text, strlen(text), paths, 1, &v) != 0)
        fail_msg("refused: %s", text);
    return v;
}

static void finds_values_by_path(void **state)
{
    (void)state;
    const char *text = " {\"metadata\":{\"name\":\"node-1\",\"uid\":\"u-\\u00e9\\n\","
                       "\"labels\":{\"istio\":\"master\"},\"generation\":-9223372036854775808},"
                       "\"spec\":{\"replicas\":3,\"paused\":true,\"ratio\":1.5e3,\"x\":null},"
                       "\"items\":[1,{\"a\":[]},\"s\"],\"empty\":[]}\n";
    const char *paths[] = {"metadata.name", "metadata.uid",  "metadata.labels", "spec.replicas",
                           "spec.paused",   "spec.ratio",    "spec.x",          "items",
                           "empty",         "metadata.none", "spec.replicas.x", "metadata"};
    mb_jval v[12];
    long long n = 0;
    char buf[16];
    int oom = 0;
    char *s;

    assert_int_equal(mb_jscan(text, strlen(text), paths, 12, v), 0);
    assert_true(mb_jval_streq(&v[0], "node-1"));
    assert_false(mb_jval_streq(&v[0], "node-"));
    s = mb_jval_strdup(&v[1], &oom);
    assert_string_equal(s, "u-\xc3\xa9\n");
    assert_true(mb_jval_streq(&v[1], "u-\xc3\xa9\n"));
    free(s);
    assert_int_equal(v[2].type, MB_JOBJECT);
    assert_int_equal(v[2].len, strlen("{\"istio\":\"master\"}"));
    assert_memory_equal(v[2].text, "{\"istio\":\"master\"}", v[2].len);
    assert_true(mb_jval_int(&v[3], &n));
    assert_int_equal(n, 3);
    assert_int_equal(v[4].type, MB_JTRUE);
    assert_int_equal(v[5].type, MB_JREAL);
    assert_false(mb_jval_int(&v[5], &n)); /* a real is no integer, as json_is_integer */
    assert_int_equal(v[6].type, MB_JNULL);
    assert_int_equal(v[7].type, MB_JARRAY);
    assert_int_equal(v[7].n, 3);
    assert_int_equal(v[8].type, MB_JARRAY);
    assert_int_equal(v[8].n, 0);
    assert_int_equal(v[9].type, MB_JNONE);
    assert_int_equal(v[10].type, MB_JNONE); /* a path through a number */
    assert_int_equal(v[11].type, MB_JOBJECT);
    assert_null(mb_jval_strdup(&v[3], &oom)); /* not a string */
    assert_int_equal(oom, 0);
    v[0] = one("{\"m\":{\"g\":-9223372036854775808}}", "m.g");
    assert_true(mb_jval_int(&v[0], &n));
    assert_true(n == -9223372036854775807LL - 1);
    v[0] = one(text, "metadata.name");
    assert_int_equal(mb_jval_str(&v[0], buf, sizeof(buf)), 0);
    assert_string_equal(buf, "node-1");
    assert_int_equal(mb_jval_str(&v[0], buf, 6), -1); /* "node-1" and its NUL need 7 */
    assert_string_equal(buf, "");
    assert_int_equal(mb_jval_str(&v[3], buf, sizeof(buf)), -1);
}

/* Strings of every length up to 24 with one special sequence (an escaped quote, backslash
 * or newline, DEL, a character written in UTF-8 or escaped) at every place: decoded as
 * jansson decodes them, wherever it falls in the eight bytes a word is read by. */
static void decodes_strings_at_every_offset(void **state)
{
    (void)state;
    static const char *const special[] = {"\\\"", "\\\\", "\\n", "\x7f", "\xc3\xa9", "\\u20ac"};
    const char *paths[] = {"s"};
    char text[128];
    mb_jval v;

    for (size_t k = 0; k < sizeof(special) / sizeof(special[0]); k++) {
        for (int len = 0; len <= 24; len++) {
            for (int at = 0; at <= len; at++) {
                int n = snprintf(text, sizeof(text), "{\"s\":\"%.*s%s%.*s\"}", at,
                                 "abcdefghijklmnopqrstuvwxyz", special[k], len - at,
                                 "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
                json_t *j = json_loadb(text, (size_t)n, 0, NULL);
                int oom = 0;
                char *got;

                assert_int_equal(mb_jscan(text, (size_t)n, paths, 1, &v), 0);
                got = mb_jval_strdup(&v, &oom);
                assert_non_null(j);
                assert_string_equal(got, json_string_value(json_object_get(j, "s")));
                free(got);
                json_decref(j);
            }
        }
    }
}

/* A key repeated counts once, the last one, whatever the first held beneath it. */
static void last_repeated_key_counts(void **state)
{
    (void)state;
    const char *text = "{\"m\":{\"c\":\"x\",\"k\":1},\"a\":1,\"m\":{\"k\":2},\"a\":\"two\"}";
    const char *paths[] = {"m.c", "m.k", "a"};
    mb_jval v[3];
    long long k = 0;

    assert_int_equal(mb_jscan(text, strlen(text), paths, 3, v), 0);
    assert_int_equal(v[0].type, MB_JNONE);
    assert_true(mb_jval_int(&v[1], &k));
    assert_int_equal(k, 2);
    assert_true(mb_jval_streq(&v[2], "two"));
    /* keys compare decoded: "\u006d" is "m" */
    v[0] = one("{\"\\u006d\":{\"k\":7}}", "m.k");
    assert_true(mb_jval_int(&v[0], &k));
    assert_int_equal(k, 7);
}

static int collect(void *arg, size_t i, const mb_jval *elem)
{
    char *out = arg;
    size_t at = strlen(out);

    snprintf(out + at, 64 - at, "%zu:%.*s;", i, (int)elem->len, elem->text);
    return 0;
}

static int stop_at_one(void *arg, size_t i, const mb_jval *elem)
{
    (void)arg;
    (void)elem;
    return i == 1 ? 7 : 0;
}

static void walks_array_elements(void **state)
{
    (void)state;
    mb_jval a = one("{\"items\":[ {\"n\":1} , \"s\" ,[2,3], -4e1 ]}", "items");
    char out[64] = "";

    assert_int_equal(mb_jscan_each(&a, collect, out), 0);
    assert_string_equal(out, "0:{\"n\":1};1:\"s\";2:[2,3];3:-4e1;");
    assert_int_equal(mb_jscan_each(&a, stop_at_one, NULL), 7);
    a = one("{\"items\":[]}", "items");
    out[0] = '\0';
    assert_int_equal(mb_jscan_each(&a, collect, out), 0);
    assert_string_equal(out, "");
    a = one("{\"items\":{}}", "items");
    assert_int_equal(mb_jscan_each(&a, collect, out), -1);
}

/* Whether json_loadb (flags 0) reads text as an object. */
static int jansson_object(const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    int ok = json_is_object(j);

    json_decref(j);
    return ok;
}

/* Both read text alike: as an object, or not at all. */
static void agree(const char *text, size_t len)
{
    const char *paths[] = {"a"};
    mb_jval v;
    int ours = mb_jscan(text, len, paths, 1, &v) == 0;

    if (ours != jansson_object(text, len))
        fail_msg("%s by mb_jscan, not by json_loadb: %.*s", ours ? "taken" : "refused",
                 (int)(len > 80 ? 80 : len), text);
}

static void refuses_what_jansson_refuses(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{}",
        " {\"a\":1} ",
        "[]",
        "\"s\"",
        "1",
        "null",
        "",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{\"a\":1 \"b\":2}",
        "{a:1}",
        "{\"a\":01}",
        "{\"a\":-}",
        "{\"a\":1.}",
        "{\"a\":.5}",
        "{\"a\":1e}",
        "{\"a\":+1}",
        "{\"a\":1e5}",
        "{\"a\":-0}",
        "{\"a\":tru}",
        "{\"a\":truex}",
        "{\"a\":nul}",
        "{\"a\":\"\\u0000\"}",
        "{\"\\u0000\":1}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\ud83d\\ude00\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\t\"}",
        "{\"a\":\"\xc3\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",
        "{\"a\":\"\xf4\x90\x80\x80\"}",
        "{\"a\":\"\xf0\x9f\x98\x80\"}",
        "{\"a\":9223372036854775807}",
        "{\"a\":9223372036854775808}",
        "{\"a\":-9223372036854775808}",
        "{\"a\":-9223372036854775809}",
        "{\"a\":1e308}",
        "{\"a\":1e309}",
        "{\"a\":-1e309}",
        "{\"a\":1e-400}",
        "{\"a\":[1,2,]}",
        "{\"a\":[,]}",
        "{} {}",
        "{}x",
        "\xef\xbb\xbf{}",
        "{\"a\":1}\n\r\t ",
        "{\"a\":\"\\/\\b\\f\\n\\r\\t\"}",
        "{\"a\":1.0000000000000000000000000000000000000000000000000000000000000000001e309}",
        "{\"a\":0.0000000000000000000000000000000000000000000000000000000000000000001e309}"};

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        agree(texts[i], strlen(texts[i]));
    agree("{\"a\":1}\0", 8); /* a NUL after the object */
    agree("{\"a\":\"x\0y\"}", 10);
    /* jansson skips a NUL right after a number or a literal (its reader loses a NUL it puts
     * back); mb_jscan never takes one */
    const char *paths[] = {"a"};
    mb_jval v;
    assert_true(jansson_object("{\"a\":[2\0]}", 10));
    assert_int_equal(mb_jscan("{\"a\":[2\0]}", 10, paths, 1, &v), -1);
}

/* Nesting: exactly as deep as jansson goes (2048 values, the object counted), and no deeper. */
static void nests_as_deep_as_jansson(void **state)
{
    (void)state;
    size_t cap = 8192;
    char *text = malloc(cap);

    for (int depth = 2044; depth <= 2050; depth++) {
        for (int scalar = 0; scalar <= 1; scalar++) {
            size_t k = 0;
            k += (size_t)snprintf(text, cap, "{\"a\":");
            for (int i = 0; i < depth; i++)
                text[k++] = '[';
            if (scalar)
                text[k++] = '1';
            for (int i = 0; i < depth; i++)
                text[k++] = ']';
            text[k++] = '}';
            agree(text, k);
        }
    }
    free(text);
}

static void refuses_bad_paths(void **state)
{
    (void)state;
    const char *text = "{\"a\":{\"b\":1}}";
    const char *empty[] = {""}, *dots[] = {"a..b"}, *trail[] = {"a."}, *null[] = {NULL};
    const char *deep[] = {"a.b.c.d.e.f.g.h.i"};
    const char *many[MB_JSCAN_MAX_PATHS + 1];
    mb_jval v[MB_JSCAN_MAX_PATHS + 1];

    assert_int_equal(mb_jscan(text, strlen(text), empty, 1, v), -1);
    assert_int_equal(mb_jscan(text, strlen(text), dots, 1, v), -1);
    assert_int_equal(mb_jscan(text, strlen(text), trail, 1, v), -1);
    assert_int_equal(mb_jscan(text, strlen(text), null, 1, v), -1);
    assert_int_equal(mb_jscan(text, strlen(text), deep, 1, v), -1);
    for (size_t i = 0; i <= MB_JSCAN_MAX_PATHS; i++)
        many[i] = "a.b";
    assert_int_equal(mb_jscan(text, strlen(text), many, MB_JSCAN_MAX_PATHS + 1, v), -1);
    assert_int_equal(mb_jscan(text, strlen(text), many, MB_JSCAN_MAX_PATHS, v), 0);
    assert_int_equal(v[MB_JSCAN_MAX_PATHS - 1].type, MB_JINTEGER);
    assert_int_equal(mb_jscan(text, strlen(text), NULL, 0, NULL), 0); /* only checked */
    assert_int_equal(mb_jscan("{\"a\":[}", 7, many, 1, v), -1);
    assert_int_equal(v[0].type, MB_JNONE);
}

/* mb_jscan_tree builds what json_loadb builds (the same dump), or fails where it fails. */
static void tree_as_jansson(const char *text, size_t len)
{
    json_t *want = json_loadb(text, len, 0, NULL), *got = mb_jscan_tree(text, len);
    char *a, *b;

    if (want == NULL) {
        if (got != NULL)
            fail_msg("built a tree where json_loadb fails: %.*s", (int)len, text);
        return;
    }
    if (got == NULL)
        fail_msg("failed where json_loadb builds: %.*s", (int)len, text);
    a = json_dumps(got, JSON_COMPACT);
    b = json_dumps(want, JSON_COMPACT);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    assert_true(json_equal(got, want));
    free(a);
    free(b);
    json_decref(got);
    json_decref(want);
}

/* Copies s to p; returns where it ends. */
static char *append(char *p, const char *s)
{
    size_t n = strlen(s);

    memcpy(p, s, n);
    return p + n;
}

static void builds_trees_as_jansson(void **state)
{
    static const char *const texts[] = {
        "{}",
        "[]",
        " { \"a\" : [ 1 , -0 , 2.5e3 , -1E-2 , true , false , null , \"\" ] } ",
        "{\"a\":1,\"b\":2,\"a\":{\"c\":3}}", /* repeated: the value replaced in its first place */
        "{\"e\":\"q\\\"b\\\\s\\/n\\n\\t\\u00e9\\ud83d\\ude00 \xc3\xa9\"}",
        "{\"n\":9223372036854775807,\"m\":-9223372036854775808,\"r\":1e-400}",
        "[[[[{\"deep\":[{}]}]]]]",
        /* refused */
        "",
        "1",
        "\"s\"",
        "{\"a\":1",
        "{\"a\":1}x",
        "{\"a\":9223372036854775808}",
        "{\"a\":1e400}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":01}",
        "{\"a\" 1}",
        "{a:1}",
        "[1,]",
        "{\"a\":\"\t\"}",
    };
    char big[4096], *p = big;

    (void)state;
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        tree_as_jansson(texts[i], strlen(texts[i]));
    /* a key and a value too long for the decoding buffers on the stack, with escapes */
    p = append(p, "{\"");
    for (int i = 0; i < 200; i++)
        p = append(p, "k\\u00e9");
    p = append(p, "\":\"");
    for (int i = 0; i < 200; i++)
        p = append(p, "v\\n\\u20ac");
    p = append(p, "\"}");
    tree_as_jansson(big, (size_t)(p - big));
    /* a NUL byte: refused, where jansson skips one after a literal */
    assert_null(mb_jscan_tree("{\"a\":true\0}", 11));
    assert_null(mb_jscan_tree(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(finds_values_by_path),
        cmocka_unit_test(decodes_strings_at_every_offset),
        cmocka_unit_test(last_repeated_key_counts),
        cmocka_unit_test(walks_array_elements),
        cmocka_unit_test(refuses_what_jansson_refuses),
        cmocka_unit_test(nests_as_deep_as_jansson),
        cmocka_unit_test(refuses_bad_paths),
        cmocka_unit_test(builds_trees_as_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
