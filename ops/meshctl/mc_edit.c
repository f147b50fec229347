/* mc_edit.c: the message `meshctl dlq redrive --edit FILE` sends, from the file's bytes.
 * Apart from mc_dlq.c so it needs no Redis or Kafka: tests/fuzz/fuzz_dlq_edit.c fuzzes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_order.h"
#include "mc.h"

char *mc_edit_order(char *buf, size_t n, size_t *len, char *why, size_t whylen)
{
    json_t *doc = json_loadb(buf, n, 0, NULL);
    char *out;

    if (doc && json_is_object(doc) && json_object_get(doc, "specversion") == NULL) {
        json_t *env = mb_order_envelope(MB_ORDER_BUY, doc, "meshctl-redrive", NULL);
        doc = NULL; /* taken over */
        out = env ? json_dumps(env, JSON_COMPACT) : NULL;
        json_decref(env);
        free(buf);
        if (out == NULL)
            snprintf(why, whylen, "out of memory");
        *len = out ? strlen(out) : 0;
        return out;
    }
    json_decref(doc);
    *len = n;
    return buf;
}
