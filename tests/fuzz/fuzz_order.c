/* fuzz_order.c: libFuzzer target for the order parser and the worker's use of its output. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mb_event.h"
#include "mb_order.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Beyond "does not crash": a parsed order must survive the worker's round trip
 * through Redis (to_json, from_json) unchanged, and a rejected one must say why
 * and salvage only identity that would itself be valid. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mb_order *o = NULL;
    mb_order_err err;
    if (mb_order_parse(data, size, &o, &err) < 0) {
        if (err.reason[0] == '\0')
            abort();
        if (err.mesh_name[0] && mb_order_check_mesh_name(err.mesh_name))
            abort();
        if (err.account_id[0] && mb_order_check_id(err.account_id))
            abort();
        if (err.order_id[0] && mb_order_check_order_id(err.order_id))
            abort();
        return 0;
    }
    json_t *j = mb_order_to_json(o);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    mb_order *o2 = NULL;
    if (!s || mb_order_parse(s, strlen(s), &o2, &err) < 0)
        abort();
    json_t *j2 = mb_order_to_json(o2);
    if (!json_equal(j, j2))
        abort();
    /* and the status event the worker would build for it */
    char ebuf[256], key[160], mesh_id[MB_MESH_ID_LEN + 1];
    mb_status_event ev = {
        .order_id = o->order_id,
        .mesh_id = mb_order_mesh_id(mb_order_key(o, key, sizeof key), o->order_id, mesh_id,
                                    sizeof mesh_id),
        .account_id = o->account_id,
        .mesh_name = o->mesh_name,
        .cluster_id = o->cluster_id,
        .status = MB_MESH_ACCEPTED,
        .step = "reserve",
        .step_index = 2,
        .step_total = 9,
        .message = "",
        .attempt = 1,
        .seq = 1,
        .occurred_ms = 1,
        .traceparent = o->traceparent,
    };
    char *evs = mb_event_build(&ev, ebuf, sizeof ebuf);
    if (!evs)
        abort();
    free(evs);
    free(s);
    json_decref(j);
    json_decref(j2);
    mb_order_free(o);
    mb_order_free(o2);
    return 0;
}
