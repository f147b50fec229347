/* mb_redis.c: REDIS_URL parsing and connecting (timeout, AUTH, SELECT, unix socket). */
#include "mb_redis.h"

#include "mb_buf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* ---------------------------------------------------------------- parsing */

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "REDIS_URL: %s", msg);
    return -1;
}

/* Percent-decodes s[0..n) into out (cap bytes with the NUL).  0 or -1. */
static int pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n)
                return -1;
            hi = mb_hexval((unsigned char)s[i + 1]);
            lo = mb_hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* Decimal in [min, max] from s[0..n).  0 or -1. */
static int parse_num(const char *s, size_t n, long min, long max, int *out)
{
    long v = 0;

    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* "db=N" among &-separated query parameters; other parameters are refused so a
 * typo is not silently ignored. */
static int parse_query(const char *q, mb_redis_url *u, char *err, size_t errlen)
{
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t n = amp ? (size_t)(amp - q) : strlen(q);
        if (n > 3 && strncmp(q, "db=", 3) == 0) {
            if (parse_num(q + 3, n - 3, 0, 1000000, &u->db) < 0)
                return fail(err, errlen, "bad db number");
        } else if (n > 0) {
            return fail(err, errlen, "unknown query parameter (only db=N)");
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return 0;
}

static int parse_unix(const char *rest, mb_redis_url *u, char *err, size_t errlen)
{
    const char *qm = strchr(rest, '?');
    size_t n = qm ? (size_t)(qm - rest) : strlen(rest);

    if (n == 0 || rest[0] != '/')
        return fail(err, errlen, "unix socket path must be absolute");
    if (n >= sizeof(u->path))
        return fail(err, errlen, "unix socket path too long");
    memcpy(u->path, rest, n);
    u->path[n] = '\0';
    u->is_unix = 1;
    return qm ? parse_query(qm + 1, u, err, errlen) : 0;
}

/* [[user]:password@] */
static int parse_userinfo(const char *s, size_t n, mb_redis_url *u, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', n);

    if (colon == NULL) {
        /* redis://secret@host is how some tools spell a password-only URL. */
        if (pct_decode(s, n, u->password, sizeof(u->password)) < 0)
            return fail(err, errlen, "bad password encoding or too long");
        return 0;
    }
    if (pct_decode(s, (size_t)(colon - s), u->user, sizeof(u->user)) < 0)
        return fail(err, errlen, "bad user encoding or too long");
    if (pct_decode(colon + 1, n - (size_t)(colon - s) - 1, u->password, sizeof(u->password)) < 0)
        return fail(err, errlen, "bad password encoding or too long");
    return 0;
}

static int parse_hostport(const char *s, size_t n, mb_redis_url *u, char *err, size_t errlen)
{
    const char *port = NULL;
    size_t hl;

    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL)
            return fail(err, errlen, "unclosed [ in host");
        hl = (size_t)(rb - s - 1);
        if (hl == 0 || hl >= sizeof(u->host))
            return fail(err, errlen, "bad host");
        memcpy(u->host, s + 1, hl);
        u->host[hl] = '\0';
        if (rb + 1 < s + n) {
            if (rb[1] != ':')
                return fail(err, errlen, "junk after ]");
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        hl = colon ? (size_t)(colon - s) : n;
        if (hl == 0 || hl >= sizeof(u->host))
            return fail(err, errlen, "missing or too long host");
        memcpy(u->host, s, hl);
        u->host[hl] = '\0';
        if (colon)
            port = colon + 1;
    }
    if (port && parse_num(port, (size_t)(s + n - port), 1, 65535, &u->port) < 0)
        return fail(err, errlen, "bad port");
    return 0;
}

static int parse_tcp(const char *rest, mb_redis_url *u, char *err, size_t errlen)
{
    size_t auth_end = strcspn(rest, "/?");
    const char *at = NULL;
    const char *hp;
    const char *tail;

    /* The password may contain '@' only percent-encoded; take the last '@' anyway. */
    for (const char *p = rest; p < rest + auth_end; p++)
        if (*p == '@')
            at = p;
    hp = rest;
    if (at) {
        if (parse_userinfo(rest, (size_t)(at - rest), u, err, errlen) < 0)
            return -1;
        hp = at + 1;
    }
    if (parse_hostport(hp, (size_t)(rest + auth_end - hp), u, err, errlen) < 0)
        return -1;
    tail = rest + auth_end;
    if (*tail == '/') {
        size_t n = strcspn(tail + 1, "?");
        if (n > 0 && parse_num(tail + 1, n, 0, 1000000, &u->db) < 0)
            return fail(err, errlen, "bad db number");
        tail += 1 + n;
    }
    if (*tail == '?')
        return parse_query(tail + 1, u, err, errlen);
    return 0;
}

/* Password from REDIS_PASSWORD / REDIS_PASSWORD_FILE when the URL has none. */
static int env_password(mb_redis_url *u, char *err, size_t errlen)
{
    const char *pw = getenv("REDIS_PASSWORD");
    const char *file = getenv("REDIS_PASSWORD_FILE");
    FILE *f;
    size_t n;

    if (pw && *pw == '\0')
        pw = NULL;
    if (file && *file == '\0')
        file = NULL;
    if (pw && file) {
        snprintf(err, errlen, "REDIS_PASSWORD and REDIS_PASSWORD_FILE are both set");
        return -1;
    }
    if (u->password[0] != '\0')
        return 0;
    if (pw) {
        if (strlen(pw) >= sizeof(u->password)) {
            snprintf(err, errlen, "REDIS_PASSWORD: too long");
            return -1;
        }
        snprintf(u->password, sizeof(u->password), "%s", pw);
        return 0;
    }
    if (file == NULL)
        return 0;
    f = fopen(file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "REDIS_PASSWORD_FILE: %s: %s", file, strerror(errno));
        return -1;
    }
    n = fread(u->password, 1, sizeof(u->password) - 1, f);
    if (!feof(f)) {
        fclose(f);
        memset(u->password, 0, sizeof(u->password));
        snprintf(err, errlen, "REDIS_PASSWORD_FILE: %s: too long or unreadable", file);
        return -1;
    }
    fclose(f);
    u->password[n] = '\0';
    if (n > 0 && u->password[n - 1] == '\n')
        u->password[--n] = '\0';
    if (n > 0 && u->password[n - 1] == '\r')
        u->password[--n] = '\0';
    return 0;
}

int mb_redis_url_parse(const char *url, mb_redis_url *out, char *err, size_t errlen)
{
    mb_redis_url u;
    int rc;

    memset(&u, 0, sizeof(u));
    u.port = 6379;
    if (url == NULL || *url == '\0')
        return fail(err, errlen, "empty");
    if (strncmp(url, "unix://", 7) == 0)
        rc = parse_unix(url + 7, &u, err, errlen);
    else if (strncmp(url, "redis+unix://", 13) == 0)
        rc = parse_unix(url + 13, &u, err, errlen);
    else if (strncmp(url, "unix:", 5) == 0)
        rc = parse_unix(url + 5, &u, err, errlen);
    else if (strncmp(url, "redis://", 8) == 0)
        rc = parse_tcp(url + 8, &u, err, errlen);
    else if (strncmp(url, "rediss://", 9) == 0)
        rc = fail(err, errlen, "rediss:// (TLS) is not supported; use a local TLS proxy");
    else
        rc = fail(err, errlen, "scheme must be redis:// or unix://");
    if (rc == 0)
        rc = env_password(&u, err, errlen);
    if (rc < 0) {
        memset(&u, 0, sizeof(u));
        return -1;
    }
    *out = u;
    memset(&u, 0, sizeof(u));
    return 0;
}

char *mb_redis_url_redact(const mb_redis_url *u, char *buf, size_t len)
{
    const char *pw = u->password[0] ? "***" : "";
    int has_auth = u->user[0] || u->password[0];
    int v6 = strchr(u->host, ':') != NULL;

    if (u->is_unix) {
        if (u->db)
            snprintf(buf, len, "unix://%s?db=%d", u->path, u->db);
        else
            snprintf(buf, len, "unix://%s", u->path);
        return buf;
    }
    snprintf(buf, len, "redis://%s%s%s%s%s%s%s:%d/%d", u->user, has_auth ? ":" : "", pw,
             has_auth ? "@" : "", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
    return buf;
}

/* ---------------------------------------------------------------- connecting */

/* A reply that is an error: MB_FATAL for auth/db refusals, else MB_AGAIN. */
static int check_reply(redisContext *c, redisReply *r, const char *what, mb_error *err)
{
    if (r == NULL) {
        mb_error_set(err, MB_AGAIN, "RedisConnection", "%s: %s", what,
                     c->errstr[0] ? c->errstr : "no reply");
        return -1;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        mb_status st = strncmp(r->str, "LOADING", 7) == 0 ? MB_AGAIN : MB_FATAL;
        /* The server's text never echoes the password. */
        mb_error_set(err, st, "RedisAuth", "%s: %s", what, r->str);
        freeReplyObject(r);
        return -1;
    }
    freeReplyObject(r);
    return 0;
}

redisContext *mb_redis_connect(const mb_redis_url *u, int timeout_ms, mb_error *err)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c;
    redisReply *r;

    if (u->is_unix)
        c = redisConnectUnixWithTimeout(u->path, tv);
    else
        c = redisConnectWithTimeout(u->host, u->port, tv);
    if (c == NULL) {
        mb_error_set(err, MB_AGAIN, "RedisConnection", "connect: out of memory");
        return NULL;
    }
    if (c->err) {
        if (u->is_unix)
            mb_error_set(err, MB_AGAIN, "RedisConnection", "connect %s: %s", u->path, c->errstr);
        else
            mb_error_set(err, MB_AGAIN, "RedisConnection", "connect %s:%d: %s", u->host, u->port,
                         c->errstr);
        goto err;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        mb_error_set(err, MB_AGAIN, "RedisConnection", "set timeout: %s", c->errstr);
        goto err;
    }
    if (u->password[0]) {
        if (u->user[0])
            r = redisCommand(c, "AUTH %s %s", u->user, u->password);
        else
            r = redisCommand(c, "AUTH %s", u->password);
        if (check_reply(c, r, "AUTH", err) < 0)
            goto err;
    }
    if (u->db != 0) {
        r = redisCommand(c, "SELECT %d", u->db);
        if (check_reply(c, r, "SELECT", err) < 0)
            goto err;
    }
    return c;
err:
    redisFree(c);
    return NULL;
}
