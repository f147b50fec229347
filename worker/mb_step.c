/* mb_step.c: the step-facing helpers of mb_step.h, for whoever drives a step.  Steps
 * reach their driver (the engine, or the check driver) only through j->host, so the
 * steps link without the engine (meshctl links them with the check driver). */
#include "mb_step.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mb_step_done(void *arg, const mb_error *err)
{
    mb_sjob *j = arg;

    j->host->done(j, err);
}

void *mb_step_io(mb_sjob *j)
{
    j->host->io(j);
    return j;
}

void mb_step_call(mb_sjob *j, mb_cloud_op *op)
{
    if (op == NULL)
        j->host->lost(j);
}

mb_step_rc mb_step_fail(mb_sjob *j, const char *code, const char *fmt, ...)
{
    char msg[sizeof(j->err.msg)];
    va_list ap;

    /* Formatted aside first: the arguments often quote the error being replaced
     * (j->err.msg), which clearing it, or writing over it, would garble. */
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    mb_error_clear(&j->err);
    j->err.status = MB_PERM;
    snprintf(j->err.code, sizeof(j->err.code), "%s", code);
    memcpy(j->err.msg, msg, sizeof(msg));
    return MB_STEP_ERROR;
}

mb_step_rc mb_step_oom(mb_sjob *j, const char *what)
{
    mb_error_set(&j->err, MB_FATAL, "OutOfMemory", "%s: out of memory", what);
    return MB_STEP_ERROR;
}

json_t *mb_step_ck_of(mb_sjob *j, const char *name)
{
    json_t *rec = j->host && j->host->record
                      ? j->host->record(j, name)
                      : json_object_get(json_object_get(j->state, "steps"), name);

    return json_object_get(rec, "ck");
}

/* Appends a formatted line to the plan's array key (created if absent). */
static void plan_line(mb_sjob *j, const char *key, const char *fmt, va_list ap)
{
    char buf[600];
    json_t *arr;

    if (j->plan == NULL)
        return;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    arr = json_object_get(j->plan, key);
    if (!json_is_array(arr)) {
        arr = json_array();
        json_object_set_new(j->plan, key, arr);
    }
    json_array_append_new(arr, json_string(buf));
}

void mb_step_would(mb_sjob *j, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    plan_line(j, "changes", fmt, ap);
    va_end(ap);
}

void mb_step_seen(mb_sjob *j, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    plan_line(j, "in_place", fmt, ap);
    va_end(ap);
}

void mb_step_would_fail(mb_sjob *j, const char *code, const char *fmt, ...)
{
    char buf[600];
    va_list ap;

    if (j->plan == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    json_object_set_new(j->plan, "fails", json_pack("{s:s, s:s}", "code", code, "message", buf));
}
