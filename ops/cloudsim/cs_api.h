/* cs_api.h: one HTTP call in cloudsim, its server, and the reply helpers handlers use. */
#ifndef CS_API_H
#define CS_API_H

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <pthread.h>
#include <stddef.h>

#include "cs_audit.h"
#include "cs_fault.h"
#include "cs_model.h"
#include "mb_list.h"
#include "mb_sign.h"

#define CS_MAX_SEGS  24
#define CS_MAX_QUERY 32
#define CS_MAX_HDRS  64

struct cs_loop;

/* Threading: every loop (one thread each, its own listening socket on the
 * shared port through SO_REUSEPORT) reads, parses and writes HTTP on its
 * own; everything below, and the model, audit and faults, is touched only
 * with lock held.  cs_server.c takes it around each call's whole handling
 * (route, handler, serialization of the reply), so handlers need no locking
 * of their own.  Recursive: evhttp may call a close callback from inside a
 * locked section. */
typedef struct cs_server {
    pthread_mutex_t lock;
    struct cs_loop *loops; /* owned, nloops of them */
    int nloops;
    cs_model *m;
    cs_audit *audit;
    cs_faults *faults;
    long long install_ms, delete_ms;
    long latency_ms;  /* every cloud request is answered this long after it arrived */
    int no_auth;      /* --no-auth: skip signature checks */
    int kubectl_read; /* --kubectl-read: unsigned GETs under /k8s allowed */
    unsigned long long rid_seq;
    mb_list held; /* calls waiting (latency or hang), freed when answered or their client goes */
} cs_server;

typedef struct cs_call {
    cs_server *srv;
    struct event_base *base; /* the loop the call came in on, borrowed */
    struct evhttp_request *req;
    const char *method;
    char *uri;              /* raw request-target, owned */
    char *path;             /* raw path, owned */
    char *query;            /* raw query (no '?') or NULL, points into uri */
    char *seg[CS_MAX_SEGS]; /* decoded path segments */
    int nseg;
    char *segbuf;
    char *qname[CS_MAX_QUERY], *qval[CS_MAX_QUERY]; /* decoded query pairs */
    int nq;
    char *qbuf;
    mb_hdr hdrs[CS_MAX_HDRS];
    size_t nhdrs;
    const unsigned char *body; /* borrowed from the request's buffer */
    size_t body_len;
    long long now_ms;
    unsigned long long seq; /* in the request log */
    char request_id[33];
    int sig_ok;          /* 1, 0, -1 not checked */
    const cs_cred *cred; /* who signed, borrowed from the model */
    cs_fault_hit hit;
    long long reply_at; /* CLOCK_MONOTONIC ms: not answered before (latency) */
    int handled;        /* its handler ran: what is left is to answer */
    struct event *timer;
    struct event *watch; /* hanging: notices the client closing */
    mb_link hlink;       /* on cs_server.held */
    int hanging;
    /* the reply being built */
    int status;
    json_t *out;    /* JSON body, or NULL for none */
    char *out_text; /* or the body already written (free()), for the largest replies */
    size_t out_len;
    const char *out_ctype; /* its Content-Type, a string literal; NULL = application/json */
    int retry_after;
    const char *fault_label; /* for the request log */
} cs_call;

/* ---- replies: each replaces any reply already built ---- */

/* JSON body (taken over). */
void cs_reply_json(cs_call *c, int status, json_t *body);
/* JSON body already written as text (taken over: free()). */
void cs_reply_text(cs_call *c, int status, char *text, size_t len);
/* No body (204, or errors without one). */
void cs_reply_empty(cs_call *c, int status);
/* Cloud error {"error_code","error_msg"[,"request_id"]}. */
void cs_reply_cloud(cs_call *c, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Kubernetes Status object.  kind/name fill details and may be NULL. */
void cs_reply_k8s(cs_call *c, int status, const char *reason, const char *kind, const char *name,
                  const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* ---- request helpers ---- */

/* Decoded value of the i-th query parameter called name, borrowed, or NULL. */
const char *cs_query(const cs_call *c, const char *name);
/* Request header (case-insensitive), borrowed, or NULL. */
const char *cs_header(const cs_call *c, const char *name);
/* The body parsed as a JSON object, new, or NULL with err set. */
json_t *cs_body_json(const cs_call *c, char *err, size_t errlen);
/* Media type of the request (Content-Type without parameters) into buf. */
const char *cs_content_type(const cs_call *c, char *buf, size_t len);
/* Records a successful mutation in the audit. */
void cs_mutation(cs_call *c, cs_mut_kind kind, const char *cluster, const char *target,
                 int changed);

/* ---- handlers, by API family; each builds the reply ---- */
void cs_cce_handle(cs_call *c);   /* /api/v3/projects/... */
void cs_cam_handle(cs_call *c);   /* /cce/cam/v3/clusters/... */
void cs_vpc_handle(cs_call *c);   /* /v3/{project}/vpc/... */
void cs_k8s_handle(cs_call *c);   /* /k8s/{cluster}/... */
void cs_admin_handle(cs_call *c); /* /admin/..., /healthz */

/* ---- server ---- */

/* Starts one loop thread per bound, listening socket of fds (nfds of them,
 * all taken over, closed on failure too).  Returns 0 or -1.  The server
 * struct is the caller's; its model, audit and faults must be set. */
int cs_server_start(cs_server *s, const int *fds, int nfds);
/* Stops every loop, joins the threads, frees held calls.  Accepts a
 * never-started (zeroed) server.  Not from a loop thread. */
void cs_server_stop(cs_server *s);
/* Calls each loop has taken in since start, [n0, n1, ...]: new reference. */
json_t *cs_server_loops_json(cs_server *s);
/* Replaces the model (taken over), freeing the old one. */
void cs_server_set_model(cs_server *s, cs_model *m);

#endif
