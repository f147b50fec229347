/* fuzz_event.c: libFuzzer target for the status-event parser (mb_event_parse, mb_event_view). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mb_event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int str_same(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

/* Two views of the same event: every data field the worker sets, and the trace. */
static int view_same(const mb_status_event *a, const mb_status_event *b)
{
    return str_same(a->order_id, b->order_id) && str_same(a->mesh_id, b->mesh_id) &&
           str_same(a->account_id, b->account_id) && str_same(a->mesh_name, b->mesh_name) &&
           str_same(a->cluster_id, b->cluster_id) && a->status == b->status &&
           str_same(a->step, b->step) && a->step_index == b->step_index &&
           a->step_total == b->step_total && str_same(a->message, b->message) &&
           str_same(a->error_code, b->error_code) && str_same(a->error_message, b->error_message) &&
           a->error_retryable == b->error_retryable && a->attempt == b->attempt &&
           a->seq == b->seq && str_same(a->traceparent, b->traceparent) &&
           str_same(a->source, b->source);
}

/* Beyond "does not crash": a rejected event says why; an accepted one has a view, and the
 * builder (which checks its inputs against the same rules) reproduces it: what the relay
 * accepts, the worker can write, and the two agree on every field. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256] = "";
    json_t *env = mb_event_parse(data, size, err, sizeof err);
    if (env == NULL) {
        if (err[0] == '\0')
            abort();
        return 0;
    }
    mb_status_event ev, ev2;
    if (mb_event_view(env, &ev) != 0)
        abort();
    ev.occurred_ms = 1;
    char *s = mb_event_build(&ev, err, sizeof err);
    if (s == NULL)
        abort();
    json_t *env2 = mb_event_parse(s, strlen(s), err, sizeof err);
    if (env2 == NULL || mb_event_view(env2, &ev2) != 0)
        abort();
    if (!view_same(&ev, &ev2))
        abort();
    json_decref(env2);
    /* the parts the worker queues, put together as the store's emit() does, read back the
     * same (emit adds id and seq; seq is the view's, so the views compare whole) */
    mb_event_parts p;
    if (mb_event_build_parts(&ev, &p, err, sizeof err) != 0)
        abort();
    size_t cap = p.head_len + p.data_len + 200, n;
    char *whole = malloc(cap);
    if (whole == NULL)
        abort();
    n = (size_t)snprintf(whole, cap, "{\"id\":\"%s/%s#%lld\",%.*s,\"data\":{\"seq\":%lld,%.*s}}",
                         "a", "b", ev.seq, (int)p.head_len, p.text, ev.seq, (int)p.data_len,
                         p.text + p.head_len);
    if (n >= cap)
        abort();
    env2 = mb_event_parse(whole, n, err, sizeof err);
    if (env2 == NULL || mb_event_view(env2, &ev2) != 0 || !view_same(&ev, &ev2))
        abort();
    json_decref(env2);
    free(whole);
    mb_event_parts_free(&p);
    free(s);
    json_decref(env);
    return 0;
}
