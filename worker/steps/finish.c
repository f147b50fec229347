/* finish.c: step 9: the mesh is Running. */
#include <stdio.h>

#include "mb_step.h"

/* Nothing left to change in the cloud: the engine publishes Running when
 * this step completes.  It says what the customer should know. */
static mb_step_rc finish_run(mb_sjob *j)
{
    json_t *skipped = json_object_get(mb_step_ck_of(j, "restart"), "skipped");
    size_t n = json_array_size(skipped), len;

    if (n == 0)
        return MB_STEP_DONE;
    len = (size_t)snprintf(j->message, sizeof(j->message),
                           "the service mesh is running; %zu paused deployment(s) were not "
                           "restarted (resume them to get the sidecar):",
                           n);
    for (size_t i = 0; i < n && len < sizeof(j->message); i++)
        len += (size_t)snprintf(j->message + len, sizeof(j->message) - len, "%s %s", i ? "," : "",
                                json_string_value(json_array_get(skipped, i)));
    return MB_STEP_DONE;
}

/* Read-only face: nothing to change; says what the customer would be told. */
static mb_step_rc finish_check(mb_sjob *j)
{
    size_t n = json_array_size(json_object_get(mb_step_ck_of(j, "restart"), "skipped"));

    mb_step_seen(j, "no cloud call: reports the mesh running%s",
                 n ? " and names the paused deployments restart skipped" : "");
    return MB_STEP_DONE;
}

const mb_step mb_step_finish = {
    .name = "finish",
    .run = finish_run,
    .check = finish_check,
    .deadline_ms = 60000,
    .local = 1,
};
