/* del_finish.c: delete step 9: Deleted, saying what was left as the customer set it. */
#include <stdio.h>

#include "mb_labels.h"

static mb_step_rc del_finish_run(mb_sjob *j)
{
    char left[180] = "";
    size_t n = mb_labels_left_text(mb_step_ck_of(j, "uninject"), "namespace", "istio-injection",
                                   left, sizeof(left));

    n +=
        mb_labels_left_text(mb_step_ck_of(j, "unlabel_nodes"), "node", "istio", left, sizeof(left));
    if (n > 0)
        snprintf(j->message, sizeof(j->message),
                 "the service mesh is deleted; changed since the purchase, left as set: %.180s",
                 left);
    return MB_STEP_DONE;
}

const mb_step mb_step_del_finish = {
    .name = "finish",
    .run = del_finish_run,
    .deadline_ms = 60000,
};
