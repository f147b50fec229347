/* mb_err.c: error records. */
#include "mb_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mb_error_clear(mb_error *e)
{
    /* not a memset of the 600 bytes: this runs several times per cloud call,
     * and code and msg are read only up to their NUL */
    e->status = MB_OK;
    e->http_status = 0;
    e->retry_after_ms = -1;
    e->code[0] = '\0';
    e->msg[0] = '\0';
}

void mb_error_set(mb_error *e, mb_status st, const char *code, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL || e->status != MB_OK)
        return;
    e->status = st;
    snprintf(e->code, sizeof(e->code), "%s", code ? code : "");
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

const char *mb_status_name(mb_status st)
{
    switch (st) {
    case MB_OK: return "ok";
    case MB_AGAIN: return "again";
    case MB_PERM: return "permanent";
    case MB_FATAL: return "fatal";
    }
    return "unknown";
}
