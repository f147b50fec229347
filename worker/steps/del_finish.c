/* del_finish.c: delete step 9: Deleted, saying what was left as the customer set it and
 * which paused deployments the restart skipped. */
#include <stdio.h>

#include "mb_labels.h"

static mb_step_rc del_finish_run(mb_sjob *j)
{
    char left[180] = "";
    size_t n = mb_labels_left_text(mb_step_ck_of(j, "uninject"), "namespace", "istio-injection",
                                   left, sizeof(left));

    n +=
        mb_labels_left_text(mb_step_ck_of(j, "unlabel_nodes"), "node", "istio", left, sizeof(left));
    json_t *skipped = json_object_get(mb_step_ck_of(j, "restart"), "skipped");
    size_t len = 0;

    if (n > 0)
        len = (size_t)snprintf(j->message, sizeof(j->message),
                               "the service mesh is deleted; changed since the purchase, left as "
                               "set: %.180s",
                               left);
    if (json_array_size(skipped) > 0 && len + 64 < sizeof(j->message)) {
        if (len == 0)
            len = (size_t)snprintf(j->message, sizeof(j->message), "the service mesh is deleted");
        len += (size_t)snprintf(j->message + len, sizeof(j->message) - len,
                                "; paused deployment(s) not restarted, their pods keep the "
                                "sidecar until resumed:");
        for (size_t i = 0; i < json_array_size(skipped) && len < sizeof(j->message); i++)
            len += (size_t)snprintf(j->message + len, sizeof(j->message) - len, "%s %s",
                                    i ? "," : "", json_string_value(json_array_get(skipped, i)));
    }
    return MB_STEP_DONE;
}

/* Read-only face: nothing to change. */
static mb_step_rc del_finish_check(mb_sjob *j)
{
    mb_step_seen(j, "no cloud call: reports the mesh deleted");
    return MB_STEP_DONE;
}

const mb_step mb_step_del_finish = {
    .name = "finish",
    .run = del_finish_run,
    .check = del_finish_check,
    .deadline_ms = 60000,
    .local = 1,
};
