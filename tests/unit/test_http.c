/* test_http.c: mb_http classification, Retry-After, and live behaviour against
 * an evhttp server on 127.0.0.1 (kernel-chosen port) on the same loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "loop_util.h"
#include "mb_http.h"
#include "mb_sign.h"

#define AK "MESHBUYDEVACCESSKEY0"
#define SK "meshbuy-dev-secret-key-0000000000000000"

/* ------------------------------------------------------------------ */
/* Pure tables                                                        */
/* ------------------------------------------------------------------ */

static void test_classify_table(void **state)
{
    static const struct {
        long http;
        mb_http_fail fail;
        mb_status want;
        const char *code;
    } t[] = {
        {200, 0, MB_OK, ""},
        {201, 0, MB_OK, ""},
        {204, 0, MB_OK, ""},
        {429, 0, MB_AGAIN, "TooManyRequests"},
        {500, 0, MB_AGAIN, "HTTP500"},
        {502, 0, MB_AGAIN, "HTTP502"},
        {503, 0, MB_AGAIN, "HTTP503"},
        {504, 0, MB_AGAIN, "HTTP504"},
        {599, 0, MB_AGAIN, "HTTP599"},
        {408, 0, MB_AGAIN, "HTTP408"},
        {409, 0, MB_AGAIN, "Conflict"},
        {400, 0, MB_PERM, "HTTP400"},
        {401, 0, MB_PERM, "HTTP401"},
        {403, 0, MB_PERM, "HTTP403"},
        {404, 0, MB_PERM, "NotFound"},
        {410, 0, MB_PERM, "HTTP410"},
        {415, 0, MB_PERM, "HTTP415"},
        {301, 0, MB_PERM, "HTTP301"},
        {100, 0, MB_PERM, "HTTP100"},
        {0, MB_HTTP_FAIL_NONE, MB_OK, ""},
        {0, MB_HTTP_FAIL_TIMEOUT, MB_AGAIN, "Timeout"},
        {0, MB_HTTP_FAIL_CONNECT, MB_AGAIN, "ConnectFailed"},
        {0, MB_HTTP_FAIL_RESOLVE, MB_AGAIN, "ResolveFailed"},
        {0, MB_HTTP_FAIL_CONNECTION, MB_AGAIN, "ConnectionError"},
        {0, MB_HTTP_FAIL_PROTOCOL, MB_AGAIN, "ProtocolError"},
        {0, MB_HTTP_FAIL_TLS_HANDSHAKE, MB_AGAIN, "TLSHandshake"},
        {0, MB_HTTP_FAIL_TLS, MB_PERM, "TLSError"},
        {0, MB_HTTP_FAIL_BAD_URL, MB_PERM, "BadURL"},
        {0, MB_HTTP_FAIL_TOO_LARGE, MB_PERM, "ResponseTooLarge"},
        {0, MB_HTTP_FAIL_NOMEM, MB_FATAL, "OutOfMemory"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char code[64];
        mb_status st = mb_http_classify(t[i].http, t[i].fail, code, sizeof(code));
        if (st != t[i].want || strcmp(code, t[i].code) != 0)
            fail_msg("row %zu: http %ld fail %d: got %d/%s want %d/%s", i, t[i].http, t[i].fail, st,
                     code, t[i].want, t[i].code);
    }
    /* code may be NULL */
    assert_int_equal(mb_http_classify(503, MB_HTTP_FAIL_NONE, NULL, 0), MB_AGAIN);
}

static void test_retry_after(void **state)
{
    time_t now = 1573788995; /* Fri, 15 Nov 2019 03:36:35 GMT */
    (void)state;
    assert_int_equal(mb_http_retry_after_ms("1", now), 1000);
    assert_int_equal(mb_http_retry_after_ms("0", now), 0);
    assert_int_equal(mb_http_retry_after_ms(" 120 ", now), 120000);
    assert_int_equal(mb_http_retry_after_ms("30\r\n", now), 30000);
    assert_int_equal(mb_http_retry_after_ms("Fri, 15 Nov 2019 03:36:55 GMT", now), 20000);
    /* obsolete RFC 850 and asctime forms */
    assert_int_equal(mb_http_retry_after_ms("Friday, 15-Nov-19 03:36:45 GMT", now), 10000);
    assert_int_equal(mb_http_retry_after_ms("Fri Nov 15 03:36:40 2019", now), 5000);
    /* a date in the past: retry now */
    assert_int_equal(mb_http_retry_after_ms("Fri, 15 Nov 2019 03:00:00 GMT", now), 0);
    /* garbage */
    assert_int_equal(mb_http_retry_after_ms("", now), -1);
    assert_int_equal(mb_http_retry_after_ms("soon", now), -1);
    assert_int_equal(mb_http_retry_after_ms("-5", now), -1);
    assert_int_equal(mb_http_retry_after_ms("1.5", now), -1);
    assert_int_equal(mb_http_retry_after_ms("5 s", now), -1);
    assert_int_equal(mb_http_retry_after_ms("12:00", now), -1);
    assert_int_equal(mb_http_retry_after_ms("99999999999999999999", now), -1);
    assert_int_equal(mb_http_retry_after_ms(NULL, now), -1);
}

/* ------------------------------------------------------------------ */
/* A tiny server on the same loop                                     */
/* ------------------------------------------------------------------ */

typedef struct srv {
    struct event_base *base;
    struct evhttp *http;
    int port;
    int requests;
    int bad_sigs;
    int signed_ok;
    char last_traceparent[128];
    char last_ctype[128];
    char last_body[256];
    char last_method[16];
    char last_ua[128];
    char last_accept[160];
    char last_host[300];
    struct evhttp_request *hung[64];
    int nhung;
} srv;

static srv S;

static void reply(struct evhttp_request *req, int code, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, code, "X", b);
    evbuffer_free(b);
}

static const char *method_name(struct evhttp_request *req)
{
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    case EVHTTP_REQ_DELETE: return "DELETE";
    default: return "?";
    }
}

/* A body of BIG_LEN digits "0123456789..." with a Content-Length larger than
 * the room mb_http reserves from one, or in chunks without any length. */
enum { BIG_LEN = 200000, CHUNK_LEN = 3000 };

static void digits_reply(struct evhttp_request *req, int chunked)
{
    struct evbuffer *b = evbuffer_new();
    char digits[CHUNK_LEN];

    for (int i = 0; i < CHUNK_LEN; i++)
        digits[i] = (char)('0' + i % 10);
    if (!chunked) {
        for (int i = 0; i < BIG_LEN / CHUNK_LEN; i++)
            evbuffer_add(b, digits, CHUNK_LEN);
        evbuffer_add(b, digits, BIG_LEN % CHUNK_LEN);
        evhttp_send_reply(req, 200, "OK", b);
    } else {
        evhttp_send_reply_start(req, 200, "OK");
        for (int i = 0; i < 3; i++) {
            evbuffer_add(b, digits, CHUNK_LEN);
            evhttp_send_reply_chunk(req, b);
        }
        evhttp_send_reply_end(req);
    }
    evbuffer_free(b);
}

/* Checks the request's signature the way the gateway does (docs/reference.md).
 * Returns 1 when signed and valid, 0 when unsigned, -1 when wrong. */
static int verify_sig(struct evhttp_request *req, const char *body, size_t blen)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *auth = evhttp_find_header(in, "Authorization");
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    char ak[64], sh[256], sig[MB_SIGN_HEX_LEN + 1], want[MB_SIGN_HEX_LEN + 1];
    mb_hdr hdrs[32];
    size_t n = 0;
    const char *method;
    char *canon;

    if (auth == NULL)
        return 0;
    if (mb_sign_parse_authorization(auth, ak, sizeof(ak), sh, sizeof(sh), sig) != 0)
        return -1;
    for (struct evkeyval *kv = in->tqh_first; kv && n < 32; kv = kv->next.tqe_next)
        hdrs[n++] = (mb_hdr){kv->key, kv->value};
    method = method_name(req);
    if (method[0] == '?')
        return -1;
    if (strcmp(ak, AK) != 0 || strstr(sh, "x-sdk-date") == NULL || strstr(sh, "host") == NULL)
        return -1;
    if (blen > 0 && strstr(sh, "content-type") == NULL)
        return -1;
    canon = mb_sign_canonical(method, evhttp_uri_get_path(uri), evhttp_uri_get_query(uri), hdrs, n,
                              sh, body, blen);
    if (canon == NULL)
        return -1;
    mb_sign_signature(SK, evhttp_find_header(in, "X-Sdk-Date"), canon, want);
    free(canon);
    return strcmp(want, sig) == 0 ? 1 : -1;
}

/* A delayed reply.  A client that goes away first (a cancelled request)
 * makes evhttp free the request: the close callback drops the timer so the
 * reply never lands on freed memory. */
typedef struct slow_slot {
    struct evhttp_request *req;
    struct evhttp_connection *conn;
    struct event *ev;
} slow_slot;

static void slow_release(slow_slot *sl)
{
    evhttp_connection_set_closecb(sl->conn, NULL, NULL);
    event_free(sl->ev);
    free(sl);
}

static void on_slow_reply(evutil_socket_t fd, short what, void *arg)
{
    slow_slot *sl = arg;
    (void)fd;
    (void)what;
    reply(sl->req, 200, "{\"slow\":true}");
    slow_release(sl);
}

static void on_slow_close(struct evhttp_connection *conn, void *arg)
{
    (void)conn;
    slow_release(arg);
}

static void slow_reply_later(struct evhttp_request *req, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    slow_slot *sl = calloc(1, sizeof(*sl));
    assert_non_null(sl);
    sl->req = req;
    sl->conn = evhttp_request_get_connection(req);
    sl->ev = evtimer_new(S.base, on_slow_reply, sl);
    evhttp_connection_set_closecb(sl->conn, on_slow_close, sl);
    evtimer_add(sl->ev, &tv);
}

static void handle(struct evhttp_request *req, void *arg)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct evbuffer *ib = evhttp_request_get_input_buffer(req);
    size_t blen = evbuffer_get_length(ib);
    char body[256] = "";
    const char *v;
    int sig;
    (void)arg;

    S.requests++;
    if (blen >= sizeof(body))
        blen = sizeof(body) - 1;
    evbuffer_copyout(ib, body, blen);
    body[blen] = '\0';
    snprintf(S.last_body, sizeof(S.last_body), "%s", body);
    snprintf(S.last_method, sizeof(S.last_method), "%s", method_name(req));
    v = evhttp_find_header(in, "traceparent");
    snprintf(S.last_traceparent, sizeof(S.last_traceparent), "%s", v ? v : "");
    v = evhttp_find_header(in, "Content-Type");
    snprintf(S.last_ctype, sizeof(S.last_ctype), "%s", v ? v : "");
    v = evhttp_find_header(in, "User-Agent");
    snprintf(S.last_ua, sizeof(S.last_ua), "%s", v ? v : "");
    v = evhttp_find_header(in, "Accept");
    snprintf(S.last_accept, sizeof(S.last_accept), "%s", v ? v : "");
    v = evhttp_find_header(in, "Host");
    snprintf(S.last_host, sizeof(S.last_host), "%s", v ? v : "");

    sig = verify_sig(req, body, blen);
    if (sig < 0) {
        S.bad_sigs++;
        reply(req, 401,
              "{\"error_code\":\"APIGW.0301\",\"error_msg\":\"Incorrect IAM "
              "authentication information: verify aksk signature fail\"}");
        return;
    }
    if (sig > 0)
        S.signed_ok++;
    if (strcmp(path, "/hang") == 0 && S.nhung < 64) {
        S.hung[S.nhung++] = req; /* never answered; freed with the server */
        return;
    }
    if (strcmp(path, "/slow") == 0) {
        slow_reply_later(req, 100);
        return;
    }
    if (strcmp(path, "/big") == 0 || strcmp(path, "/chunked") == 0) {
        digits_reply(req, strcmp(path, "/chunked") == 0);
        return;
    }
    if (strcmp(path, "/429") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "2");
        reply(req, 429, "{\"error_code\":\"APIGW.0308\",\"error_msg\":\"throttled\"}");
        return;
    }
    if (strcmp(path, "/503") == 0) {
        reply(req, 503, "{\"error_code\":\"CCE.01500001\",\"error_msg\":\"boom\"}");
        return;
    }
    if (strcmp(path, "/k8s404") == 0) {
        reply(req, 404,
              "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
              "\"message\":\"nodes \\\"n9\\\" not found\",\"reason\":\"NotFound\","
              "\"code\":404}");
        return;
    }
    if (strcmp(path, "/400text") == 0) {
        reply(req, 400, "plain text\nerror");
        return;
    }
    if (strcmp(path, "/asm400") == 0) { /* ASM's error shape, escapes in its message */
        reply(req, 400, "{\"errorCode\":\"SVCSTG.ASM.4001\",\"errorMsg\":\"bad \\u00e9\"}");
        return;
    }
    if (strcmp(path, "/code409") == 0) { /* VPC v1's, with a code only */
        reply(req, 409, "{\"code\":\"VPC.0114\"}");
        return;
    }
    if (strcmp(path, "/odd500") == 0) { /* a code that is no string: the message alone */
        reply(req, 500, "{\"error_code\":7,\"error_msg\":\"\\u0041x\"}");
        return;
    }
    reply(req, 200, "{\"ok\":true}");
}

static void srv_start(struct event_base *base)
{
    struct evhttp_bound_socket *bs;
    struct sockaddr_storage ss;
    ev_socklen_t len = sizeof(ss);

    memset(&S, 0, sizeof(S));
    S.base = base;
    S.http = evhttp_new(base);
    assert_non_null(S.http);
    evhttp_set_allowed_methods(S.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                           EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(S.http, handle, NULL);
    bs = evhttp_bind_socket_with_handle(S.http, "127.0.0.1", 0);
    assert_non_null(bs);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len), 0);
    S.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void srv_stop(void)
{
    evhttp_free(S.http);
    S.http = NULL;
}

/* ------------------------------------------------------------------ */
/* Client helpers                                                     */
/* ------------------------------------------------------------------ */

typedef struct res {
    int called;
    long status;
    mb_error err;
    char body[256];
    long retry_after_ms;
} res;

static void on_done(void *arg, const mb_http_resp *r, const mb_error *e)
{
    res *o = arg;
    o->called++;
    o->err = *e;
    o->status = r ? r->status : 0;
    o->retry_after_ms = r ? r->retry_after_ms : -2;
    snprintf(o->body, sizeof(o->body), "%s", r ? r->body : "");
}

static char url_buf[256];
static const char *url(const char *path)
{
    snprintf(url_buf, sizeof(url_buf), "http://127.0.0.1:%d%s", S.port, path);
    return url_buf;
}

typedef struct env {
    struct event_base *base;
    mb_http *h;
} env;

static int setup(void **state)
{
    env *e = calloc(1, sizeof(*e));
    mb_http_opts o = {.ak = AK, .sk = SK, .timeout_ms = 5000, .max_host_connections = 8};
    char err[256];
    e->base = event_base_new();
    srv_start(e->base);
    e->h = mb_http_new(e->base, &o, err, sizeof(err));
    if (e->h == NULL)
        fail_msg("mb_http_new: %s", err);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    mb_http_free(e->h);
    srv_stop();
    event_base_free(e->base);
    free(e);
    return 0;
}

static mb_http_xfer *get(env *e, const char *path, res *r)
{
    mb_http_req rq = {.method = "GET", .url = url(path)};
    return mb_http_request(e->h, &rq, on_done, r);
}

/* ------------------------------------------------------------------ */
/* Live tests                                                         */
/* ------------------------------------------------------------------ */

static void test_parallel_keepalive(void **state)
{
    env *e = *state;
    enum { N = 300 };
    static res r[N];
    int done = 0;
    mb_http_counters c;

    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++)
        assert_non_null(get(e, "/echo", &r[i]));
    assert_int_equal(mb_http_inflight(e->h), N);
    /* count completions by polling the results */
    long end = now_ms() + 10000;
    while (done < N && now_ms() < end) {
        event_base_loop(e->base, EVLOOP_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].called;
    }
    assert_int_equal(done, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].called, 1);
        assert_int_equal(r[i].err.status, MB_OK);
        assert_int_equal(r[i].status, 200);
        assert_string_equal(r[i].body, "{\"ok\":true}");
    }
    assert_int_equal(mb_http_inflight(e->h), 0);
    mb_http_stats(e->h, &c);
    assert_int_equal(c.started, N);
    assert_int_equal(c.completed, N);
    assert_int_equal(c.ok, N);
    /* at most 8 connections to the host; the rest ran on kept-alive ones */
    assert_true(c.new_conns <= 8);
    assert_true(c.reused >= N - 8);
    assert_int_equal(S.signed_ok, N);
    assert_int_equal(S.bad_sigs, 0);
}

static void test_signed_post_and_traceparent(void **state)
{
    env *e = *state;
    res r = {0};
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const char *body = "{\"metadata\":{\"labels\":{\"istio\":\"master\"}}}";
    char host[64];
    mb_http_req rq = {.method = "PATCH",
                      .url = url("/api/v1/nodes/n1"),
                      .content_type = "application/merge-patch+json",
                      .body = body,
                      .body_len = strlen(body),
                      .traceparent = tp};
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 5000);
    assert_int_equal(r.called, 1);
    assert_int_equal(r.err.status, MB_OK);
    assert_int_equal(S.signed_ok, 1);
    assert_string_equal(S.last_traceparent, tp);
    assert_string_equal(S.last_ctype, "application/merge-patch+json");
    assert_string_equal(S.last_body, body);
    snprintf(host, sizeof(host), "127.0.0.1:%d", S.port);
    assert_string_equal(S.last_host, host);
}

/* Easy handles are pooled with their options kept: each request must still go
 * with its own method and body, whatever the handle carried before. */
static void test_methods_on_reused_handles(void **state)
{
    env *e = *state;
    static const struct {
        const char *method, *body;
    } seq[] = {{"POST", "{\"a\":1}"},  {"GET", NULL},        {"DELETE", NULL},
               {"PATCH", "{\"b\":2}"}, {"PUT", "{\"c\":3}"}, {"GET", NULL}};
    mb_http_counters c;

    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        res r = {0};
        mb_http_req rq = {.method = seq[i].method,
                          .url = url("/echo"),
                          .body = seq[i].body,
                          .body_len = seq[i].body ? strlen(seq[i].body) : 0};
        assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
        run_until(e->base, &r.called, 1, 5000);
        if (r.err.status != MB_OK)
            fail_msg("request %zu (%s): %s %s", i, seq[i].method, r.err.code, r.err.msg);
        assert_string_equal(S.last_method, seq[i].method);
        assert_string_equal(S.last_body, seq[i].body ? seq[i].body : "");
        assert_string_equal(S.last_ctype, seq[i].body ? "application/json" : "");
    }
    assert_int_equal(S.signed_ok, 6);
    mb_http_stats(e->h, &c);
    assert_int_equal(c.new_conns, 1); /* one after the other: one connection, reused */
}

typedef struct digits_res {
    int called;
    size_t len;
    int intact;
} digits_res;

static void on_digits(void *arg, const mb_http_resp *r, const mb_error *e)
{
    digits_res *o = arg;

    o->called++;
    o->intact = e->status == MB_OK && r != NULL && r->body[r->body_len] == '\0';
    o->len = r ? r->body_len : 0;
    for (size_t i = 0; o->intact && i < r->body_len; i++)
        o->intact = r->body[i] == (char)('0' + i % 10);
}

/* GETs path and asserts its body is want digits, whole. */
static void expect_digits(env *e, const char *path, size_t want)
{
    digits_res d = {0};
    mb_http_req rq = {.method = "GET", .url = url(path)};

    assert_non_null(mb_http_request(e->h, &rq, on_digits, &d));
    run_until(e->base, &d.called, 1, 5000);
    assert_int_equal(d.called, 1);
    assert_int_equal(d.len, want);
    assert_true(d.intact);
}

/* A body arrives whole whether its room was reserved from a Content-Length
 * (larger than the reservation here) or grown as chunks came. */
static void test_large_and_chunked_bodies(void **state)
{
    expect_digits(*state, "/big", BIG_LEN);
    expect_digits(*state, "/chunked", 3 * CHUNK_LEN);
}

/* Accept defaults to application/json; a caller's value goes as given (and
 * is signed over like any request); a line break in it is refused. */
static void test_accept(void **state)
{
    env *e = *state;
    res r = {0}, r2 = {0};
    mb_http_req rq = {.method = "GET", .url = url("/api/v1/pods?limit=500")};

    assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 5000);
    assert_int_equal(r.err.status, MB_OK);
    assert_string_equal(S.last_accept, "application/json");
    rq.accept = MB_HTTP_ACCEPT_META_LIST;
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r2));
    run_until(e->base, &r2.called, 1, 5000);
    assert_int_equal(r2.err.status, MB_OK);
    assert_int_equal(S.signed_ok, 2);
    assert_string_equal(S.last_accept, "application/json;as=PartialObjectMetadataList;"
                                       "g=meta.k8s.io;v=v1,application/json");
    rq.accept = "application/json\r\nX-Evil: 1";
    assert_null(mb_http_request(e->h, &rq, on_done, &r2));
}

static void test_wrong_sk(void **state)
{
    env *e = *state;
    res r = {0};
    char err[128];
    mb_http_opts o = {.ak = AK, .sk = "not-the-secret"};
    mb_http *h = mb_http_new(e->base, &o, err, sizeof(err));
    mb_http_req rq = {.method = "GET", .url = url("/api/v3/projects/p/clusters/c")};
    assert_non_null(h);
    assert_non_null(mb_http_request(h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 5000);
    assert_int_equal(r.err.status, MB_PERM);
    assert_int_equal(r.err.http_status, 401);
    assert_string_equal(r.err.code, "APIGW.0301");
    assert_non_null(strstr(r.err.msg, "GET /api/v3/projects/p/clusters/c: HTTP 401: Incorrect"));
    assert_null(strstr(r.err.msg, "not-the-secret"));
    assert_int_equal(S.bad_sigs, 1);
    mb_http_free(h);
}

static void test_error_texts(void **state)
{
    env *e = *state;
    res r503 = {0}, r429 = {0}, r404 = {0}, r400 = {0}, rasm = {0}, rcode = {0}, rodd = {0};
    int called = 0;

    assert_non_null(get(e, "/503", &r503));
    assert_non_null(get(e, "/429", &r429));
    assert_non_null(get(e, "/k8s404", &r404));
    assert_non_null(get(e, "/400text", &r400));
    assert_non_null(get(e, "/asm400", &rasm));
    assert_non_null(get(e, "/code409", &rcode));
    assert_non_null(get(e, "/odd500", &rodd));
    long end = now_ms() + 5000;
    while (called < 7 && now_ms() < end) {
        event_base_loop(e->base, EVLOOP_ONCE);
        called = r503.called + r429.called + r404.called + r400.called + rasm.called +
                 rcode.called + rodd.called;
    }
    assert_int_equal(called, 7);

    assert_int_equal(r503.err.status, MB_AGAIN);
    assert_int_equal(r503.err.http_status, 503);
    assert_string_equal(r503.err.code, "CCE.01500001");
    assert_string_equal(r503.err.msg, "GET /503: HTTP 503: boom");

    assert_int_equal(r429.err.status, MB_AGAIN);
    assert_int_equal(r429.err.retry_after_ms, 2000);
    assert_int_equal(r429.retry_after_ms, 2000);
    assert_string_equal(r429.err.code, "APIGW.0308");

    assert_int_equal(r404.err.status, MB_PERM);
    assert_string_equal(r404.err.code, "NotFound");
    assert_string_equal(r404.err.msg, "GET /k8s404: HTTP 404: nodes \"n9\" not found");
    assert_int_equal(r404.status, 404); /* the response still reaches the caller */

    assert_int_equal(r400.err.status, MB_PERM);
    assert_string_equal(r400.err.code, "HTTP400");
    assert_string_equal(r400.err.msg, "GET /400text: HTTP 400: plain text error");

    assert_string_equal(rasm.err.code, "SVCSTG.ASM.4001");
    assert_string_equal(rasm.err.msg, "GET /asm400: HTTP 400: bad \xc3\xa9");
    assert_int_equal(rcode.err.status, MB_AGAIN); /* 409 */
    assert_string_equal(rcode.err.code, "VPC.0114");
    assert_string_equal(rcode.err.msg, "GET /code409: HTTP 409: {\"code\":\"VPC.0114\"}");
    assert_string_equal(rodd.err.code, "HTTP500");
    assert_string_equal(rodd.err.msg, "GET /odd500: HTTP 500: Ax");
}

static void test_timeout(void **state)
{
    env *e = *state;
    res r = {0};
    long t0 = now_ms();
    mb_http_req rq = {.method = "GET", .url = url("/hang"), .timeout_ms = 300};
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 5000);
    assert_int_equal(r.called, 1);
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "Timeout");
    assert_int_equal(r.status, 0); /* resp was NULL */
    assert_non_null(strstr(r.err.msg, "GET /hang: "));
    assert_true(now_ms() - t0 >= 250);
    assert_true(now_ms() - t0 < 3000);
}

static void test_connect_refused_and_bad_url(void **state)
{
    env *e = *state;
    res r1 = {0}, r2 = {0}, r3 = {0};
    int called = 0;
    /* a port that was just free: bind, read the port, close */
    struct evhttp *tmp = evhttp_new(e->base);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(tmp, "127.0.0.1", 0);
    struct sockaddr_in sin;
    ev_socklen_t len = sizeof(sin);
    char u[128];
    getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &len);
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/x", ntohs(sin.sin_port));
    evhttp_free(tmp);

    mb_http_req rq = {.method = "GET", .url = u};
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r1));
    mb_http_req rq2 = {.method = "GET", .url = "ftp://127.0.0.1/x"};
    assert_non_null(mb_http_request(e->h, &rq2, on_done, &r2));
    mb_http_req rq3 = {.method = "GET", .url = "http://127.0.0.1:1/x\r\nX: y"};
    assert_null(mb_http_request(e->h, &rq3, on_done, &r3)); /* header injection refused */
    long end = now_ms() + 5000;
    while (called < 2 && now_ms() < end) {
        event_base_loop(e->base, EVLOOP_ONCE);
        called = r1.called + r2.called;
    }
    assert_int_equal(r1.err.status, MB_AGAIN);
    assert_string_equal(r1.err.code, "ConnectFailed");
    assert_non_null(strstr(r1.err.msg, "GET /x: "));
    assert_int_equal(r2.called, 1);
    assert_int_equal(r2.err.status, MB_PERM);
    assert_string_equal(r2.err.code, "BadURL");
    assert_int_equal(r3.called, 0);
}

static void test_tls_config_error(void **state)
{
    env *e = *state;
    res r = {0};
    char err[128], u[128];
    mb_http_opts o = {.ca_file = "/nonexistent/ca.pem"};
    mb_http *h = mb_http_new(e->base, &o, err, sizeof(err));
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/x", S.port);
    mb_http_req rq = {.method = "GET", .url = u};
    assert_non_null(h);
    assert_non_null(mb_http_request(h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 5000);
    assert_int_equal(r.called, 1);
    assert_int_equal(r.err.status, MB_PERM);
    assert_string_equal(r.err.code, "TLSError");
    mb_http_free(h);
}

/* TLS against `openssl s_server` with a fresh self-signed certificate for
 * 127.0.0.1: refused by default (peer verification on), accepted with that
 * certificate as the CA file. */
static void test_tls_verification(void **state)
{
    env *e = *state;
    char dir[] = "/tmp/test_http_tls.XXXXXX", cmd[1024], cert[128], key[128], outf[128];
    char line[256], u[128], err[128];
    int port = 0;
    pid_t pid;
    long end;
    res r1 = {0}, r2 = {0};

    assert_non_null(mkdtemp(dir));
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(outf, sizeof(outf), "%s/server.out", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 1 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0)
        fail_msg("cannot make a test certificate with the openssl command");
    pid = fork();
    if (pid == 0) {
        int fd = open(outf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("openssl", "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", cert, "-key",
               key, "-www", (char *)NULL);
        _exit(127);
    }
    end = now_ms() + 10000;
    while (port == 0 && now_ms() < end) {
        FILE *f = fopen(outf, "r");
        while (f && fgets(line, sizeof(line), f))
            if (strncmp(line, "ACCEPT 127.0.0.1:", 17) == 0)
                port = (int)strtol(line + 17, NULL, 10);
        if (f)
            fclose(f);
        if (port == 0)
            usleep(50000);
    }
    if (port == 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        fail_msg("openssl s_server did not start");
    }
    snprintf(u, sizeof(u), "https://127.0.0.1:%d/", port);
    mb_http_req rq = {.method = "GET", .url = u};

    /* default trust store: the self-signed peer is refused, permanently */
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r1));
    run_until(e->base, &r1.called, 1, 10000);
    assert_int_equal(r1.called, 1);
    assert_int_equal(r1.err.status, MB_PERM);
    assert_string_equal(r1.err.code, "TLSError");
    assert_non_null(strstr(r1.err.msg, "GET /: "));

    /* that certificate as the CA file: accepted */
    mb_http_opts o = {.ca_file = cert};
    mb_http *h = mb_http_new(e->base, &o, err, sizeof(err));
    assert_non_null(h);
    assert_non_null(mb_http_request(h, &rq, on_done, &r2));
    run_until(e->base, &r2.called, 1, 10000);
    assert_int_equal(r2.called, 1);
    if (r2.err.status != MB_OK)
        fail_msg("with the CA file: %s %s", r2.err.code, r2.err.msg);
    assert_int_equal(r2.status, 200);
    mb_http_free(h);

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(cert);
    unlink(key);
    unlink(outf);
    rmdir(dir);
}

/* Cancels the xfer in arg from another request's callback. */
typedef struct canceller {
    res r;
    mb_http_xfer *victim;
    mb_http *h;
    mb_http_xfer *started;
    res started_res;
} canceller;

static void on_done_cancel(void *arg, const mb_http_resp *resp, const mb_error *e)
{
    canceller *c = arg;
    mb_http_req rq = {.method = "GET", .url = url("/echo")};
    on_done(&c->r, resp, e);
    mb_http_cancel(c->victim);
    /* and start a new one from inside the callback */
    c->started = mb_http_request(c->h, &rq, on_done, &c->started_res);
}

static void test_cancel(void **state)
{
    env *e = *state;
    res slow = {0}, slow2 = {0};
    canceller c = {0};
    mb_http_counters st;
    mb_http_req rq = {.method = "GET", .url = url("/echo")};
    int never = 0;

    /* plain cancel before anything ran */
    mb_http_xfer *x = get(e, "/slow", &slow);
    assert_non_null(x);
    mb_http_cancel(x);
    assert_int_equal(mb_http_inflight(e->h), 0);

    /* cancel from another request's callback, and start a new one there */
    c.h = e->h;
    c.victim = get(e, "/slow", &slow2);
    assert_non_null(c.victim);
    rq.url = url("/echo"); /* url() reuses one buffer: get() above overwrote it */
    assert_non_null(mb_http_request(e->h, &rq, on_done_cancel, &c));
    run_until(e->base, &c.started_res.called, 1, 5000);
    assert_int_equal(c.r.called, 1);
    assert_int_equal(c.r.err.status, MB_OK);
    assert_string_equal(c.r.body, "{\"ok\":true}");
    assert_non_null(c.started);
    assert_int_equal(c.started_res.called, 1);
    assert_int_equal(c.started_res.err.status, MB_OK);
    /* the slow replies (100 ms) arrive meanwhile; they must not call back */
    run_until(e->base, &never, 1, 400);
    assert_int_equal(S.requests >= 3, 1);
    assert_int_equal(slow.called, 0);
    assert_int_equal(slow2.called, 0);
    assert_int_equal(mb_http_inflight(e->h), 0);
    mb_http_stats(e->h, &st);
    assert_int_equal(st.cancelled, 2);
    assert_int_equal(st.completed, 2);
}

/* Beyond max_active, requests wait in mb_http's own FIFO (no socket):
 * all complete, never more than max_active at once, cancel works in both
 * states and a cancelled active one frees its slot for a queued one. */
static void test_queue_bounded(void **state)
{
    env *e = *state;
    enum { N = 100 };
    static res r[N];
    mb_http_xfer *x[N];
    char err[128];
    mb_http_opts o = {.ak = AK, .sk = SK, .max_active = 4};
    mb_http *h = mb_http_new(e->base, &o, err, sizeof(err));
    mb_http_req rq = {.method = "GET", .url = url("/echo")};
    mb_http_counters c;
    int done = 0;
    long end;

    assert_non_null(h);
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++) {
        x[i] = mb_http_request(h, &rq, on_done, &r[i]);
        assert_non_null(x[i]);
    }
    mb_http_stats(h, &c);
    assert_int_equal(c.active, 4);
    assert_int_equal(c.queued, N - 4);
    assert_int_equal(mb_http_inflight(h), N);
    mb_http_cancel(x[0]);  /* active */
    mb_http_cancel(x[50]); /* queued */
    assert_int_equal(mb_http_inflight(h), N - 2);
    end = now_ms() + 10000;
    while (done < N - 2 && now_ms() < end) {
        event_base_loop(e->base, EVLOOP_ONCE);
        mb_http_stats(h, &c);
        assert_true(c.active <= 4);
        done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].called;
    }
    assert_int_equal(done, N - 2);
    assert_int_equal(r[0].called, 0);
    assert_int_equal(r[50].called, 0);
    for (int i = 1; i < N; i++) {
        if (i != 50)
            assert_int_equal(r[i].err.status, MB_OK);
    }
    mb_http_stats(h, &c);
    assert_true(c.new_conns <= 5); /* 4, plus one if the cancelled transfer's was dropped */
    assert_int_equal(c.cancelled, 2);
    assert_int_equal(S.bad_sigs, 0);
    mb_http_free(h);
}

typedef struct hook_st {
    int calls;
    int refuse;
    int set_err;
    long timeout_ms;
    int requests_seen; /* S.requests when the hook ran */
    const int *watch;
    int watched;
} hook_st;

static int hook(void *arg, long timeout_ms, mb_error *err)
{
    hook_st *k = arg;
    k->calls++;
    k->timeout_ms = timeout_ms;
    k->requests_seen = S.requests;
    if (k->watch)
        k->watched = *k->watch;
    if (!k->refuse)
        return 0;
    if (k->set_err)
        mb_error_set(err, MB_AGAIN, "LeaseShort", "lease too short");
    return -1;
}

/* The start hook: asked on the loop when the transfer starts, never inside
 * mb_http_request; a refusal sends nothing and reports through the callback. */
static void test_start_hook(void **state)
{
    env *e = *state;
    hook_st k = {.refuse = 1, .set_err = 1};
    mb_http_req rq = {.method = "POST",
                      .url = url("/echo"),
                      .body = "{}",
                      .body_len = 2,
                      .timeout_ms = 1234,
                      .on_start = hook,
                      .start_arg = &k};
    mb_http_counters c;
    res r = {0};
    int before = S.requests;

    assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
    assert_int_equal(k.calls, 0);
    assert_int_equal(r.called, 0);
    run_until(e->base, &r.called, 1, 5000);
    assert_int_equal(r.called, 1);
    assert_int_equal(k.calls, 1);
    assert_int_equal(k.timeout_ms, 1234);
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "LeaseShort");
    assert_int_equal(r.status, 0); /* no response */
    assert_int_equal(S.requests, before);
    mb_http_stats(e->h, &c);
    assert_int_equal(c.refused, 1);
    assert_int_equal(c.completed, 1);

    /* refused without a reason: MB_AGAIN "Refused" */
    k = (hook_st){.refuse = 1};
    memset(&r, 0, sizeof(r));
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 5000);
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "Refused");
    assert_non_null(strstr(r.err.msg, "POST /echo"));
    assert_int_equal(S.requests, before);

    /* cancelled while waiting for its turn: neither hook nor callback */
    k = (hook_st){0};
    memset(&r, 0, sizeof(r));
    mb_http_cancel(mb_http_request(e->h, &rq, on_done, &r));
    {
        int never = 0;
        run_until(e->base, &never, 1, 100);
    }
    assert_int_equal(k.calls, 0);
    assert_int_equal(r.called, 0);

    /* allowed: sent as usual */
    memset(&r, 0, sizeof(r));
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 5000);
    assert_int_equal(r.err.status, MB_OK);
    assert_int_equal(k.calls, 1);
    assert_int_equal(S.requests, before + 1);
    assert_string_equal(S.last_body, "{}");
}

/* With max_active 1 the hook runs only once the slot is free, i.e. after
 * the wait in the FIFO, right before the request goes out. */
static void test_start_hook_after_queue(void **state)
{
    env *e = *state;
    char err[128];
    mb_http_opts o = {.max_active = 1, .user_agent = "meshworker/dev (w-test-1)"};
    mb_http *h = mb_http_new(e->base, &o, err, sizeof(err));
    mb_http_req slow = {.method = "GET", .url = url("/slow")};
    res r1 = {0}, r2 = {0};
    hook_st k = {0};
    mb_http_req rq;
    int never = 0;

    assert_non_null(h);
    assert_non_null(mb_http_request(h, &slow, on_done, &r1));
    rq = (mb_http_req){.method = "DELETE", .url = url("/echo"), .on_start = hook, .start_arg = &k};
    k.watch = &r1.called;
    assert_non_null(mb_http_request(h, &rq, on_done, &r2));
    /* a bad URL does not wait for the slot to be told so */
    mb_http_req bad = {.method = "GET", .url = "ftp://127.0.0.1/x"};
    res r3 = {0};
    assert_non_null(mb_http_request(h, &bad, on_done, &r3));
    assert_int_equal(r3.called, 0); /* never inside the call */
    run_until(e->base, &never, 1, 50);
    assert_int_equal(r3.called, 1);
    assert_string_equal(r3.err.code, "BadURL");
    assert_string_equal(r3.err.msg,
                        "GET ftp://127.0.0.1/x: bad URL: not an http:// or https:// URL");
    assert_int_equal(r1.called, 0);
    assert_int_equal(k.calls, 0); /* /slow answers after 100 ms */
    run_until(e->base, &r2.called, 1, 5000);
    assert_int_equal(r2.err.status, MB_OK);
    assert_int_equal(k.calls, 1);
    assert_int_equal(k.watched, 1);
    assert_int_equal(k.timeout_ms, 30000); /* the client's default */
    assert_int_equal(mb_http_timeout_ms(h), 30000);
    /* and the User-Agent went with it */
    assert_string_equal(S.last_ua, "meshworker/dev (w-test-1)");
    mb_http_free(h);

    /* a line break in the User-Agent is refused */
    o.user_agent = "x\r\nEvil: 1";
    assert_null(mb_http_new(e->base, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "User-Agent"));
}

/* ------------------------------------------------------------------ */
/* A raw server: scripted bytes, for what evhttp would never send      */
/* ------------------------------------------------------------------ */

/* The n-th request read (over all connections) is answered with
 * RAW.replies[n] (the last one again past the end): its bytes as given, then
 * the connection stays open, unless the text starts with "!close:" (the
 * rest is written, then the server closes).  NULL closes without a word. */
typedef struct raw_srv {
    evutil_socket_t lfd;
    struct event *lev;
    int port;
    int conns;
    int requests;
    char lines[16][64]; /* the first 16 requests' request lines */
    const char *const *replies;
    size_t nreplies;
} raw_srv;

typedef struct raw_conn {
    evutil_socket_t fd;
    struct event *ev;
    char buf[4096];
    size_t len;
} raw_conn;

static raw_srv RAW;
static raw_conn *raw_conns[32];

static void raw_close(raw_conn *rc)
{
    for (size_t i = 0; i < 32; i++)
        if (raw_conns[i] == rc)
            raw_conns[i] = NULL;
    event_free(rc->ev);
    close(rc->fd);
    free(rc);
}

static void on_raw_read(evutil_socket_t fd, short what, void *arg)
{
    raw_conn *rc = arg;
    ssize_t n = recv(fd, rc->buf + rc->len, sizeof(rc->buf) - 1 - rc->len, 0);
    char *end;
    (void)what;

    if (n <= 0) {
        raw_close(rc);
        return;
    }
    rc->len += (size_t)n;
    rc->buf[rc->len] = '\0';
    while ((end = strstr(rc->buf, "\r\n\r\n")) != NULL) { /* bodiless requests only */
        size_t used = (size_t)(end + 4 - rc->buf);
        size_t i = (size_t)RAW.requests++;
        const char *r = RAW.replies[i < RAW.nreplies ? i : RAW.nreplies - 1];
        if (i < 16)
            snprintf(RAW.lines[i], sizeof(RAW.lines[i]), "%.*s", (int)strcspn(rc->buf, "\r"),
                     rc->buf);
        int close_after = r == NULL || strncmp(r, "!close:", 7) == 0;
        memmove(rc->buf, rc->buf + used, rc->len - used + 1);
        rc->len -= used;
        if (r != NULL) {
            const char *text = close_after ? r + 7 : r;
            assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
        }
        if (close_after) {
            raw_close(rc);
            return;
        }
    }
}

static void on_raw_accept(evutil_socket_t fd, short what, void *arg)
{
    evutil_socket_t c = accept(fd, NULL, NULL);
    raw_conn *rc;
    (void)what;

    if (c < 0)
        return;
    rc = calloc(1, sizeof(*rc));
    assert_non_null(rc);
    rc->fd = c;
    rc->ev = event_new((struct event_base *)arg, c, EV_READ | EV_PERSIST, on_raw_read, rc);
    event_add(rc->ev, NULL);
    for (size_t i = 0; i < 32; i++) {
        if (raw_conns[i] == NULL) {
            raw_conns[i] = rc;
            break;
        }
    }
    RAW.conns++;
}

static void raw_start(struct event_base *base, const char *const *replies, size_t n)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);

    memset(&RAW, 0, sizeof(RAW));
    RAW.replies = replies;
    RAW.nreplies = n;
    RAW.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(RAW.lfd >= 0);
    assert_int_equal(bind(RAW.lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(RAW.lfd, 16), 0);
    assert_int_equal(getsockname(RAW.lfd, (struct sockaddr *)&sin, &len), 0);
    RAW.port = ntohs(sin.sin_port);
    RAW.lev = event_new(base, RAW.lfd, EV_READ | EV_PERSIST, on_raw_accept, base);
    event_add(RAW.lev, NULL);
}

static void raw_stop(void)
{
    for (size_t i = 0; i < 32; i++)
        if (raw_conns[i] != NULL)
            raw_close(raw_conns[i]);
    event_free(RAW.lev);
    close(RAW.lfd);
}

/* GET path on the raw server with client h and runs until it completes. */
static void raw_get(env *e, mb_http *h, const char *path, res *r)
{
    char u[128];
    mb_http_req rq = {.method = "GET", .url = u};

    snprintf(u, sizeof(u), "http://127.0.0.1:%d%s", RAW.port, path);
    memset(r, 0, sizeof(*r));
    assert_non_null(mb_http_request(h, &rq, on_done, r));
    run_until(e->base, &r->called, 1, 5000);
    assert_int_equal(r->called, 1);
}

#define OK_REPLY "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"

/* A kept-alive connection the server drops as it is reused (its idle
 * timeout, a restart): the request goes out again, once, on a new one. */
static void test_stale_connection_retried(void **state)
{
    env *e = *state;
    static const char *const replies[] = {OK_REPLY, NULL, OK_REPLY, NULL};
    mb_http_counters c;
    res r;

    raw_start(e->base, replies, 4);
    raw_get(e, e->h, "/a", &r);
    assert_int_equal(r.err.status, MB_OK);
    raw_get(e, e->h, "/b", &r); /* reused, dropped, sent again */
    if (r.err.status != MB_OK)
        fail_msg("%s %s", r.err.code, r.err.msg);
    assert_string_equal(r.body, "{\"ok\":true}");
    mb_http_stats(e->h, &c);
    assert_int_equal(c.new_conns, 2);
    assert_int_equal(RAW.conns, 2);
    assert_int_equal(RAW.requests, 3);
    /* the second try is the same request, its bytes built again (not kept once sent) */
    assert_string_equal(RAW.lines[1], "GET /b HTTP/1.1");
    assert_string_equal(RAW.lines[2], "GET /b HTTP/1.1");
    /* dropped again on reuse, and on the fresh one too: no third try */
    raw_get(e, e->h, "/c", &r);
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "ConnectionError");
    assert_non_null(strstr(r.err.msg, "GET /c: the connection closed without a reply"));
    assert_int_equal(RAW.requests, 5);
    raw_stop();
}

/* What evhttp would never send: garbage, a close inside the body, a length
 * over the limit, an interim response, Connection: close. */
static void test_raw_replies(void **state)
{
    env *e = *state;
    static const char *const replies[] = {
        "!close:HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        "!close:SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "!close:HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"",
        "!close:HTTP/1.1 200 OK\r\nContent-Length: 40000000\r\n\r\n{",
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nRetry-After: 3\r\n"
        "Transfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n",
        OK_REPLY,
    };
    mb_http_counters c;
    res r;

    raw_start(e->base, replies, 6);
    raw_get(e, e->h, "/close", &r);
    assert_int_equal(r.err.status, MB_OK);
    assert_string_equal(r.body, "{}");
    raw_get(e, e->h, "/ssh", &r); /* a new connection: the last one was closed */
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "ProtocolError");
    assert_string_equal(r.err.msg, "GET /ssh: not an HTTP/1.x status line");
    raw_get(e, e->h, "/cut", &r);
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_string_equal(r.err.code, "ConnectionError");
    assert_string_equal(r.err.msg, "GET /cut: the connection closed before the end of the body");
    raw_get(e, e->h, "/huge", &r);
    assert_int_equal(r.err.status, MB_PERM);
    assert_string_equal(r.err.code, "ResponseTooLarge");
    raw_get(e, e->h, "/busy", &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.err.status, MB_AGAIN);
    assert_int_equal(r.retry_after_ms, 3000);
    assert_string_equal(r.err.msg, "GET /busy: HTTP 503: busy");
    raw_get(e, e->h, "/ok", &r); /* the 503's connection, kept alive */
    assert_int_equal(r.err.status, MB_OK);
    mb_http_stats(e->h, &c);
    assert_int_equal(RAW.conns, 5);
    assert_int_equal(c.new_conns, 5);
    assert_int_equal(c.reused, 1);
    raw_stop();
}

/* A host name: resolved (evdns, here from /etc/hosts), every address tried in
 * turn: "localhost" may give ::1 first, where nothing listens. */
static void test_host_name(void **state)
{
    env *e = *state;
    res r = {0};
    char u[128];
    mb_http_req rq = {.method = "GET", .url = u};

    snprintf(u, sizeof(u), "http://localhost:%d/echo", S.port);
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 5000);
    if (r.err.status != MB_OK)
        fail_msg("%s %s", r.err.code, r.err.msg);
    assert_string_equal(r.body, "{\"ok\":true}");
    assert_int_equal(S.signed_ok, 1); /* signed over Host: localhost:PORT */
    snprintf(u, sizeof(u), "localhost:%d", S.port);
    assert_string_equal(S.last_host, u);

    memset(&r, 0, sizeof(r));
    snprintf(u, sizeof(u), "http://no-such-host.invalid:%d/x", S.port);
    assert_non_null(mb_http_request(e->h, &rq, on_done, &r));
    run_until(e->base, &r.called, 1, 20000);
    assert_int_equal(r.called, 1);
    assert_int_equal(r.err.status, MB_AGAIN);
    if (strcmp(r.err.code, "ResolveFailed") != 0 && strcmp(r.err.code, "Timeout") != 0)
        fail_msg("%s %s", r.err.code, r.err.msg); /* no DNS server here: a timeout */
}

/* Requests in flight when the client is freed never call back. */
static void test_free_inflight(void **state)
{
    env *e = *state;
    res r[4] = {{0}};
    char err[128];
    mb_http_opts o = {0};
    mb_http *h = mb_http_new(e->base, &o, err, sizeof(err));
    mb_http_req rq = {.method = "GET", .url = url("/hang")};
    int never = 0;
    for (int i = 0; i < 4; i++)
        assert_non_null(mb_http_request(h, &rq, on_done, &r[i]));
    run_until(e->base, &never, 1, 100); /* let them connect */
    mb_http_free(h);
    run_until(e->base, &never, 1, 100);
    for (int i = 0; i < 4; i++)
        assert_int_equal(r[i].called, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test_setup_teardown(test_parallel_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signed_post_and_traceparent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_methods_on_reused_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_and_chunked_bodies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_sk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_texts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused_and_bad_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_config_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_verification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_hook_after_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_connection_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_name, setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN); /* as the binaries do: a TLS write may meet a closed peer */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
