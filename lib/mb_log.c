/* mb_log.c: JSON-lines logger. */
#include "mb_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

mb_log_level mb_log_min = MB_LOG_INFO;
static const char *log_program = "meshbuy";

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

int mb_log_level_parse(const char *s, mb_log_level *out)
{
    for (int i = 0; i <= MB_LOG_OFF; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (mb_log_level)i;
            return 0;
        }
    }
    return -1;
}

int mb_log_init(const char *program)
{
    const char *lv = getenv("MESHBUY_LOG_LEVEL");

    log_program = program;
    if (lv == NULL || *lv == '\0')
        return 0;
    return mb_log_level_parse(lv, &mb_log_min);
}

/* Appends s as a JSON string body (no quotes) to buf at *len, truncating
 * rather than overflowing. */
static void put_escaped(char *buf, size_t cap, size_t *len, const char *s)
{
    static const char hex[] = "0123456789abcdef";

    for (; *s && *len + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[(*len)++] = '\\';
            buf[(*len)++] = (char)c;
        } else if (c == '\n') {
            buf[(*len)++] = '\\';
            buf[(*len)++] = 'n';
        } else if (c < 0x20) {
            memcpy(buf + *len, "\\u00", 4);
            *len += 4;
            buf[(*len)++] = hex[c >> 4];
            buf[(*len)++] = hex[c & 15];
        } else {
            buf[(*len)++] = (char)c;
        }
    }
}

static void put_raw(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);

    if (*len + n >= cap)
        n = cap - *len - 1;
    memcpy(buf + *len, s, n);
    *len += n;
}

static void put_field(char *buf, size_t cap, size_t *len, const char *key, const char *val)
{
    if (val == NULL || *val == '\0')
        return;
    put_raw(buf, cap, len, ",\"");
    put_raw(buf, cap, len, key);
    put_raw(buf, cap, len, "\":\"");
    put_escaped(buf, cap, len, val);
    put_raw(buf, cap, len, "\"");
}

void mb_log_emit(mb_log_level lvl, const char *module, const mb_log_ctx *ctx, const char *fmt, ...)
{
    char line[4096], msg[3072], ts[32];
    size_t len = 0;
    struct timeval tv;
    struct tm tm;
    va_list ap;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    len = (size_t)snprintf(line, sizeof(line), "{\"ts\":\"%s.%03dZ\",\"level\":\"%s\"", ts,
                           (int)(tv.tv_usec / 1000), level_names[lvl]);
    put_field(line, sizeof(line) - 2, &len, "prog", log_program);
    put_field(line, sizeof(line) - 2, &len, "module", module);
    if (ctx) {
        put_field(line, sizeof(line) - 2, &len, "order_id", ctx->order_id);
        put_field(line, sizeof(line) - 2, &len, "job_id", ctx->job_id);
        put_field(line, sizeof(line) - 2, &len, "trace_id", ctx->trace_id);
    }
    put_field(line, sizeof(line) - 2, &len, "msg", msg);
    line[len++] = '}';
    line[len++] = '\n';
    if (write(STDERR_FILENO, line, len) < 0) {
        /* Nowhere left to report it. */
    }
}
