/* fuzz_kafka.c: libFuzzer target for the CloudEvents Kafka binding (mb_order_canonical),
 * fed Kafka messages written as JSON ({"headers": {...}, "value": ...}, the .kafka.json
 * fixtures' shape). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mb_order.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Beyond "does not crash": an accepted message's canonical envelope parses to the same
 * order on its own (what Redis stores is what intake judged), and the order published in
 * binary content mode comes back through the binding unchanged. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mb_order *o = NULL, *o2 = NULL, *o3 = NULL;
    mb_order_err err;
    char *canon = NULL, *c3 = NULL;
    size_t c3len;

    if (mb_order_parse_kafka_json(data, size, &canon, &o, &err) < 0) {
        if (err.reason[0] == '\0' || canon || o)
            abort();
        return 0;
    }
    if (!canon || mb_order_parse(canon, strlen(canon), &o2, &err) < 0)
        abort();
    json_t *j = mb_order_to_json(o), *j2 = mb_order_to_json(o2);
    if (!json_equal(j, j2))
        abort();
    mb_order_binary b;
    if (mb_order_to_binary(j, &b) < 0)
        abort();
    mb_order_header h[MB_ORDER_MAX_HEADERS];
    for (size_t i = 0; i < b.n; i++)
        h[i] = (mb_order_header){b.names[i], b.values[i], strlen(b.values[i])};
    if (mb_order_parse_message(h, b.n, b.value, b.value_len, &c3, &c3len, &o3, &err) < 0)
        abort();
    json_t *j3 = mb_order_to_json(o3);
    if (!json_equal(j, j3))
        abort();
    json_decref(j);
    json_decref(j2);
    json_decref(j3);
    mb_order_binary_free(&b);
    mb_order_free(o);
    mb_order_free(o2);
    mb_order_free(o3);
    free(canon);
    free(c3);
    return 0;
}
