/* fuzz_jscan.c: libFuzzer target for mb_jscan and mb_jscan_tree against json_loadb.  Whatever
 * the input, mb_jscan and jansson must both take it as an object or both refuse it; when
 * taken, every path must find what jansson's tree holds there (type, decoded string, integer,
 * a container's text reading back to the same subtree, an array's elements one by one).
 * mb_jscan_tree must build exactly jansson's tree (the same dump: values, types, member
 * order) or fail where it fails.  The one allowed difference: a NUL byte, which both always
 * refuse and jansson skips right after a number or a literal. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mb_jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const paths[] = {"a", "a.b", "a.b.c", "b", "items", "metadata.name", "x.y.z.w"};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

/* The value at path in j, following object keys only (as mb_jscan). */
static json_t *at(json_t *j, const char *path)
{
    char key[16];

    while (j != NULL && *path) {
        size_t n = strcspn(path, ".");
        memcpy(key, path, n);
        key[n] = '\0';
        j = json_is_object(j) ? json_object_get(j, key) : NULL;
        path += n + (path[n] == '.');
    }
    return j;
}

/* The text of v reads back as w. */
static void same_tree(const mb_jval *v, const json_t *w)
{
    json_t *back = json_loadb(v->text, v->len, JSON_DECODE_ANY, NULL);

    if (back == NULL || !json_equal(back, w))
        abort();
    json_decref(back);
}

static int same_element(void *arg, size_t i, const mb_jval *elem)
{
    same_tree(elem, json_array_get(arg, i));
    return 0;
}

static void same_value(const mb_jval *v, json_t *w)
{
    static const mb_jtype types[] = {
        [JSON_OBJECT] = MB_JOBJECT,   [JSON_ARRAY] = MB_JARRAY, [JSON_STRING] = MB_JSTRING,
        [JSON_INTEGER] = MB_JINTEGER, [JSON_REAL] = MB_JREAL,   [JSON_TRUE] = MB_JTRUE,
        [JSON_FALSE] = MB_JFALSE,     [JSON_NULL] = MB_JNULL};
    long long n;
    int oom = 0;
    char *s;

    if (w == NULL) {
        if (v->type != MB_JNONE)
            abort();
        return;
    }
    if (v->type != types[json_typeof(w)])
        abort();
    same_tree(v, w);
    if (json_is_string(w)) {
        s = mb_jval_strdup(v, &oom);
        if (s == NULL || strlen(s) != json_string_length(w) || strcmp(s, json_string_value(w)))
            abort();
        if (!mb_jval_streq(v, json_string_value(w)))
            abort();
        free(s);
    }
    if (json_is_integer(w) && (!mb_jval_int(v, &n) || n != json_integer_value(w)))
        abort();
    if (json_is_array(w)) {
        if (v->n != json_array_size(w) || mb_jscan_each(v, same_element, w) != 0)
            abort();
    }
}

/* mb_jscan_tree built what json_loadb built: the same values, in the same order. */
static void same_whole(const json_t *t, const json_t *j)
{
    char *a = json_dumps(t, JSON_COMPACT), *b = json_dumps(j, JSON_COMPACT);

    if (!json_equal(t, j) || a == NULL || b == NULL || strcmp(a, b) != 0)
        abort();
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, 0, NULL);
    json_t *t = mb_jscan_tree((const char *)data, size);
    int nul = memchr(data, 0, size) != NULL;
    mb_jval v[NPATHS];
    int rc = mb_jscan((const char *)data, size, paths, NPATHS, v);

    if (nul ? rc == 0 : (rc == 0) != json_is_object(j))
        abort();
    if (nul ? t != NULL : (t != NULL) != (j != NULL))
        abort();
    if (t != NULL)
        same_whole(t, j);
    for (size_t i = 0; rc == 0 && i < NPATHS; i++)
        same_value(&v[i], at(j, paths[i]));
    json_decref(t);
    json_decref(j);
    return 0;
}
