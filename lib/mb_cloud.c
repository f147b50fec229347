/* mb_cloud.c: typed async clients (CCE, VPC, Kubernetes) over mb_http.
 *
 * Every call is one mb_cloud_op: a small record that owns copies of its
 * inputs, sends one request at a time (paging and restarts included), parses
 * the answer into the caller's out struct and reports through done exactly
 * once.  Failures found before any request is sent are reported from a
 * zero-delay timer, so done never runs inside the call that started it.
 *
 * Retries are per request: on_http looks at every outcome before the call's
 * handler does, and sends the same request again (same URL and body: the
 * same page of a listing) after a transient failure, on a timer, while the
 * op's deadline leaves room for one more request timeout.  Handlers thus
 * only ever see a success, a failure that is not transient, or the last
 * transient failure once the budget is spent. */
#include "mb_cloud.h"

#include "mb_buf.h"
#include "mb_jscan.h"
#include "mb_list.h"
#include "mb_json.h"

#include <ctype.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAGES    1000 /* a listing longer than this is refused, not followed forever */
#define MAX_RESTARTS 3    /* 410 Gone restarts of one listing */
#define PAGE_LIMIT   "500"

enum api { API_CCE, API_VPC, API_K8S };

struct mb_cloud {
    mb_http *http;
    struct event_base *base;
    char *tmpl[3]; /* URL templates, no trailing '/' */
    mb_list ops;   /* every op not finished or cancelled; its length is what is in flight */
    long retry_base_ms, retry_max_ms, retry_after_max_ms, call_budget_ms;
    uint64_t rng; /* splitmix64 state for the jitter */
    mb_cloud_counters st;
};

typedef void resp_fn(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e);

#define OP(k) MB_LIST_OWNER(k, mb_cloud_op, link)

struct mb_cloud_op {
    mb_cloud *c;
    mb_cloud_done *done;
    void *arg;
    mb_http_xfer *x;
    struct event *later; /* deferred failure */
    resp_fn *on_resp;
    mb_error *err; /* a failure found before any request went out (op_err); NULL: none */
    char *project_id, *region, *cluster_id, *traceparent;
    int finishing;
    /* the request being sent, kept for its retries */
    const char *method, *ctype; /* string literals */
    const char *accept;         /* string literal; NULL = application/json */
    char *url, *body;           /* owned */
    int attempts;               /* of this request */
    int refused;                /* the guard stopped the last attempt */
    struct event *retry_ev;
    long long deadline_ms;
    mb_cloud_guard *guard;
    void *guard_arg;
    const void *owner;
    /* per-call state */
    void *out;
    int kind; /* k8s kind, workload kind being listed */
    int pages;
    int restarts;
    long count;
    char *name; /* namespace or object name kept for follow-up requests */
    void *aux;  /* call-specific state, freed with aux_free */
    void (*aux_free)(void *);
    mb_link link; /* on c->ops */
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* What an op whose error cannot be allocated reports; never written (mb_error_set keeps
 * an error already set). */
static mb_error oom_err = {.status = MB_FATAL,
                           .retry_after_ms = -1,
                           .code = "OutOfMemory",
                           .msg = "out of memory recording a cloud call's error"};

/* The op's error, to set.  Allocated at the first failure: thousands of ops wait for a
 * connection at once when 10,000 sagas are in flight, and almost none fails before its
 * request goes out, so 600 bytes of mb_error each were a third of an op. */
static mb_error *op_err(mb_cloud_op *op)
{
    if (op->err == NULL) {
        op->err = malloc(sizeof(*op->err));
        if (op->err == NULL)
            op->err = &oom_err;
        else
            mb_error_clear(op->err);
    }
    return op->err;
}

static int op_failed(const mb_cloud_op *op)
{
    return op->err != NULL && op->err->status != MB_OK;
}

/* A growable string; an allocation failure sticks and is reported once. */
/* RFC 3986: unreserved characters kept, everything else %XX. */
static void put_pct(mb_buf *b, const char *s)
{
    mb_buf_pct_encode(b, s, strlen(s));
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Follows a dotted path of object keys ("spec.hostNetwork.SecurityGroup"). */
static json_t *jpath(json_t *o, const char *path)
{
    char key[64];
    while (o != NULL && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        o = json_object_get(o, key);
        path += n;
        if (*path == '.')
            path++;
    }
    return o;
}

static const char *jpath_str(json_t *o, const char *path)
{
    json_t *v = jpath(o, path);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Duplicates a string field; sets *oom on allocation failure. */
static char *jdup(json_t *o, const char *path, int *oom)
{
    const char *s = jpath_str(o, path);
    char *d;
    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *oom = 1;
    return d;
}

/* ------------------------------------------------------------------ */
/* URL templates                                                      */
/* ------------------------------------------------------------------ */

/* Checks a template: only {region}, {project_id}, {cluster_id}. */
static int tmpl_check(const char *t, char *err, size_t errlen, const char *what)
{
    const char *p = t;
    if (strncmp(t, "http://", 7) != 0 && strncmp(t, "https://", 8) != 0) {
        snprintf(err, errlen, "%s: not an http(s) URL: %s", what, t);
        return -1;
    }
    for (p = strchr(p, '{'); p != NULL; p = strchr(p + 1, '{')) {
        if (strncmp(p, "{region}", 8) != 0 && strncmp(p, "{project_id}", 12) != 0 &&
            strncmp(p, "{cluster_id}", 12) != 0) {
            snprintf(err, errlen, "%s: unknown placeholder at \"%.20s\"", what, p);
            return -1;
        }
    }
    return 0;
}

/* Expands c's template for api with op's target, then appends fmt, in which
 * every %s is replaced by the percent-encoded argument (path segments and
 * query values alike) and %% by '%'.  Returns a new string (free()), or
 * NULL with op->err set. */
static char *op_url(mb_cloud_op *op, enum api api, const char *fmt, ...)
{
    mb_buf b = {0};
    const char *p = op->c->tmpl[api], *brace;
    va_list ap;

    /* Text between placeholders goes in whole: a byte at a time, with three compares a byte,
     * building the URLs was 4% of the worker's instructions. */
    while ((brace = strchr(p, '{')) != NULL) {
        const char *val = NULL, *name = NULL;
        size_t skip = 0;
        mb_buf_add(&b, p, (size_t)(brace - p));
        p = brace;
        if (strncmp(p, "{region}", 8) == 0)
            val = op->region, name = "region", skip = 8;
        else if (strncmp(p, "{project_id}", 12) == 0)
            val = op->project_id, name = "project_id", skip = 12;
        else if (strncmp(p, "{cluster_id}", 12) == 0)
            val = op->cluster_id, name = "cluster_id", skip = 12;
        if (skip == 0) {
            mb_buf_add(&b, p, 1);
            p++;
            continue;
        }
        if (val == NULL || val[0] == '\0') {
            mb_error_set(op_err(op), MB_PERM, "BadTarget", "URL template needs %s: none given",
                         name);
            free(b.p);
            return NULL;
        }
        put_pct(&b, val);
        p += skip;
    }
    mb_buf_puts(&b, p);
    va_start(ap, fmt);
    for (p = fmt; *p;) {
        size_t run = strcspn(p, "%");
        mb_buf_add(&b, p, run);
        p += run;
        if (*p == '\0')
            break;
        if (p[1] == 's') {
            const char *v = va_arg(ap, const char *);
            if (v == NULL || v[0] == '\0') {
                mb_error_set(op_err(op), MB_PERM, "BadRequest", "empty value in %s", fmt);
                va_end(ap);
                free(b.p);
                return NULL;
            }
            put_pct(&b, v);
            p += 2;
        } else { /* "%%" is one '%'; a '%' before anything else stays as it is */
            mb_buf_add(&b, "%", 1);
            p += p[1] == '%' ? 2 : 1;
        }
    }
    va_end(ap);
    if (b.oom) {
        mb_error_set(op_err(op), MB_FATAL, "OutOfMemory", "building a URL: out of memory");
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ------------------------------------------------------------------ */
/* Ops                                                                */
/* ------------------------------------------------------------------ */

static void op_free(mb_cloud_op *op)
{
    mb_cloud *c = op->c;
    mb_list_del(&c->ops, &op->link);
    if (op->later)
        event_free(op->later);
    if (op->retry_ev)
        event_free(op->retry_ev);
    free(op->url);
    free(op->body);
    free(op->name);
    if (op->aux_free)
        op->aux_free(op->aux);
    if (op->err != &oom_err)
        free(op->err);
    free(op);
}

/* Reports the outcome and frees op. */
static void op_finish(mb_cloud_op *op, const mb_error *e)
{
    op->finishing = 1;
    op->done(op->arg, e);
    op_free(op);
}

static void op_finish_own(mb_cloud_op *op)
{
    mb_error e = *op_err(op);
    op_finish(op, &e);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    op_finish_own(arg);
}

/* Length of s with its NUL, 0 for NULL. */
static size_t slen(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies s into *p (when not NULL) and returns the copy. */
static char *put(char **p, const char *s, size_t n)
{
    char *at = *p;
    if (s == NULL)
        return NULL;
    memcpy(at, s, n);
    *p += n;
    return at;
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A new op, linked to c, with the target copied into the same allocation. */
static mb_cloud_op *op_new(mb_cloud *c, const mb_cloud_target *t, mb_cloud_done *done, void *arg,
                           void *out)
{
    mb_cloud_op *op;
    size_t lp = 0, lr = 0, lc = 0, lt = 0;
    char *p;

    if (c == NULL || done == NULL)
        return NULL;
    if (t != NULL) {
        lp = slen(t->project_id);
        lr = slen(t->region);
        lc = slen(t->cluster_id);
        lt = slen(t->traceparent);
    }
    op = calloc(1, sizeof(*op) + lp + lr + lc + lt);
    if (op == NULL)
        return NULL;
    op->c = c;
    op->done = done;
    op->arg = arg;
    op->out = out;
    if (t != NULL) {
        p = (char *)(op + 1);
        op->project_id = put(&p, t->project_id, lp);
        op->region = put(&p, t->region, lr);
        op->cluster_id = put(&p, t->cluster_id, lc);
        op->traceparent = put(&p, t->traceparent, lt);
        op->deadline_ms = t->deadline_ms;
        op->guard = t->guard;
        op->guard_arg = t->guard_arg;
        op->owner = t->owner;
        if (op->traceparent && strpbrk(op->traceparent, "\r\n"))
            mb_error_set(op_err(op), MB_PERM, "BadRequest", "traceparent holds a line break");
    } else {
        mb_error_set(op_err(op), MB_PERM, "BadRequest", "no target given");
    }
    if (op->deadline_ms == 0)
        op->deadline_ms = wall_ms() + c->call_budget_ms;
    mb_list_push_head(&c->ops, &op->link);
    return op;
}

/* Schedules the op's recorded failure on the loop.  Returns op, or NULL
 * (op freed, done never called) when even that cannot be allocated. */
static mb_cloud_op *op_defer(mb_cloud_op *op)
{
    struct timeval tv = {0, 0};
    if (!op_failed(op))
        mb_error_set(op_err(op), MB_FATAL, "Internal", "deferred without an error");
    op->later = evtimer_new(op->c->base, on_later, op);
    if (op->later == NULL || evtimer_add(op->later, &tv) != 0) {
        op_free(op);
        return NULL;
    }
    return op;
}

static int is_mutating(const char *method)
{
    return strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0;
}

/* mb_http's start hook for a guarded mutating request. */
static int on_start(void *arg, long timeout_ms, mb_error *err)
{
    mb_cloud_op *op = arg;
    if (op->guard(op->guard_arg, timeout_ms, err) == 0)
        return 0;
    if (err->status == MB_OK)
        mb_error_set(err, MB_AGAIN, "Refused", "%s: not sent: refused by the guard", op->method);
    op->refused = 1;
    op->c->st.refused++;
    return -1;
}

static void on_http(void *arg, const mb_http_resp *r, const mb_error *e);

/* Sends the op's current request once more.  Returns 0, or -1 with
 * op->err set. */
static int op_attempt(mb_cloud_op *op)
{
    mb_http_req rq = {.method = op->method,
                      .url = op->url,
                      .content_type = op->ctype,
                      .body = op->body,
                      .body_len = op->body ? strlen(op->body) : 0,
                      .accept = op->accept,
                      .traceparent = op->traceparent};
    if (op->guard != NULL && is_mutating(op->method)) {
        rq.on_start = on_start;
        rq.start_arg = op;
    }
    op->refused = 0;
    op->attempts++;
    op->x = mb_http_request(op->c->http, &rq, on_http, op);
    if (op->x == NULL) {
        mb_error_set(op_err(op), MB_FATAL, "OutOfMemory", "%s: request not started", op->method);
        return -1;
    }
    return 0;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    mb_cloud_op *op = arg;
    (void)fd;
    (void)what;
    if (op_attempt(op) != 0)
        op_finish_own(op);
}

/* A failure worth sending the same request again: no answer (transport,
 * timeout) or 5xx, 408, 429.  409 and the other 4xx are the caller's. */
static int transient(const mb_http_resp *r, const mb_error *e)
{
    if (e->status != MB_AGAIN)
        return 0;
    if (r == NULL)
        return 1;
    return r->status == 408 || r->status == 429 || (r->status >= 500 && r->status < 600);
}

static uint64_t next_rand(mb_cloud *c)
{
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The wait before retry number op->attempts: full jitter under a doubling
 * cap, but never less than the server's Retry-After (itself capped). */
static long retry_delay(mb_cloud_op *op, const mb_error *e)
{
    mb_cloud *c = op->c;
    long cap = c->retry_base_ms;
    long delay;

    for (int i = 1; i < op->attempts && cap < c->retry_max_ms; i++)
        cap *= 2;
    if (cap > c->retry_max_ms)
        cap = c->retry_max_ms;
    delay = (long)(next_rand(c) % (uint64_t)(cap + 1));
    if (e->retry_after_ms >= 0) {
        long ra =
            e->retry_after_ms < c->retry_after_max_ms ? e->retry_after_ms : c->retry_after_max_ms;
        if (ra > delay)
            delay = ra;
    }
    return delay;
}

/* Schedules the next attempt of the current request.  Returns 1, or 0 when
 * it could not end by the op's deadline (or no timer could be made). */
static int schedule_retry(mb_cloud_op *op, const mb_error *e)
{
    mb_cloud *c = op->c;
    long delay = retry_delay(op, e);
    struct timeval tv;

    if (wall_ms() + delay + mb_http_timeout_ms(c->http) > op->deadline_ms)
        return 0;
    if (op->retry_ev == NULL)
        op->retry_ev = evtimer_new(c->base, on_retry, op);
    tv.tv_sec = delay / 1000;
    tv.tv_usec = (delay % 1000) * 1000;
    if (op->retry_ev == NULL || evtimer_add(op->retry_ev, &tv) != 0)
        return 0;
    c->st.retries++;
    return 1;
}

static void on_http(void *arg, const mb_http_resp *r, const mb_error *e)
{
    mb_cloud_op *op = arg;
    mb_error last;
    size_t used;

    op->x = NULL;
    if (op->refused) {
        op_finish(op, e); /* nothing was sent: no retry, no handler */
        return;
    }
    if (!transient(r, e)) {
        op->on_resp(op, r, e);
        return;
    }
    if (schedule_retry(op, e))
        return;
    last = *e;
    used = strlen(last.msg);
    if (used + 40 < sizeof(last.msg))
        snprintf(last.msg + used, sizeof(last.msg) - used, " (gave up after %d attempt%s)",
                 op->attempts, op->attempts == 1 ? "" : "s");
    op->c->st.gave_up++;
    op->on_resp(op, r, &last);
}

/* Sends one request of op; url is taken over, body copied.  Returns 0, or
 * -1 with op->err set (url NULL: op_url already set it). */
static int op_send(mb_cloud_op *op, const char *method, char *url, const char *ctype,
                   const char *body, resp_fn *fn)
{
    if (url == NULL || op_failed(op)) {
        free(url);
        if (!op_failed(op))
            mb_error_set(op_err(op), MB_FATAL, "OutOfMemory", "out of memory");
        return -1;
    }
    free(op->url);
    free(op->body);
    op->url = url;
    op->body = body ? strdup(body) : NULL;
    if (body != NULL && op->body == NULL) {
        mb_error_set(op_err(op), MB_FATAL, "OutOfMemory", "%s: out of memory", method);
        return -1;
    }
    op->method = method;
    op->ctype = ctype;
    op->on_resp = fn;
    op->attempts = 0;
    return op_attempt(op);
}

/* First request of a call: failures are deferred to the loop. */
static mb_cloud_op *op_start(mb_cloud_op *op, const char *method, char *url, const char *ctype,
                             const char *body, resp_fn *fn)
{
    if (op_failed(op)) {
        free(url);
        return op_defer(op);
    }
    if (op_send(op, method, url, ctype, body, fn) != 0)
        return op_defer(op);
    return op;
}

/* A follow-up request from a response handler: failures finish at once
 * (we are on the loop already). */
static void op_next(mb_cloud_op *op, const char *method, char *url, resp_fn *fn)
{
    if (op_send(op, method, url, NULL, NULL, fn) != 0)
        op_finish_own(op);
}

/* Reads the values at paths out of a 2xx body, without a tree (mb_jscan: most replies are
 * read for a few fields, and json_loadb was most of their cost).  0, or -1 with e filled. */
static int scan_body(const mb_http_resp *r, mb_error *e, const char *what, const char *const *paths,
                     size_t npaths, mb_jval *vals)
{
    if (mb_jscan(r->body, r->body_len, paths, npaths, vals) == 0)
        return 0;
    /* a cut or garbled body is more likely a proxy hiccup than a lasting state */
    mb_error_set(e, MB_AGAIN, "BadResponse", "%s: HTTP %ld: response is not a JSON object", what,
                 r->status);
    return -1;
}

/* An integer value, or def when v is absent or no integer. */
static long vint(const mb_jval *v, long def)
{
    long long n;
    return mb_jval_int(v, &n) ? (long)n : def;
}

/* Parses a 2xx body into a tree (the workload lists, read item by item).  Returns a new
 * reference, or NULL with e filled. */
static json_t *parse_body(const mb_http_resp *r, mb_error *e, const char *what)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, 0, &je);
    if (!json_is_object(j)) {
        /* a cut or garbled body is more likely a proxy hiccup than a lasting state */
        mb_error_set(e, MB_AGAIN, "BadResponse", "%s: HTTP %ld: response is not a JSON object%s%s",
                     what, r->status, j ? "" : ": ", j ? "" : je.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

static void finish_oom(mb_cloud_op *op, const char *what)
{
    mb_error e;
    mb_error_clear(&e);
    mb_error_set(&e, MB_FATAL, "OutOfMemory", "%s: out of memory", what);
    op_finish(op, &e);
}

/* Finishes op with the outcome of a request whose body needs no parsing;
 * a 404 counts as success when gone_ok. */
static void finish_plain(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e, int gone_ok)
{
    mb_error ok;
    if (gone_ok && r != NULL && r->status == 404) {
        op->c->st.absent++;
        mb_error_clear(&ok);
        op_finish(op, &ok);
        return;
    }
    op_finish(op, e);
}

/* ------------------------------------------------------------------ */
/* Client                                                             */
/* ------------------------------------------------------------------ */

static char *tmpl_dup(const char *s)
{
    char *d = strdup(s);
    size_t n;
    if (d == NULL)
        return NULL;
    n = strlen(d);
    while (n > 0 && d[n - 1] == '/')
        d[--n] = '\0';
    return d;
}

mb_cloud *mb_cloud_new(mb_http *http, const mb_cloud_opts *o, char *err, size_t errlen)
{
    mb_cloud *c = NULL;
    const char *names[3] = {"MESHBUY_CCE_URL", "MESHBUY_VPC_URL", "MESHBUY_K8S_URL"};
    const char *urls[3];

    if (http == NULL || o == NULL) {
        snprintf(err, errlen, "mb_cloud_new: no http client or options");
        return NULL;
    }
    urls[0] = o->cce_url;
    urls[1] = o->vpc_url;
    urls[2] = o->k8s_url;
    for (int i = 0; i < 3; i++) {
        if (urls[i] == NULL || urls[i][0] == '\0') {
            snprintf(err, errlen, "%s: not set", names[i]);
            return NULL;
        }
        if (tmpl_check(urls[i], err, errlen, names[i]) != 0)
            return NULL;
    }
    if (strstr(o->k8s_url, "{cluster_id}") == NULL) {
        snprintf(err, errlen, "MESHBUY_K8S_URL: must contain {cluster_id}: %s", o->k8s_url);
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto oom;
    c->http = http;
    c->base = mb_http_base(http);
    c->retry_base_ms = o->retry_base_ms > 0 ? o->retry_base_ms : 100;
    c->retry_max_ms = o->retry_max_ms > 0 ? o->retry_max_ms : 5000;
    if (c->retry_max_ms < c->retry_base_ms)
        c->retry_max_ms = c->retry_base_ms;
    c->retry_after_max_ms = o->retry_after_max_ms > 0 ? o->retry_after_max_ms : 30000;
    c->call_budget_ms = o->call_budget_ms > 0 ? o->call_budget_ms : 60000;
    c->rng = (uint64_t)wall_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
    for (int i = 0; i < 3; i++) {
        c->tmpl[i] = tmpl_dup(urls[i]);
        if (c->tmpl[i] == NULL)
            goto oom;
    }
    return c;
oom:
    snprintf(err, errlen, "mb_cloud_new: out of memory");
    mb_cloud_free(c);
    return NULL;
}

void mb_cloud_cancel(mb_cloud_op *op)
{
    if (op == NULL || op->finishing)
        return;
    mb_http_cancel(op->x);
    op->x = NULL;
    op_free(op);
}

size_t mb_cloud_cancel_owner(mb_cloud *c, const void *owner)
{
    mb_cloud_op *op, *next;
    size_t n = 0;

    if (c == NULL || owner == NULL)
        return 0;
    for (op = OP(c->ops.head); op != NULL; op = next) {
        next = OP(op->link.next); /* cancelling frees op, and nothing else */
        if (op->owner != owner || op->finishing)
            continue;
        mb_cloud_cancel(op);
        n++;
    }
    return n;
}

void mb_cloud_stats(const mb_cloud *c, mb_cloud_counters *out)
{
    if (c == NULL) {
        memset(out, 0, sizeof(*out));
        return;
    }
    *out = c->st;
}

void mb_cloud_free(mb_cloud *c)
{
    if (c == NULL)
        return;
    while (c->ops.head != NULL)
        mb_cloud_cancel(OP(c->ops.head));
    for (int i = 0; i < 3; i++)
        free(c->tmpl[i]);
    free(c);
}

size_t mb_cloud_inflight(const mb_cloud *c)
{
    return c ? c->ops.n : 0;
}

/* ------------------------------------------------------------------ */
/* CCE: cluster, nodes                                                */
/* ------------------------------------------------------------------ */

void mb_cluster_clear(mb_cluster *c)
{
    if (c == NULL)
        return;
    free(c->id);
    free(c->name);
    free(c->version);
    free(c->phase);
    free(c->security_group_id);
    memset(c, 0, sizeof(*c));
}

static void cluster_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    static const char *const paths[] = {"metadata.uid", "metadata.name", "spec.version",
                                        "status.phase", "spec.hostNetwork.SecurityGroup"};
    mb_cluster *out = op->out;
    mb_jval v[5];
    mb_error pe;
    int oom = 0;

    if (e->status != MB_OK) {
        op_finish(op, e);
        return;
    }
    mb_error_clear(&pe);
    if (scan_body(r, &pe, "GET cluster", paths, 5, v) != 0) {
        op_finish(op, &pe);
        return;
    }
    out->id = mb_jval_strdup(&v[0], &oom);
    if (out->id == NULL && !oom)
        out->id = xstrdup(op->cluster_id);
    out->name = mb_jval_strdup(&v[1], &oom);
    out->version = mb_jval_strdup(&v[2], &oom);
    out->phase = mb_jval_strdup(&v[3], &oom);
    out->security_group_id = mb_jval_strdup(&v[4], &oom);
    if (oom) {
        finish_oom(op, "GET cluster");
        return;
    }
    /* callers may rely on these; a reply without them is not a cluster */
    if (out->version == NULL || out->phase == NULL)
        mb_error_set(&pe, MB_AGAIN, "BadResponse",
                     "GET cluster %s: HTTP %ld: no spec.version or status.phase", op->cluster_id,
                     r->status);
    op_finish(op, &pe);
}

mb_cloud_op *mb_cloud_cluster_get(mb_cloud *c, const mb_cloud_target *t, mb_cluster *out,
                                  mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    char *url;
    if (op == NULL)
        return NULL;
    mb_cluster_clear(out);
    url = op_url(op, API_CCE, "/api/v3/projects/%s/clusters/%s", op->project_id, op->cluster_id);
    return op_start(op, "GET", url, NULL, NULL, cluster_resp);
}

void mb_node_list_clear(mb_node_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].uid);
        free(l->items[i].name);
        free(l->items[i].az);
        free(l->items[i].phase);
    }
    free(l->items);
    memset(l, 0, sizeof(*l));
}

/* What reading a list's items needs beside each item. */
typedef struct item_ctx {
    void *out;
    mb_error *pe;
    long status; /* of the reply, for the error text */
    int oom;
} item_ctx;

/* One item of GET nodes (an item that is no object lacks every field). */
static int node_item(void *arg, size_t i, const mb_jval *it)
{
    static const char *const paths[] = {"metadata.uid", "metadata.name", "spec.az", "status.phase"};
    item_ctx *c = arg;
    mb_node_list *out = c->out;
    mb_node *n = &out->items[out->n++];
    mb_jval v[4];

    mb_jscan(it->text, it->len, paths, 4, v);
    n->uid = mb_jval_strdup(&v[0], &c->oom);
    n->name = mb_jval_strdup(&v[1], &c->oom);
    n->az = mb_jval_strdup(&v[2], &c->oom);
    n->phase = mb_jval_strdup(&v[3], &c->oom);
    if (!c->oom && (n->uid == NULL || n->name == NULL || n->phase == NULL))
        mb_error_set(c->pe, MB_AGAIN, "BadResponse",
                     "GET nodes: HTTP %ld: item %zu lacks uid, name or phase", c->status, i);
    return c->oom;
}

static void nodes_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    static const char *const paths[] = {"items"};
    mb_node_list *out = op->out;
    mb_error pe;
    mb_jval items;
    item_ctx c = {out, &pe, 0, 0};

    if (e->status != MB_OK) {
        op_finish(op, e);
        return;
    }
    mb_error_clear(&pe);
    if (scan_body(r, &pe, "GET nodes", paths, 1, &items) != 0) {
        op_finish(op, &pe);
        return;
    }
    c.status = r->status;
    if (items.type == MB_JARRAY && items.n > 0) {
        out->items = calloc(items.n, sizeof(*out->items));
        c.oom = out->items == NULL;
        if (!c.oom)
            mb_jscan_each(&items, node_item, &c);
    }
    if (c.oom) {
        finish_oom(op, "GET nodes");
        return;
    }
    op_finish(op, &pe);
}

mb_cloud_op *mb_cloud_nodes_list(mb_cloud *c, const mb_cloud_target *t, mb_node_list *out,
                                 mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    char *url;
    if (op == NULL)
        return NULL;
    mb_node_list_clear(out);
    url = op_url(op, API_CCE, "/api/v3/projects/%s/clusters/%s/nodes", op->project_id,
                 op->cluster_id);
    return op_start(op, "GET", url, NULL, NULL, nodes_resp);
}

/* ------------------------------------------------------------------ */
/* CCE: releases                                                      */
/* ------------------------------------------------------------------ */

static void plain_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    finish_plain(op, r, e, 0);
}

static void gone_ok_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    finish_plain(op, r, e, 1);
}

mb_cloud_op *mb_cloud_release_create(mb_cloud *c, const mb_cloud_target *t,
                                     const mb_release_spec *spec, mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, NULL);
    json_t *body = NULL;
    char *url = NULL, *text = NULL;
    int bad = 0;

    if (op == NULL)
        return NULL;
    if (spec == NULL || !spec->chart_id || !spec->name || !spec->namespace || !spec->version) {
        mb_error_set(op_err(op), MB_PERM, "BadRequest",
                     "create release: chart_id, name, namespace and version are required");
        return op_defer(op);
    }
    body = json_object();
    bad |= json_object_set_new(body, "chart_id", json_string(spec->chart_id));
    bad |= json_object_set_new(body, "name", json_string(spec->name));
    bad |= json_object_set_new(body, "namespace", json_string(spec->namespace));
    bad |= json_object_set_new(body, "version", json_string(spec->version));
    bad |= json_object_set_new(body, "values",
                               spec->values ? json_incref(spec->values) : json_object());
    if (spec->description)
        bad |= json_object_set_new(body, "description", json_string(spec->description));
    text = bad ? NULL : mb_json_dumps(body);
    json_decref(body);
    if (text == NULL) {
        mb_error_set(op_err(op), MB_PERM, "BadRequest",
                     "create release %s: body not encodable (strings must be UTF-8)", spec->name);
        return op_defer(op);
    }
    url = op_url(op, API_CCE, "/cce/cam/v3/clusters/%s/releases", op->cluster_id);
    op = op_start(op, "POST", url, "application/json", text, plain_resp);
    free(text);
    return op;
}

void mb_release_clear(mb_release *r)
{
    if (r == NULL)
        return;
    free(r->status);
    free(r->status_description);
    free(r->description);
    free(r->chart_version);
    memset(r, 0, sizeof(*r));
}

static void release_get_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    static const char *const paths[] = {"status", "status_description", "description",
                                        "chart_version"};
    mb_release *out = op->out;
    mb_jval v[4];
    mb_error pe;
    int oom = 0;

    mb_error_clear(&pe);
    if (r != NULL && r->status == 404) {
        op->c->st.absent++;
        out->exists = 0;
        op_finish(op, &pe);
        return;
    }
    if (e->status != MB_OK) {
        op_finish(op, e);
        return;
    }
    if (scan_body(r, &pe, "GET release", paths, 4, v) != 0) {
        op_finish(op, &pe);
        return;
    }
    out->exists = 1;
    out->status = mb_jval_strdup(&v[0], &oom);
    out->status_description = mb_jval_strdup(&v[1], &oom);
    out->description = mb_jval_strdup(&v[2], &oom);
    out->chart_version = mb_jval_strdup(&v[3], &oom);
    if (oom) {
        finish_oom(op, "GET release");
        return;
    }
    if (out->status == NULL)
        mb_error_set(&pe, MB_AGAIN, "BadResponse", "GET release: HTTP %ld: no status", r->status);
    op_finish(op, &pe);
}

mb_cloud_op *mb_cloud_release_get(mb_cloud *c, const mb_cloud_target *t, const char *ns,
                                  const char *name, mb_release *out, mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    char *url;
    if (op == NULL)
        return NULL;
    mb_release_clear(out);
    url = op_url(op, API_CCE, "/cce/cam/v3/clusters/%s/namespace/%s/releases/%s", op->cluster_id,
                 ns, name);
    return op_start(op, "GET", url, NULL, NULL, release_get_resp);
}

mb_cloud_op *mb_cloud_release_delete(mb_cloud *c, const mb_cloud_target *t, const char *ns,
                                     const char *name, mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, NULL);
    char *url;
    if (op == NULL)
        return NULL;
    url = op_url(op, API_CCE, "/cce/cam/v3/clusters/%s/namespace/%s/releases/%s", op->cluster_id,
                 ns, name);
    return op_start(op, "DELETE", url, NULL, NULL, gone_ok_resp);
}

/* ------------------------------------------------------------------ */
/* VPC: security-group rules                                          */
/* ------------------------------------------------------------------ */

static void sg_rule_free(mb_sg_rule *r)
{
    free(r->id);
    free(r->security_group_id);
    free(r->direction);
    free(r->ethertype);
    free(r->protocol);
    free(r->multiport);
    free(r->remote_ip_prefix);
    free(r->remote_group_id);
    free(r->action);
    free(r->description);
}

void mb_sg_rule_list_clear(mb_sg_rule_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        sg_rule_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof(*l));
}

/* The filters of a listing, kept for its follow-up pages. */
typedef struct sg_list_q {
    char *sg_id, *direction, *protocol;
} sg_list_q;

static char *sg_list_url(mb_cloud_op *op, const sg_list_q *q, const char *marker)
{
    mb_buf b = {0};
    char *base = op_url(op, API_VPC, "/v3/%s/vpc/security-group-rules?security_group_id=%s",
                        op->project_id, q->sg_id);
    if (base == NULL)
        return NULL;
    mb_buf_add(&b, base, strlen(base));
    free(base);
    if (q->direction) {
        mb_buf_add(&b, "&direction=", 11);
        put_pct(&b, q->direction);
    }
    if (q->protocol) {
        mb_buf_add(&b, "&protocol=", 10);
        put_pct(&b, q->protocol);
    }
    mb_buf_add(&b, "&limit=" PAGE_LIMIT, strlen("&limit=" PAGE_LIMIT));
    if (marker) {
        mb_buf_add(&b, "&marker=", 8);
        put_pct(&b, marker);
    }
    if (b.oom) {
        free(b.p);
        mb_error_set(op_err(op), MB_FATAL, "OutOfMemory", "list SG rules: out of memory");
        return NULL;
    }
    return b.p;
}

static void sg_list_q_free(void *arg)
{
    sg_list_q *q = arg;
    if (q == NULL)
        return;
    free(q->sg_id);
    free(q->direction);
    free(q->protocol);
    free(q);
}

/* One rule of a GET security-group-rules page. */
static int sg_item(void *arg, size_t i, const mb_jval *it)
{
    static const char *const paths[] = {
        "id",       "security_group_id", "direction",        "ethertype",
        "protocol", "multiport",         "remote_ip_prefix", "remote_group_id",
        "action",   "description",       "priority"};
    item_ctx *c = arg;
    mb_sg_rule_list *out = c->out;
    mb_sg_rule *s = &out->items[out->n++];
    mb_jval v[11];

    (void)i;
    memset(s, 0, sizeof(*s));
    mb_jscan(it->text, it->len, paths, 11, v);
    s->id = mb_jval_strdup(&v[0], &c->oom);
    s->security_group_id = mb_jval_strdup(&v[1], &c->oom);
    s->direction = mb_jval_strdup(&v[2], &c->oom);
    s->ethertype = mb_jval_strdup(&v[3], &c->oom);
    s->protocol = mb_jval_strdup(&v[4], &c->oom);
    s->multiport = mb_jval_strdup(&v[5], &c->oom);
    s->remote_ip_prefix = mb_jval_strdup(&v[6], &c->oom);
    s->remote_group_id = mb_jval_strdup(&v[7], &c->oom);
    s->action = mb_jval_strdup(&v[8], &c->oom);
    s->description = mb_jval_strdup(&v[9], &c->oom);
    s->priority = (int)vint(&v[10], 1);
    if (!c->oom && s->id == NULL)
        mb_error_set(c->pe, MB_AGAIN, "BadResponse", "list SG rules: a rule without id");
    return c->oom;
}

static void sg_list_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    static const char *const paths[] = {"security_group_rules", "page_info.next_marker"};
    mb_sg_rule_list *out = op->out;
    sg_list_q *q = op->aux;
    mb_error pe;
    mb_jval v[2];
    item_ctx c = {out, &pe, 0, 0};
    char *next = NULL;
    size_t add;

    mb_error_clear(&pe);
    if (e->status != MB_OK) {
        pe = *e;
        goto finish;
    }
    if (scan_body(r, &pe, "GET security-group-rules", paths, 2, v) != 0)
        goto finish;
    add = v[0].type == MB_JARRAY ? v[0].n : 0;
    if (add > 0) {
        mb_sg_rule *ni = realloc(out->items, (out->n + add) * sizeof(*ni));
        c.oom = ni == NULL;
        if (ni) {
            out->items = ni;
            mb_jscan_each(&v[0], sg_item, &c);
        }
    }
    next = mb_jval_strdup(&v[1], &c.oom);
    if (!c.oom && pe.status == MB_OK && add > 0 && next != NULL && next[0] != '\0') {
        if (++op->pages >= MAX_PAGES) {
            mb_error_set(&pe, MB_PERM, "TooManyPages", "list SG rules of %s: over %d pages",
                         q->sg_id, MAX_PAGES);
            goto finish;
        }
        char *url = sg_list_url(op, q, next);
        free(next);
        op_next(op, "GET", url, sg_list_resp);
        return;
    }
    if (c.oom)
        mb_error_set(&pe, MB_FATAL, "OutOfMemory", "list SG rules: out of memory");
finish:
    free(next);
    op_finish(op, &pe);
}

mb_cloud_op *mb_cloud_sg_rules_list(mb_cloud *c, const mb_cloud_target *t, const char *sg_id,
                                    const char *direction, const char *protocol,
                                    mb_sg_rule_list *out, mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    sg_list_q *q;
    if (op == NULL)
        return NULL;
    mb_sg_rule_list_clear(out);
    if (sg_id == NULL || sg_id[0] == '\0') {
        mb_error_set(op_err(op), MB_PERM, "BadRequest", "list SG rules: no security group id");
        return op_defer(op);
    }
    q = calloc(1, sizeof(*q));
    if (q != NULL) {
        q->sg_id = strdup(sg_id);
        q->direction = direction ? strdup(direction) : NULL;
        q->protocol = protocol ? strdup(protocol) : NULL;
    }
    if (q == NULL || !q->sg_id || (direction && !q->direction) || (protocol && !q->protocol)) {
        sg_list_q_free(q);
        mb_cloud_cancel(op);
        return NULL;
    }
    op->aux = q;
    op->aux_free = sg_list_q_free;
    return op_start(op, "GET", sg_list_url(op, q, NULL), NULL, NULL, sg_list_resp);
}

void mb_sg_rule_created_clear(mb_sg_rule_created *r)
{
    if (r == NULL)
        return;
    free(r->id);
    memset(r, 0, sizeof(*r));
}

/* "Security group rule already exists. Rule id is <id>." -> <id>. */
static char *rule_id_from_msg(const char *msg)
{
    const char *p, *end;
    char *id;
    if (msg == NULL)
        return NULL;
    p = strstr(msg, "Rule id is ");
    if (p == NULL)
        return NULL;
    p += strlen("Rule id is ");
    end = p;
    while (isalnum((unsigned char)*end) || *end == '-' || *end == '_')
        end++;
    if (end == p)
        return NULL;
    id = strndup(p, (size_t)(end - p));
    return id;
}

static void sg_create_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    static const char *const msg_path[] = {"error_msg"};
    static const char *const id_path[] = {"security_group_rule.id"};
    mb_sg_rule_created *out = op->out;
    mb_error pe;
    mb_jval v;
    int oom = 0;

    mb_error_clear(&pe);
    if (r != NULL && r->status == 409 && strcmp(e->code, "VPC.9902") == 0) {
        char *msg = NULL;
        if (mb_jscan(r->body, r->body_len, msg_path, 1, &v) == 0)
            msg = mb_jval_strdup(&v, &oom);
        out->existed = 1;
        out->id = rule_id_from_msg(msg);
        free(msg);
        op_finish(op, &pe);
        return;
    }
    if (r != NULL && r->status == 409 && strcmp(e->code, "VPC.9905") == 0) {
        pe = *e;
        pe.status = MB_PERM; /* quota: waiting will not free a slot */
        op_finish(op, &pe);
        return;
    }
    if (e->status != MB_OK) {
        op_finish(op, e);
        return;
    }
    if (scan_body(r, &pe, "POST security-group-rules", id_path, 1, &v) != 0) {
        op_finish(op, &pe);
        return;
    }
    out->id = mb_jval_strdup(&v, &oom);
    if (oom) {
        finish_oom(op, "POST security-group-rules");
        return;
    }
    if (out->id == NULL)
        mb_error_set(&pe, MB_AGAIN, "BadResponse",
                     "POST security-group-rules: HTTP %ld: no security_group_rule.id", r->status);
    op_finish(op, &pe);
}

mb_cloud_op *mb_cloud_sg_rule_create(mb_cloud *c, const mb_cloud_target *t,
                                     const mb_sg_rule_spec *spec, mb_sg_rule_created *out,
                                     mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    json_t *rule, *body;
    char *text, *url;
    int bad = 0;

    if (op == NULL)
        return NULL;
    mb_sg_rule_created_clear(out);
    if (spec == NULL || !spec->security_group_id || !spec->multiport) {
        mb_error_set(op_err(op), MB_PERM, "BadRequest",
                     "create SG rule: security_group_id and multiport are required");
        return op_defer(op);
    }
    rule = json_object();
    bad |= json_object_set_new(rule, "security_group_id", json_string(spec->security_group_id));
    bad |= json_object_set_new(rule, "direction",
                               json_string(spec->direction ? spec->direction : "ingress"));
    bad |= json_object_set_new(rule, "ethertype",
                               json_string(spec->ethertype ? spec->ethertype : "IPv4"));
    bad |=
        json_object_set_new(rule, "protocol", json_string(spec->protocol ? spec->protocol : "tcp"));
    bad |= json_object_set_new(rule, "multiport", json_string(spec->multiport));
    if (spec->remote_ip_prefix)
        bad |= json_object_set_new(rule, "remote_ip_prefix", json_string(spec->remote_ip_prefix));
    bad |= json_object_set_new(rule, "action", json_string(spec->action ? spec->action : "allow"));
    bad |= json_object_set_new(rule, "priority", json_integer(spec->priority ? spec->priority : 1));
    if (spec->description)
        bad |= json_object_set_new(rule, "description", json_string(spec->description));
    body = json_pack("{so}", "security_group_rule", rule);
    text = (bad || body == NULL) ? NULL : mb_json_dumps(body);
    json_decref(body);
    if (text == NULL) {
        mb_error_set(op_err(op), MB_PERM, "BadRequest", "create SG rule: body not encodable");
        return op_defer(op);
    }
    url = op_url(op, API_VPC, "/v3/%s/vpc/security-group-rules", op->project_id);
    op = op_start(op, "POST", url, "application/json", text, sg_create_resp);
    free(text);
    return op;
}

mb_cloud_op *mb_cloud_sg_rule_delete(mb_cloud *c, const mb_cloud_target *t, const char *rule_id,
                                     mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, NULL);
    char *url;
    if (op == NULL)
        return NULL;
    url = op_url(op, API_VPC, "/v3/%s/vpc/security-group-rules/%s", op->project_id, rule_id);
    return op_start(op, "DELETE", url, NULL, NULL, gone_ok_resp);
}

/* One multiport element: "7443" or "7000-8000".  Returns 1 covers, 0 not,
 * -1 malformed. */
static int port_elem(const char *s, size_t n, int port)
{
    long lo = 0, hi;
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    while (n > i && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (i == n)
        return -1;
    while (i < n && isdigit((unsigned char)s[i]) && lo <= 65535)
        lo = lo * 10 + (s[i++] - '0');
    if (i == 0 || !isdigit((unsigned char)s[i - 1]))
        return -1;
    hi = lo;
    while (i < n && s[i] == ' ')
        i++;
    if (i < n && s[i] == '-') {
        size_t start;
        i++;
        while (i < n && s[i] == ' ')
            i++;
        start = i;
        hi = 0;
        while (i < n && isdigit((unsigned char)s[i]) && hi <= 65535)
            hi = hi * 10 + (s[i++] - '0');
        if (i == start)
            return -1;
    }
    if (i != n || lo < 1 || hi > 65535 || lo > hi)
        return -1;
    return port >= lo && port <= hi;
}

int mb_sg_multiport_covers(const char *multiport, int port)
{
    const char *p = multiport;
    int hit = 0;
    if (multiport == NULL)
        return 0;
    for (;;) {
        size_t n = strcspn(p, ",");
        int rc = port_elem(p, n, port);
        if (rc < 0)
            return 0; /* one bad element makes the whole text suspect */
        hit |= rc;
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    return hit;
}

static int empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

int mb_sg_rule_allows(const mb_sg_rule *r, int port)
{
    if (r == NULL)
        return 0;
    if (empty(r->direction) || strcmp(r->direction, "ingress") != 0)
        return 0;
    if (!empty(r->protocol) && strcmp(r->protocol, "tcp") != 0 && strcmp(r->protocol, "any") != 0)
        return 0;
    if (!empty(r->action) && strcmp(r->action, "allow") != 0)
        return 0;
    if (!empty(r->ethertype) && strcmp(r->ethertype, "IPv4") != 0)
        return 0;
    if (empty(r->multiport))
        return 1;
    return mb_sg_multiport_covers(r->multiport, port);
}

/* ------------------------------------------------------------------ */
/* Kubernetes: version, objects, labels                               */
/* ------------------------------------------------------------------ */

static void version_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    static const char *const paths[] = {"gitVersion"};
    char **out = op->out;
    mb_error pe;
    mb_jval v;
    int oom = 0;

    if (e->status != MB_OK) {
        op_finish(op, e);
        return;
    }
    mb_error_clear(&pe);
    if (scan_body(r, &pe, "GET /version", paths, 1, &v) != 0) {
        op_finish(op, &pe);
        return;
    }
    *out = mb_jval_strdup(&v, &oom);
    if (oom)
        mb_error_set(&pe, MB_FATAL, "OutOfMemory", "GET /version: out of memory");
    else if (*out == NULL)
        mb_error_set(&pe, MB_AGAIN, "BadResponse", "GET /version: no gitVersion");
    op_finish(op, &pe);
}

mb_cloud_op *mb_cloud_k8s_version(mb_cloud *c, const mb_cloud_target *t, char **git_version,
                                  mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, git_version);
    if (op == NULL)
        return NULL;
    *git_version = NULL;
    return op_start(op, "GET", op_url(op, API_K8S, "/version"), NULL, NULL, version_resp);
}

void mb_k8s_meta_clear(mb_k8s_meta *m)
{
    if (m == NULL)
        return;
    free(m->name);
    free(m->resource_version);
    json_decref(m->labels);
    json_decref(m->annotations);
    memset(m, 0, sizeof(*m));
}

static const char *kind_path(mb_k8s_kind kind)
{
    return kind == MB_K8S_NODE ? "/api/v1/nodes/%s" : "/api/v1/namespaces/%s";
}

/* A map field of metadata as a new reference; {} when absent (NULL: out of memory). */
static json_t *meta_map(const mb_jval *v)
{
    return v->type == MB_JOBJECT ? mb_jscan_tree(v->text, v->len) : json_object();
}

static void k8s_get_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    static const char *const paths[] = {"metadata.name", "metadata.resourceVersion",
                                        "metadata.labels", "metadata.annotations"};
    const char *what = op->kind == MB_K8S_NODE ? "GET node" : "GET namespace";
    mb_k8s_meta *out = op->out;
    mb_jval v[4];
    mb_error pe;
    int oom = 0;

    mb_error_clear(&pe);
    if (r != NULL && r->status == 404) {
        op->c->st.absent++;
        out->exists = 0;
        op_finish(op, &pe);
        return;
    }
    if (e->status != MB_OK) {
        op_finish(op, e);
        return;
    }
    if (scan_body(r, &pe, what, paths, 4, v) != 0) {
        op_finish(op, &pe);
        return;
    }
    out->exists = 1;
    out->name = mb_jval_strdup(&v[0], &oom);
    out->resource_version = mb_jval_strdup(&v[1], &oom);
    out->labels = meta_map(&v[2]);
    out->annotations = meta_map(&v[3]);
    if (oom || out->labels == NULL || out->annotations == NULL) {
        finish_oom(op, "GET object");
        return;
    }
    op_finish(op, &pe);
}

mb_cloud_op *mb_cloud_k8s_get(mb_cloud *c, const mb_cloud_target *t, mb_k8s_kind kind,
                              const char *name, mb_k8s_meta *out, mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    if (op == NULL)
        return NULL;
    mb_k8s_meta_clear(out);
    op->kind = kind;
    op->accept = MB_HTTP_ACCEPT_META; /* only metadata is read */
    return op_start(op, "GET", op_url(op, API_K8S, kind_path(kind), name), NULL, NULL,
                    k8s_get_resp);
}

mb_cloud_op *mb_cloud_k8s_label_patch(mb_cloud *c, const mb_cloud_target *t, mb_k8s_kind kind,
                                      const char *name, const char *key, const char *value,
                                      mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, NULL);
    json_t *body;
    char *text;
    if (op == NULL)
        return NULL;
    if (key == NULL || key[0] == '\0') {
        mb_error_set(op_err(op), MB_PERM, "BadRequest", "label patch: no key");
        return op_defer(op);
    }
    body = json_pack("{s{s{so}}}", "metadata", "labels", key,
                     value ? json_string(value) : json_null());
    text = body ? mb_json_dumps(body) : NULL;
    json_decref(body);
    if (text == NULL) {
        mb_error_set(op_err(op), MB_PERM, "BadRequest", "label patch %s: not encodable", key);
        return op_defer(op);
    }
    op = op_start(op, "PATCH", op_url(op, API_K8S, kind_path(kind), name),
                  "application/merge-patch+json", text, plain_resp);
    free(text);
    return op;
}

/* ------------------------------------------------------------------ */
/* Kubernetes list pages counted without a JSON tree                  */
/* ------------------------------------------------------------------ */

/* A pod listing is the largest reply the worker reads, and precheck only needs how many
 * items it holds and where the next page starts: mb_jscan checks the page and keeps those. */
int mb_k8s_list_count(const char *body, size_t len, long *items, char *cont, size_t contlen)
{
    static const char *const paths[] = {"items", "metadata.continue"};
    mb_jval v[2];

    *items = 0;
    if (cont == NULL || contlen == 0)
        return -1;
    cont[0] = '\0';
    if (body == NULL || mb_jscan(body, len, paths, 2, v) != 0)
        return -1;
    if (v[0].type != MB_JARRAY && v[0].type != MB_JNULL && v[0].type != MB_JNONE)
        return -1;
    if (v[1].type == MB_JSTRING && mb_jval_str(&v[1], cont, contlen) != 0)
        return -1; /* a token that does not fit is refused, not cut */
    *items = (long)v[0].n;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Kubernetes: paged listings (pods, workloads)                       */
/* ------------------------------------------------------------------ */

/* Handles the paging protocol shared by listings: returns 1 when the
 * handler should go on with the items of j (a new reference in *jout), 0
 * when the op was finished or a restart was issued. */
/* The paging protocol's status handling: returns 1 when the page is a 2xx
 * to read, 0 when the op was finished or a restart was issued (410). */
static int list_gate(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e,
                     void (*restart)(mb_cloud_op *))
{
    mb_error pe;
    mb_error_clear(&pe);
    if (r != NULL && r->status == 410) {
        /* the continue token expired: the list must be read again whole */
        if (op->restarts++ < MAX_RESTARTS) {
            restart(op);
            return 0;
        }
        pe = *e;
        pe.status = MB_AGAIN;
        snprintf(pe.code, sizeof(pe.code), "Expired");
        op_finish(op, &pe);
        return 0;
    }
    if (e->status != MB_OK) {
        op_finish(op, e);
        return 0;
    }
    return 1;
}

/* Counts a page read; returns 0 (op finished) past MAX_PAGES. */
static int list_page_counted(mb_cloud_op *op, const char *what)
{
    mb_error pe;
    if (++op->pages <= MAX_PAGES)
        return 1;
    mb_error_clear(&pe);
    mb_error_set(&pe, MB_PERM, "TooManyPages", "%s: over %d pages", what, MAX_PAGES);
    op_finish(op, &pe);
    return 0;
}

static int list_page(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e, const char *what,
                     void (*restart)(mb_cloud_op *), json_t **jout)
{
    mb_error pe;
    mb_error_clear(&pe);
    *jout = NULL;
    if (!list_gate(op, r, e, restart))
        return 0;
    *jout = parse_body(r, &pe, what);
    if (*jout == NULL) {
        op_finish(op, &pe);
        return 0;
    }
    if (!list_page_counted(op, what)) {
        json_decref(*jout);
        *jout = NULL;
        return 0;
    }
    return 1;
}

static void pods_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e);

static void pods_restart(mb_cloud_op *op)
{
    op->count = 0;
    op->pages = 0;
    op_next(op, "GET", op_url(op, API_K8S, "/api/v1/pods?limit=" PAGE_LIMIT), pods_resp);
}

static void pods_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    static const char what[] = "GET /api/v1/pods";
    char cont[MB_K8S_CONTINUE_MAX];
    long n;
    mb_error ok;

    if (!list_gate(op, r, e, pods_restart))
        return;
    /* Only the count matters: no tree (see mb_k8s_list_count). */
    if (mb_k8s_list_count(r->body, r->body_len, &n, cont, sizeof(cont)) != 0) {
        mb_error pe;
        mb_error_clear(&pe);
        /* a cut or garbled body is more likely a proxy hiccup than a lasting state */
        mb_error_set(&pe, MB_AGAIN, "BadResponse",
                     "%s: HTTP %ld: response is not a Kubernetes list (invalid JSON, items "
                     "not an array, or a continue token over %d bytes)",
                     what, r->status, MB_K8S_CONTINUE_MAX - 1);
        op_finish(op, &pe);
        return;
    }
    if (!list_page_counted(op, what))
        return;
    op->count += n;
    if (cont[0] != '\0') {
        op_next(op, "GET",
                op_url(op, API_K8S, "/api/v1/pods?limit=" PAGE_LIMIT "&continue=%s", cont),
                pods_resp);
        return;
    }
    *(long *)op->out = op->count;
    mb_error_clear(&ok);
    op_finish(op, &ok);
}

mb_cloud_op *mb_cloud_k8s_pods_count(mb_cloud *c, const mb_cloud_target *t, long *out,
                                     mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    if (op == NULL)
        return NULL;
    *out = 0;
    op->accept = MB_HTTP_ACCEPT_META_LIST; /* metadata only, every page */
    return op_start(op, "GET", op_url(op, API_K8S, "/api/v1/pods?limit=" PAGE_LIMIT), NULL, NULL,
                    pods_resp);
}

static const char *const wl_plural[] = {"deployments", "statefulsets", "daemonsets"};
static const char *const wl_name[] = {"Deployment", "StatefulSet", "DaemonSet"};

const char *mb_workload_kind_name(mb_workload_kind k)
{
    return (unsigned)k < 3 ? wl_name[k] : "unknown";
}

void mb_workload_list_clear(mb_workload_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].name);
        free(l->items[i].restarted_at);
    }
    free(l->items);
    memset(l, 0, sizeof(*l));
}

static void wl_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e);

static char *wl_url(mb_cloud_op *op, const char *cont)
{
    if (cont != NULL)
        return op_url(op, API_K8S,
                      "/apis/apps/v1/namespaces/%s/%s?limit=" PAGE_LIMIT "&continue=%s", op->name,
                      wl_plural[op->kind], cont);
    return op_url(op, API_K8S, "/apis/apps/v1/namespaces/%s/%s?limit=" PAGE_LIMIT, op->name,
                  wl_plural[op->kind]);
}

static void wl_restart(mb_cloud_op *op)
{
    mb_workload_list_clear(op->out);
    op->kind = MB_WL_DEPLOYMENT;
    op->pages = 0;
    op_next(op, "GET", wl_url(op, NULL), wl_resp);
}

/* Appends the items of one page.  Returns 0, -1 on out of memory, -2 when
 * an item has no name. */
static int wl_add(mb_cloud_op *op, json_t *items)
{
    mb_workload_list *out = op->out;
    size_t add = json_array_size(items), i;
    json_t *it;
    int oom = 0, bad = 0;
    mb_workload *ni;

    if (add == 0)
        return 0;
    ni = realloc(out->items, (out->n + add) * sizeof(*ni));
    if (ni == NULL)
        return -1;
    out->items = ni;
    json_array_foreach(items, i, it)
    {
        mb_workload *w = &out->items[out->n++];
        json_t *ann = jpath(it, "spec.template.metadata.annotations");
        const char *ra = jstr(ann, "kubectl.kubernetes.io/restartedAt");
        memset(w, 0, sizeof(*w));
        w->kind = (mb_workload_kind)op->kind;
        w->name = jdup(it, "metadata.name", &oom);
        if (w->name == NULL && !oom)
            bad = 1;
        w->paused = json_is_true(jpath(it, "spec.paused"));
        w->restarted_at = ra ? strdup(ra) : NULL;
        if (ra != NULL && w->restarted_at == NULL)
            oom = 1;
    }
    return oom ? -1 : bad ? -2 : 0;
}

static void wl_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    json_t *j;
    const char *c;
    char *url, *cont = NULL;
    mb_error ok;
    int rc;

    if (!list_page(op, r, e, "GET workloads", wl_restart, &j))
        return;
    /* the token outlives j */
    c = jpath_str(j, "metadata.continue");
    if (c != NULL && c[0] != '\0')
        cont = strdup(c);
    if (c != NULL && c[0] != '\0' && cont == NULL) {
        json_decref(j);
        finish_oom(op, "GET workloads");
        return;
    }
    rc = wl_add(op, json_object_get(j, "items"));
    json_decref(j);
    if (rc != 0)
        free(cont);
    if (rc == -1) {
        finish_oom(op, "GET workloads");
        return;
    }
    if (rc == -2) {
        mb_error_clear(&ok);
        mb_error_set(&ok, MB_AGAIN, "BadResponse", "GET %s of %s: an item without a name",
                     wl_plural[op->kind], op->name);
        op_finish(op, &ok);
        return;
    }
    if (cont != NULL) {
        url = wl_url(op, cont);
        free(cont);
        op_next(op, "GET", url, wl_resp);
        return;
    }
    if (op->kind < MB_WL_DAEMONSET) {
        op->kind++;
        op_next(op, "GET", wl_url(op, NULL), wl_resp);
        return;
    }
    mb_error_clear(&ok);
    op_finish(op, &ok);
}

mb_cloud_op *mb_cloud_k8s_workloads_list(mb_cloud *c, const mb_cloud_target *t, const char *ns,
                                         mb_workload_list *out, mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    if (op == NULL)
        return NULL;
    mb_workload_list_clear(out);
    if (ns == NULL || ns[0] == '\0') {
        mb_error_set(op_err(op), MB_PERM, "BadRequest", "list workloads: no namespace");
        return op_defer(op);
    }
    op->name = strdup(ns);
    if (op->name == NULL) {
        mb_cloud_cancel(op);
        return NULL;
    }
    op->kind = MB_WL_DEPLOYMENT;
    return op_start(op, "GET", wl_url(op, NULL), NULL, NULL, wl_resp);
}

mb_cloud_op *mb_cloud_k8s_workload_restart(mb_cloud *c, const mb_cloud_target *t, const char *ns,
                                           mb_workload_kind kind, const char *name,
                                           const char *timestamp, mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, NULL);
    json_t *body;
    char *text;
    if (op == NULL)
        return NULL;
    if ((unsigned)kind >= 3 || timestamp == NULL || timestamp[0] == '\0') {
        mb_error_set(op_err(op), MB_PERM, "BadRequest", "restart workload: bad kind or timestamp");
        return op_defer(op);
    }
    body = json_pack("{s{s{s{s{ss}}}}}", "spec", "template", "metadata", "annotations",
                     "kubectl.kubernetes.io/restartedAt", timestamp);
    text = body ? mb_json_dumps(body) : NULL;
    json_decref(body);
    if (text == NULL) {
        mb_error_set(op_err(op), MB_PERM, "BadRequest", "restart workload: not encodable");
        return op_defer(op);
    }
    op = op_start(
        op, "PATCH",
        op_url(op, API_K8S, "/apis/apps/v1/namespaces/%s/%s/%s", ns, wl_plural[kind], name),
        "application/strategic-merge-patch+json", text, plain_resp);
    free(text);
    return op;
}

/* ------------------------------------------------------------------ */
/* Kubernetes: CoreDNS readiness                                      */
/* ------------------------------------------------------------------ */

/* 1 (stops mb_jscan_each) on a condition Progressing, reason ProgressDeadlineExceeded. */
static int past_deadline(void *arg, size_t i, const mb_jval *cnd)
{
    static const char *const paths[] = {"type", "reason"};
    mb_jval v[2];

    (void)arg;
    (void)i;
    mb_jscan(cnd->text, cnd->len, paths, 2, v);
    return mb_jval_streq(&v[0], "Progressing") && mb_jval_streq(&v[1], "ProgressDeadlineExceeded");
}

/* What the rollout rule reads of a Deployment, in deployment_ready's order. */
static const char *const deployment_paths[] = {
    "metadata.generation",    "status.observedGeneration", "spec.replicas",    "status.replicas",
    "status.updatedReplicas", "status.availableReplicas",  "status.conditions"};
#define DEPLOYMENT_PATHS (sizeof(deployment_paths) / sizeof(deployment_paths[0]))

/* The rule on a Deployment's values (deployment_paths): 1 ready, 0 not (reason written). */
static int deployment_ready(const mb_jval *v, char *reason, size_t reasonlen)
{
    long gen = vint(&v[0], 0);
    long observed = vint(&v[1], 0);
    long want = vint(&v[2], 1); /* the API's default */
    long replicas = vint(&v[3], 0);
    long updated = vint(&v[4], 0);
    long available = vint(&v[5], 0);

    /* kubectl rollout status (polymorphichelpers/rollout_status.go) */
    if (gen > observed) {
        snprintf(reason, reasonlen, "waiting for deployment spec update to be observed");
        return 0;
    }
    if (v[6].type == MB_JARRAY && mb_jscan_each(&v[6], past_deadline, NULL) == 1) {
        snprintf(reason, reasonlen, "deployment exceeded its progress deadline");
        return 0;
    }
    if (updated < want) {
        snprintf(reason, reasonlen, "%ld out of %ld new replicas have been updated", updated, want);
        return 0;
    }
    if (replicas > updated) {
        snprintf(reason, reasonlen, "%ld old replicas are pending termination", replicas - updated);
        return 0;
    }
    if (available < updated) {
        snprintf(reason, reasonlen, "%ld of %ld updated replicas are available", available,
                 updated);
        return 0;
    }
    /* beyond kubectl: a deployment scaled to zero is rolled out but serves nothing */
    if (available < 1) {
        snprintf(reason, reasonlen, "no available replicas");
        return 0;
    }
    snprintf(reason, reasonlen, "%s", "");
    return 1;
}

int mb_k8s_deployment_ready(const char *text, size_t len, char *reason, size_t reasonlen)
{
    mb_jval v[DEPLOYMENT_PATHS];

    if (mb_jscan(text, len, deployment_paths, DEPLOYMENT_PATHS, v) != 0)
        return -1;
    return deployment_ready(v, reason, reasonlen);
}

static void coredns_resp(mb_cloud_op *op, const mb_http_resp *r, const mb_error *e)
{
    mb_coredns *out = op->out;
    mb_jval v[DEPLOYMENT_PATHS];
    mb_error pe;
    char why[200];

    mb_error_clear(&pe);
    if (r != NULL && r->status == 404) {
        op->c->st.absent++;
        out->ready = 0;
        snprintf(out->reason, sizeof(out->reason), "coredns deployment not found");
        op_finish(op, &pe);
        return;
    }
    if (e->status != MB_OK) {
        op_finish(op, e);
        return;
    }
    if (scan_body(r, &pe, "GET deployment coredns", deployment_paths, DEPLOYMENT_PATHS, v) != 0) {
        op_finish(op, &pe);
        return;
    }
    out->ready = deployment_ready(v, why, sizeof(why));
    if (!out->ready)
        snprintf(out->reason, sizeof(out->reason), "coredns: %s", why);
    op_finish(op, &pe);
}

mb_cloud_op *mb_cloud_k8s_coredns_ready(mb_cloud *c, const mb_cloud_target *t, mb_coredns *out,
                                        mb_cloud_done *done, void *arg)
{
    mb_cloud_op *op = op_new(c, t, done, arg, out);
    if (op == NULL)
        return NULL;
    memset(out, 0, sizeof(*out));
    return op_start(op, "GET",
                    op_url(op, API_K8S, "/apis/apps/v1/namespaces/kube-system/deployments/coredns"),
                    NULL, NULL, coredns_resp);
}
