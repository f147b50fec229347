/* mb_http.c: libcurl multi on a libevent loop (curl's "multi_event" pattern).
 *
 * curl tells us which sockets to watch (socket_cb) and when to wake it
 * (timer_cb); libevent tells curl when a socket is ready (on_socket) or the
 * timer fired (on_timer), through curl_multi_socket_action.  After each
 * action, finished transfers are taken off the multi handle and only then
 * reported to their owners, so an owner's callback runs outside every curl
 * callback and may freely start or cancel transfers. */
#include "mb_http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_sign.h"

#define MB_HTTP_MAX_BODY (32L * 1024 * 1024) /* a response larger than this is refused */
#define MB_HTTP_EXCERPT  200                 /* body bytes quoted in an error text */

/* One socket curl asked us to watch. */
typedef struct sock_ctx {
    mb_http *h;
    curl_socket_t fd;
    struct event *ev;
    struct sock_ctx *prev, *next;
} sock_ctx;

struct mb_http {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    long connect_timeout_ms;
    long timeout_ms;
    char *ca_file;
    char *ak;
    char *sk;
    mb_http_xfer *xfers; /* in flight, doubly linked */
    sock_ctx *socks;     /* watched sockets, freed at the end if curl left any */
    size_t inflight;
    mb_http_counters st;
};

struct mb_http_xfer {
    mb_http *h;
    CURL *easy;
    struct curl_slist *hdrs;
    mb_http_cb *cb;
    void *arg;
    char *body; /* request body copy (curl reads it in place) */
    char *what; /* "GET /path" for error texts */
    char *resp; /* response body, NUL-terminated */
    size_t resp_len, resp_cap;
    long retry_after_ms;
    int too_large;
    int completing; /* the callback is running: cancel is a no-op */
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
        st = MB_AGAIN, name = "Conflict"; /* DESIGN.md 3: conflicts are transient */
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

static const char *json_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Fills e for a non-2xx response: the body's own code and message when it
 * is a cloud error ({"error_code","error_msg"}, ASM's errorCode/errorMsg,
 * VPC v1's code/message) or a Kubernetes Status, else an excerpt. */
static void http_error(mb_error *e, const mb_http_xfer *x, long status)
{
    char code[64];
    mb_status st = mb_http_classify(status, 0, code, sizeof(code));
    const char *bcode = NULL, *bmsg = NULL;
    char ex[MB_HTTP_EXCERPT + 8];
    json_t *j = NULL;

    if (x->resp_len > 0)
        j = json_loadb(x->resp, x->resp_len, 0, NULL);
    if (json_is_object(j)) {
        if (json_str(j, "error_code") || json_str(j, "error_msg")) {
            bcode = json_str(j, "error_code");
            bmsg = json_str(j, "error_msg");
        } else if (json_str(j, "errorCode") || json_str(j, "errorMsg")) {
            bcode = json_str(j, "errorCode");
            bmsg = json_str(j, "errorMsg");
        } else if (json_str(j, "reason") || json_str(j, "message")) {
            bcode = json_str(j, "reason"); /* Kubernetes Status */
            bmsg = json_str(j, "message");
        } else if (json_str(j, "code")) {
            bcode = json_str(j, "code");
        }
    }
    if (bcode != NULL && bcode[0] != '\0')
        snprintf(code, sizeof(code), "%s", bcode);
    if (bmsg == NULL) {
        excerpt(x->resp, x->resp_len, ex, sizeof(ex));
        bmsg = ex;
    }
    mb_error_set(e, st, code, "%s: HTTP %ld: %s", x->what, status, bmsg[0] ? bmsg : "(empty body)");
    e->http_status = status;
    if (status == 429 || status == 503)
        e->retry_after_ms = x->retry_after_ms;
    json_decref(j);
}

/* ------------------------------------------------------------------ */
/* Transfers                                                          */
/* ------------------------------------------------------------------ */

static void xfer_unlink(mb_http_xfer *x)
{
    mb_http *h = x->h;
    if (x->prev)
        x->prev->next = x->next;
    else
        h->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    h->inflight--;
}

static void xfer_free(mb_http_xfer *x)
{
    if (x == NULL)
        return;
    if (x->easy)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    free(x->body);
    free(x->what);
    free(x->resp);
    free(x);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    mb_http_xfer *x = userp;
    size_t n = size * nmemb;
    if (x->resp_len + n + 1 > x->resp_cap) {
        size_t cap = x->resp_cap ? x->resp_cap : 1024;
        char *p;
        while (cap < x->resp_len + n + 1)
            cap *= 2;
        if (cap > (size_t)MB_HTTP_MAX_BODY + 1) {
            x->too_large = 1;
            return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
        }
        p = realloc(x->resp, cap);
        if (p == NULL)
            return 0;
        x->resp = p;
        x->resp_cap = cap;
    }
    memcpy(x->resp + x->resp_len, data, n);
    x->resp_len += n;
    x->resp[x->resp_len] = '\0';
    return n;
}

static size_t on_header(char *data, size_t size, size_t nitems, void *userp)
{
    mb_http_xfer *x = userp;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    char val[128];

    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        x->retry_after_ms = -1; /* a new response (after 100 Continue) */
        return n;
    }
    if (n <= sizeof(name) - 1 || strncasecmp(data, name, sizeof(name) - 1) != 0)
        return n;
    size_t vl = n - (sizeof(name) - 1);
    if (vl >= sizeof(val))
        vl = sizeof(val) - 1;
    memcpy(val, data + sizeof(name) - 1, vl);
    val[vl] = '\0';
    val[strcspn(val, "\r\n")] = '\0';
    x->retry_after_ms = mb_http_retry_after_ms(val, time(NULL));
    return n;
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
    curl_multi_remove_handle(h->multi, x->easy);
    xfer_unlink(x);
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    if (curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &nconn) == CURLE_OK) {
        if (nconn > 0)
            h->st.new_conns += (uint64_t)nconn;
        else if (cc == CURLE_OK)
            h->st.reused++;
    }

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

    if (e.status == MB_OK)
        h->st.ok++;
    else if (e.status == MB_AGAIN)
        h->st.again++;
    else
        h->st.perm++;
    h->st.completed++;

    r.status = status;
    r.body = x->resp ? x->resp : "";
    r.body_len = x->resp_len;
    r.retry_after_ms = x->retry_after_ms;
    x->completing = 1;
    x->cb(x->arg, status ? &r : NULL, &e);
    xfer_free(x);
}

/* Takes every finished transfer off the multi handle first, then reports
 * them: a callback that cancels a transfer finished in the same turn must
 * not see it reported afterwards, so reports go one at a time and the
 * queue is re-read after each. */
static void check_done(mb_http *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
        mb_http_xfer *x = NULL;
        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x != NULL)
            xfer_done(x, m->data.result);
    }
}

/* ------------------------------------------------------------------ */
/* Loop glue                                                          */
/* ------------------------------------------------------------------ */

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
    sock_ctx *s = arg;
    mb_http *h = s->h;
    int running = 0;
    int flags = 0;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    check_done(h);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    mb_http *h = arg;
    int running = 0;
    (void)fd;
    (void)what;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    mb_http *h = userp;
    struct timeval tv;
    (void)multi;
    if (timeout_ms < 0) {
        evtimer_del(h->timer);
        return 0;
    }
    tv.tv_sec = timeout_ms / 1000;
    tv.tv_usec = (timeout_ms % 1000) * 1000;
    return evtimer_add(h->timer, &tv) == 0 ? 0 : -1;
}

static void sock_free(sock_ctx *s)
{
    mb_http *h = s->h;
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
    mb_http *h = userp;
    sock_ctx *s = socketp;
    short kind = EV_PERSIST;
    (void)easy;

    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_free(s);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->h = h;
        s->fd = fd;
        s->next = h->socks;
        if (h->socks)
            h->socks->prev = s;
        h->socks = s;
        curl_multi_assign(h->multi, fd, s);
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

mb_http *mb_http_new(struct event_base *base, const mb_http_opts *o, char *err, size_t errlen)
{
    static int global_done;
    mb_http_opts def;
    mb_http *h;

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
    h->ca_file = dup_or_null(o->ca_file);
    h->ak = dup_or_null(o->ak);
    h->sk = dup_or_null(o->sk);
    if ((o->ca_file && !h->ca_file) || (o->ak && (!h->ak || !h->sk)))
        goto oom;
    h->multi = curl_multi_init();
    h->timer = evtimer_new(base, on_timer, h);
    if (h->multi == NULL || h->timer == NULL)
        goto oom;
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS,
                      o->max_connections > 0 ? o->max_connections : 256L);
    if (o->max_host_connections > 0)
        curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, o->max_host_connections);
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

/* Adds "Name: value" to the list.  Returns 0 or -1 on OOM. */
static int add_hdr(struct curl_slist **l, const char *name, const char *value)
{
    char line[2048];
    struct curl_slist *n;
    int len = snprintf(line, sizeof(line), "%s: %s", name, value);
    if (len < 0 || (size_t)len >= sizeof(line))
        return -1;
    n = curl_slist_append(*l, line);
    if (n == NULL)
        return -1;
    *l = n;
    return 0;
}

/* Host header value as the server sees it: host[:port], the default port
 * of the scheme left out (DESIGN.md 6). */
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

/* Builds the header list (with the signature when the client has
 * credentials) and the "METHOD /path" label.  Returns 0 or -1. */
static int build_headers(mb_http *h, mb_http_xfer *x, const mb_http_req *rq, int with_body)
{
    CURLU *u = curl_url();
    char *path = NULL, *query = NULL;
    char host[512], date[MB_SIGN_DATE_LEN + 1], auth[1024];
    const char *ctype = rq->content_type ? rq->content_type : "application/json";
    mb_hdr sh[3];
    size_t nsh = 0;
    size_t wlen;
    int rc = -1;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, rq->url, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_OK)
        query = NULL;
    if (host_value(u, host, sizeof(host)) != 0)
        goto out;
    wlen = strlen(rq->method) + strlen(path) + 2;
    x->what = malloc(wlen);
    if (x->what == NULL)
        goto out;
    snprintf(x->what, wlen, "%s %s", rq->method, path);

    if (add_hdr(&x->hdrs, "Host", host) || add_hdr(&x->hdrs, "Accept", "application/json"))
        goto out;
    if (with_body && add_hdr(&x->hdrs, "Content-Type", ctype))
        goto out;
    /* no "Expect: 100-continue" round trip before a body */
    if (add_hdr(&x->hdrs, "Expect", ""))
        goto out;
    if (rq->traceparent && add_hdr(&x->hdrs, "traceparent", rq->traceparent))
        goto out;
    if (h->ak != NULL) {
        mb_sign_date(time(NULL), date);
        if (with_body)
            sh[nsh++] = (mb_hdr){"Content-Type", ctype};
        sh[nsh++] = (mb_hdr){"Host", host};
        sh[nsh++] = (mb_hdr){"X-Sdk-Date", date};
        if (mb_sign_authorization(h->ak, h->sk, rq->method, path, query, sh, nsh,
                                  with_body ? x->body : "", with_body ? rq->body_len : 0, auth,
                                  sizeof(auth)) != 0)
            goto out;
        if (add_hdr(&x->hdrs, "X-Sdk-Date", date) || add_hdr(&x->hdrs, "Authorization", auth))
            goto out;
    }
    rc = 0;
out:
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
}

static int method_has_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

mb_http_xfer *mb_http_request(mb_http *h, const mb_http_req *rq, mb_http_cb *cb, void *arg)
{
    mb_http_xfer *x;
    int with_body;
    long timeout;

    if (h == NULL || rq == NULL || cb == NULL || rq->method == NULL || rq->url == NULL)
        return NULL;
    if (has_crlf(rq->method) || has_crlf(rq->url) || has_crlf(rq->traceparent) ||
        has_crlf(rq->content_type) || (rq->body == NULL && rq->body_len > 0))
        return NULL;
    with_body = rq->body != NULL || method_has_body(rq->method);
    x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->h = h;
    x->cb = cb;
    x->arg = arg;
    x->retry_after_ms = -1;
    x->body = malloc(rq->body_len + 1);
    if (x->body == NULL)
        goto err;
    if (rq->body_len)
        memcpy(x->body, rq->body, rq->body_len);
    x->body[rq->body_len] = '\0';
    if (build_headers(h, x, rq, with_body) != 0)
        goto err;
    x->easy = curl_easy_init();
    if (x->easy == NULL)
        goto err;

    timeout = rq->timeout_ms > 0 ? rq->timeout_ms : h->timeout_ms;
    curl_easy_setopt(x->easy, CURLOPT_URL, rq->url);
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, h->connect_timeout_ms);
    curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, timeout);
    curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(x->easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->ca_file)
        curl_easy_setopt(x->easy, CURLOPT_CAINFO, h->ca_file);
    curl_easy_setopt(x->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MB_HTTP_MAX_BODY);
    if (strcmp(rq->method, "GET") != 0)
        curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, rq->method);
    if (with_body) {
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
        curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body);
    }
    if (curl_multi_add_handle(h->multi, x->easy) != CURLM_OK)
        goto err;

    x->next = h->xfers;
    if (h->xfers)
        h->xfers->prev = x;
    h->xfers = x;
    h->inflight++;
    h->st.started++;
    return x;
err:
    xfer_free(x);
    return NULL;
}

void mb_http_cancel(mb_http_xfer *x)
{
    mb_http *h;
    if (x == NULL || x->completing)
        return;
    h = x->h;
    curl_multi_remove_handle(h->multi, x->easy);
    xfer_unlink(x);
    h->st.cancelled++;
    xfer_free(x);
}

struct event_base *mb_http_base(const mb_http *h)
{
    return h ? h->base : NULL;
}

size_t mb_http_inflight(const mb_http *h)
{
    return h ? h->inflight : 0;
}

void mb_http_stats(const mb_http *h, mb_http_counters *out)
{
    if (h == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = h->st;
}

void mb_http_free(mb_http *h)
{
    if (h == NULL)
        return;
    while (h->xfers != NULL)
        mb_http_cancel(h->xfers);
    if (h->multi)
        curl_multi_cleanup(h->multi); /* closes kept-alive connections */
    while (h->socks != NULL)
        sock_free(h->socks);
    if (h->timer)
        event_free(h->timer);
    free(h->ca_file);
    free(h->ak);
    if (h->sk) {
        /* do not leave the secret in freed memory */
        volatile char *p = h->sk;
        while (*p)
            *p++ = 0;
        free(h->sk);
    }
    free(h);
}
