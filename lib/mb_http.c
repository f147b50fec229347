/* mb_http.c: libcurl multi on a libevent loop (curl's "multi_event" pattern).
 *
 * curl tells us which sockets to watch (socket_cb) and when to wake it
 * (timer_cb); libevent tells curl when a socket is ready (on_socket) or the
 * timer fired (on_timer), through curl_multi_socket_action.  After each
 * action, finished transfers are taken off the multi handle and only then
 * reported to their owners, so an owner's callback runs outside every curl
 * callback and may freely start or cancel transfers.
 *
 * Transfers are spread over lanes, one multi handle each with its own
 * connection cache of at most LANE_CONNS connections: curl 7.88 walks the
 * whole cache of a multi handle on every curl_multi_remove_handle (looking
 * for the transfer's last connection, to close it if it was connect-only),
 * and with a thousand kept-alive connections in one cache that walk was a
 * tenth of the worker's CPU. */
#include "mb_http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_jscan.h"
#include "mb_sign.h"

#define MB_HTTP_MAX_BODY (32L * 1024 * 1024) /* a response larger than this is refused */
#define MB_HTTP_EXCERPT  200                 /* body bytes quoted in an error text */
/* curl's receive buffer, allocated per transfer: its default (16 kB) times a thousand
 * transfers out is 16 MB held for replies that are mostly 1-3 kB; a larger reply (a pod
 * page) is read in more pieces, each one a recv() into the same buffer */
#define MB_HTTP_RECV_BUF    4096
#define MB_HTTP_RESERVE_MAX (64 * 1024) /* response room reserved from a Content-Length */

#define LANE_CONNS       128 /* connections cached per lane (multi handle) */
#define MB_HTTP_MAX_HDRS 7   /* header lines a request sends: see build_headers */

/* One curl multi handle, its timer, and the transfers it carries. */
typedef struct lane {
    mb_http *h;
    CURLM *multi;
    struct event *timer;
    size_t active;
} lane;

/* One socket curl asked us to watch. */
typedef struct sock_ctx {
    lane *ln;
    curl_socket_t fd;
    struct event *ev;
    struct sock_ctx *prev, *next;
} sock_ctx;

/* A doubly linked list of transfers, FIFO through head/tail. */
typedef struct xlist {
    mb_http_xfer *head, *tail;
    size_t n;
} xlist;

struct mb_http {
    struct event_base *base;
    lane *lanes;
    int nlanes;
    struct event *pump_ev; /* starts queued transfers from the loop */
    long connect_timeout_ms;
    long timeout_ms;
    long max_active;
    char *ca_file;
    char *ak;
    char *sk;
    char *user_agent;
    xlist queued; /* accepted, waiting for a slot; no curl handle yet */
    xlist active; /* handed to curl */
    CURL **pool;  /* reset easy handles kept for reuse */
    size_t npool;
    sock_ctx *socks; /* watched sockets, freed at the end if curl left any */
    mb_http_counters st;
};

enum { X_QUEUED, X_ACTIVE, X_COMPLETING };

struct mb_http_xfer {
    mb_http *h;
    CURL *easy;              /* NULL while queued */
    lane *ln;                /* with easy: the lane carrying it */
    struct curl_slist *hdrs; /* into hdr_node, or NULL */
    struct curl_slist hdr_node[MB_HTTP_MAX_HDRS];
    char *hdr_text; /* the lines hdr_node points to, one allocation */
    mb_http_cb *cb;
    void *arg;
    int state;
    int with_body;
    long timeout_ms;
    mb_http_start_hook *on_start; /* NULL = always send */
    void *start_arg;
    /* all of these point into one allocation, strs */
    char *strs;
    const char *method, *url, *host, *path, *query, *ctype, *accept, *traceparent;
    const char *what; /* "GET /path" for error texts */
    const char *body; /* request body copy (curl reads it in place) */
    size_t body_len;
    char *resp; /* response body, NUL-terminated */
    size_t resp_len, resp_cap;
    long retry_after_ms;
    int too_large;
    char errbuf[CURL_ERROR_SIZE];
    mb_http_xfer *prev, *next;
};

/* ------------------------------------------------------------------ */
/* Classification                                                     */
/* ------------------------------------------------------------------ */

static mb_status classify_curl(int cc, const char **code)
{
    switch ((CURLcode)cc) {
    case CURLE_OK: *code = ""; return MB_OK;
    case CURLE_OPERATION_TIMEDOUT: *code = "Timeout"; return MB_AGAIN;
    case CURLE_COULDNT_CONNECT: *code = "ConnectFailed"; return MB_AGAIN;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: *code = "ResolveFailed"; return MB_AGAIN;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: *code = "ConnectionError"; return MB_AGAIN;
    case CURLE_SSL_CONNECT_ERROR:
        /* a handshake cut by the network is worth another try; a handshake
         * the peer refuses on policy fails again within the step deadline */
        *code = "TLSHandshake";
        return MB_AGAIN;
    case CURLE_OUT_OF_MEMORY: *code = "OutOfMemory"; return MB_FATAL;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED: *code = "TLSError"; return MB_PERM;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: *code = "BadURL"; return MB_PERM;
    case CURLE_BAD_FUNCTION_ARGUMENT:
    case CURLE_UNKNOWN_OPTION:
    case CURLE_NOT_BUILT_IN:
    case CURLE_FAILED_INIT: *code = "Config"; return MB_PERM;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED: *code = "ResponseTooLarge"; return MB_PERM;
    default:
        /* anything else happened on the wire: let the step's deadline decide */
        *code = "TransportError";
        return MB_AGAIN;
    }
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

mb_status mb_http_classify(long http_status, int curl_code, char *code, size_t codelen)
{
    char dummy[16];
    const char *cname = NULL;
    mb_status st;

    if (code == NULL || codelen == 0) {
        code = dummy;
        codelen = sizeof(dummy);
    }
    if (http_status != 0)
        return classify_http(http_status, code, codelen);
    st = classify_curl(curl_code, &cname);
    snprintf(code, codelen, "%s", cname);
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
    /* RFC 9110 allows only IMF-fixdate and two obsolete forms; all start
     * with a day name, which also keeps curl_getdate from taking "12:00". */
    if (!isalpha((unsigned char)*p))
        return -1;
    t = curl_getdate(p, NULL);
    if (t == (time_t)-1)
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
static void http_error(mb_error *e, const mb_http_xfer *x, long status)
{
    /* pairs of code and message, the first pair with either as a string wins; then "code" */
    static const char *const paths[] = {"error_code", "error_msg", "errorCode", "errorMsg",
                                        "reason",     "message",   "code"};
    char code[64];
    mb_status st = mb_http_classify(status, 0, code, sizeof(code));
    char *bcode = NULL, *bmsg = NULL;
    char ex[MB_HTTP_EXCERPT + 8];
    const char *msg;
    mb_jval v[7];
    int oom = 0;

    if (x->resp_len > 0 && mb_jscan(x->resp, x->resp_len, paths, 7, v) == 0) {
        int i = 0;
        while (i < 6 && v[i].type != MB_JSTRING && v[i + 1].type != MB_JSTRING)
            i += 2;
        bcode = mb_jval_strdup(&v[i], &oom);
        bmsg = i < 6 ? mb_jval_strdup(&v[i + 1], &oom) : NULL;
    }
    if (bcode != NULL && bcode[0] != '\0')
        snprintf(code, sizeof(code), "%s", bcode);
    if (bmsg == NULL)
        excerpt(x->resp, x->resp_len, ex, sizeof(ex));
    msg = bmsg ? bmsg : ex;
    mb_error_set(e, st, code, "%s: HTTP %ld: %s", x->what, status, msg[0] ? msg : "(empty body)");
    e->http_status = status;
    if (status == 429 || status == 503)
        e->retry_after_ms = x->retry_after_ms;
    free(bcode);
    free(bmsg);
}

/* ------------------------------------------------------------------ */
/* Transfers                                                          */
/* ------------------------------------------------------------------ */

static void xl_push(xlist *l, mb_http_xfer *x)
{
    x->next = NULL;
    x->prev = l->tail;
    if (l->tail)
        l->tail->next = x;
    else
        l->head = x;
    l->tail = x;
    l->n++;
}

static void xl_del(xlist *l, mb_http_xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        l->head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    else
        l->tail = x->prev;
    x->prev = x->next = NULL;
    l->n--;
}

/* Gives an easy handle back, kept for the next transfer: curl's per-handle
 * allocations and the options every transfer shares are paid once per handle,
 * not once per request (curl_easy_reset and a dozen setopts cost ~2% of the
 * worker's instructions).  What pointed into the transfer is cleared, so an
 * idle handle refers to nothing freed. */
static void easy_release(mb_http *h, CURL *easy)
{
    if (easy == NULL)
        return;
    if (h->npool < (size_t)h->max_active) {
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL); /* the method: set at activation */
        h->pool[h->npool++] = easy;
        return;
    }
    curl_easy_cleanup(easy);
}

static void xfer_free(mb_http_xfer *x)
{
    if (x == NULL)
        return;
    if (x->easy)
        easy_release(x->h, x->easy);
    free(x->hdr_text);
    free(x->strs);
    free(x->resp);
    free(x);
}

/* Room for need bytes of response (the terminating NUL included).  Returns 0,
 * or -1: over the size limit (too_large set) or out of memory. */
static int resp_reserve(mb_http_xfer *x, size_t need)
{
    size_t cap = x->resp_cap ? x->resp_cap : 1024;
    char *p;

    if (need <= x->resp_cap)
        return 0;
    while (cap < need)
        cap *= 2;
    if (cap > (size_t)MB_HTTP_MAX_BODY + 1) {
        if (need > (size_t)MB_HTTP_MAX_BODY + 1) {
            x->too_large = 1;
            return -1;
        }
        cap = (size_t)MB_HTTP_MAX_BODY + 1;
    }
    p = realloc(x->resp, cap);
    if (p == NULL)
        return -1;
    x->resp = p;
    x->resp_cap = cap;
    return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    mb_http_xfer *x = userp;
    size_t n = size * nmemb;

    if (resp_reserve(x, x->resp_len + n + 1) != 0)
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    memcpy(x->resp + x->resp_len, data, n);
    x->resp_len += n;
    x->resp[x->resp_len] = '\0';
    return n;
}

/* Content-Length: the body's room, reserved at once rather than grown; at most
 * MB_HTTP_RESERVE_MAX, so a length the server never sends holds little. */
static void reserve_length(mb_http_xfer *x, const char *v, size_t vl)
{
    char buf[32], *end;
    unsigned long long len;

    if (vl >= sizeof(buf))
        return;
    memcpy(buf, v, vl); /* header data is not NUL-terminated */
    buf[vl] = '\0';
    len = strtoull(buf, &end, 10);
    if (end == buf || len == 0)
        return;
    if (len > MB_HTTP_RESERVE_MAX)
        len = MB_HTTP_RESERVE_MAX;
    (void)resp_reserve(x, x->resp_len + (size_t)len + 1); /* if not, on_write grows it */
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userp)
{
    mb_http_xfer *x = userp;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    char val[128];
    size_t vl;

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        x->retry_after_ms = -1; /* a new response (after 100 Continue) */
        return n;
    }
    if (n > 15 && strncasecmp(data, "content-length:", 15) == 0) {
        reserve_length(x, data + 15, n - 15);
        return n;
    }
    if (n <= sizeof(name) - 1 || strncasecmp(data, name, sizeof(name) - 1) != 0)
        return n;
    vl = n - (sizeof(name) - 1);
    if (vl >= sizeof(val))
        vl = sizeof(val) - 1;
    memcpy(val, data + sizeof(name) - 1, vl);
    val[vl] = '\0';
    val[strcspn(val, "\r\n")] = '\0';
    x->retry_after_ms = mb_http_retry_after_ms(val, time(NULL));
    return n;
}

/* The request's header lines.  curl reads a header list in place for the
 * transfer, so the nodes live in the transfer and the lines in one block:
 * one allocation a request instead of two per line (curl_slist_append). */
typedef struct hdr_line {
    const char *name, *value;
} hdr_line;

static int set_headers(mb_http_xfer *x, const hdr_line *l, size_t n)
{
    size_t total = 0;
    char *p;

    for (size_t i = 0; i < n; i++)
        total += strlen(l[i].name) + strlen(l[i].value) + 3; /* ": " or ":", NUL */
    p = x->hdr_text = malloc(total);
    if (p == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(l[i].name), vl = strlen(l[i].value);
        x->hdr_node[i].data = p;
        x->hdr_node[i].next = i + 1 < n ? &x->hdr_node[i + 1] : NULL;
        memcpy(p, l[i].name, nl);
        p += nl;
        *p++ = ':';
        if (vl > 0) /* "Name:" alone tells curl not to send its own */
            *p++ = ' ';
        memcpy(p, l[i].value, vl);
        p += vl;
        *p++ = '\0';
    }
    x->hdrs = n > 0 ? &x->hdr_node[0] : NULL;
    return 0;
}

/* The header list, signed when the client has credentials.  Built when the
 * transfer starts, so X-Sdk-Date is fresh however long it was queued. */
static int build_headers(mb_http *h, mb_http_xfer *x)
{
    char date[MB_SIGN_DATE_LEN + 1], auth[1024];
    hdr_line l[MB_HTTP_MAX_HDRS];
    mb_hdr sh[3];
    size_t n = 0, nsh = 0;

    l[n++] = (hdr_line){"Host", x->host};
    l[n++] = (hdr_line){"Accept", x->accept};
    if (x->with_body)
        l[n++] = (hdr_line){"Content-Type", x->ctype};
    l[n++] = (hdr_line){"Expect", ""}; /* no "Expect: 100-continue" round trip before a body */
    if (x->traceparent)
        l[n++] = (hdr_line){"traceparent", x->traceparent};
    if (h->ak != NULL) {
        mb_sign_date(time(NULL), date);
        if (x->with_body)
            sh[nsh++] = (mb_hdr){"Content-Type", x->ctype};
        sh[nsh++] = (mb_hdr){"Host", x->host};
        sh[nsh++] = (mb_hdr){"X-Sdk-Date", date};
        if (mb_sign_authorization(h->ak, h->sk, x->method, x->path, x->query, sh, nsh, x->body,
                                  x->body_len, auth, sizeof(auth)) != 0)
            return -1;
        l[n++] = (hdr_line){"X-Sdk-Date", date};
        l[n++] = (hdr_line){"Authorization", auth};
    }
    return set_headers(x, l, n);
}

/* A new easy handle with the options every transfer of h shares. */
static CURL *easy_new(mb_http *h)
{
    CURL *e = curl_easy_init();

    if (e == NULL)
        return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)MB_HTTP_RECV_BUF);
    if (h->user_agent)
        curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MB_HTTP_MAX_BODY);
    return e;
}

/* The lane carrying the fewest transfers: their connections are spread
 * evenly, so each lane's cache holds about what its share of the load needs. */
static lane *lane_pick(mb_http *h)
{
    lane *best = &h->lanes[0];

    for (int i = 1; i < h->nlanes; i++) {
        if (h->lanes[i].active < best->active)
            best = &h->lanes[i];
    }
    return best;
}

/* Hands a queued transfer to curl.  Returns 0, or -1 (out of memory, or a
 * signer failure) with x untouched apart from its header list. */
static int xfer_activate(mb_http *h, mb_http_xfer *x)
{
    lane *ln = lane_pick(h);
    CURL *e;

    if (build_headers(h, x) != 0)
        goto err;
    e = h->npool > 0 ? h->pool[--h->npool] : easy_new(h);
    if (e == NULL)
        goto err;
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, x->timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    /* a pooled handle keeps its last method: every transfer sets its own */
    if (x->with_body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, strcmp(x->method, "GET") != 0 ? x->method : NULL);
    if (curl_multi_add_handle(ln->multi, e) != CURLM_OK) {
        easy_release(h, e);
        goto err;
    }
    x->easy = e;
    x->ln = ln;
    ln->active++;
    x->state = X_ACTIVE;
    xl_push(&h->active, x);
    return 0;
err:
    free(x->hdr_text);
    x->hdr_text = NULL;
    x->hdrs = NULL;
    return -1;
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

/* Asks the transfer's start hook.  Returns 0 to go, or -1 with e set. */
static int ask_hook(mb_http_xfer *x, mb_error *e)
{
    if (x->on_start == NULL || x->on_start(x->start_arg, x->timeout_ms, e) == 0)
        return 0;
    if (e->status == MB_OK)
        mb_error_set(e, MB_AGAIN, "Refused", "%s: not sent (refused at start)", x->what);
    return -1;
}

/* Starts queued transfers while slots are free.  From the loop only: a
 * transfer that cannot start, or that its hook stops, is reported through
 * its callback. */
static void pump(mb_http *h)
{
    while (h->queued.head != NULL && h->active.n < (size_t)h->max_active) {
        mb_http_xfer *x = h->queued.head;
        mb_error he;
        xl_del(&h->queued, x);
        mb_error_clear(&he);
        if (ask_hook(x, &he) != 0) {
            h->st.refused++;
            report(x, NULL, &he);
            continue;
        }
        if (xfer_activate(h, x) != 0) {
            mb_error e;
            mb_error_clear(&e);
            mb_error_set(&e, MB_FATAL, "OutOfMemory", "%s: cannot start the request", x->what);
            report(x, NULL, &e);
        }
    }
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

/* Reports one finished transfer to its owner and frees it. */
static void xfer_done(mb_http_xfer *x, CURLcode cc)
{
    mb_http *h = x->h;
    mb_error e;
    mb_http_resp r;
    long status = 0;
    long nconn = 0;

    mb_error_clear(&e);
    curl_multi_remove_handle(x->ln->multi, x->easy);
    x->ln->active--;
    xl_del(&h->active, x);
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK) {
        if (nconn > 0)
            h->st.new_conns += (uint64_t)nconn;
        else if (cc == CURLE_OK)
            h->st.reused++;
    }
    easy_release(h, x->easy);
    x->easy = NULL;

    if (cc != CURLE_OK || status == 0) {
        char code[64];
        mb_status st;
        if (cc == CURLE_OK)
            cc = CURLE_GOT_NOTHING;
        st = mb_http_classify(0, (int)cc, code, sizeof(code));
        if (x->too_large)
            mb_error_set(&e, MB_PERM, "ResponseTooLarge", "%s: response larger than %ld bytes",
                         x->what, MB_HTTP_MAX_BODY);
        else
            mb_error_set(&e, st, code, "%s: %s", x->what,
                         x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc));
    } else if (status < 200 || status >= 300) {
        http_error(&e, x, status);
    }
    r.status = status;
    r.body = x->resp ? x->resp : "";
    r.body_len = x->resp_len;
    r.retry_after_ms = x->retry_after_ms;
    report(x, status ? &r : NULL, &e);
}

/* Reports a lane's finished transfers one at a time, re-reading curl's
 * queue after each: a callback may cancel a transfer that finished in the
 * same turn, and curl then drops its message. */
static void check_done(lane *ln)
{
    int left;
    for (;;) {
        CURLMsg *m = curl_multi_info_read(ln->multi, &left);
        mb_http_xfer *x = NULL;
        if (m == NULL)
            break;
        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x != NULL)
            xfer_done(x, m->data.result);
    }
    pump(ln->h);
}

/* ------------------------------------------------------------------ */
/* Loop glue                                                          */
/* ------------------------------------------------------------------ */

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    sock_ctx *s = arg;
    lane *ln = s->ln; /* s may be freed by the action */
    int running = 0;
    int flags = 0;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(ln->multi, fd, flags, &running);
    check_done(ln);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    lane *ln = arg;
    int running = 0;
    (void)fd;
    (void)what;
    curl_multi_socket_action(ln->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(ln);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    lane *ln = userp;
    struct timeval tv;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(ln->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(ln->timer, &tv) == 0 ? 0 : -1;
}

static void sock_free(sock_ctx *s)
{
    mb_http *h = s->ln->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->ev)
        event_free(s->ev);
    free(s);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    lane *ln = userp;
    mb_http *h = ln->h;
    sock_ctx *s = socketp;
    short kind = EV_PERSIST;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(ln->multi, fd, NULL);
            sock_free(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->ln = ln;
        s->fd = fd;
        s->next = h->socks;
        if (h->socks)
            h->socks->prev = s;
        h->socks = s;
        curl_multi_assign(ln->multi, fd, s);
    }
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (s->ev != NULL) {
        event_del(s->ev);
        if (event_assign(s->ev, h->base, fd, kind, on_socket, s) != 0)
            return -1;
    } else {
        s->ev = event_new(h->base, fd, kind, on_socket, s);
        if (s->ev == NULL)
            return -1;
    }
    return event_add(s->ev, NULL) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Public API                                                         */
/* ------------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Splits the connection limits over ceil(maxconn / LANE_CONNS) lanes: each
 * lane caches its share of maxconn, and the per-host limit is shared out so
 * that the lanes together never exceed it.  Returns 0 or -1 (out of memory). */
static int lanes_init(mb_http *h, long maxconn, long host_max)
{
    int n = (int)((maxconn + LANE_CONNS - 1) / LANE_CONNS);

    if (host_max > 0 && host_max < n)
        n = (int)host_max;
    h->lanes = calloc((size_t)n, sizeof(*h->lanes));
    if (h->lanes == NULL)
        return -1;
    h->nlanes = n;
    for (int i = 0; i < n; i++) {
        lane *ln = &h->lanes[i];
        ln->h = h;
        ln->multi = curl_multi_init();
        ln->timer = evtimer_new(h->base, on_timer, ln);
        if (ln->multi == NULL || ln->timer == NULL)
            return -1;
        curl_multi_setopt(ln->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(ln->multi, CURLMOPT_SOCKETDATA, ln);
        curl_multi_setopt(ln->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(ln->multi, CURLMOPT_TIMERDATA, ln);
        curl_multi_setopt(ln->multi, CURLMOPT_MAXCONNECTS, maxconn / n + (i < maxconn % n));
        if (host_max > 0)
            curl_multi_setopt(ln->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                              host_max / n + (i < host_max % n));
    }
    return 0;
}

mb_http *mb_http_new(struct event_base *base, const mb_http_opts *o, char *err, size_t errlen)
{
    static int global_done;
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
    if (!global_done) {
        /* thread-unsafe by libcurl's contract; the first client is made at
         * start-up, before any thread exists */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            snprintf(err, errlen, "curl_global_init failed");
            return NULL;
        }
        global_done = 1;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL)
        goto oom;
    h->base = base;
    h->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 5000;
    h->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 30000;
    maxconn = o->max_connections > 0 ? o->max_connections : 256;
    h->max_active = o->max_active > 0 ? o->max_active : maxconn;
    h->ca_file = dup_or_null(o->ca_file);
    h->ak = dup_or_null(o->ak);
    h->sk = dup_or_null(o->sk);
    h->user_agent = dup_or_null(o->user_agent);
    if ((o->ca_file && !h->ca_file) || (o->ak && (!h->ak || !h->sk)) ||
        (o->user_agent && !h->user_agent))
        goto oom;
    h->pool = calloc((size_t)h->max_active, sizeof(*h->pool));
    h->pump_ev = event_new(base, -1, 0, on_pump, h);
    if (h->pool == NULL || h->pump_ev == NULL ||
        lanes_init(h, maxconn, o->max_host_connections) != 0)
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

/* Host header value as the server sees it: host[:port], the default port
 * of the scheme left out (docs/reference.md, "AK/SK signing"). */
static int host_value(CURLU *u, char *out, size_t outlen)
{
    char *host = NULL, *port = NULL, *scheme = NULL;
    int rc = -1;
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto out;
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    curl_url_get(u, CURLUPART_PORT, &port, 0);
    if (port && scheme &&
        ((strcasecmp(scheme, "http") == 0 && strcmp(port, "80") == 0) ||
         (strcasecmp(scheme, "https") == 0 && strcmp(port, "443") == 0))) {
        curl_free(port);
        port = NULL;
    }
    if (port)
        rc = snprintf(out, outlen, "%s:%s", host, port);
    else
        rc = snprintf(out, outlen, "%s", host);
    rc = (rc >= 0 && (size_t)rc < outlen) ? 0 : -1;
out:
    curl_free(host);
    curl_free(port);
    curl_free(scheme);
    return rc;
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

/* Copies what the transfer needs from rq into one allocation.  Returns 0,
 * or -1 (bad URL, out of memory). */
static int xfer_fill(mb_http_xfer *x, const mb_http_req *rq)
{
    CURLU *u = curl_url();
    char *path = NULL, *query = NULL, *p;
    char host[512];
    const char *ctype = rq->content_type ? rq->content_type : "application/json";
    const char *accept = rq->accept ? rq->accept : "application/json";
    size_t lm, lu, lh, lp, lq, lc, la, lt, total;
    int rc = -1;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, rq->url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_OK)
        query = NULL;
    if (host_value(u, host, sizeof(host)) != 0)
        goto out;
    lm = strlen(rq->method);
    lu = strlen(rq->url);
    lh = strlen(host);
    lp = strlen(path);
    lq = query ? strlen(query) : 0;
    lc = strlen(ctype);
    la = strlen(accept);
    lt = rq->traceparent ? strlen(rq->traceparent) : 0;
    total = lm + lu + lh + lp + lq + lc + la + lt + (lm + 1 + lp) + rq->body_len + 10;
    x->strs = malloc(total);
    if (x->strs == NULL)
        goto out;
    p = x->strs;
    x->method = pack(&p, rq->method, lm);
    x->url = pack(&p, rq->url, lu);
    x->host = pack(&p, host, lh);
    x->path = pack(&p, path, lp);
    x->query = query ? pack(&p, query, lq) : NULL;
    x->ctype = pack(&p, ctype, lc);
    x->accept = pack(&p, accept, la);
    x->traceparent = rq->traceparent ? pack(&p, rq->traceparent, lt) : NULL;
    x->what = p; /* "METHOD /path" */
    memcpy(p, rq->method, lm);
    p[lm] = ' ';
    p += lm + 1;
    pack(&p, path, lp);
    x->body = pack(&p, rq->body ? rq->body : "", rq->body_len);
    x->body_len = rq->body_len;
    rc = 0;
out:
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
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
    /* Only max_active transfers go to curl: curl 7.88 scans its pending
     * list on every removal, and a queued request here costs a few hundred
     * bytes instead of a curl handle.  A request with a start hook always
     * starts from the loop: its hook may refuse, and the callback must not
     * run inside this call. */
    if (x->on_start != NULL) {
        x->state = X_QUEUED;
        xl_push(&h->queued, x);
        if (h->active.n < (size_t)h->max_active)
            event_active(h->pump_ev, 0, 0);
    } else if (h->queued.n == 0 && h->active.n < (size_t)h->max_active) {
        if (xfer_activate(h, x) != 0) {
            xfer_free(x);
            return NULL;
        }
    } else {
        x->state = X_QUEUED;
        xl_push(&h->queued, x);
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
        xl_del(&h->queued, x);
    } else {
        curl_multi_remove_handle(x->ln->multi, x->easy);
        x->ln->active--;
        xl_del(&h->active, x);
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
    return h ? h->queued.n + h->active.n : 0;
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
    while (h->queued.head != NULL)
        mb_http_cancel(h->queued.head);
    while (h->active.head != NULL)
        mb_http_cancel(h->active.head);
    while (h->npool > 0)
        curl_easy_cleanup(h->pool[--h->npool]);
    free(h->pool);
    for (int i = 0; i < h->nlanes; i++) {
        if (h->lanes[i].multi)
            curl_multi_cleanup(h->lanes[i].multi); /* closes kept-alive connections */
    }
    while (h->socks != NULL)
        sock_free(h->socks);
    for (int i = 0; i < h->nlanes; i++) {
        if (h->lanes[i].timer)
            event_free(h->lanes[i].timer);
    }
    free(h->lanes);
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
