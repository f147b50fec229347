/* mb_http.h: non-blocking HTTP/1.1 client on a libevent loop, OpenSSL for https. */
#ifndef MB_HTTP_H
#define MB_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "mb_err.h"

struct event_base;

/* Many transfers run at once on the caller's event_base; nothing blocks (host
 * names resolve through libevent's evdns).  Connections are kept alive per
 * origin (scheme, host, port) and carry one request at a time.  Every
 * request is signed with AK/SK when credentials are given (docs/reference.md) and
 * carries the W3C traceparent when given.  Every outcome is classified into
 * an mb_status:
 *   2xx -> MB_OK; 429 -> MB_AGAIN (+ Retry-After); 5xx, 408, 409 -> MB_AGAIN;
 *   other 4xx, 1xx, 3xx -> MB_PERM; connection errors, malformed responses and
 *   timeouts -> MB_AGAIN; TLS verification, bad URL -> MB_PERM; out of memory
 *   -> MB_FATAL.
 * TLS: the peer's certificate and name are always verified (TLS 1.2 or later).
 * No proxy is used: http_proxy and the like are ignored.
 * Threading: one mb_http belongs to the thread running its event_base.  The
 * process must ignore SIGPIPE (a TLS write to a connection the peer closed). */

typedef struct mb_http mb_http;
typedef struct mb_http_xfer mb_http_xfer; /* one in-flight request */

typedef struct mb_http_opts {
    long connect_timeout_ms;   /* 0 = 5000 */
    long timeout_ms;           /* default total time per request; 0 = 30000 */
    const char *ca_file;       /* NULL = system CAs; TLS peer and host always verified */
    long max_host_connections; /* connections to one origin, 0 = unlimited (requests
                                  beyond it wait for one of them) */
    long max_connections;      /* idle connections kept alive; 0 = 256 */
    long max_active;           /* transfers on the wire at once, the rest wait in a
                                  FIFO here (no socket); 0 = max_connections */
    const char *ak;            /* NULL = requests are not signed */
    const char *sk;            /* never logged, never put in an error text */
    const char *user_agent;    /* sent as User-Agent on every request; NULL = none;
                                  copied */
} mb_http_opts;

/* Consulted right before a transfer goes on the wire: when it takes a slot,
 * after any wait for one (max_active).  timeout_ms is the request's
 * total timeout.  Returns 0 to send it, or -1 with err set: nothing is sent
 * and the request completes through its callback with err (resp NULL).  A
 * request with a hook is always started from the loop (one turn later),
 * never inside mb_http_request.  The hook must not start or cancel requests
 * of this client. */
typedef int mb_http_start_hook(void *arg, long timeout_ms, mb_error *err);

/* Accept of a Kubernetes list read for metadata only (as kubectl asks): the
 * API server answers a PartialObjectMetadataList; one that cannot answers
 * the full list (the fallback after the comma). */
#define MB_HTTP_ACCEPT_META_LIST \
    "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
/* The same for a read of one object: a PartialObjectMetadata (its metadata
 * only: a node's status, image list included, stays on the server). */
#define MB_HTTP_ACCEPT_META \
    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"

typedef struct mb_http_req {
    const char *method;       /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *url;          /* absolute http:// or https:// URL */
    const char *content_type; /* with a body; NULL = application/json */
    const char *body;         /* NULL = none */
    size_t body_len;
    const char *accept;           /* Accept header; NULL = application/json.  Kubernetes
                                     clients ask for metadata only with
                                     MB_HTTP_ACCEPT_META_LIST */
    const char *traceparent;      /* NULL = header not sent */
    long timeout_ms;              /* 0 = the mb_http default; counted from when the transfer
                                starts, after any wait for a slot (max_active) */
    mb_http_start_hook *on_start; /* NULL = always send */
    void *start_arg;
} mb_http_req;

/* body is NUL-terminated (body[body_len] == 0).  retry_after_ms: -1 when
 * the response had no (valid) Retry-After. */
typedef struct mb_http_resp {
    long status;
    const char *body;
    size_t body_len;
    long retry_after_ms;
} mb_http_resp;

/* Called once per request that was not cancelled, from the event loop, never
 * from inside mb_http_request.  err->status is MB_OK for 2xx, else the
 * classification, with err->code ("NotFound", "Timeout", "ConnectFailed",
 * "HTTP503", or the body's error_code / Kubernetes Status reason) and
 * err->msg ("GET /path: HTTP 503: <error_msg or body excerpt>" or
 * "GET /path: <what failed on the connection>").  resp is NULL when no HTTP response
 * came.  Both are borrowed for the call only.  The callback may start new
 * requests and cancel other ones; cancelling its own xfer is a no-op.  The
 * xfer handle is invalid once the callback returns.  It must not call
 * mb_http_free. */
typedef void mb_http_cb(void *arg, const mb_http_resp *resp, const mb_error *err);

typedef struct mb_http_counters {
    uint64_t started;   /* mb_http_request calls that returned a handle */
    uint64_t completed; /* callbacks made */
    uint64_t cancelled; /* mb_http_cancel on a live request (and mb_http_free) */
    uint64_t ok;        /* completed with MB_OK */
    uint64_t again;     /* completed with MB_AGAIN */
    uint64_t perm;      /* completed with MB_PERM or MB_FATAL */
    uint64_t new_conns; /* connections opened */
    uint64_t reused;    /* responses read on a kept-alive connection */
    uint64_t refused;   /* completed without being sent: the start hook said no */
    uint64_t queued;    /* now: waiting for a slot (max_active) */
    uint64_t active;    /* now: holding a slot (connecting, sending or reading) */
} mb_http_counters;

/* New client on base (borrowed; must outlive the client).  Strings in o are
 * copied.  Returns NULL with the reason in err on failure. */
mb_http *mb_http_new(struct event_base *base, const mb_http_opts *o, char *err, size_t errlen);

/* Starts a request.  Copies everything it needs from rq.  Returns a handle
 * (borrowed: valid until the callback returns or mb_http_cancel), or NULL on
 * out of memory or bad input (method/url missing, CR/LF in a header value: content_type, accept,
 * traceparent); then cb is never called.  A URL this client cannot use (not
 * http/https, credentials in it, a bad host or port) completes through cb
 * with "BadURL". */
mb_http_xfer *mb_http_request(mb_http *h, const mb_http_req *rq, mb_http_cb *cb, void *arg);

/* Stops a request; its callback is never called.  NULL is accepted. */
void mb_http_cancel(mb_http_xfer *x);

/* Requests started and not yet completed or cancelled. */
size_t mb_http_inflight(const mb_http *h);

/* The loop the client runs on.  Borrowed. */
struct event_base *mb_http_base(const mb_http *h);

/* The default total time per request (mb_http_opts.timeout_ms, resolved). */
long mb_http_timeout_ms(const mb_http *h);

/* Counters since mb_http_new, for metrics. */
void mb_http_stats(const mb_http *h, mb_http_counters *out);

/* Cancels everything in flight (no callbacks) and frees.  NULL is accepted.
 * Not from inside a callback of this client. */
void mb_http_free(mb_http *h);

/* ---- pure helpers, exposed for tests and for other clients ---- */

/* Why a transfer got no HTTP response. */
typedef enum mb_http_fail {
    MB_HTTP_FAIL_NONE = 0,
    MB_HTTP_FAIL_TIMEOUT,       /* the request's time, or the connect time, ran out */
    MB_HTTP_FAIL_CONNECT,       /* no address of the host took the connection */
    MB_HTTP_FAIL_RESOLVE,       /* the host name did not resolve */
    MB_HTTP_FAIL_CONNECTION,    /* sending or reading failed, or the peer closed early */
    MB_HTTP_FAIL_PROTOCOL,      /* what came back is no HTTP/1.x response */
    MB_HTTP_FAIL_TLS_HANDSHAKE, /* the handshake failed (not on the certificate) */
    MB_HTTP_FAIL_TLS,           /* certificate or name verification, CA file */
    MB_HTTP_FAIL_BAD_URL,
    MB_HTTP_FAIL_TOO_LARGE, /* a body over 32 MB */
    MB_HTTP_FAIL_NOMEM
} mb_http_fail;

/* Classifies an outcome: http_status 0 means no HTTP response (then fail
 * says why).  Writes the code name into code when not NULL ("" for MB_OK,
 * "Timeout", "ConnectFailed", "NotFound", "Conflict", "TooManyRequests",
 * "HTTP503", ...). */
mb_status mb_http_classify(long http_status, mb_http_fail fail, char *code, size_t codelen);

/* Retry-After value (delay-seconds or HTTP-date) as milliseconds from now;
 * a date in the past gives 0; -1 when the value is not valid. */
long mb_http_retry_after_ms(const char *value, time_t now);

#endif
