/* fuzz_json_dump.c: libFuzzer target for the compact writer (mb_json_dump,
 * mb_json_dump_members): whatever json_loadb accepts, and the raw input as a string and a
 * key (the *_nocheck setters let jansson hold bytes that are not UTF-8), must be written
 * byte for byte as json_dumps(JSON_COMPACT) writes it, or refused by both. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mb_buf.h"
#include "mb_json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_dump(const json_t *v)
{
    char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    mb_buf b = {0};
    int rc = mb_json_dump(&b, v);

    if (want == NULL ? rc != -1 || b.len != 0
                     : rc != 0 || b.len != strlen(want) || memcmp(b.p, want, b.len) != 0)
        abort();
    mb_buf_free(&b);
    free(want);
}

/* The members of obj minus "id" and "data", against a copy with them deleted (made key
 * length and all: json_copy would cut a key at a NUL). */
static void same_members(const json_t *obj)
{
    static const char *const skip[] = {"id", "data", NULL};
    json_t *copy = json_object();
    mb_buf b = {0};
    char *want;
    int rc;

    for (void *it = json_object_iter((json_t *)obj); it;
         it = json_object_iter_next((json_t *)obj, it))
        json_object_setn_nocheck(copy, json_object_iter_key(it), json_object_iter_key_len(it),
                                 json_object_iter_value(it));
    json_object_del(copy, "id");
    json_object_del(copy, "data");
    want = json_dumps(copy, JSON_COMPACT);
    rc = mb_json_dump_members(&b, obj, skip);
    if (want == NULL) {
        if (rc != -1)
            abort();
    } else {
        size_t n = strlen(want) - 2; /* without the braces */
        if (rc != 0 || b.len != n || (n && memcmp(b.p, want + 1, n) != 0))
            abort();
    }
    mb_buf_free(&b);
    free(want);
    json_decref(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    if (v != NULL) {
        same_dump(v);
        if (json_is_object(v))
            same_members(v);
        json_decref(v);
    }

    /* the input as raw bytes: a string value, and a key beside an ordinary member */
    json_t *raw = json_stringn_nocheck((const char *)data, size);
    json_t *arr = json_array();
    json_t *obj = json_object();
    if (raw == NULL || arr == NULL || obj == NULL)
        abort();
    json_array_append(arr, raw);
    json_object_setn_new_nocheck(obj, (const char *)data, size, json_integer((json_int_t)size));
    json_object_set_new(obj, "after", json_true());
    same_dump(raw);
    same_dump(arr);
    same_dump(obj);
    same_members(obj);
    json_decref(raw);
    json_decref(arr);
    json_decref(obj);
    return 0;
}
