/* mb_json.c: strict-validation helpers over jansson (see mb_json.h). */
#include "mb_json.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Two decimal digits at a time: integers are most of what a state document's numbers are,
 * and jansson's snprintf per integer is one of the costs this writer exists to avoid. */
static const char wr_digits2[] = "00010203040506070809"
                                 "10111213141516171819"
                                 "20212223242526272829"
                                 "30313233343536373839"
                                 "40414243444546474849"
                                 "50515253545556575859"
                                 "60616263646566676869"
                                 "70717273747576777879"
                                 "80818283848586878889"
                                 "90919293949596979899";

/* Two digits of v (0..99) at p. */
static char *put2(char *p, long long v)
{
    memcpy(p, wr_digits2 + 2 * v, 2);
    return p + 2;
}

/* By hand rather than gmtime_r and snprintf: every status event carries two of these.
 * The civil date of a day count is Howard Hinnant's days_from_civil inverse (exact for
 * the proleptic Gregorian calendar gmtime_r uses); the text is what
 * "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" wrote, truncated to len as snprintf would. */
char *mb_json_time_ms(long long epoch_ms, char *buf, size_t len)
{
    static const char epoch[] = "1970-01-01T00:00:00.000Z";
    char t[64], *p = t;
    long long days, ms, z, era, doe, yoe, doy, mp, y, m, d;
    size_t n;

    if (len == 0)
        return buf;
    if (epoch_ms < 0) {
        n = sizeof epoch - 1 < len - 1 ? sizeof epoch - 1 : len - 1;
        memcpy(buf, epoch, n);
        buf[n] = '\0';
        return buf;
    }
    days = epoch_ms / 86400000;
    ms = epoch_ms % 86400000;
    z = days + 719468;
    era = z / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = yoe + era * 400 + (m <= 2);
    /* years from 1970 on: four digits or more, never padded */
    p += mb_json_fmt_ll(p, y);
    *p++ = '-';
    p = put2(p, m);
    *p++ = '-';
    p = put2(p, d);
    *p++ = 'T';
    p = put2(p, ms / 3600000);
    *p++ = ':';
    p = put2(p, ms / 60000 % 60);
    *p++ = ':';
    p = put2(p, ms / 1000 % 60);
    *p++ = '.';
    *p++ = (char)('0' + ms % 1000 / 100);
    p = put2(p, ms % 100);
    *p++ = 'Z';
    n = (size_t)(p - t);
    if (n > len - 1)
        n = len - 1;
    memcpy(buf, t, n);
    buf[n] = '\0';
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

/* ================================================================ compact writer */

/* Room for n more bytes and the terminator.  0, or -1 with b->oom set.  The writer fills
 * b->p directly after this (one check per token rather than mb_buf_add's per call) and
 * terminates once at the end. */
static int wr_room(mb_buf *b, size_t n)
{
    size_t cap;
    char *np;

    if (b->oom)
        return -1;
    if (b->len + n + 1 <= b->cap)
        return 0;
    if (n > SIZE_MAX / 4 - b->len) {
        b->oom = 1;
        return -1;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    np = realloc(b->p, cap);
    if (np == NULL) {
        b->oom = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static void wr_put(mb_buf *b, const void *s, size_t n)
{
    if (b->len + n + 1 > b->cap && wr_room(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void wr_ch(mb_buf *b, char c)
{
    if (b->len + 2 > b->cap && wr_room(b, 1) < 0)
        return;
    b->p[b->len++] = c;
}

size_t mb_json_fmt_ll(char *buf, long long v)
{
    char tmp[24];
    char *end = tmp + sizeof tmp, *p = end;
    /* the magnitude in unsigned arithmetic: -LLONG_MIN does not fit in long long */
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    size_t n;

    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        p -= 2;
        memcpy(p, wr_digits2 + 2 * r, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, wr_digits2 + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    if (v < 0)
        *--p = '-';
    n = (size_t)(end - p);
    memcpy(buf, p, n);
    buf[n] = '\0';
    return n;
}

/* What "%lld" writes (JSON_INTEGER_FORMAT on this platform: JSON_INTEGER_IS_LONG_LONG). */
static void wr_int(mb_buf *b, json_int_t v)
{
    if (b->len + MB_JSON_LL_MAX > b->cap && wr_room(b, MB_JSON_LL_MAX) < 0)
        return;
    b->len += mb_json_fmt_ll(b->p + b->len, v);
}

/* jansson's jsonp_dtostr at precision 0: "%.17g", the locale's decimal point back to '.',
 * ".0" when there is neither '.' nor 'e' (so the value reads back as a real), and no '+'
 * or leading zeros in the exponent.  Reals are rare in our documents, so snprintf stays
 * here: writing "%.17g" exactly by hand would need a bignum conversion.  0 or -1. */
static int wr_real(mb_buf *b, double d)
{
    char buf[64];
    const char *point;
    char *pos, *start, *end;
    size_t len;
    int n;

    /* json_real refuses NaN and infinities, so a tree cannot hold one */
    if (!isfinite(d))
        return -1;
    n = snprintf(buf, sizeof buf - 3, "%.17g", d);
    if (n < 0 || (size_t)n >= sizeof buf - 3)
        return -1;
    len = (size_t)n;
    point = localeconv()->decimal_point;
    if (*point != '.') {
        pos = strchr(buf, *point);
        if (pos)
            *pos = '.';
    }
    if (strchr(buf, '.') == NULL && strchr(buf, 'e') == NULL) {
        memcpy(buf + len, ".0", 3);
        len += 2;
    }
    start = strchr(buf, 'e');
    if (start) {
        start++;
        end = start + 1;
        if (*start == '-')
            start++;
        while (*end == '0')
            end++;
        if (end != start) {
            memmove(start, end, len - (size_t)(end - buf));
            len -= (size_t)(end - start);
        }
    }
    wr_put(b, buf, len);
    return 0;
}

/* The length of the valid UTF-8 sequence at p (at most avail bytes), or 0: jansson's
 * utf8_check_first and utf8_check_full (no overlong forms, no surrogates, nothing past
 * U+10FFFF), so that the writer refuses exactly the strings json_dumps refuses. */
static size_t wr_utf8(const unsigned char *p, size_t avail)
{
    unsigned char u = p[0];
    uint32_t v;
    size_t n;

    if (u >= 0xC2 && u <= 0xDF) {
        n = 2;
        v = u & 0x1F;
    } else if (u >= 0xE0 && u <= 0xEF) {
        n = 3;
        v = u & 0x0F;
    } else if (u >= 0xF0 && u <= 0xF4) {
        n = 4;
        v = u & 0x07;
    } else {
        return 0;
    }
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
        v = (v << 6) | (p[i] & 0x3F);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (n == 3 && v < 0x800) ||
        (n == 4 && v < 0x10000))
        return 0;
    return n;
}

int mb_json_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    while (p < end) {
        if (*p < 0x80) {
            if (*p == 0)
                return 0;
            p++;
            continue;
        }
        size_t n = wr_utf8(p, (size_t)(end - p));
        if (n == 0)
            return 0;
        p += n;
    }
    return 1;
}

/* The escape of an ASCII byte below 0x20, '"' or '\\' as jansson writes it (upper-case hex,
 * '/' and DEL left alone without JSON_ESCAPE_SLASH). */
static void wr_escape(mb_buf *b, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";
    char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

    switch (c) {
    case '\\': wr_put(b, "\\\\", 2); return;
    case '"': wr_put(b, "\\\"", 2); return;
    case '\b': wr_put(b, "\\b", 2); return;
    case '\f': wr_put(b, "\\f", 2); return;
    case '\n': wr_put(b, "\\n", 2); return;
    case '\r': wr_put(b, "\\r", 2); return;
    case '\t': wr_put(b, "\\t", 2); return;
    default: wr_put(b, e, sizeof e); return;
    }
}

/* 1 for the bytes a string carries as they are and alone: ASCII from 0x20 but '"' and '\\'. */
static const unsigned char wr_plain[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    /* 0x80 and up: 0 */
};

/* Nonzero when one of the 8 bytes of x may need a look (below 0x20, '"', '\\', 0x80 and up).
 * A filter, not a verdict: the zero-byte test can flag a byte above a real hit, and the
 * flagged word then goes through the byte loop.  Plain text (most of a state document)
 * thus costs a load and a few operations per 8 bytes. */
static uint64_t wr_special8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
    uint64_t lt20 = (x - ones * 0x20) & ~x;
    uint64_t zq = (q - ones) & ~q, zbs = (bs - ones) & ~bs;

    return (lt20 | zq | zbs | x) & high;
}

/* A quoted string.  0, or -1 on invalid UTF-8 with b cut back to what jansson's dump_string
 * had handed to its callback by then: the opening quote and everything up to the last
 * escape (it flushes plain runs only at an escape or the end). */
static int wr_str(mb_buf *b, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run;
    size_t mark;

    /* the common case, nothing to escape, then needs no further growth */
    if (b->len + len + 3 > b->cap && len < SIZE_MAX / 4 && wr_room(b, len + 2) < 0)
        return -1;
    wr_ch(b, '"');
    mark = b->len;
    run = p;
    while (p < end) {
        unsigned char c;
        if (end - p >= 8) {
            uint64_t x;
            memcpy(&x, p, 8);
            if (wr_special8(x) == 0) {
                p += 8;
                continue;
            }
        }
        c = *p;
        if (wr_plain[c]) {
            p++;
        } else if (c >= 0x80) {
            size_t n = wr_utf8(p, (size_t)(end - p));
            if (n == 0) {
                if (!b->oom)
                    b->len = mark;
                return -1;
            }
            p += n;
        } else if (c < 0x20 || c == '"' || c == '\\') {
            wr_put(b, run, (size_t)(p - run));
            wr_escape(b, c);
            p++;
            run = p;
            mark = b->len;
        }
    }
    wr_put(b, run, (size_t)(p - run));
    wr_ch(b, '"');
    return 0;
}

int mb_json_put_str(mb_buf *b, const char *s, size_t len)
{
    return wr_str(b, s, len);
}

/* The containers being written, outermost first.  An explicit stack rather than recursion:
 * a deep tree costs heap, not C stack.  The path doubles as jansson's circular-reference
 * check (a container met again inside itself is refused): a linear scan while the path is
 * short, as state documents are, and a pointer hash set once it gets deep. */
typedef struct wr_frame {
    const json_t *c;
    void *iter;              /* object: the next member (borrowed from c) */
    size_t i, n;             /* array: next index, size; object: members written */
    const char *const *skip; /* object keys to leave out (the bare root only) */
    int bare;                /* no brackets (mb_json_dump_members' root) */
} wr_frame;

#define WR_LOCAL  16
#define WR_LINEAR 32

typedef struct wr_path {
    wr_frame *f; /* local, or new (free()) once deeper than WR_LOCAL */
    size_t depth, cap;
    const json_t **set; /* new: open addressing, linear probing; NULL while shallow */
    size_t set_cap, set_n;
    wr_frame local[WR_LOCAL];
} wr_path;

static void wr_path_init(wr_path *w)
{
    w->f = w->local;
    w->depth = 0;
    w->cap = WR_LOCAL;
    w->set = NULL;
    w->set_cap = w->set_n = 0;
}

static void wr_path_free(wr_path *w)
{
    if (w->f != w->local)
        free(w->f);
    free(w->set);
}

static size_t wr_hash(const json_t *c, size_t mask)
{
    uint64_t h = (uint64_t)(uintptr_t)c * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 29) & mask;
}

static int wr_set_has(const wr_path *w, const json_t *c)
{
    size_t mask = w->set_cap - 1;

    for (size_t i = wr_hash(c, mask); w->set[i]; i = (i + 1) & mask) {
        if (w->set[i] == c)
            return 1;
    }
    return 0;
}

static void wr_set_put(wr_path *w, const json_t *c)
{
    size_t mask = w->set_cap - 1, i = wr_hash(c, mask);

    while (w->set[i])
        i = (i + 1) & mask;
    w->set[i] = c;
    w->set_n++;
}

/* Removes c, shifting later members of its probe run back (no tombstones: the path pops
 * and pushes without end on a wide tree). */
static void wr_set_del(wr_path *w, const json_t *c)
{
    size_t mask = w->set_cap - 1, i = wr_hash(c, mask), j;

    while (w->set[i] != c)
        i = (i + 1) & mask;
    j = i;
    for (;;) {
        size_t k;
        j = (j + 1) & mask;
        if (w->set[j] == NULL)
            break;
        k = wr_hash(w->set[j], mask);
        /* stays where it is when its home k lies cyclically in (i, j] */
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        w->set[i] = w->set[j];
        i = j;
    }
    w->set[i] = NULL;
    w->set_n--;
}

/* (Re)builds the set from the path at twice the room it needs.  0 or -1. */
static int wr_set_build(wr_path *w, size_t need)
{
    size_t cap = 256;

    while (cap < 2 * need)
        cap *= 2;
    free(w->set);
    w->set = calloc(cap, sizeof(*w->set));
    if (w->set == NULL)
        return -1;
    w->set_cap = cap;
    w->set_n = 0;
    for (size_t i = 0; i < w->depth; i++)
        wr_set_put(w, w->f[i].c);
    return 0;
}

/* Enters container c.  0, or -1 when c is already on the path or memory ran out. */
static int wr_push(mb_buf *b, wr_path *w, const json_t *c, int bare, const char *const *skip)
{
    wr_frame *f;

    if (w->set) {
        if (wr_set_has(w, c))
            return -1;
    } else {
        for (size_t i = 0; i < w->depth; i++) {
            if (w->f[i].c == c)
                return -1;
        }
    }
    if (w->depth == w->cap) {
        size_t cap = w->cap * 2;
        wr_frame *nf = malloc(cap * sizeof(*nf));
        if (nf == NULL) {
            b->oom = 1;
            return -1;
        }
        memcpy(nf, w->f, w->depth * sizeof(*nf));
        if (w->f != w->local)
            free(w->f);
        w->f = nf;
        w->cap = cap;
    }
    f = &w->f[w->depth++];
    f->c = c;
    f->skip = skip;
    f->bare = bare;
    f->i = 0;
    if (json_is_array(c)) {
        f->n = json_array_size(c);
        f->iter = NULL;
    } else {
        f->n = 0;
        f->iter = json_object_iter((json_t *)c);
    }
    if (w->set && (w->set_n + 1) * 2 > w->set_cap) {
        if (wr_set_build(w, w->depth) < 0) {
            b->oom = 1;
            return -1;
        }
    } else if (w->set) {
        wr_set_put(w, c);
    } else if (w->depth > WR_LINEAR && wr_set_build(w, w->depth) < 0) {
        b->oom = 1;
        return -1;
    }
    if (!bare)
        wr_ch(b, json_is_array(c) ? '[' : '{');
    return 0;
}

static void wr_pop(mb_buf *b, wr_path *w)
{
    wr_frame *f = &w->f[w->depth - 1];

    if (!f->bare)
        wr_ch(b, json_is_array(f->c) ? ']' : '}');
    if (w->set)
        wr_set_del(w, f->c);
    w->depth--;
}

/* A scalar, or the opening of a container (pushed for wr_run to fill).  0 or -1. */
static int wr_value(mb_buf *b, wr_path *w, const json_t *v)
{
    if (v == NULL)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY: return wr_push(b, w, v, 0, NULL);
    case JSON_STRING: return wr_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER: wr_int(b, json_integer_value(v)); return 0;
    case JSON_REAL: return wr_real(b, json_real_value(v));
    case JSON_TRUE: wr_put(b, "true", 4); return 0;
    case JSON_FALSE: wr_put(b, "false", 5); return 0;
    case JSON_NULL: wr_put(b, "null", 4); return 0;
    }
    return -1;
}

/* json_object_del deletes by the key's bytes: a key with a NUL inside is not "id". */
static int wr_skipped(const char *const *skip, const char *key, size_t len)
{
    for (; skip && *skip; skip++) {
        if (strlen(*skip) == len && memcmp(*skip, key, len) == 0)
            return 1;
    }
    return 0;
}

/* The next member of object frame f, or NULL at its end; *key, *klen set. */
static const json_t *wr_next_member(wr_frame *f, const char **key, size_t *klen)
{
    while (f->iter) {
        void *it = f->iter;
        f->iter = json_object_iter_next((json_t *)f->c, it);
        *key = json_object_iter_key(it);
        *klen = json_object_iter_key_len(it);
        if (!wr_skipped(f->skip, *key, *klen))
            return json_object_iter_value(it);
    }
    return NULL;
}

/* Writes what is left of the path.  0 or -1. */
static int wr_run(mb_buf *b, wr_path *w)
{
    while (w->depth > 0) {
        wr_frame *f = &w->f[w->depth - 1];
        const json_t *v;

        if (json_is_array(f->c)) {
            if (f->i == f->n) {
                wr_pop(b, w);
                continue;
            }
            if (f->i)
                wr_ch(b, ',');
            v = json_array_get(f->c, f->i++);
        } else {
            const char *key;
            size_t klen;
            v = wr_next_member(f, &key, &klen);
            if (v == NULL) {
                wr_pop(b, w);
                continue;
            }
            if (f->i++)
                wr_ch(b, ',');
            /* json_dumps ignores a key it cannot write (see mb_json.h) */
            (void)wr_str(b, key, klen);
            wr_ch(b, ':');
        }
        /* f is stale from here: a push may move the frames */
        if (wr_value(b, w, v) < 0)
            return -1;
    }
    return 0;
}

/* Runs the writer from an opened root and settles b: terminated, or back at start. */
static int wr_finish(mb_buf *b, wr_path *w, size_t start, int rc)
{
    if (rc == 0)
        rc = wr_run(b, w);
    wr_path_free(w);
    if (b->oom)
        return -1;
    if (rc < 0)
        b->len = start;
    if (b->p)
        b->p[b->len] = '\0';
    return rc;
}

int mb_json_dump(mb_buf *b, const json_t *v)
{
    wr_path w;
    size_t start = b->len;

    if (b->oom)
        return -1;
    wr_path_init(&w);
    return wr_finish(b, &w, start, wr_value(b, &w, v));
}

int mb_json_dump_members(mb_buf *b, const json_t *obj, const char *const *skip)
{
    wr_path w;
    size_t start = b->len;

    if (b->oom || !json_is_object(obj))
        return -1;
    wr_path_init(&w);
    return wr_finish(b, &w, start, wr_push(b, &w, obj, 1, skip));
}

char *mb_json_dumps(const json_t *v)
{
    mb_buf b = {0};

    if (!json_is_array(v) && !json_is_object(v))
        return NULL;
    if (mb_json_dump(&b, v) < 0) {
        mb_buf_free(&b);
        return NULL;
    }
    return mb_buf_take(&b);
}
