/* mb_http1.c: URL split, response parser and HTTP-dates (RFC 9110, 9112).
 *
 * The parser is strict where a lenient reading could desynchronise a kept-alive
 * connection (conflicting lengths, folded lines, junk in chunk framing) and
 * tolerant where nothing is at stake (bare LF line ends, a missing reason
 * phrase).  It never allocates: the head and the chunk framing are dropped from
 * the caller's buffer in place, so the body ends up at its start. */
#include "mb_http1.h"

#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* URLs                                                               */
/* ------------------------------------------------------------------ */

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int host_char(int c, int ipv6)
{
    if (ipv6)
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
               c == '.';
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* The host part of an authority [a, end): sets host, ipv6 and the first byte
 * after the host.  Returns 0 or -1 with why. */
static int split_host(const char *a, const char *end, mb_h1_url *u, const char **after,
                      const char **why)
{
    const char *h = a, *e;

    if (*a == '[') {
        e = memchr(a, ']', (size_t)(end - a));
        if (e == NULL) {
            *why = "an IPv6 address without its closing bracket";
            return -1;
        }
        h = a + 1;
        u->ipv6 = 1;
        *after = e + 1;
    } else {
        e = memchr(a, ':', (size_t)(end - a));
        if (e == NULL)
            e = end;
        *after = e;
    }
    if (e == h) {
        *why = "no host";
        return -1;
    }
    for (const char *p = h; p < e; p++) {
        if (!host_char((unsigned char)*p, u->ipv6)) {
            *why = "a character a host name cannot hold";
            return -1;
        }
    }
    u->host = h;
    u->host_len = (size_t)(e - h);
    return 0;
}

/* ":port" or ":" or nothing at [p, end).  Returns 0 or -1 with why. */
static int split_port(const char *p, const char *end, mb_h1_url *u, const char **why)
{
    long port = 0;

    if (p == end)
        return 0;
    if (*p != ':') {
        *why = "junk after the host";
        return -1;
    }
    if (++p == end)
        return 0; /* "host:" means the default port */
    for (; p < end; p++) {
        if (!is_digit((unsigned char)*p) || port > 65535) {
            *why = "a port that is not a number from 1 to 65535";
            return -1;
        }
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535) {
        *why = "a port that is not a number from 1 to 65535";
        return -1;
    }
    u->port_given = port != u->port;
    u->port = (int)port;
    return 0;
}

int mb_h1_url_split(const char *url, mb_h1_url *u, const char **why)
{
    const char *a, *end, *p;

    memset(u, 0, sizeof(*u));
    for (p = url; *p; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            *why = "a byte outside printable ASCII";
            return -1;
        }
    }
    if (strncasecmp(url, "http://", 7) == 0) {
        a = url + 7;
        u->port = 80;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        a = url + 8;
        u->port = 443;
        u->tls = 1;
    } else {
        *why = "not an http:// or https:// URL";
        return -1;
    }
    end = a + strcspn(a, "/?#");
    if (memchr(a, '@', (size_t)(end - a)) != NULL) {
        *why = "credentials in the URL";
        return -1;
    }
    if (split_host(a, end, u, &p, why) != 0 || split_port(p, end, u, why) != 0)
        return -1;
    p = end;
    if (*p == '/') {
        u->path = p;
        p += strcspn(p, "?#");
        u->path_len = (size_t)(p - u->path);
    } else {
        u->path = "/";
        u->path_len = 1;
    }
    if (*p == '?') {
        u->query = ++p;
        p += strcspn(p, "#");
        u->query_len = (size_t)(p - u->query);
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Responses                                                          */
/* ------------------------------------------------------------------ */

enum { PH_HEAD, PH_LENGTH, PH_TO_EOF, PH_CSIZE, PH_CDATA, PH_CCRLF, PH_TRAILER, PH_DONE };

#define MAX_CHUNK_LINE 1024 /* a chunk-size line, extensions included */

void mb_h1_resp_init(mb_h1_resp *r)
{
    memset(r, 0, sizeof(*r));
    r->length = -1;
}

static int fail(mb_h1_resp *r, const char *why)
{
    r->err = why;
    return MB_H1_ERROR;
}

/* RFC 9110 tchar: what a header name is made of. */
static int tchar(int c)
{
    return is_alpha(c) || is_digit(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int blank(int c)
{
    return c == ' ' || c == '\t';
}

/* Case-insensitive: the n bytes at s are the literal lit. */
static int name_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && strncasecmp(s, lit, n) == 0;
}

/* What the head says about framing and the connection, gathered line by line. */
typedef struct head_info {
    int cl_seen, te_seen, chunked_seen, chunked_last, close, keep_alive;
    unsigned long long cl;
} head_info;

/* The comma-separated tokens of a Transfer-Encoding or Connection value. */
static int each_token(const char *v, size_t n, head_info *hi, int te)
{
    size_t i = 0;

    while (i < n) {
        size_t s, e;
        while (i < n && (blank(v[i]) || v[i] == ','))
            i++;
        s = i;
        while (i < n && v[i] != ',')
            i++;
        e = i;
        while (e > s && blank(v[e - 1]))
            e--;
        if (e == s)
            continue;
        if (te) {
            if (!name_is(v + s, e - s, "chunked"))
                return -1; /* we ask for no coding, and can undo none */
            if (hi->chunked_seen)
                return -1; /* chunked twice, on one line or two */
            hi->chunked_seen = hi->chunked_last = 1;
        } else if (name_is(v + s, e - s, "close")) {
            hi->close = 1;
        } else if (name_is(v + s, e - s, "keep-alive")) {
            hi->keep_alive = 1;
        }
    }
    return 0;
}

static int content_length(mb_h1_resp *r, const char *v, size_t n, head_info *hi)
{
    unsigned long long cl = 0;

    if (n == 0 || n > 18)
        return fail(r, "a Content-Length that is not a number");
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)v[i]))
            return fail(r, "a Content-Length that is not a number");
        cl = cl * 10 + (unsigned)(v[i] - '0');
    }
    if (hi->cl_seen && hi->cl != cl)
        return fail(r, "two different Content-Lengths");
    hi->cl_seen = 1;
    hi->cl = cl;
    return 0;
}

/* One header line (without its line end). */
static int header_line(mb_h1_resp *r, const char *l, size_t n, head_info *hi)
{
    const char *colon = memchr(l, ':', n), *v;
    size_t nl, vl;

    if (n > 0 && blank((unsigned char)l[0]))
        return fail(r, "a folded header line");
    if (colon == NULL || colon == l)
        return fail(r, "a header line without a name");
    nl = (size_t)(colon - l);
    for (size_t i = 0; i < nl; i++) {
        if (!tchar((unsigned char)l[i]))
            return fail(r, "a header name with a character names cannot hold");
    }
    v = colon + 1;
    vl = n - nl - 1;
    for (size_t i = 0; i < vl; i++) {
        if (v[i] == '\0' || v[i] == '\r')
            return fail(r, "a NUL or CR inside a header value");
    }
    while (vl > 0 && blank((unsigned char)*v))
        v++, vl--;
    while (vl > 0 && blank((unsigned char)v[vl - 1]))
        vl--;
    if (name_is(l, nl, "content-length"))
        return content_length(r, v, vl, hi);
    if (name_is(l, nl, "transfer-encoding")) {
        hi->te_seen = 1;
        hi->chunked_last = 0; /* a later coding would follow chunked */
        return each_token(v, vl, hi, 1) == 0 ? 0 : fail(r, "a transfer coding other than chunked");
    }
    if (name_is(l, nl, "connection"))
        return each_token(v, vl, hi, 0);
    if (name_is(l, nl, "retry-after")) {
        size_t k = vl < sizeof(r->retry_after) - 1 ? vl : sizeof(r->retry_after) - 1;
        memcpy(r->retry_after, v, k);
        r->retry_after[k] = '\0';
    }
    return 0;
}

/* The length of the line at s (up to n bytes) without its LF or CRLF, and
 * where the next one starts; -1 when the line is not complete. */
static long line_at(const char *s, size_t n, size_t *next)
{
    const char *nl = n > 0 ? memchr(s, '\n', n) : NULL;
    size_t l;

    if (nl == NULL)
        return -1;
    l = (size_t)(nl - s);
    *next = l + 1;
    if (l > 0 && s[l - 1] == '\r')
        l--;
    return (long)l;
}

/* The end of the head in buf (the byte after its empty line), or 0. */
static size_t find_head_end(mb_h1_resp *r, const char *buf, size_t len)
{
    for (;;) {
        size_t next = 0;
        long l = line_at(buf + r->scan, len - r->scan, &next);
        if (l < 0)
            return 0;
        if (l == 0 && r->scan > 0)
            return r->scan + next;
        r->scan += next;
    }
}

/* The status line: "HTTP/1.x NNN[ reason]". */
static int status_line(mb_h1_resp *r, const char *l, size_t n)
{
    if (n < 12 || memcmp(l, "HTTP/1.", 7) != 0 || !is_digit((unsigned char)l[7]) || l[8] != ' ' ||
        l[9] < '1' || l[9] > '9' || !is_digit((unsigned char)l[10]) ||
        !is_digit((unsigned char)l[11]) || (n > 12 && l[12] != ' '))
        return fail(r, "not an HTTP/1.x status line");
    r->minor = l[7] - '0';
    r->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    return 0;
}

/* Decides the body's framing from the head (RFC 9112 section 6.3). */
static void framing(mb_h1_resp *r, const head_info *hi)
{
    r->keep_alive = r->minor >= 1 ? !hi->close : hi->keep_alive && !hi->close;
    if (r->status == 204 || r->status == 304) {
        r->length = 0;
        r->phase = PH_DONE;
    } else if (hi->te_seen) {
        r->chunked = 1;
        r->phase = PH_CSIZE;
        if (hi->cl_seen || r->minor == 0)
            r->keep_alive = 0; /* a message framed two ways is not trusted with more */
    } else if (hi->cl_seen) {
        r->length = (long long)hi->cl;
        r->left = hi->cl;
        r->phase = r->left > 0 ? PH_LENGTH : PH_DONE;
    } else {
        r->keep_alive = 0;
        r->phase = PH_TO_EOF;
    }
}

/* Reads a complete head at buf[0, end), then drops it from buf. */
static int read_head(mb_h1_resp *r, char *buf, size_t *len, size_t end)
{
    head_info hi = {0};
    size_t at = 0, next = 0;
    long l = line_at(buf, end, &next);

    if (status_line(r, buf, (size_t)l) != 0)
        return MB_H1_ERROR;
    at = next;
    while ((l = line_at(buf + at, end - at, &next)) > 0) {
        if (header_line(r, buf + at, (size_t)l, &hi) != 0)
            return MB_H1_ERROR;
        at += next;
    }
    if (hi.te_seen && !hi.chunked_last)
        return fail(r, "a transfer coding other than chunked");
    if (*len > end)
        memmove(buf, buf + end, *len - end);
    *len -= end;
    r->scan = 0;
    if (r->status == 101)
        return fail(r, "101 Switching Protocols, which was not asked for");
    if (r->status < 200) { /* interim: the final response follows */
        r->retry_after[0] = '\0';
        return MB_H1_MORE;
    }
    framing(r, &hi);
    r->head_done = 1;
    return MB_H1_MORE;
}

/* A chunk-size line at buf[pos, len): hex digits, extensions ignored. */
static int chunk_size(mb_h1_resp *r, const char *buf, size_t len)
{
    size_t next = 0, i = 0;
    long l = line_at(buf + r->pos, len - r->pos, &next);
    const char *s = buf + r->pos;
    unsigned long long size = 0;

    /* The same limit on a line still arriving as on a whole one, or whether a reply is read
     * would depend on how the network cut it: more than MAX_CHUNK_LINE bytes before the line
     * end (the last may be the CR of its CRLF). */
    if (l < 0)
        return len - r->pos > MAX_CHUNK_LINE + 1 ? fail(r, "a chunk-size line too long")
                                                 : MB_H1_MORE;
    if (l > MAX_CHUNK_LINE)
        return fail(r, "a chunk-size line too long");
    for (; i < (size_t)l && i < 16; i++) {
        int c = (unsigned char)s[i], d;
        if (is_digit(c))
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            break;
        size = size * 16 + (unsigned)d;
    }
    if (i == 0 || i >= 16)
        return fail(r, "a chunk size that is not a hex number");
    while (i < (size_t)l && blank((unsigned char)s[i]))
        i++;
    if (i < (size_t)l && s[i] != ';')
        return fail(r, "junk after a chunk size");
    r->pos += next;
    r->left = size;
    r->phase = size > 0 ? PH_CDATA : PH_TRAILER;
    return 1;
}

/* One step of the body; returns 1 when it moved, MB_H1_MORE when it needs
 * bytes, MB_H1_ERROR. */
static int body_step(mb_h1_resp *r, char *buf, size_t len)
{
    size_t avail = len - r->pos, n, next = 0;
    long l;

    switch (r->phase) {
    case PH_LENGTH:
    case PH_CDATA:
        n = avail < r->left ? avail : (size_t)r->left;
        if (n == 0)
            return MB_H1_MORE;
        if (r->pos != r->out)
            memmove(buf + r->out, buf + r->pos, n);
        r->out += n;
        r->pos += n;
        r->left -= n;
        if (r->left == 0)
            r->phase = r->phase == PH_LENGTH ? PH_DONE : PH_CCRLF;
        return 1;
    case PH_TO_EOF: r->out = r->pos = len; return MB_H1_MORE;
    case PH_CSIZE: return chunk_size(r, buf, len);
    case PH_CCRLF:
        if (avail == 0 || (buf[r->pos] == '\r' && avail < 2))
            return MB_H1_MORE;
        if (buf[r->pos] == '\n')
            r->pos += 1;
        else if (buf[r->pos] == '\r' && buf[r->pos + 1] == '\n')
            r->pos += 2;
        else
            return fail(r, "a chunk longer than its size");
        r->phase = PH_CSIZE;
        return 1;
    case PH_TRAILER:
        l = line_at(buf + r->pos, avail, &next);
        if (l < 0)
            return avail > MB_H1_MAX_HEAD ? fail(r, "a trailer section too large") : MB_H1_MORE;
        r->left += next;
        if (r->left > MB_H1_MAX_HEAD)
            return fail(r, "a trailer section too large");
        r->pos += next;
        if (l == 0)
            r->phase = PH_DONE;
        return 1;
    default: return MB_H1_MORE;
    }
}

/* Drops what was read after the body so far: new bytes go right after it. */
static void compact(mb_h1_resp *r, char *buf, size_t *len)
{
    if (r->pos == r->out)
        return;
    if (*len > r->pos)
        memmove(buf + r->out, buf + r->pos, *len - r->pos);
    *len = r->out + (*len - r->pos);
    r->pos = r->out;
}

static int closed_early(mb_h1_resp *r, size_t len)
{
    r->closed_early = 1;
    if (!r->head_done)
        return fail(r, len == 0 ? "the connection closed without a reply"
                                : "the connection closed inside the response head");
    return fail(r, "the connection closed before the end of the body");
}

int mb_h1_parse(mb_h1_resp *r, char *buf, size_t *len, int eof)
{
    int rc = 1;

    if (r->err != NULL)
        return MB_H1_ERROR;
    while (!r->head_done) {
        size_t end = find_head_end(r, buf, *len);
        if (end == 0 ? *len > MB_H1_MAX_HEAD : end > MB_H1_MAX_HEAD) /* arriving or whole */
            return fail(r, "a response head larger than 64 kB");
        if (end == 0)
            return eof ? closed_early(r, *len) : MB_H1_MORE;
        if (read_head(r, buf, len, end) != MB_H1_MORE)
            return MB_H1_ERROR;
    }
    while (r->phase != PH_DONE && rc == 1)
        rc = body_step(r, buf, *len);
    if (rc == MB_H1_ERROR)
        return MB_H1_ERROR;
    if (r->phase == PH_DONE) {
        if (*len > r->pos)
            r->keep_alive = 0; /* bytes beyond the response: the connection is out of step */
        return MB_H1_DONE;
    }
    compact(r, buf, len);
    if (!eof)
        return MB_H1_MORE;
    if (r->phase == PH_TO_EOF) {
        r->phase = PH_DONE;
        return MB_H1_DONE;
    }
    return closed_early(r, *len);
}

/* ------------------------------------------------------------------ */
/* Dates                                                              */
/* ------------------------------------------------------------------ */

static const char *const MONTHS[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
static const char *const DAYS[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                   "Friday", "Saturday", "Sunday"};

/* n digits at *p into *v; advances *p. */
static int num(const char **p, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (!is_digit((unsigned char)(*p)[i]))
            return -1;
        *v = *v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return 0;
}

static int lit(const char **p, const char *s)
{
    size_t n = strlen(s);
    if (strncmp(*p, s, n) != 0)
        return -1;
    *p += n;
    return 0;
}

static int month(const char **p, int *m)
{
    for (int i = 0; i < 12; i++) {
        if (strncmp(*p, MONTHS[i], 3) == 0) {
            *m = i;
            *p += 3;
            return 0;
        }
    }
    return -1;
}

/* A day name, short (3 letters) or long; *len says which matched. */
static int day_name(const char *p, size_t *len)
{
    for (int i = 0; i < 7; i++) {
        size_t n = strlen(DAYS[i]);
        if (strncmp(p, DAYS[i], n) == 0 && !is_alpha((unsigned char)p[n])) {
            *len = n;
            return 0;
        }
        if (strncmp(p, DAYS[i], 3) == 0 && !is_alpha((unsigned char)p[3])) {
            *len = 3;
            return 0;
        }
    }
    return -1;
}

static int clock_part(const char **p, struct tm *tm)
{
    return num(p, 2, &tm->tm_hour) || lit(p, ":") || num(p, 2, &tm->tm_min) || lit(p, ":") ||
                   num(p, 2, &tm->tm_sec)
               ? -1
               : 0;
}

/* A two-digit year, as RFC 9110 section 5.6.7 says: more than 50 years ahead
 * of now means the century before. */
static int full_year(int yy)
{
    time_t now = time(NULL);
    struct tm t;
    int cy, y;

    gmtime_r(&now, &t);
    cy = t.tm_year + 1900;
    y = cy - cy % 100 + yy;
    return y > cy + 50 ? y - 100 : y;
}

int mb_h1_date(const char *s, time_t *out)
{
    struct tm tm = {0}, back;
    const char *p = s;
    size_t dn;
    int y = 0, mday = 0, m = 0;
    time_t t;

    if (day_name(p, &dn) != 0)
        return -1;
    p += dn;
    if (*p == ',' && dn == 3) { /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
        p++;
        if (lit(&p, " ") || num(&p, 2, &mday) || lit(&p, " ") || month(&p, &m) || lit(&p, " ") ||
            num(&p, 4, &y) || lit(&p, " ") || clock_part(&p, &tm) || lit(&p, " GMT"))
            return -1;
    } else if (*p == ',') { /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
        p++;
        if (lit(&p, " ") || num(&p, 2, &mday) || lit(&p, "-") || month(&p, &m) || lit(&p, "-") ||
            num(&p, 2, &y) || lit(&p, " ") || clock_part(&p, &tm) || lit(&p, " GMT"))
            return -1;
        y = full_year(y);
    } else if (*p == ' ' && dn == 3) { /* asctime: Sun Nov  6 08:49:37 1994 */
        p++;
        if (month(&p, &m) || lit(&p, " "))
            return -1;
        if (*p == ' ') /* a day under 10 is padded with a space */
            p++;
        if (num(&p, *p != '\0' && is_digit((unsigned char)p[1]) ? 2 : 1, &mday) || lit(&p, " ") ||
            clock_part(&p, &tm) || lit(&p, " ") || num(&p, 4, &y))
            return -1;
    } else {
        return -1;
    }
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p != '\0' || y < 1900 || mday < 1 || mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = m;
    tm.tm_mday = mday;
    back = tm;
    t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != back.tm_mday) /* 31 Feb rolls over: not a date */
        return -1;
    *out = t;
    return 0;
}
