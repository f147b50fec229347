/* mb_err.h: the one status enum and the error record that every module fills. */
#ifndef MB_ERR_H
#define MB_ERR_H

#include <stddef.h>

/* What the caller should do next, not what went wrong: the saga engine decides
 * backoff, failure or shutdown from this alone (nginx NGX_AGAIN, librdkafka's
 * retriable/fatal split). */
typedef enum mb_status {
    MB_OK = 0,
    MB_AGAIN = 1,  /* transient: try again later (backoff, Retry-After) */
    MB_PERM = -1,  /* permanent: this operation will not succeed as asked */
    MB_FATAL = -2, /* the process cannot go on (bad config, lost invariant) */
} mb_status;

/* An error with context.  The first error set is kept (curl's Curl_failf):
 * the most specific cause is usually the first one noticed. */
typedef struct mb_error {
    mb_status status;
    long http_status;    /* 0 when no HTTP exchange was involved */
    long retry_after_ms; /* from Retry-After; -1 when absent */
    char code[64];       /* machine-readable: "VPC.9902", "NotFound", "Timeout" */
    char msg[512];       /* human text: operation, object, cause */
} mb_error;

void mb_error_clear(mb_error *e);

/* Sets e unless it already holds an error.  code may be NULL. */
void mb_error_set(mb_error *e, mb_status st, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* "ok", "again", "permanent", "fatal".  Static string. */
const char *mb_status_name(mb_status st);

#endif
