/* mb_json.c: strict-validation helpers over jansson (see mb_json.h). */
#include "mb_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

void mb_jcheck_init(mb_jcheck *c, char *err, size_t errlen)
{
    c->err = err;
    c->errlen = errlen;
    c->failed = 0;
    if (err && errlen)
        err[0] = '\0';
}

int mb_jcheck_fail(mb_jcheck *c, const char *path, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    c->failed = 1;
    if (!c->err || !c->errlen)
        return -1;
    int n = snprintf(c->err, c->errlen, "%s: ", path);
    if (n < 0 || (size_t)n >= c->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

int mb_jcheck_keys(mb_jcheck *c, const char *path, const json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *v;
    /* json_object_foreach wants a non-const object; iteration does not modify it. */
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i;
        for (i = 0; allowed[i]; i++) {
            if (strcmp(allowed[i], key) == 0)
                break;
        }
        if (!allowed[i])
            return mb_jcheck_fail(c, path, "unknown field '%.64s'", key);
    }
    return 0;
}

size_t mb_json_utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        /* count every byte that is not a UTF-8 continuation byte (top bits 10) */
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    }
    return n;
}

int mb_json_integer(const json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 1;
    }
    if (!json_is_real(v))
        return 0;
    double d = json_real_value(v);
    /* 9.2e18 bound keeps the cast defined */
    if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
        return 0;
    *out = (long long)d;
    return 1;
}

int mb_json_charset(const char *s, const char *punct)
{
    for (; *s; s++) {
        char ch = *s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
            continue;
        if (!strchr(punct, ch))
            return 0;
    }
    return 1;
}

/* Reads exactly n digits at *p into *val and advances.  1 or 0. */
static int digits(const char **p, int n, int *val)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return 0;
        v = v * 10 + (ch - '0');
    }
    *p += n;
    *val = v;
    return 1;
}

static int lit(const char **p, char ch)
{
    if (**p != ch)
        return 0;
    (*p)++;
    return 1;
}

int mb_json_rfc3339(const char *s)
{
    const char *p = s;
    int y, mo, d, h, mi, sec;
    if (!digits(&p, 4, &y) || !lit(&p, '-') || !digits(&p, 2, &mo) || !lit(&p, '-') ||
        !digits(&p, 2, &d) || !lit(&p, 'T') || !digits(&p, 2, &h) || !lit(&p, ':') ||
        !digits(&p, 2, &mi) || !lit(&p, ':') || !digits(&p, 2, &sec))
        return 0;
    (void)y;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return 0;
    if (*p == '.') {
        p++;
        int n = 0;
        while (*p >= '0' && *p <= '9') {
            p++;
            n++;
        }
        if (n < 1 || n > 9)
            return 0;
    }
    if (*p == 'Z')
        return p[1] == '\0';
    if (*p != '+' && *p != '-')
        return 0;
    p++;
    int oh, om;
    if (!digits(&p, 2, &oh) || !lit(&p, ':') || !digits(&p, 2, &om))
        return 0;
    return oh <= 23 && om <= 59 && *p == '\0';
}

long long mb_json_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *mb_json_time_ms(long long epoch_ms, char *buf, size_t len)
{
    time_t secs = (time_t)(epoch_ms / 1000);
    int ms = (int)(epoch_ms % 1000);
    struct tm tm;
    if (epoch_ms < 0 || !gmtime_r(&secs, &tm)) {
        snprintf(buf, len, "1970-01-01T00:00:00.000Z");
        return buf;
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    return buf;
}

int mb_json_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

#define MB_JPATH 160

/* Fails the check at "path.key".  The path is only put together here, on failure:
 * the checks run on every event and reply, and formatting it each time cost more
 * than the checks themselves. */
static int field_fail(mb_jcheck *c, const char *path, const char *key, const char *why)
{
    char p[MB_JPATH];

    snprintf(p, sizeof p, "%s.%s", path, key);
    return mb_jcheck_fail(c, p, "%s", why);
}

int mb_jcheck_str(mb_jcheck *c, const json_t *obj, const char *path, const char *key, int required,
                  mb_jrule rule, const char **out)
{
    *out = NULL;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return required ? field_fail(c, path, key, "is required") : 0;
    if (!json_is_string(v))
        return field_fail(c, path, key, "must be a string");
    const char *s = json_string_value(v);
    const char *why = rule ? rule(s) : NULL;
    if (why)
        return field_fail(c, path, key, why);
    *out = s;
    return 0;
}

int mb_jcheck_int(mb_jcheck *c, const json_t *obj, const char *path, const char *key, int required,
                  long long min, long long max, long long *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return required ? field_fail(c, path, key, "is required") : 0;
    long long n;
    if (!mb_json_integer(v, &n))
        return field_fail(c, path, key, "must be an integer");
    if (n < min || n > max) {
        char why[96];
        snprintf(why, sizeof why, "must be between %lld and %lld", min, max);
        return field_fail(c, path, key, why);
    }
    *out = n;
    return 0;
}
