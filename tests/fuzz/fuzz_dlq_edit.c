/* fuzz_dlq_edit.c: libFuzzer target for what `meshctl dlq redrive --edit FILE` sends
 * (mc_edit_order) and the order check the redrive puts it through before sending. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mb_order.h"
#include "mc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The redrive's own check on the message, then the worker's Redis round trip of the order
 * it would become: parse, to_json, parse again, equal; and its Kafka key can be made. */
static void check_order(const char *msg, size_t len)
{
    mb_order *o = NULL, *o2 = NULL;
    mb_order_err oe;
    char key[200];
    if (mb_order_parse(msg, len, &o, &oe) != 0) {
        if (oe.reason[0] == '\0')
            abort();
        return;
    }
    if (mb_order_key(o, key, sizeof key) == NULL)
        abort();
    json_t *j = mb_order_to_json(o);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    if (s == NULL || mb_order_parse(s, strlen(s), &o2, &oe) != 0)
        abort();
    json_t *j2 = mb_order_to_json(o2);
    if (!json_equal(j, j2))
        abort();
    json_decref(j2);
    json_decref(j);
    free(s);
    mb_order_free(o2);
    mb_order_free(o);
}

/* Beyond "does not crash": the message is the file unchanged, unless the file is a JSON
 * object without "specversion"; then it is a buy envelope whose data is that object. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* as mc_dlq.c's read_file leaves it: a copy with a NUL after the bytes */
    char *buf = malloc(size + 1);
    char why[256] = "";
    size_t len = 0;
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    int wrap = doc && json_is_object(doc) && json_object_get(doc, "specversion") == NULL;

    char *msg = mc_edit_order(buf, size, &len, why, sizeof why); /* buf taken over */
    if (msg == NULL)
        abort(); /* only out of memory, which the fuzzer does not cause */
    if (wrap) {
        json_t *env = json_loadb(msg, len, 0, NULL);
        if (env == NULL || strlen(msg) != len || !json_equal(json_object_get(env, "data"), doc) ||
            !json_is_string(json_object_get(env, "specversion")) ||
            !json_is_string(json_object_get(env, "type")))
            abort();
        json_decref(env);
    } else if (len != size || memcmp(msg, data, size) != 0) {
        abort();
    }
    check_order(msg, len);
    free(msg);
    json_decref(doc);
    return 0;
}
