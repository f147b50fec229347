/* mb_http.c: an HTTP/1.1 client on a libevent loop, OpenSSL for https.
 *
 * Why not libcurl (which this module used until the seventh performance
 * round): measured with callgrind on the throughput bench, libcurl 7.88 spent
 * about 96,000 instructions of its own per request, a third of the worker's
 * instructions, most of them building the request through its printf one byte
 * at a time and parsing every URL twice; libcurl 8.14 (bookworm-backports)
 * measured no better.  What the worker needs of HTTP is narrow: HTTP/1.1 with
 * kept-alive connections to a few API origins, no redirects, cookies, proxies
 * or authentication schemes.  That is this file and mb_http1.c.
 *
 * A request (mb_http_xfer) waits in a FIFO until one of max_active slots is
 * free; then it builds its bytes (signed then, so X-Sdk-Date is fresh) and
 * takes the most recently used idle connection to its origin (scheme, host,
 * port), or opens one: resolve (evdns, numeric hosts directly), connect
 * (every address in turn), TLS handshake.  A connection carries one request
 * at a time; the reply is read straight into the request's buffer and parsed
 * there.  A connection whose reply was complete and which both sides keep
 * alive goes back to its origin's idle list, or to a request waiting for a
 * connection to that origin (max_host_connections).
 *
 * Callbacks: a request's callback runs from the loop, never inside
 * mb_http_request or mb_http_cancel.  A failure found while starting (a
 * refused connect, a resolve that answered at once) is put on the "late"
 * list and reported by pump, from the loop; responses are reported by the
 * read handler.  After a report the handler returns at once: the callback
 * may have started, cancelled or closed anything.
 *
 * A request sent on a kept-alive connection that dies before the first byte
 * of the reply is sent again, once, on a new connection: the server closed
 * the idle connection as we reused it (curl and browsers do the same). */
#include "mb_http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mb_http1.h"
#include "mb_jscan.h"
#include "mb_list.h"
#include "mb_sign.h"

#define MB_HTTP_MAX_BODY (32L * 1024 * 1024) /* a response larger than this is refused */
#define MB_HTTP_EXCERPT  200                 /* body bytes quoted in an error text */
/* A reply buffer starts at this size (most replies are 1-3 kB) and a read always has at
 * least READ_MIN bytes of room; a Content-Length reserves its body at once, at most
 * RESERVE_MAX ahead, so a length the server never sends holds little. */
#define READ_FIRST  4096
#define READ_MIN    1024
#define RESERVE_MAX (64 * 1024)
#define RAW_MAX     ((size_t)MB_HTTP_MAX_BODY + MB_H1_MAX_HEAD + 2) /* body and framing */

#define ORIGIN_BUCKETS 256 /* origins: the APIs, and one Kubernetes API per cluster */
#define MAX_ADDRS      8   /* addresses of a host tried in turn */
#define MAX_HDRS       9   /* header lines a request sends: see build_request */

typedef struct conn conn;
typedef struct origin origin;

/* The lists (mb_list.h): a transfer is on one queue list (queued, active or late)
 * through ql and, while it waits for a connection, on its origin's waiting list
 * through wl; an idle connection is on its origin's list through ol and on the
 * client's (least recently used at the tail) through gl. */
#define XFER(k)   MB_LIST_OWNER(k, mb_http_xfer, ql)
#define WAITER(k) MB_LIST_OWNER(k, mb_http_xfer, wl)
#define OCONN(k)  MB_LIST_OWNER(k, conn, ol)
#define GCONN(k)  MB_LIST_OWNER(k, conn, gl)

struct origin {
    mb_http *h;
    origin *next; /* hash chain */
    unsigned bucket;
    char *host; /* as in the URL: resolved, sent as SNI, checked in the certificate */
    int port, tls;
    int literal; /* host is an IP address: addr holds it */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t nconns;   /* open or opening */
    mb_list idle;    /* most recently used at the head */
    mb_list waiting; /* transfers waiting for a connection (max_host_connections) */
    int kicking;     /* on the client's kick list, or being served from it */
    origin *kick_next;
};

enum { C_RESOLVE, C_CONNECT, C_TLS, C_BUSY, C_IDLE };

/* The resolver, made for the first host name.  evdns answers a cancelled
 * lookup later, from the loop, so answers go to a token that outlives its
 * connection, and the resolver outlives the client while lookups are out. */
typedef struct dns_ctx {
    struct evdns_base *base;
    size_t pending; /* lookups not answered yet */
    int orphaned;   /* the client is gone: the last answer frees this */
} dns_ctx;

typedef struct dns_token {
    conn *c; /* NULL once the connection closed */
    dns_ctx *ctx;
    struct evdns_getaddrinfo_request *req;
} dns_token;

struct conn {
    mb_http *h;
    origin *o;
    evutil_socket_t fd;
    SSL *ssl;
    int state;
    struct event ev;  /* socket readiness, EV_PERSIST */
    short evflags;    /* what ev waits for; 0 = not added */
    struct event tmr; /* the connect time (resolve, connect, handshake) */
    int tmr_on;
    mb_http_xfer *x;    /* the transfer it carries, NULL when idle */
    unsigned long uses; /* responses it carried to the end */
    dns_token *dns;
    int in_start; /* inside evdns_getaddrinfo: an answer given at once waits */
    int dns_result;
    struct sockaddr_storage *addrs; /* while connecting: where to try, in order */
    int naddrs, next_addr;
    int last_err; /* errno of the last connect that failed */
    mb_link ol, gl;
};

enum { X_QUEUED, X_ACTIVE, X_LATE, X_COMPLETING };

struct mb_http {
    struct event_base *base;
    dns_ctx *dns;          /* made for the first host name to resolve */
    SSL_CTX *tls;          /* made for the first https connection */
    struct event *pump_ev; /* starts queued transfers and reports late ones, from the loop */
    long connect_timeout_ms;
    long timeout_ms;
    long max_active;
    long max_idle;
    long host_max;
    char *ca_file;
    char *ak;
    char *sk;
    char *user_agent;
    mb_list queued; /* accepted, waiting for a slot */
    mb_list active; /* holding a slot */
    mb_list late;   /* failed while starting: reported from the loop */
    mb_list idle;   /* every idle connection, least recently used at the tail */
    origin *origins[ORIGIN_BUCKETS];
    origin *kick; /* origins whose waiting transfers may now open a connection */
    mb_http_counters st;
};

struct mb_http_xfer {
    mb_http *h;
    conn *c;   /* the connection carrying it */
    origin *o; /* while on o's waiting list */
    mb_http_cb *cb;
    void *arg;
    int state;
    int with_body;
    int retried; /* sent again after a kept-alive connection died under it */
    int tls, port;
    long timeout_ms;
    mb_http_start_hook *on_start; /* NULL = always send */
    void *start_arg;
    struct event tmr; /* the request's total time, from when it takes a slot */
    int tmr_on;
    const char *bad_url; /* why the URL cannot be used (static), or NULL */
    /* all of these point into one allocation, strs */
    char *strs;
    const char *method, *host, *hosthdr, *path, *query, *ctype, *accept, *traceparent;
    const char *what; /* "GET /path" for error texts */
    const char *body;
    size_t body_len;
    char *req; /* the request's bytes, head and body */
    size_t req_len, req_off;
    char *resp; /* the reply as read, then its body (NUL-terminated when reported) */
    size_t resp_len, resp_cap;
    size_t got; /* bytes read on the current connection */
    mb_h1_resp p;
    long retry_after_ms;
    mb_http_fail fail; /* a failed transfer: why, and the text (new) */
    char *fail_msg;
    mb_link ql, wl;
};

/* ------------------------------------------------------------------ */
/* Classification                                                     */
/* ------------------------------------------------------------------ */

static mb_status classify_fail(mb_http_fail f, const char **code)
{
    switch (f) {
    case MB_HTTP_FAIL_NONE: *code = ""; return MB_OK;
    case MB_HTTP_FAIL_TIMEOUT: *code = "Timeout"; return MB_AGAIN;
    case MB_HTTP_FAIL_CONNECT: *code = "ConnectFailed"; return MB_AGAIN;
    case MB_HTTP_FAIL_RESOLVE: *code = "ResolveFailed"; return MB_AGAIN;
    case MB_HTTP_FAIL_CONNECTION: *code = "ConnectionError"; return MB_AGAIN;
    case MB_HTTP_FAIL_PROTOCOL:
        /* a proxy or a server in trouble: let the step's deadline decide */
        *code = "ProtocolError";
        return MB_AGAIN;
    case MB_HTTP_FAIL_TLS_HANDSHAKE:
        /* a handshake cut by the network is worth another try; a handshake
         * the peer refuses on policy fails again within the step deadline */
        *code = "TLSHandshake";
        return MB_AGAIN;
    case MB_HTTP_FAIL_TLS: *code = "TLSError"; return MB_PERM;
    case MB_HTTP_FAIL_BAD_URL: *code = "BadURL"; return MB_PERM;
    case MB_HTTP_FAIL_TOO_LARGE: *code = "ResponseTooLarge"; return MB_PERM;
    case MB_HTTP_FAIL_NOMEM: *code = "OutOfMemory"; return MB_FATAL;
    }
    *code = "TransportError";
    return MB_AGAIN;
}

static mb_status classify_http(long s, char *code, size_t codelen)
{
    mb_status st;
    const char *name = NULL;

    if (s >= 200 && s < 300)
        st = MB_OK;
    else if (s == 429)
        st = MB_AGAIN, name = "TooManyRequests";
    else if (s == 409)
        st = MB_AGAIN,
        name = "Conflict"; /* a conflict is transient: the caller observes and retries */
    else if (s == 404)
        st = MB_PERM, name = "NotFound";
    else if (s == 408 || (s >= 500 && s < 600))
        st = MB_AGAIN;
    else
        st = MB_PERM; /* other 4xx; 1xx/3xx: we neither expect nor follow them */
    if (st == MB_OK)
        snprintf(code, codelen, "%s", "");
    else if (name != NULL)
        snprintf(code, codelen, "%s", name);
    else
        snprintf(code, codelen, "HTTP%ld", s);
    return st;
}

mb_status mb_http_classify(long http_status, mb_http_fail fail, char *code, size_t codelen)
{
    char dummy[16];
    const char *fname = NULL;
    mb_status st;

    if (code == NULL || codelen == 0) {
        code = dummy;
        codelen = sizeof(dummy);
    }
    if (http_status != 0)
        return classify_http(http_status, code, codelen);
    st = classify_fail(fail, &fname);
    snprintf(code, codelen, "%s", fname);
    return st;
}

long mb_http_retry_after_ms(const char *value, time_t now)
{
    const char *p = value;
    const char *end;
    long secs = 0;
    time_t t;

    if (value == NULL)
        return -1;
    while (*p == ' ' || *p == '\t')
        p++;
    end = p;
    while (isdigit((unsigned char)*end))
        end++;
    if (end > p) {
        const char *q = end;
        while (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n')
            q++;
        if (*q != '\0')
            return -1;
        if (end - p > 7) /* more than ~115 days: nonsense, refuse rather than overflow */
            return -1;
        for (const char *d = p; d < end; d++)
            secs = secs * 10 + (*d - '0');
        return secs * 1000;
    }
    if (mb_h1_date(p, &t) != 0)
        return -1;
    if (t <= now)
        return 0;
    if (t - now > 10000000) /* same bound as the delay-seconds form */
        return -1;
    return (long)(t - now) * 1000;
}

/* ------------------------------------------------------------------ */
/* Error texts                                                        */
/* ------------------------------------------------------------------ */

/* Copies a printable excerpt of a body into out. */
static void excerpt(const char *body, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    if (outlen == 0)
        return;
    for (size_t i = 0; i < len && n + 4 < outlen && i < MB_HTTP_EXCERPT; i++) {
        unsigned char ch = (unsigned char)body[i];
        out[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : ' ';
    }
    if (len > MB_HTTP_EXCERPT && n + 4 < outlen) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';
}

/* Fills e for a non-2xx response: the body's own code and message when it
 * is a cloud error ({"error_code","error_msg"}, ASM's errorCode/errorMsg,
 * VPC v1's code/message) or a Kubernetes Status, else an excerpt. */
static void http_error(mb_error *e, const mb_http_xfer *x, const char *body, size_t len,
                       long status)
{
    /* pairs of code and message, the first pair with either as a string wins; then "code" */
    static const char *const paths[] = {"error_code", "error_msg", "errorCode", "errorMsg",
                                        "reason",     "message",   "code"};
    char code[64];
    mb_status st = mb_http_classify(status, MB_HTTP_FAIL_NONE, code, sizeof(code));
    char *bcode = NULL, *bmsg = NULL;
    char ex[MB_HTTP_EXCERPT + 8];
    const char *msg;
    mb_jval v[7];
    int oom = 0;

    if (len > 0 && mb_jscan(body, len, paths, 7, v) == 0) {
        int i = 0;
        while (i < 6 && v[i].type != MB_JSTRING && v[i + 1].type != MB_JSTRING)
            i += 2;
        bcode = mb_jval_strdup(&v[i], &oom);
        bmsg = i < 6 ? mb_jval_strdup(&v[i + 1], &oom) : NULL;
    }
    if (bcode != NULL && bcode[0] != '\0')
        snprintf(code, sizeof(code), "%s", bcode);
    if (bmsg == NULL)
        excerpt(body, len, ex, sizeof(ex));
    msg = bmsg ? bmsg : ex;
    mb_error_set(e, st, code, "%s: HTTP %ld: %s", x->what, status, msg[0] ? msg : "(empty body)");
    e->http_status = status;
    if (status == 429 || status == 503)
        e->retry_after_ms = x->retry_after_ms;
    free(bcode);
    free(bmsg);
}

/* ------------------------------------------------------------------ */
/* Lists                                                              */
/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* Origins                                                            */
/* ------------------------------------------------------------------ */

static unsigned origin_hash(const char *host, int port, int tls)
{
    unsigned v = 2166136261u;
    for (const char *p = host; *p; p++)
        v = (v ^ (unsigned char)tolower((unsigned char)*p)) * 16777619u;
    v = (v ^ (unsigned)port) * 16777619u;
    return (v ^ (unsigned)tls) % ORIGIN_BUCKETS;
}

/* The origin of x, made on first use.  Borrowed; NULL on out of memory. */
static origin *origin_get(mb_http *h, const mb_http_xfer *x)
{
    unsigned b = origin_hash(x->host, x->port, x->tls);
    size_t hl = strlen(x->host);
    origin *o;

    for (o = h->origins[b]; o != NULL; o = o->next) {
        if (o->port == x->port && o->tls == x->tls && strcasecmp(o->host, x->host) == 0)
            return o;
    }
    o = calloc(1, sizeof(*o) + hl + 1);
    if (o == NULL)
        return NULL;
    o->h = h;
    o->host = (char *)(o + 1);
    memcpy(o->host, x->host, hl + 1);
    o->port = x->port;
    o->tls = x->tls;
    if (inet_pton(AF_INET, o->host, &((struct sockaddr_in *)&o->addr)->sin_addr) == 1) {
        struct sockaddr_in *s = (struct sockaddr_in *)&o->addr;
        s->sin_family = AF_INET;
        s->sin_port = htons((uint16_t)o->port);
        o->addrlen = sizeof(*s);
        o->literal = 1;
    } else if (inet_pton(AF_INET6, o->host, &((struct sockaddr_in6 *)&o->addr)->sin6_addr) == 1) {
        struct sockaddr_in6 *s = (struct sockaddr_in6 *)&o->addr;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons((uint16_t)o->port);
        o->addrlen = sizeof(*s);
        o->literal = 1;
    }
    o->bucket = b;
    o->next = h->origins[b];
    h->origins[b] = o;
    return o;
}

/* Frees o once nothing uses it. */
static void origin_put(origin *o)
{
    origin **pp;

    if (o->nconns > 0 || o->waiting.n > 0 || o->kicking)
        return;
    for (pp = &o->h->origins[o->bucket]; *pp != o; pp = &(*pp)->next)
        ;
    *pp = o->next;
    free(o);
}

/* ------------------------------------------------------------------ */
/* Connections                                                        */
/* ------------------------------------------------------------------ */

static void on_conn(evutil_socket_t fd, short what, void *arg);
static void xfer_fail(mb_http_xfer *x, mb_http_fail f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_some(conn *c);

/* Waits on the socket for flags (EV_READ, EV_WRITE, both, or 0 for nothing);
 * a no-op when that is what it waits for already.  Returns 0 or -1. */
static int conn_want(conn *c, short flags)
{
    if (c->evflags == flags)
        return 0;
    if (c->evflags != 0)
        event_del(&c->ev);
    c->evflags = 0;
    if (flags == 0)
        return 0;
    if (event_assign(&c->ev, c->h->base, c->fd, (short)(flags | EV_PERSIST), on_conn, c) != 0 ||
        event_add(&c->ev, NULL) != 0)
        return -1;
    c->evflags = flags;
    return 0;
}

static void kick(origin *o)
{
    mb_http *h = o->h;

    if (o->kicking || o->waiting.n == 0)
        return;
    o->kicking = 1;
    o->kick_next = h->kick;
    h->kick = o;
    event_active(h->pump_ev, 0, 0);
}

/* Closes c and frees it.  Its transfer, if any, must have been taken off. */
static void conn_close(conn *c)
{
    mb_http *h = c->h;
    origin *o = c->o;

    if (c->state == C_IDLE) {
        mb_list_del(&o->idle, &c->ol);
        mb_list_del(&h->idle, &c->gl);
    }
    if (c->dns != NULL) {
        dns_token *t = c->dns;
        c->dns = NULL;
        t->c = NULL; /* the token is freed when evdns answers it */
        evdns_getaddrinfo_cancel(t->req);
    }
    conn_want(c, 0);
    if (c->tmr_on)
        event_del(&c->tmr);
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    free(c->addrs);
    free(c);
    o->nconns--;
    kick(o); /* a transfer waiting for a connection to o may open one now */
    origin_put(o);
}

static conn *conn_new(mb_http *h, origin *o)
{
    conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->h = h;
    c->o = o;
    c->fd = -1;
    o->nconns++;
    h->st.new_conns++;
    return c;
}

static void conn_assign(conn *c, mb_http_xfer *x)
{
    c->x = x;
    x->c = c;
    x->got = 0;
    x->resp_len = 0;
    mb_h1_resp_init(&x->p);
}

/* c finished a response and stays open: to the next transfer waiting for its
 * origin, else idle (at most max_idle idle connections, the oldest closed). */
static void conn_release(conn *c)
{
    mb_http *h = c->h;
    origin *o = c->o;

    if (o->waiting.head != NULL) {
        mb_http_xfer *x = WAITER(o->waiting.head);
        mb_list_del(&o->waiting, &x->wl);
        x->o = NULL;
        conn_assign(c, x);
        send_some(c);
        return;
    }
    c->state = C_IDLE;
    if (conn_want(c, EV_READ) != 0) { /* an idle socket is watched for the peer closing it */
        c->state = C_BUSY;
        conn_close(c);
        return;
    }
    mb_list_push_head(&o->idle, &c->ol);
    mb_list_push_head(&h->idle, &c->gl);
    while (h->idle.n > (size_t)h->max_idle)
        conn_close(GCONN(h->idle.tail));
}

/* The most recently used idle connection to o, taken off the idle lists. */
static conn *idle_take(origin *o)
{
    conn *c = OCONN(o->idle.head);

    if (c == NULL)
        return NULL;
    mb_list_del(&o->idle, &c->ol);
    mb_list_del(&o->h->idle, &c->gl);
    c->state = C_BUSY;
    return c;
}

/* ------------------------------------------------------------------ */
/* Socket and TLS I/O                                                 */
/* ------------------------------------------------------------------ */

enum { IO_AGAIN = -1, IO_EOF = -2, IO_ERR = -3 };

/* OpenSSL's text for an error code: it has none for some. */
static const char *ssl_reason(unsigned long e)
{
    const char *s = e ? ERR_reason_error_string(e) : NULL;
    return s ? s : "error";
}

/* After an SSL_read/SSL_write that returned ret <= 0: IO_AGAIN with *want,
 * IO_EOF, or IO_ERR with why. */
static int tls_result(conn *c, int ret, short *want, char *why, size_t whylen)
{
    int e = SSL_get_error(c->ssl, ret);
    unsigned long qe = ERR_peek_error();

    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want = e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE;
        return IO_AGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return IO_EOF;
    if (e == SSL_ERROR_SYSCALL && qe == 0) {
        if (ret == 0 || errno == 0)
            return IO_EOF;
        snprintf(why, whylen, "%s", strerror(errno));
        return IO_ERR;
    }
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    /* a close without close_notify: the body's framing tells whether it was complete */
    if (ERR_GET_REASON(qe) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return IO_EOF;
#endif
    snprintf(why, whylen, "TLS: %s", ssl_reason(qe));
    return IO_ERR;
}

/* Bytes written (> 0), or IO_AGAIN with *want, or IO_ERR with why. */
static long io_write(conn *c, const char *p, size_t n, short *want, char *why, size_t whylen)
{
    int k;

    if (c->ssl == NULL) {
        ssize_t s = send(c->fd, p, n, MSG_NOSIGNAL);
        if (s > 0)
            return (long)s;
        if (s < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            *want = EV_WRITE;
            return IO_AGAIN;
        }
        snprintf(why, whylen, "%s", s < 0 ? strerror(errno) : "nothing written");
        return IO_ERR;
    }
    ERR_clear_error();
    k = SSL_write(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (k > 0)
        return k;
    k = tls_result(c, k, want, why, whylen);
    if (k == IO_EOF) {
        snprintf(why, whylen, "the connection closed");
        return IO_ERR;
    }
    return k;
}

/* Bytes read (> 0), or IO_AGAIN with *want, IO_EOF, or IO_ERR with why. */
static long io_read(conn *c, char *p, size_t n, short *want, char *why, size_t whylen)
{
    int k;

    if (c->ssl == NULL) {
        ssize_t s = recv(c->fd, p, n, 0);
        if (s > 0)
            return (long)s;
        if (s == 0)
            return IO_EOF;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
            *want = EV_READ;
            return IO_AGAIN;
        }
        snprintf(why, whylen, "%s", strerror(errno));
        return IO_ERR;
    }
    ERR_clear_error();
    k = SSL_read(c->ssl, p, n > INT_MAX ? INT_MAX : (int)n);
    if (k > 0)
        return k;
    return tls_result(c, k, want, why, whylen);
}

/* The client's TLS context, made on first use.  Borrowed; NULL with why. */
static SSL_CTX *tls_ctx(mb_http *h, char *why, size_t whylen)
{
    SSL_CTX *ctx;
    int ok;

    if (h->tls != NULL)
        return h->tls;
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(why, whylen, "TLS: cannot make a context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* an idle connection keeps no read or write buffer: a thousand kept alive
     * would otherwise hold 34 kB each */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    ERR_clear_error();
    if (h->ca_file != NULL)
        ok = SSL_CTX_load_verify_locations(ctx, h->ca_file, NULL) == 1;
    else
        ok = SSL_CTX_set_default_verify_paths(ctx) == 1;
    if (!ok) {
        snprintf(why, whylen, "TLS: cannot read the CA %s: %s", h->ca_file ? h->ca_file : "store",
                 ssl_reason(ERR_peek_last_error()));
        SSL_CTX_free(ctx);
        return NULL; /* tried again at the next connection: the file may appear */
    }
    h->tls = ctx;
    return ctx;
}

/* ------------------------------------------------------------------ */
/* Opening a connection                                               */
/* ------------------------------------------------------------------ */

static void fail_conn(conn *c, mb_http_fail f, const char *what)
{
    if (c->x != NULL)
        xfer_fail(c->x, f, "%s", what);
    else
        conn_close(c);
}

static void tls_step(conn *c)
{
    char why[256] = "";
    int r, e;
    long vr;

    ERR_clear_error();
    r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        if (c->tmr_on) {
            event_del(&c->tmr);
            c->tmr_on = 0;
        }
        c->state = C_BUSY;
        send_some(c);
        return;
    }
    e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        if (conn_want(c, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE) != 0)
            fail_conn(c, MB_HTTP_FAIL_NOMEM, "cannot watch the socket");
        return;
    }
    vr = SSL_get_verify_result(c->ssl);
    if (vr != X509_V_OK) {
        snprintf(why, sizeof(why), "TLS: the certificate of %s did not verify: %s", c->o->host,
                 X509_verify_cert_error_string(vr));
        fail_conn(c, MB_HTTP_FAIL_TLS, why);
        return;
    }
    if (tls_result(c, r, &(short){0}, why, sizeof(why)) == IO_EOF || why[0] == '\0')
        snprintf(why, sizeof(why), "TLS: the connection closed during the handshake");
    fail_conn(c, MB_HTTP_FAIL_TLS_HANDSHAKE, why);
}

static void tls_start(conn *c)
{
    char why[256] = "";
    SSL_CTX *ctx = tls_ctx(c->h, why, sizeof(why));
    origin *o = c->o;
    int ok;

    if (ctx == NULL) {
        fail_conn(c, MB_HTTP_FAIL_TLS, why);
        return;
    }
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        fail_conn(c, MB_HTTP_FAIL_NOMEM, "TLS: cannot make a session");
        return;
    }
    if (o->literal) /* an address: checked against the certificate's IP names; no SNI */
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), o->host) == 1;
    else
        ok = SSL_set_tlsext_host_name(c->ssl, o->host) == 1 && SSL_set1_host(c->ssl, o->host) == 1;
    if (!ok) {
        fail_conn(c, MB_HTTP_FAIL_TLS, "TLS: cannot set the name to verify");
        return;
    }
    SSL_set_connect_state(c->ssl);
    c->state = C_TLS;
    tls_step(c);
}

static void connected(conn *c)
{
    free(c->addrs);
    c->addrs = NULL;
    if (c->o->tls) {
        tls_start(c);
        return;
    }
    if (c->tmr_on) {
        event_del(&c->tmr);
        c->tmr_on = 0;
    }
    c->state = C_BUSY;
    send_some(c);
}

static socklen_t sa_len(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* Connects to the next address; after the last one failed, fails c. */
static void connect_next(conn *c)
{
    char why[320];
    int one = 1;

    while (c->next_addr < c->naddrs) {
        const struct sockaddr_storage *ss = &c->addrs[c->next_addr++];
        evutil_socket_t fd =
            socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
        if (fd < 0) {
            c->last_err = errno;
            continue;
        }
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->fd = fd;
        if (connect(fd, (const struct sockaddr *)ss, sa_len(ss)) == 0) {
            connected(c);
            return;
        }
        if (errno == EINPROGRESS) {
            c->state = C_CONNECT;
            if (conn_want(c, EV_WRITE) != 0)
                fail_conn(c, MB_HTTP_FAIL_NOMEM, "cannot watch the socket");
            return;
        }
        c->last_err = errno;
        close(fd);
        c->fd = -1;
    }
    snprintf(why, sizeof(why), "Failed to connect to %s port %d: %s", c->o->host, c->o->port,
             c->last_err ? strerror(c->last_err) : "no address");
    fail_conn(c, MB_HTTP_FAIL_CONNECT, why);
}

static void connect_done(conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0) {
        connected(c);
        return;
    }
    c->last_err = err;
    conn_want(c, 0);
    close(c->fd);
    c->fd = -1;
    connect_next(c);
}

/* Where the resolve left off: connect, or fail c. */
static void resolved(conn *c)
{
    char why[320];

    if (c->dns_result != 0) {
        snprintf(why, sizeof(why), "Could not resolve host: %s (%s)", c->o->host,
                 evutil_gai_strerror(c->dns_result));
        fail_conn(c, MB_HTTP_FAIL_RESOLVE, why);
        return;
    }
    connect_next(c);
}

static void on_resolved(int result, struct evutil_addrinfo *ai, void *arg)
{
    dns_token *t = arg;
    conn *c = t->c;
    dns_ctx *ctx = t->ctx;

    free(t);
    if (--ctx->pending == 0 && ctx->orphaned)
        free(ctx);   /* its evdns base stays: freeing it from its own callback is not safe */
    if (c == NULL) { /* the connection closed while the lookup ran */
        if (ai != NULL)
            evutil_freeaddrinfo(ai);
        return;
    }
    c->dns = NULL;
    c->dns_result = result;
    if (result == 0) {
        c->addrs = calloc(MAX_ADDRS, sizeof(*c->addrs));
        for (struct evutil_addrinfo *a = ai; c->addrs && a && c->naddrs < MAX_ADDRS;
             a = a->ai_next) {
            if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
                a->ai_addrlen <= sizeof(*c->addrs))
                memcpy(&c->addrs[c->naddrs++], a->ai_addr, a->ai_addrlen);
        }
        if (c->addrs == NULL)
            c->dns_result = EVUTIL_EAI_MEMORY;
    }
    if (ai != NULL)
        evutil_freeaddrinfo(ai);
    if (!c->in_start)
        resolved(c);
}

static void on_conn_timeout(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    char why[128];
    (void)fd;
    (void)what;
    c->tmr_on = 0;
    snprintf(why, sizeof(why), "Connection timed out after %ld milliseconds",
             c->h->connect_timeout_ms);
    fail_conn(c, MB_HTTP_FAIL_TIMEOUT, why);
}

/* Opens c for its transfer: resolve, connect, handshake, then send.  c may
 * be gone when this returns. */
static void conn_start(conn *c)
{
    mb_http *h = c->h;
    origin *o = c->o;
    struct timeval tv = {h->connect_timeout_ms / 1000, (h->connect_timeout_ms % 1000) * 1000};
    struct evutil_addrinfo hints;
    char port[8];
    struct evdns_getaddrinfo_request *req;
    dns_token *t;

    evtimer_assign(&c->tmr, h->base, on_conn_timeout, c);
    if (evtimer_add(&c->tmr, &tv) == 0)
        c->tmr_on = 1;
    if (o->literal) {
        c->addrs = malloc(sizeof(*c->addrs));
        if (c->addrs == NULL) {
            fail_conn(c, MB_HTTP_FAIL_NOMEM, "out of memory");
            return;
        }
        memcpy(c->addrs, &o->addr, o->addrlen);
        c->naddrs = 1;
        connect_next(c);
        return;
    }
    if (h->dns == NULL && (h->dns = calloc(1, sizeof(*h->dns))) != NULL) {
        h->dns->base = evdns_base_new(h->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                                   EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (h->dns->base == NULL) {
            free(h->dns);
            h->dns = NULL;
        }
    }
    t = h->dns ? calloc(1, sizeof(*t)) : NULL;
    if (t == NULL) {
        fail_conn(c, MB_HTTP_FAIL_RESOLVE, "cannot set up host name resolution (/etc/resolv.conf)");
        return;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    snprintf(port, sizeof(port), "%d", o->port);
    t->c = c;
    t->ctx = h->dns;
    h->dns->pending++;
    c->state = C_RESOLVE;
    c->dns_result = EVUTIL_EAI_FAIL;
    c->in_start = 1;
    req = evdns_getaddrinfo(h->dns->base, o->host, port, &hints, on_resolved, t);
    c->in_start = 0;
    if (req != NULL) { /* answered later, through t */
        t->req = req;
        c->dns = t;
        return;
    }
    resolved(c); /* answered at once (the hosts file, or an error): t is gone */
}

/* ------------------------------------------------------------------ */
/* Transfers on a connection                                          */
/* ------------------------------------------------------------------ */

static void report(mb_http_xfer *x, const mb_http_resp *r, const mb_error *e);
static void pump(mb_http *h);
static int build_request(mb_http *h, mb_http_xfer *x);
static void xfer_connect(mb_http_xfer *x, int fresh);

static void xfer_free(mb_http_xfer *x)
{
    if (x == NULL)
        return;
    free(x->strs);
    free(x->req);
    free(x->resp);
    free(x->fail_msg);
    free(x);
}

/* Takes an active transfer off its connection (closed: it is mid-exchange)
 * or off its origin's waiting list, and stops its clock. */
static void xfer_detach(mb_http_xfer *x)
{
    if (x->tmr_on) {
        event_del(&x->tmr);
        x->tmr_on = 0;
    }
    if (x->c != NULL) {
        conn *c = x->c;
        x->c = NULL;
        c->x = NULL;
        conn_close(c);
    } else if (x->o != NULL) {
        origin *o = x->o;
        mb_list_del(&o->waiting, &x->wl);
        x->o = NULL;
        origin_put(o);
    }
}

/* The transfer failed: reported from the loop (pump), never from here.  One
 * that died on a reused connection before any reply byte goes out again. */
static void xfer_fail(mb_http_xfer *x, mb_http_fail f, const char *fmt, ...)
{
    mb_http *h = x->h;
    int stale = x->c != NULL && x->c->uses > 0 && x->got == 0 && !x->retried &&
                f == MB_HTTP_FAIL_CONNECTION;
    va_list ap;

    if (stale) {
        conn *c = x->c;
        x->c = NULL;
        c->x = NULL;
        conn_close(c);
        x->retried = 1;
        if (x->req == NULL && build_request(h, x) != 0) { /* not stale now: reported */
            xfer_fail(x, MB_HTTP_FAIL_NOMEM, "cannot build the request");
            return;
        }
        x->req_off = 0;
        xfer_connect(x, 1);
        return;
    }
    xfer_detach(x);
    if (x->state == X_ACTIVE)
        mb_list_del(&h->active, &x->ql);
    x->fail = f;
    va_start(ap, fmt);
    if (vasprintf(&x->fail_msg, fmt, ap) < 0)
        x->fail_msg = NULL;
    va_end(ap);
    x->state = X_LATE;
    mb_list_push_tail(&h->late, &x->ql);
    event_active(h->pump_ev, 0, 0);
}

/* Room in x->resp for the next read.  Returns 0, -1 (too large) or -2 (out
 * of memory). */
static int resp_room(mb_http_xfer *x)
{
    size_t need = x->resp_len + 1 + READ_MIN;
    size_t cap;
    char *p;

    if (x->p.head_done && x->p.length > 0) {
        size_t whole = (size_t)x->p.length + 1;
        size_t ahead = x->resp_len + RESERVE_MAX;
        size_t want = whole < ahead ? whole : ahead;
        if (want > need)
            need = want;
    }
    if (need <= x->resp_cap)
        return 0;
    cap = x->resp_cap ? x->resp_cap : READ_FIRST;
    while (cap < need)
        cap *= 2;
    if (cap > RAW_MAX) {
        if (need > RAW_MAX)
            return -1;
        cap = RAW_MAX;
    }
    p = realloc(x->resp, cap);
    if (p == NULL)
        return -2;
    x->resp = p;
    x->resp_cap = cap;
    return 0;
}

/* A complete response: the connection goes back (or closes), then the owner hears. */
static void xfer_finish(mb_http_xfer *x)
{
    mb_http *h = x->h;
    conn *c = x->c;
    long status = x->p.status;
    int reused = c->uses > 0;
    mb_error e;
    mb_http_resp r;

    x->c = NULL;
    c->x = NULL;
    c->uses++;
    if (x->p.keep_alive)
        conn_release(c);
    else
        conn_close(c);
    if (reused)
        h->st.reused++;
    if (x->tmr_on) {
        event_del(&x->tmr);
        x->tmr_on = 0;
    }
    mb_list_del(&h->active, &x->ql);
    x->resp[x->p.out] = '\0';
    x->retry_after_ms =
        x->p.retry_after[0] ? mb_http_retry_after_ms(x->p.retry_after, time(NULL)) : -1;
    mb_error_clear(&e);
    if (status < 200 || status >= 300)
        http_error(&e, x, x->resp, x->p.out, status);
    r.status = status;
    r.body = x->resp;
    r.body_len = x->p.out;
    r.retry_after_ms = x->retry_after_ms;
    report(x, &r, &e);
    pump(h);
}

static void too_large(mb_http_xfer *x)
{
    xfer_fail(x, MB_HTTP_FAIL_TOO_LARGE, "response larger than %ld bytes", MB_HTTP_MAX_BODY);
}

/* Reads what the socket has for c's transfer.  A short read means the socket
 * is drained (level-triggered: the loop calls again when more comes). */
static void read_some(conn *c)
{
    mb_http_xfer *x = c->x;

    for (;;) {
        char why[256];
        short want = EV_READ;
        size_t room;
        long n;
        int rc = resp_room(x);

        if (rc != 0) {
            if (rc == -1)
                too_large(x);
            else
                xfer_fail(x, MB_HTTP_FAIL_NOMEM, "out of memory for the response");
            return;
        }
        room = x->resp_cap - x->resp_len - 1;
        n = io_read(c, x->resp + x->resp_len, room, &want, why, sizeof(why));
        if (n == IO_AGAIN) {
            if (conn_want(c, want) != 0)
                xfer_fail(x, MB_HTTP_FAIL_NOMEM, "cannot watch the socket");
            return;
        }
        if (n == IO_ERR) {
            xfer_fail(x, MB_HTTP_FAIL_CONNECTION, "Failure when receiving data from the peer: %s",
                      why);
            return;
        }
        if (n > 0) {
            x->resp_len += (size_t)n;
            x->got += (size_t)n;
        }
        rc = mb_h1_parse(&x->p, x->resp, &x->resp_len, n == IO_EOF);
        if (rc == MB_H1_ERROR) {
            xfer_fail(x, x->p.closed_early ? MB_HTTP_FAIL_CONNECTION : MB_HTTP_FAIL_PROTOCOL, "%s",
                      x->p.err);
            return;
        }
        if (x->p.out > (size_t)MB_HTTP_MAX_BODY || x->p.length > MB_HTTP_MAX_BODY) {
            too_large(x);
            return;
        }
        if (rc == MB_H1_DONE) {
            xfer_finish(x);
            return;
        }
        if (n == IO_EOF) { /* the parser ends every response at a close; this is a guard */
            xfer_fail(x, MB_HTTP_FAIL_CONNECTION, "the connection closed");
            return;
        }
        if ((size_t)n < room && (c->ssl == NULL || SSL_pending(c->ssl) == 0)) {
            if (conn_want(c, EV_READ) != 0)
                xfer_fail(x, MB_HTTP_FAIL_NOMEM, "cannot watch the socket");
            return;
        }
    }
}

/* Writes what is left of c's request; then waits for the reply. */
static void send_some(conn *c)
{
    mb_http_xfer *x = c->x;

    c->state = C_BUSY;
    while (x->req_off < x->req_len) {
        char why[256];
        short want = EV_WRITE;
        long n = io_write(c, x->req + x->req_off, x->req_len - x->req_off, &want, why, sizeof(why));
        if (n > 0) {
            x->req_off += (size_t)n;
            continue;
        }
        if (n == IO_AGAIN) {
            if (conn_want(c, want) != 0)
                xfer_fail(x, MB_HTTP_FAIL_NOMEM, "cannot watch the socket");
            return;
        }
        xfer_fail(x, MB_HTTP_FAIL_CONNECTION, "Failed sending the request: %s", why);
        return;
    }
    /* Sent: its bytes are not kept while the reply is awaited (3,072 calls on the wire held
     * 1.5 MB of them); a stale connection's second try builds them again. */
    free(x->req);
    x->req = NULL;
    if (conn_want(c, EV_READ) != 0)
        xfer_fail(x, MB_HTTP_FAIL_NOMEM, "cannot watch the socket");
}

/* An idle connection became readable: the peer closed it, or sent what
 * nobody asked for.  TLS records that carry no data (a session ticket) are
 * read and the connection stays. */
static void idle_readable(conn *c)
{
    if (c->ssl != NULL) {
        char b;
        short want = 0;
        char why[64];
        int k;
        ERR_clear_error();
        k = SSL_peek(c->ssl, &b, 1);
        if (k <= 0 && tls_result(c, k, &want, why, sizeof(why)) == IO_AGAIN && want == EV_READ)
            return;
    }
    conn_close(c);
}

static void on_conn(evutil_socket_t fd, short what, void *arg)
{
    conn *c = arg;
    (void)fd;
    (void)what;

    switch (c->state) {
    case C_CONNECT: connect_done(c); return;
    case C_TLS: tls_step(c); return;
    case C_IDLE: idle_readable(c); return;
    case C_BUSY:
        if (c->x->req_off < c->x->req_len)
            send_some(c);
        else
            read_some(c);
        return;
    default: return;
    }
}

/* ------------------------------------------------------------------ */
/* Starting transfers                                                 */
/* ------------------------------------------------------------------ */

static void on_xfer_timeout(evutil_socket_t fd, short what, void *arg)
{
    mb_http_xfer *x = arg;
    (void)fd;
    (void)what;
    x->tmr_on = 0;
    xfer_fail(x, MB_HTTP_FAIL_TIMEOUT,
              "Operation timed out after %ld milliseconds with %zu bytes received", x->timeout_ms,
              x->got);
}

/* Puts x on a connection: an idle one (unless fresh), a new one, or, at the
 * origin's limit, the origin's waiting list. */
static void xfer_connect(mb_http_xfer *x, int fresh)
{
    mb_http *h = x->h;
    origin *o = origin_get(h, x);
    conn *c;

    if (o == NULL) {
        xfer_fail(x, MB_HTTP_FAIL_NOMEM, "out of memory");
        return;
    }
    c = fresh ? NULL : idle_take(o);
    if (c != NULL) {
        conn_assign(c, x);
        send_some(c);
        return;
    }
    if (h->host_max > 0 && o->nconns >= (size_t)h->host_max) {
        if (o->idle.head == NULL) {
            x->o = o;
            mb_list_push_tail(&o->waiting, &x->wl);
            return;
        }
        c = idle_take(o); /* a fresh connection is asked for: the idle ones may be dead too */
        conn_close(c);
    }
    c = conn_new(h, o);
    if (c == NULL) {
        origin_put(o);
        xfer_fail(x, MB_HTTP_FAIL_NOMEM, "out of memory");
        return;
    }
    conn_assign(c, x);
    conn_start(c);
}

typedef struct hdr_line {
    const char *name, *value;
} hdr_line;

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* The request's bytes, signed when the client has credentials.  Built when
 * the transfer takes its slot, so X-Sdk-Date is fresh however long it waited.
 * Returns 0 or -1 (out of memory, or the signer failed). */
static int build_request(mb_http *h, mb_http_xfer *x)
{
    char date[MB_SIGN_DATE_LEN + 1], auth[1024], clen[24];
    hdr_line l[MAX_HDRS];
    mb_hdr sh[3];
    size_t n = 0, nsh = 0, ml = strlen(x->method), pl = strlen(x->path);
    size_t ql = x->query ? strlen(x->query) : 0, total;
    char *p;

    l[n++] = (hdr_line){"Host", x->hosthdr};
    if (h->user_agent)
        l[n++] = (hdr_line){"User-Agent", h->user_agent};
    l[n++] = (hdr_line){"Accept", x->accept};
    if (x->with_body) {
        snprintf(clen, sizeof(clen), "%zu", x->body_len);
        l[n++] = (hdr_line){"Content-Type", x->ctype};
        l[n++] = (hdr_line){"Content-Length", clen};
    }
    if (x->traceparent)
        l[n++] = (hdr_line){"traceparent", x->traceparent};
    if (h->ak != NULL) {
        mb_sign_date(time(NULL), date);
        if (x->with_body)
            sh[nsh++] = (mb_hdr){"Content-Type", x->ctype};
        sh[nsh++] = (mb_hdr){"Host", x->hosthdr};
        sh[nsh++] = (mb_hdr){"X-Sdk-Date", date};
        if (mb_sign_authorization(h->ak, h->sk, x->method, x->path, x->query, sh, nsh, x->body,
                                  x->body_len, auth, sizeof(auth)) != 0)
            return -1;
        l[n++] = (hdr_line){"X-Sdk-Date", date};
        l[n++] = (hdr_line){"Authorization", auth};
    }
    total = ml + 1 + pl + (x->query ? 1 + ql : 0) + sizeof(" HTTP/1.1\r\n") - 1 + 2 + x->body_len;
    for (size_t i = 0; i < n; i++)
        total += strlen(l[i].name) + 2 + strlen(l[i].value) + 2;
    p = x->req = malloc(total);
    if (p == NULL)
        return -1;
    p = put(p, x->method, ml);
    *p++ = ' ';
    p = put(p, x->path, pl);
    if (x->query) {
        *p++ = '?';
        p = put(p, x->query, ql);
    }
    p = put(p, " HTTP/1.1\r\n", 11);
    for (size_t i = 0; i < n; i++) {
        p = put(p, l[i].name, strlen(l[i].name));
        p = put(p, ": ", 2);
        p = put(p, l[i].value, strlen(l[i].value));
        p = put(p, "\r\n", 2);
    }
    p = put(p, "\r\n", 2);
    if (x->body_len > 0)
        p = put(p, x->body, x->body_len);
    x->req_len = (size_t)(p - x->req);
    x->req_off = 0;
    return 0;
}

/* x takes a slot: its clock starts, its bytes are built, it goes to a
 * connection.  A failure is reported from the loop. */
static void xfer_activate(mb_http *h, mb_http_xfer *x)
{
    struct timeval tv = {x->timeout_ms / 1000, (x->timeout_ms % 1000) * 1000};

    x->state = X_ACTIVE;
    mb_list_push_tail(&h->active, &x->ql);
    evtimer_assign(&x->tmr, h->base, on_xfer_timeout, x);
    if (evtimer_add(&x->tmr, &tv) == 0)
        x->tmr_on = 1;
    if (build_request(h, x) != 0) {
        xfer_fail(x, MB_HTTP_FAIL_NOMEM, "cannot build the request");
        return;
    }
    xfer_connect(x, 0);
}

static void report(mb_http_xfer *x, const mb_http_resp *r, const mb_error *e)
{
    mb_http *h = x->h;
    if (e->status == MB_OK)
        h->st.ok++;
    else if (e->status == MB_AGAIN)
        h->st.again++;
    else
        h->st.perm++;
    h->st.completed++;
    x->state = X_COMPLETING;
    x->cb(x->arg, r, e);
    xfer_free(x);
}

static void report_late(mb_http_xfer *x)
{
    char code[64];
    mb_error e;
    mb_status st = mb_http_classify(0, x->fail, code, sizeof(code));

    mb_error_clear(&e);
    mb_error_set(&e, st, code, "%s: %s", x->what, x->fail_msg ? x->fail_msg : "out of memory");
    report(x, NULL, &e);
}

/* Asks the transfer's start hook.  Returns 0 to go, or -1 with e set. */
static int ask_hook(mb_http_xfer *x, mb_error *e)
{
    if (x->on_start == NULL || x->on_start(x->start_arg, x->timeout_ms, e) == 0)
        return 0;
    if (e->status == MB_OK)
        mb_error_set(e, MB_AGAIN, "Refused", "%s: not sent (refused at start)", x->what);
    return -1;
}

/* The first queued transfer takes a slot, or is reported: its hook refused. */
static void start_queued(mb_http *h)
{
    mb_http_xfer *x = XFER(h->queued.head);
    mb_error e;

    mb_list_del(&h->queued, &x->ql);
    mb_error_clear(&e);
    if (ask_hook(x, &e) != 0) {
        h->st.refused++;
        report(x, NULL, &e);
        return;
    }
    xfer_activate(h, x);
}

/* Transfers waiting for a connection to o open one, as far as its limit allows. */
static void serve_kick(mb_http *h, origin *o)
{
    while (o->waiting.head != NULL && (h->host_max == 0 || o->nconns < (size_t)h->host_max)) {
        mb_http_xfer *x = WAITER(o->waiting.head);
        conn *c;
        mb_list_del(&o->waiting, &x->wl);
        x->o = NULL;
        c = conn_new(h, o);
        if (c == NULL) {
            xfer_fail(x, MB_HTTP_FAIL_NOMEM, "out of memory");
            continue;
        }
        conn_assign(c, x);
        conn_start(c);
    }
    o->kicking = 0;
    origin_put(o);
}

/* From the loop: reports late transfers, opens connections for waiting
 * ones, starts queued ones while slots are free.  Callbacks run here. */
static void pump(mb_http *h)
{
    for (;;) {
        if (h->late.head != NULL) {
            mb_http_xfer *x = XFER(h->late.head);
            mb_list_del(&h->late, &x->ql);
            report_late(x);
        } else if (h->kick != NULL) {
            origin *o = h->kick;
            h->kick = o->kick_next;
            serve_kick(h, o);
        } else if (h->queued.head != NULL && h->active.n < (size_t)h->max_active) {
            start_queued(h);
        } else {
            return;
        }
    }
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

/* ------------------------------------------------------------------ */
/* Public API                                                         */
/* ------------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

mb_http *mb_http_new(struct event_base *base, const mb_http_opts *o, char *err, size_t errlen)
{
    mb_http_opts def;
    mb_http *h;
    long maxconn;

    memset(&def, 0, sizeof(def));
    if (o == NULL)
        o = &def;
    if (base == NULL) {
        snprintf(err, errlen, "mb_http_new: no event base");
        return NULL;
    }
    if ((o->ak == NULL) != (o->sk == NULL) || (o->ak && (!o->ak[0] || !o->sk[0]))) {
        snprintf(err, errlen, "mb_http_new: AK and SK must be given together");
        return NULL;
    }
    if (o->user_agent && strpbrk(o->user_agent, "\r\n")) {
        snprintf(err, errlen, "mb_http_new: line break in the User-Agent");
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        goto oom;
    h->base = base;
    h->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    h->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    maxconn = o->max_connections > 0 ? o->max_connections : 256;
    h->max_active = o->max_active > 0 ? o->max_active : maxconn;
    h->max_idle = maxconn;
    h->host_max = o->max_host_connections > 0 ? o->max_host_connections : 0;
    h->ca_file = dup_or_null(o->ca_file);
    h->ak = dup_or_null(o->ak);
    h->sk = dup_or_null(o->sk);
    h->user_agent = dup_or_null(o->user_agent);
    if ((o->ca_file && !h->ca_file) || (o->ak && (!h->ak || !h->sk)) ||
        (o->user_agent && !h->user_agent))
        goto oom;
    h->pump_ev = event_new(base, -1, 0, on_pump, h);
    if (h->pump_ev == NULL)
        goto oom;
    return h;
oom:
    snprintf(err, errlen, "mb_http_new: out of memory");
    mb_http_free(h);
    return NULL;
}

static int has_crlf(const char *s)
{
    return s != NULL && strpbrk(s, "\r\n") != NULL;
}

static int method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

/* Appends s (n bytes and a NUL) at *p and returns where it went. */
static const char *pack(char **p, const char *s, size_t n)
{
    char *at = *p;
    if (n)
        memcpy(at, s, n);
    at[n] = '\0';
    *p += n + 1;
    return at;
}

/* Host's value: the host ([bracketed] when IPv6), with ":port" when the URL gave one that is
 * not the scheme's.  Into out (at least 264 bytes, lh at most 255); returns its length.
 * Written by hand: snprintf cost 1,000 instructions a request. */
static size_t host_header(char *out, const char *host, size_t lh, const mb_h1_url *u)
{
    char digits[5];
    size_t n = 0, nd = 0;
    unsigned v = (unsigned)u->port; /* 1 to 65535 */

    if (u->ipv6)
        out[n++] = '[';
    memcpy(out + n, host, lh);
    n += lh;
    if (u->ipv6)
        out[n++] = ']';
    if (u->port_given) {
        out[n++] = ':';
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0 && nd < sizeof(digits));
        while (nd > 0)
            out[n++] = digits[--nd];
    }
    out[n] = '\0';
    return n;
}

/* Copies what the transfer needs from rq into one allocation, the URL split
 * into host, Host header, path and query.  A URL that cannot be used sets
 * bad_url.  Returns 0, or -1 (out of memory). */
static int xfer_fill(mb_http_xfer *x, const mb_http_req *rq)
{
    const char *ctype = rq->content_type ? rq->content_type : "application/json";
    const char *accept = rq->accept ? rq->accept : "application/json";
    mb_h1_url u;
    struct in6_addr a6;
    char hosthdr[300], host[260];
    size_t lm = strlen(rq->method), lu = strlen(rq->url), lh, lhh, lp, lq, lc, la, lt, total;
    char *p;

    if (mb_h1_url_split(rq->url, &u, &x->bad_url) == 0 && u.host_len > 255)
        x->bad_url = "a host name longer than 255 bytes";
    if (x->bad_url == NULL) {
        memcpy(host, u.host, u.host_len);
        host[u.host_len] = '\0';
        if (u.ipv6 && inet_pton(AF_INET6, host, &a6) != 1)
            x->bad_url = "not an IPv6 address between the brackets";
    }
    if (x->bad_url != NULL) { /* only what the report needs */
        x->strs = malloc(lm + 1 + lu + 1);
        if (x->strs == NULL)
            return -1;
        p = x->strs;
        x->method = pack(&p, rq->method, lm);
        x->what = x->strs; /* "METHOD url" */
        x->strs[lm] = ' ';
        pack(&p, rq->url, lu);
        return 0;
    }
    x->tls = u.tls;
    x->port = u.port;
    lh = u.host_len;
    lhh = host_header(hosthdr, host, lh, &u);
    lp = u.path_len;
    lq = u.query ? u.query_len : 0;
    lc = strlen(ctype);
    la = strlen(accept);
    lt = rq->traceparent ? strlen(rq->traceparent) : 0;
    total = lm + lh + lhh + lp + lq + lc + la + lt + (lm + 1 + lp) + rq->body_len + 10;
    x->strs = malloc(total);
    if (x->strs == NULL)
        return -1;
    p = x->strs;
    x->method = pack(&p, rq->method, lm);
    x->host = pack(&p, host, lh);
    x->hosthdr = pack(&p, hosthdr, lhh);
    x->path = pack(&p, u.path, lp);
    x->query = u.query ? pack(&p, u.query, lq) : NULL;
    x->ctype = pack(&p, ctype, lc);
    x->accept = pack(&p, accept, la);
    x->traceparent = rq->traceparent ? pack(&p, rq->traceparent, lt) : NULL;
    x->what = p; /* "METHOD /path" */
    memcpy(p, rq->method, lm);
    p[lm] = ' ';
    p += lm + 1;
    pack(&p, u.path, lp);
    x->body = pack(&p, rq->body ? rq->body : "", rq->body_len);
    x->body_len = rq->body_len;
    return 0;
}

mb_http_xfer *mb_http_request(mb_http *h, const mb_http_req *rq, mb_http_cb *cb, void *arg)
{
    mb_http_xfer *x;

    if (h == NULL || rq == NULL || cb == NULL || rq->method == NULL || rq->url == NULL)
        return NULL;
    if (has_crlf(rq->method) || has_crlf(rq->url) || has_crlf(rq->traceparent) ||
        has_crlf(rq->content_type) || has_crlf(rq->accept) ||
        (rq->body == NULL && rq->body_len > 0))
        return NULL;
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->h = h;
    x->cb = cb;
    x->arg = arg;
    x->retry_after_ms = -1;
    x->with_body = rq->body != NULL || method_has_body(rq->method);
    x->timeout_ms = rq->timeout_ms > 0 ? rq->timeout_ms : h->timeout_ms;
    x->on_start = rq->on_start;
    x->start_arg = rq->start_arg;
    if (xfer_fill(x, rq) != 0) {
        xfer_free(x);
        return NULL;
    }
    /* A URL to refuse is reported from the loop, without waiting for a slot.  A
     * request with a start hook always starts from the loop: the hook may
     * refuse, and the callback must not run inside this call. */
    if (x->bad_url != NULL) {
        x->fail = MB_HTTP_FAIL_BAD_URL;
        if (asprintf(&x->fail_msg, "bad URL: %s", x->bad_url) < 0)
            x->fail_msg = NULL;
        x->state = X_LATE;
        mb_list_push_tail(&h->late, &x->ql);
        event_active(h->pump_ev, 0, 0);
    } else if (x->on_start != NULL) {
        x->state = X_QUEUED;
        mb_list_push_tail(&h->queued, &x->ql);
        event_active(h->pump_ev, 0, 0);
    } else if (h->queued.n == 0 && h->active.n < (size_t)h->max_active) {
        xfer_activate(h, x);
    } else {
        x->state = X_QUEUED;
        mb_list_push_tail(&h->queued, &x->ql);
    }
    h->st.started++;
    return x;
}

void mb_http_cancel(mb_http_xfer *x)
{
    mb_http *h;
    if (x == NULL || x->state == X_COMPLETING)
        return;
    h = x->h;
    if (x->state == X_QUEUED) {
        mb_list_del(&h->queued, &x->ql);
    } else if (x->state == X_LATE) {
        mb_list_del(&h->late, &x->ql);
    } else {
        xfer_detach(x);
        mb_list_del(&h->active, &x->ql);
        /* a slot is free: start the next one from the loop, never from here */
        if (h->queued.n > 0)
            event_active(h->pump_ev, 0, 0);
    }
    h->st.cancelled++;
    xfer_free(x);
}

struct event_base *mb_http_base(const mb_http *h)
{
    return h ? h->base : NULL;
}

size_t mb_http_inflight(const mb_http *h)
{
    return h ? h->queued.n + h->active.n + h->late.n : 0;
}

long mb_http_timeout_ms(const mb_http *h)
{
    return h ? h->timeout_ms : 0;
}

void mb_http_stats(const mb_http *h, mb_http_counters *out)
{
    if (h == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = h->st;
    out->queued = h->queued.n;
    out->active = h->active.n;
}

void mb_http_free(mb_http *h)
{
    if (h == NULL)
        return;
    while (h->late.head != NULL)
        mb_http_cancel(XFER(h->late.head));
    while (h->queued.head != NULL)
        mb_http_cancel(XFER(h->queued.head));
    while (h->active.head != NULL)
        mb_http_cancel(XFER(h->active.head));
    while (h->idle.head != NULL)
        conn_close(GCONN(h->idle.head));
    while (h->kick != NULL) {
        origin *o = h->kick;
        h->kick = o->kick_next;
        o->kicking = 0;
        origin_put(o);
    }
    /* Lookups the closes above cancelled are still answered, later, from the
     * loop: then the resolver is left to them (the last answer frees the
     * context), else it goes now. */
    if (h->dns != NULL && h->dns->pending > 0) {
        h->dns->orphaned = 1;
    } else if (h->dns != NULL) {
        evdns_base_free(h->dns->base, 0);
        free(h->dns);
    }
    SSL_CTX_free(h->tls);
    if (h->pump_ev)
        event_free(h->pump_ev);
    free(h->ca_file);
    free(h->ak);
    free(h->user_agent);
    if (h->sk) {
        /* do not leave the secret in freed memory */
        volatile char *p = h->sk;
        while (*p)
            *p++ = 0;
        free(h->sk);
    }
    free(h);
}
