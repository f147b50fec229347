/* mb_http1.h: the HTTP/1.1 wire format a client needs (RFC 9110/9112): an
 * absolute URL split into what the request line and the Host header carry, an
 * incremental response parser, and HTTP-dates.  No I/O, no allocation. */
#ifndef MB_HTTP1_H
#define MB_HTTP1_H

#include <stddef.h>
#include <time.h>

/* ---- URLs ---- */

/* An absolute http:// or https:// URL, split in place: the pointers are
 * borrowed from the text given to mb_h1_url_split. */
typedef struct mb_h1_url {
    int tls;          /* https */
    const char *host; /* an IPv6 literal without its brackets */
    size_t host_len;
    int ipv6;         /* the host was [bracketed] */
    int port;         /* the explicit port, else 80 or 443 */
    int port_given;   /* an explicit port other than the scheme's default */
    const char *path; /* "/" when the URL has none (then static) */
    size_t path_len;
    const char *query; /* after '?', NULL when there is none */
    size_t query_len;
} mb_h1_url;

/* Splits url.  Accepts the scheme in any case, a host name, an IPv4 or a
 * [IPv6] literal, a port 1-65535; drops a fragment.  Refuses credentials in
 * the URL, bytes outside printable ASCII, an empty host and other schemes.
 * Returns 0, or -1 with *why set (static text). */
int mb_h1_url_split(const char *url, mb_h1_url *u, const char **why);

/* ---- responses ---- */

enum { MB_H1_MORE = 0, MB_H1_DONE = 1, MB_H1_ERROR = -1 };

#define MB_H1_MAX_HEAD (64 * 1024) /* a response head (or trailer section) larger is refused */

/* One response being read.  Zero it with mb_h1_resp_init before the first
 * byte, and again for the next response on the connection. */
typedef struct mb_h1_resp {
    /* the response: valid once head_done */
    int head_done;
    int status;
    int keep_alive;       /* the connection may carry another request after this one */
    long long length;     /* Content-Length, -1 when none (chunked, or to the close) */
    char retry_after[64]; /* the Retry-After value, "" when none */
    size_t out;           /* body bytes so far: buf[0, out) once head_done */
    const char *err;      /* why, after MB_H1_ERROR (static text) */
    int closed_early;     /* the error is the peer closing before the end */
    /* parser state */
    int phase;
    int chunked;
    int minor;               /* HTTP/1.<minor> */
    unsigned long long left; /* bytes still to come of the body or of this chunk */
    size_t pos;              /* first byte not yet read */
    size_t scan;             /* where the search for the end of the head resumes */
} mb_h1_resp;

void mb_h1_resp_init(mb_h1_resp *r);

/* Reads what arrived.  buf holds *len bytes: the body decoded so far at
 * [0, r->out), then bytes not yet read.  The parser moves bytes within buf
 * and lowers *len as it drops the head and chunk framing, so the caller
 * appends new bytes at buf + *len.  eof: the peer closed the connection.
 * Interim (1xx) responses are skipped.  Returns MB_H1_MORE (needs more bytes),
 * MB_H1_DONE (the body is buf[0, r->out); bytes after the response clear
 * keep_alive) or MB_H1_ERROR (r->err says why). */
int mb_h1_parse(mb_h1_resp *r, char *buf, size_t *len, int eof);

/* ---- dates ---- */

/* An HTTP-date (IMF-fixdate, or the obsolete RFC 850 and asctime forms) as
 * seconds since the epoch.  Trailing blanks are allowed.  Returns 0, or -1
 * when s is no such date. */
int mb_h1_date(const char *s, time_t *out);

#endif
