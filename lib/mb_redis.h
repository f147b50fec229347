/* mb_redis.h: REDIS_URL parsing and connecting (timeout, AUTH, SELECT, unix socket). */
#ifndef MB_REDIS_H
#define MB_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "mb_err.h"

/* A parsed REDIS_URL.  Plain value type: copy freely, no heap. */
typedef struct mb_redis_url {
    int is_unix;        /* 1: path is set; 0: host and port are */
    char host[256];     /* without brackets for IPv6 literals */
    int port;           /* 6379 when absent */
    char path[1024];    /* unix socket path */
    int db;             /* SELECT index, 0 when absent */
    char user[128];     /* ACL user ("" = default user) */
    char password[512]; /* "" = none; never logged */
} mb_redis_url;

/* Parses redis://[[user]:password@]host[:port][/db] and unix:///path/redis.sock[?db=N]
 * (also redis+unix:// and unix:/path).  Percent-escapes in user and password are
 * decoded.  When the URL carries no password, REDIS_PASSWORD or REDIS_PASSWORD_FILE
 * (content, one trailing newline cut) is used; setting both is an error.
 * Returns 0, or -1 with the reason in err (never containing the password). */
int mb_redis_url_parse(const char *url, mb_redis_url *out, char *err, size_t errlen);

/* The URL with any password replaced by "***", for logs.  Returns buf. */
char *mb_redis_url_redact(const mb_redis_url *u, char *buf, size_t len);

/* Connects within timeout_ms (also used as the command timeout), then AUTH and
 * SELECT as the URL asks.  Returns a new context (redisFree), or NULL with err set:
 * MB_AGAIN for connection trouble (refused, timeout, LOADING), MB_FATAL when the
 * server refuses our credentials or db (retrying will not help). */
redisContext *mb_redis_connect(const mb_redis_url *u, int timeout_ms, mb_error *err);

#endif
