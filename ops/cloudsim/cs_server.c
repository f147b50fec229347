/* cs_server.c: evhttp glue: parses a call, applies faults and latency, verifies the
 * signature, routes to a handler, records the call, and answers (now, later, or never).
 *
 * Delayed answers use one event timer per call and hanging calls are parked
 * until their connection closes, so thousands of slow calls cost memory only,
 * never a thread or a sleep.  Only the handling holds the server lock; each loop
 * parses and writes its own calls. */
#include <ctype.h>
#include <event2/buffer.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <event2/bufferevent.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cs_api.h"
#include "cs_auth.h"
#include "mb_buf.h"
#include "mb_json.h"
#include "mb_log.h"

#define MAX_BODY (12 * 1024 * 1024) /* AK/SK requests are limited to 12 MB */

/* One event loop on its own thread and its own listening socket. */
typedef struct cs_loop {
    cs_server *srv;
    struct event_base *base; /* owned */
    struct evhttp *http;     /* owned */
    int wake[2];             /* a byte on wake[1] stops the loop (from cs_server_stop) */
    struct event *wake_ev;
    pthread_t thread;
    int running;              /* the thread was started */
    unsigned long long calls; /* taken in (under the server lock) */
} cs_loop;

static void lock(cs_server *s)
{
    pthread_mutex_lock(&s->lock);
}

static void unlock(cs_server *s)
{
    pthread_mutex_unlock(&s->lock);
}

static long long wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- replies */

static void reply_reset(cs_call *c)
{
    json_decref(c->out);
    c->out = NULL;
    free(c->out_text);
    c->out_text = NULL;
    c->out_ctype = NULL;
    c->retry_after = 0;
}

void cs_reply_json(cs_call *c, int status, json_t *body)
{
    reply_reset(c);
    c->status = status;
    c->out = body;
}

void cs_reply_text(cs_call *c, int status, char *text, size_t len)
{
    reply_reset(c);
    c->status = status;
    c->out_text = text;
    c->out_len = len;
}

void cs_reply_empty(cs_call *c, int status)
{
    reply_reset(c);
    c->status = status;
}

void cs_reply_cloud(cs_call *c, int status, const char *code, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cs_reply_json(c, status,
                  json_pack("{s:s, s:s, s:s}", "error_code", code, "error_msg", msg, "request_id",
                            c->request_id));
}

void cs_reply_k8s(cs_call *c, int status, const char *reason, const char *kind, const char *name,
                  const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *details = json_object();
    if (name)
        json_object_set_new(details, "name", json_string(name));
    if (kind)
        json_object_set_new(details, "kind", json_string(kind));
    cs_reply_json(c, status,
                  json_pack("{s:s, s:s, s:{}, s:s, s:s, s:s, s:o, s:i}", "kind", "Status",
                            "apiVersion", "v1", "metadata", "status", "Failure", "message", msg,
                            "reason", reason, "details", details, "code", status));
}

/* ---------------------------------------------------------------- request helpers */

static int hexv(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into out (room for n+1). */
static void pct_decode(const char *s, size_t n, char *out, int plus_space)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
            out[o++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
            i += 2;
        } else if (s[i] == '+' && plus_space) {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
}

const char *cs_query(const cs_call *c, const char *name)
{
    for (int i = 0; i < c->nq; i++) {
        if (strcmp(c->qname[i], name) == 0)
            return c->qval[i];
    }
    return NULL;
}

const char *cs_header(const cs_call *c, const char *name)
{
    return cs_auth_header(c->hdrs, c->nhdrs, name);
}

json_t *cs_body_json(const cs_call *c, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j;

    if (c->body_len == 0) {
        snprintf(err, errlen, "request body is empty");
        return NULL;
    }
    j = json_loadb((const char *)c->body, c->body_len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        snprintf(err, errlen, "request body is not valid JSON: %s (line %d column %d)", je.text,
                 je.line, je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        snprintf(err, errlen, "request body must be a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

const char *cs_content_type(const cs_call *c, char *buf, size_t len)
{
    const char *ct = cs_header(c, "Content-Type");
    size_t n;

    if (ct == NULL) {
        buf[0] = '\0';
        return buf;
    }
    while (*ct == ' ')
        ct++;
    n = strcspn(ct, "; ");
    snprintf(buf, len, "%.*s", (int)n, ct);
    for (char *p = buf; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return buf;
}

void cs_mutation(cs_call *c, cs_mut_kind kind, const char *cluster, const char *target, int changed)
{
    cs_audit_mutation(c->srv->audit, c->now_ms, kind, cluster, target, changed, c->seq);
}

/* ---------------------------------------------------------------- call life */

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "UNKNOWN";
}

static void call_free(cs_call *c)
{
    if (c == NULL)
        return;
    if (c->timer)
        event_free(c->timer);
    if (c->watch)
        event_free(c->watch);
    json_decref(c->out);
    free(c->out_text);
    free(c->hit.body);
    free(c->uri);
    free(c->path);
    free(c->segbuf);
    free(c->qbuf);
    free(c);
}

static void split_segments(cs_call *c)
{
    const char *p = c->path;
    char *o = c->segbuf;

    while (*p && c->nseg < CS_MAX_SEGS) {
        if (*p == '/') {
            p++;
            continue;
        }
        size_t n = strcspn(p, "/");
        pct_decode(p, n, o, 0);
        c->seg[c->nseg++] = o;
        o += strlen(o) + 1;
        p += n;
    }
    if (*p)
        c->nseg = CS_MAX_SEGS; /* too deep: no route has that many */
}

static void split_query(cs_call *c)
{
    const char *p = c->query;
    char *o = c->qbuf;

    while (p && *p && c->nq < CS_MAX_QUERY) {
        size_t n = strcspn(p, "&");
        size_t k = strcspn(p, "=");
        if (n == 0) {
            p++;
            continue;
        }
        if (k > n)
            k = n;
        pct_decode(p, k, o, 1);
        c->qname[c->nq] = o;
        o += strlen(o) + 1;
        if (k < n)
            pct_decode(p + k + 1, n - k - 1, o, 1);
        else
            o[0] = '\0';
        c->qval[c->nq++] = o;
        o += strlen(o) + 1;
        p += n;
        if (*p == '&')
            p++;
    }
}

/* Parses a request into a call (the loop's own work: no lock). */
static cs_call *call_new(cs_server *s, struct event_base *base, struct evhttp_request *req)
{
    cs_call *c = calloc(1, sizeof(*c));
    const char *uri = evhttp_request_get_uri(req);

    if (c == NULL)
        return NULL;
    c->srv = s;
    c->base = base;
    c->req = req;
    c->sig_ok = -1;
    c->now_ms = wall_ms();
    c->method = method_name(evhttp_request_get_command(req));
    c->uri = strdup(uri ? uri : "/");
    if (c->uri == NULL)
        goto err;
    /* absolute-form request-target: keep only the path and query */
    char *start = c->uri;
    if (strncmp(start, "http://", 7) == 0 || strncmp(start, "https://", 8) == 0) {
        start = strchr(start + 8, '/');
        if (start == NULL)
            start = c->uri + strlen(c->uri);
    }
    start[strcspn(start, "#")] = '\0';
    size_t plen = strcspn(start, "?");
    c->path = strndup(*start ? start : "/", *start ? plen : 1);
    c->query = start[plen] == '?' ? start + plen + 1 : NULL;
    c->segbuf = malloc(strlen(c->path) + 2);
    c->qbuf = malloc(c->query ? 2 * strlen(c->query) + 2 : 1);
    if (c->path == NULL || c->segbuf == NULL || c->qbuf == NULL)
        goto err;
    split_segments(c);
    split_query(c);

    struct evkeyval *kv;
    TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next)
    {
        if (c->nhdrs == CS_MAX_HDRS)
            break;
        c->hdrs[c->nhdrs].name = kv->key;
        c->hdrs[c->nhdrs++].value = kv->value;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    c->body_len = evbuffer_get_length(in);
    c->body = c->body_len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
    return c;
err:
    call_free(c);
    return NULL;
}

/* The call's place in the request log and its request id (under the lock). */
static void call_log(cs_call *c)
{
    cs_server *s = c->srv;
    struct evkeyvalq *in = evhttp_request_get_input_headers(c->req);

    c->seq = cs_audit_request(s->audit, c->now_ms, c->method, c->uri,
                              evhttp_find_header(in, "traceparent"),
                              evhttp_find_header(in, "User-Agent"));
    snprintf(c->request_id, sizeof(c->request_id), "%016llx%016llx",
             (unsigned long long)c->now_ms * 1000003ULL, ++s->rid_seq * 0x9e3779b97f4a7c15ULL);
}

static void free_dump(const void *data, size_t len, void *arg)
{
    (void)len;
    (void)arg;
    free((void *)data);
}

/* The reply's body as text.  Until then it may share objects with the model, so this
 * runs under the server lock.  mb_json_dump writes what json_dumps(JSON_COMPACT) would,
 * byte for byte, in well under half its time (json_dumps was a sixth of cloudsim's CPU in
 * the bench's 10,000-order run). */
static void render(cs_call *c)
{
    mb_buf b = {0};

    if (c->out == NULL)
        return;
    if (mb_json_dump(&b, c->out) == 0 && !b.oom) {
        c->out_len = b.len;
        c->out_text = mb_buf_take(&b);
    }
    mb_buf_free(&b);
    json_decref(c->out);
    c->out = NULL;
}

/* The answer, in the request log (under the lock). */
static void record(cs_call *c)
{
    cs_audit_finish(c->srv->audit, c->seq, wall_ms(), c->status, c->sig_ok, c->fault_label);
    if (c->out_text && c->out_ctype)
        cs_audit_media(c->srv->audit, c->seq, c->out_ctype);
}

/* Writes the rendered answer and frees the call.  Only the call's own loop touches its
 * request, so this runs outside the lock. */
static void deliver(cs_call *c)
{
    struct evbuffer *buf = evbuffer_new();
    struct evkeyvalq *oh = evhttp_request_get_output_headers(c->req);
    char ra[16];

    evhttp_add_header(oh, "X-Request-Id", c->request_id);
    if (c->retry_after > 0) {
        snprintf(ra, sizeof(ra), "%d", c->retry_after);
        evhttp_add_header(oh, "Retry-After", ra);
    }
    if (c->out_text) {
        evhttp_add_header(oh, "Content-Type", c->out_ctype ? c->out_ctype : "application/json");
        /* handed to the buffer without a copy */
        if (buf && evbuffer_add_reference(buf, c->out_text, c->out_len, free_dump, NULL) == 0)
            c->out_text = NULL;
    }
    evhttp_send_reply(c->req, c->status ? c->status : 500, NULL, buf);
    if (buf)
        evbuffer_free(buf);
    call_free(c);
}

/* ---------------------------------------------------------------- held calls */

static void held_link(cs_call *c)
{
    mb_list_push_head(&c->srv->held, &c->hlink);
}

static void held_unlink(cs_call *c)
{
    mb_list_del(&c->srv->held, &c->hlink);
}

/* The client of a hanging call went away: drop the call.  libevent detaches a
 * request that the user has not answered yet; a detached one is ours to free. */
static void on_hang_close(struct evhttp_connection *evcon, void *arg)
{
    cs_call *c = arg;
    cs_server *s = c->srv;

    (void)evcon;
    lock(s);
    held_unlink(c);
    cs_audit_finish(s->audit, c->seq, wall_ms(), 0, c->sig_ok, "hang");
    if (evhttp_request_get_connection(c->req) == NULL)
        evhttp_request_free(c->req);
    call_free(c);
    unlock(s);
}

/* evhttp does not read from a connection while its request awaits an answer,
 * so it would never notice the client leaving; this watch does. */
static void on_hang_readable(evutil_socket_t fd, short what, void *arg)
{
    cs_call *c = arg;
    cs_server *s = c->srv;
    char b;

    (void)what;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK);
    if (n > 0) {
        event_del(c->watch); /* pipelined bytes: stop watching, keep hanging */
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    lock(s);
    held_unlink(c);
    call_free(c);
    unlock(s);
    if (evcon) {
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        evhttp_connection_free(evcon); /* frees the request with it */
    }
}

static void hang(cs_call *c)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);

    c->fault_label = "hang";
    reply_reset(c);
    cs_audit_finish(c->srv->audit, c->seq, wall_ms(), 0, c->sig_ok, "hang");
    if (evcon == NULL) {
        evhttp_request_free(c->req);
        call_free(c);
        return;
    }
    c->hanging = 1;
    held_link(c);
    evhttp_connection_set_closecb(evcon, on_hang_close, c);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0) {
        c->watch = event_new(c->base, fd, EV_READ | EV_PERSIST, on_hang_readable, c);
        if (c->watch)
            event_add(c->watch, NULL);
    }
}

/* ---------------------------------------------------------------- processing */

static int is_k8s(const cs_call *c)
{
    return c->nseg >= 1 && strcmp(c->seg[0], "k8s") == 0;
}

/* Answers with the error, throttle or body the fault rules decided; 1 if it did. */
static int fault_reply(cs_call *c)
{
    cs_fault_hit *h = &c->hit;

    if (h->body) {
        c->fault_label = "body";
        cs_reply_text(c, 200, h->body, strlen(h->body));
        h->body = NULL; /* the reply owns it now */
        return 1;
    }
    if (h->throttle) {
        c->fault_label = "throttle";
        if (is_k8s(c))
            cs_reply_k8s(c, 429, "TooManyRequests", NULL, NULL,
                         "Too many requests, please try again later.");
        else
            cs_reply_cloud(c, 429, "APIGW.0308",
                           "The throttling threshold has been reached: policy user over "
                           "ratelimit,limit:100,time:1 second");
        c->retry_after = h->retry_after;
        return 1;
    }
    if (h->error_status) {
        c->fault_label = "error";
        if (is_k8s(c))
            cs_reply_k8s(c, h->error_status,
                         h->error_status >= 500 ? "InternalError" : "BadRequest", NULL, NULL,
                         "injected fault: HTTP %d", h->error_status);
        else
            cs_reply_cloud(c, h->error_status, h->error_status >= 500 ? "APIGW.0201" : "APIGW.0400",
                           "injected fault: HTTP %d", h->error_status);
        return 1;
    }
    return 0;
}

/* The project a call acts on, borrowed, or NULL when the path names none
 * (or names a cluster that does not exist: the handler answers 404). */
static const char *call_project(cs_call *c)
{
    cs_cluster *cl = NULL;

    if (c->nseg >= 4 && strcmp(c->seg[0], "api") == 0 && strcmp(c->seg[2], "projects") == 0)
        return c->seg[3];
    if (c->nseg >= 3 && strcmp(c->seg[0], "v3") == 0 && strcmp(c->seg[2], "vpc") == 0)
        return c->seg[1];
    if (c->nseg >= 5 && strcmp(c->seg[0], "cce") == 0 && strcmp(c->seg[3], "clusters") == 0)
        cl = cs_model_cluster(c->srv->m, c->seg[4]);
    else if (c->nseg >= 2 && is_k8s(c))
        cl = cs_model_cluster(c->srv->m, c->seg[1]);
    return cl ? cl->project_id : NULL;
}

/* Signature and project checks; answers and returns 0 when refused. */
static int authorize(cs_call *c)
{
    cs_server *s = c->srv;
    char *msg = NULL;

    if (s->no_auth)
        return 1;
    if (is_k8s(c) && strcmp(c->method, "GET") == 0 && cs_header(c, "Authorization") == NULL &&
        (s->kubectl_read || s->m->kubectl_read))
        return 1; /* kubectl reads (documented: --kubectl-read / scenario kubectl_read) */
    cs_auth_req ar = {c->method, c->path, c->query,    c->hdrs,
                      c->nhdrs,  c->body, c->body_len, (time_t)(c->now_ms / 1000)};
    if (cs_auth_verify(s->m, &ar, &c->cred, &msg) < 0) {
        c->sig_ok = 0;
        cs_reply_cloud(c, 401, "APIGW.0301", "%s", msg ? msg : "Incorrect IAM authentication");
        free(msg);
        return 0;
    }
    c->sig_ok = 1;
    const char *project = call_project(c);
    if (project && !cs_auth_project_ok(c->cred, project)) {
        cs_reply_cloud(c, 403, "APIGW.0302",
                       "The IAM user is not authorized to access the API: credential %s has no "
                       "access to project %s",
                       c->cred->ak, project);
        return 0;
    }
    return 1;
}

static void route(cs_call *c)
{
    const char *s0 = c->nseg > 0 ? c->seg[0] : "";

    if (c->nseg >= 3 && strcmp(s0, "api") == 0 && strcmp(c->seg[1], "v3") == 0 &&
        strcmp(c->seg[2], "projects") == 0)
        cs_cce_handle(c);
    else if (c->nseg >= 3 && strcmp(s0, "cce") == 0 && strcmp(c->seg[1], "cam") == 0 &&
             strcmp(c->seg[2], "v3") == 0)
        cs_cam_handle(c);
    else if (c->nseg >= 3 && strcmp(s0, "v3") == 0 && strcmp(c->seg[2], "vpc") == 0)
        cs_vpc_handle(c);
    else if (c->nseg >= 2 && is_k8s(c))
        cs_k8s_handle(c);
    else
        cs_reply_cloud(c, 404, "APIGW.0101",
                       "The API does not exist or has not been published in the environment");
}

/* Runs the call: faults, signature, handler.  0 if it was left hanging (parked), 1 with
 * the reply built. */
static int process(cs_call *c)
{
    if (!c->hit.after && fault_reply(c))
        return 1;
    if (authorize(c))
        route(c);
    if (c->hit.after) {
        if (c->hit.hang) {
            hang(c);
            return 0;
        }
        fault_reply(c);
    }
    return 1;
}

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

/* Holds the call for ms on a timer of its loop (on_timer).  0, or -1 if no timer could be
 * set (the caller goes on at once). */
static int park(cs_call *c, long long ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    if (c->timer == NULL)
        c->timer = evtimer_new(c->base, on_timer, c);
    if (c->timer == NULL || evtimer_add(c->timer, &tv) < 0)
        return -1;
    held_link(c);
    return 0;
}

/* Handles a call whose hold before handling (a fault's latency) is over.  Returns it when
 * its answer is due now (the caller delivers it, outside the lock), or NULL when it is
 * parked: hanging, or held until reply_at. */
static cs_call *answer(cs_call *c)
{
    if (!process(c))
        return NULL;
    render(c);
    c->handled = 1;
    long long wait = c->reply_at - mono_ms();
    if (wait > 0 && park(c, wait) == 0)
        return NULL;
    record(c);
    return c;
}

/* A parked call's time is up: handled now (its fault's latency is over), or answered. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    cs_call *c = arg;
    cs_server *s = c->srv;

    (void)fd;
    (void)what;
    lock(s);
    held_unlink(c);
    if (!c->handled) {
        c->now_ms = wall_ms();
        c = answer(c);
    } else {
        record(c);
    }
    unlock(s);
    if (c)
        deliver(c);
}

/* A fault's latency holds a call before it is handled: what it reads and changes happens
 * then.  The server's latency (--latency-ms, the cloud's round trip) is counted from the
 * call's arrival and overlaps its handling, as a real API's own work is part of the time
 * it takes to answer: a burst of calls is answered latency_ms after each arrived, not
 * after the calls ahead of it were handled too. */
static cs_call *handle(cs_loop *l, cs_call *c)
{
    cs_server *s = l->srv;

    call_log(c);
    if ((c->nseg >= 1 && strcmp(c->seg[0], "admin") == 0) ||
        (c->nseg == 1 && strcmp(c->seg[0], "healthz") == 0)) {
        cs_admin_handle(c);
        render(c);
        record(c);
        return c;
    }
    cs_faults_eval(s->faults, c->method, c->path, &c->hit);
    if (c->hit.hang && !c->hit.after) {
        hang(c);
        return NULL;
    }
    c->reply_at = mono_ms() + c->hit.latency_ms + s->latency_ms;
    if (c->hit.latency_ms > 0 && park(c, c->hit.latency_ms) == 0)
        return NULL;
    return answer(c);
}

/* Parsing and writing are the loop's own; the handling holds the server lock: the model,
 * audit, faults and held list are shared by every loop, and a reply may share objects with
 * the model until it is rendered. */
static void on_request(struct evhttp_request *req, void *arg)
{
    cs_loop *l = arg;
    cs_call *c = call_new(l->srv, l->base, req);

    if (c == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    lock(l->srv);
    l->calls++;
    c = handle(l, c);
    unlock(l->srv);
    if (c)
        deliver(c);
}

/* ---------------------------------------------------------------- server */

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    cs_loop *l = arg;

    (void)fd;
    (void)what;
    event_base_loopbreak(l->base);
}

static void *loop_main(void *arg)
{
    cs_loop *l = arg;

    event_base_dispatch(l->base);
    return NULL;
}

/* A loop's base, HTTP server on fd (taken over) and wake pipe.  0 or -1. */
static int loop_init(cs_server *s, cs_loop *l, int fd)
{
    /* The changelist folds evhttp's per-request enable/disable of read and
     * write interest into one epoll_ctl per fd per loop turn. */
    struct event_config *cfg = event_config_new();

    l->srv = s;
    if (cfg)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    l->base = cfg ? event_base_new_with_config(cfg) : NULL;
    event_config_free(cfg);
    if (l->base == NULL || pipe(l->wake) < 0) {
        close(fd);
        return -1;
    }
    l->wake_ev = event_new(l->base, l->wake[0], EV_READ, on_wake, l);
    l->http = evhttp_new(l->base);
    if (l->wake_ev == NULL || event_add(l->wake_ev, NULL) < 0 || l->http == NULL) {
        close(fd);
        return -1;
    }
    evhttp_set_allowed_methods(l->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_max_body_size(l->http, MAX_BODY);
    /* Idle and hanging connections stay until the client gives up. */
    evhttp_set_timeout(l->http, 3600);
    evhttp_set_gencb(l->http, on_request, l);
    if (evhttp_accept_socket_with_handle(l->http, fd) == NULL) {
        close(fd);
        return -1;
    }
    return 0;
}

int cs_server_start(cs_server *s, const int *fds, int nfds)
{
    pthread_mutexattr_t ma;
    int i;

    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&s->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    s->loops = calloc((size_t)(nfds > 0 ? nfds : 1), sizeof(*s->loops));
    s->nloops = s->loops ? nfds : 0;
    for (i = 0; i < s->nloops; i++) /* cs_server_stop closes only what was opened */
        s->loops[i].wake[0] = s->loops[i].wake[1] = -1;
    for (i = 0; i < s->nloops; i++) {
        if (loop_init(s, &s->loops[i], fds[i]) < 0)
            break;
    }
    if (s->loops == NULL || i < s->nloops) {
        for (int k = s->loops ? i + 1 : 0; k < nfds; k++)
            close(fds[k]);
        return -1;
    }
    for (i = 0; i < s->nloops; i++) {
        if (pthread_create(&s->loops[i].thread, NULL, loop_main, &s->loops[i]) != 0)
            return -1;
        s->loops[i].running = 1;
    }
    return 0;
}

void cs_server_stop(cs_server *s)
{
    if (s->loops == NULL)
        return;
    for (int i = 0; i < s->nloops; i++) {
        cs_loop *l = &s->loops[i];
        if (l->running) {
            /* a pipe write wakes the loop wherever it waits */
            while (write(l->wake[1], "x", 1) < 0 && errno == EINTR)
                ;
            pthread_join(l->thread, NULL);
            l->running = 0;
        }
    }
    /* Every thread is gone: what follows runs alone.  Freeing each evhttp
     * frees its connections and requests; hanging calls hear it through
     * their close callbacks.  Delayed calls are freed from the held list
     * before the bases their timers are on. */
    for (int i = 0; i < s->nloops; i++) {
        if (s->loops[i].http)
            evhttp_free(s->loops[i].http);
        s->loops[i].http = NULL;
    }
    while (s->held.head) {
        cs_call *c = MB_LIST_OWNER(s->held.head, cs_call, hlink);
        held_unlink(c);
        call_free(c); /* its request went with its connection */
    }
    for (int i = 0; i < s->nloops; i++) {
        cs_loop *l = &s->loops[i];
        if (l->wake_ev)
            event_free(l->wake_ev);
        if (l->base)
            event_base_free(l->base);
        if (l->wake[0] >= 0)
            close(l->wake[0]);
        if (l->wake[1] >= 0)
            close(l->wake[1]);
    }
    free(s->loops);
    s->loops = NULL;
    s->nloops = 0;
    pthread_mutex_destroy(&s->lock);
}

json_t *cs_server_loops_json(cs_server *s)
{
    json_t *a = json_array();

    for (int i = 0; a && i < s->nloops; i++)
        json_array_append_new(a, json_integer((json_int_t)s->loops[i].calls));
    return a;
}

void cs_server_set_model(cs_server *s, cs_model *m)
{
    cs_model_free(s->m);
    s->m = m;
}
