/* finish.c: step 9: the mesh is Running. */
#include <stdio.h>

#include "mb_step.h"

/* Nothing left to change in the cloud: the engine publishes Running when
 * this step completes.  It says what the customer should know. */
static mb_step_rc finish_run(mb_sjob *j)
{
    json_t *skipped = json_object_get(mb_step_ck_of(j, "restart"), "skipped");

    if (json_array_size(skipped) > 0)
        snprintf(j->message, sizeof(j->message),
                 "the service mesh is running; %zu paused deployment(s) were not restarted "
                 "(resume them to get the sidecar)",
                 json_array_size(skipped));
    return MB_STEP_DONE;
}

const mb_step mb_step_finish = {
    .name = "finish",
    .run = finish_run,
    .deadline_ms = 60000,
};
