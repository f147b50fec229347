/* mb_intake.c: order intake: the orders consumer, acceptance into Redis, the DLQ.
 *
 * At-least-once, never skipping: a message's offset is stored only once its effect is
 * durable (the job in Redis, or the DLQ delivery report in and its record in Redis), and
 * offsets advance per partition only over a done prefix, so a crash at any point re-delivers
 * what was not finished; accept is idempotent on the order id.  While Redis is unreachable
 * the partitions are paused and the held messages retried with backoff, in order.
 *
 * Never wedged by one message: a DLQ copy the producer refuses for good (too large, DLQ
 * topic missing or not authorized: mb_kafka_err_is_permanent) is recorded in Redis as
 * undeliverable with its origin, logged once as an error, counted, and its offset moves on
 * (the bytes stay at their origin, where meshctl dlq show/redrive read them).  A transient
 * refusal is retried with a per-message backoff and logged once per message.
 */
#include "mb_intake.h"

#include "mb_buf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "mb_event.h"
#include "mb_kafka.h"
#include "mb_log.h"
#include "mb_order.h"
#include "mb_sagadef.h"
#include "mb_store.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define POLL_MAX       500 /* messages taken per wake-up: keeps one turn of the loop bounded */
#define STEP_TOTAL     (mb_saga_create.nsteps) /* an accepted buy order runs the create saga */
/* Orders accepted as jobs: a buy runs the create saga, a delete the delete saga. */
#define ACCEPTED_KIND(o)   ((o)->kind == MB_ORDER_BUY || (o)->kind == MB_ORDER_DELETE)
#define MAX_BATCH          256 /* accepts per round trip */
#define DLQ_BACKOFF_MIN_MS 200
#define DLQ_BACKOFF_MAX_MS 10000

/* NEW -> (Failed record) -> NEED_DLQ -> WAIT_DLQ -> NEED_RECORD -> DONE; a transient DLQ
 * refusal goes back to NEED_DLQ after a backoff, a permanent one on to NEED_RECORD. */
enum { ST_NEW, ST_NEED_DLQ, ST_WAIT_DLQ, ST_NEED_RECORD, ST_DONE };

typedef struct in_req in_req;

typedef struct in_msg {
    mb_dr_hdr hdr; /* first: DLQ delivery reports come back here */
    struct mb_intake *in;
    rd_kafka_message_t *m;
    int state;
    mb_order *o;     /* parsed, valid; NULL when invalid */
    char *canon;     /* o as a structured envelope, whatever the content mode (new) */
    mb_order_err oe; /* why invalid, and what identity was readable */
    const char *cls; /* error class header */
    char tp[MB_TRACEPARENT_LEN + 1];
    int rejected;  /* the Failed record/event is in Redis */
    int dlq_tries; /* transient DLQ refusals so far */
    long long dlq_retry_at_ms;
    char undeliverable[160]; /* "" or why the DLQ copy was refused for good */
    struct in_msg *next;
} in_msg;

/* A partition with messages held, and how many. */
typedef struct held_part {
    rd_kafka_topic_t *rkt;
    int32_t partition;
    size_t n;
} held_part;

struct mb_intake {
    mb_store *st;
    rd_kafka_t *rk;       /* consumer */
    rd_kafka_t *producer; /* DLQ, borrowed; NULL while the loop replaces it */
    rd_kafka_queue_t *q;
    struct event *ev;
    int pipefd[2];
    mb_intake_opts o;
    mb_worker_metrics *m;
    in_msg *head, *tail;
    size_t pending;
    held_part *held; /* the partitions of the messages held: store_offsets stops once */
    size_t nheld;    /* all of them are blocked */
    size_t held_cap;
    int held_lost; /* an append failed: the count is not trusted, every walk goes to the end */
    int stopped;
    int joined;
    int paused;
    long long retry_at_ms;
    long long backoff_ms;
    struct in_req *req; /* the one Redis request (reused); busy while it is out */
    int busy;
    int in_process;       /* the walk is running (a done inside it must not walk again) */
    mb_submit_fn *submit; /* NULL: requests run at once on st */
    void *submitter;
    void (*on_events)(void *ctx, const char *key); /* NULL: nobody to tell */
    void *on_events_ctx;
};

/* ================================================================ rebalance, pause */

static void set_paused(mb_intake *in, int pause)
{
    rd_kafka_topic_partition_list_t *parts = NULL;

    if (in->paused == pause)
        return;
    in->paused = pause;
    if (rd_kafka_assignment(in->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR || parts == NULL)
        return;
    if (pause)
        rd_kafka_pause_partitions(in->rk, parts);
    else
        rd_kafka_resume_partitions(in->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    mb_info("intake", "%s consumption", pause ? "paused" : "resumed");
}

static void store_offsets(mb_intake *in);

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    mb_intake *in = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;

    in->joined = 1;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        mb_info("intake", "assigned %d partition(s)", parts->cnt);
        if (coop)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        if (in->paused)
            rd_kafka_pause_partitions(rk, parts);
        return;
    }
    /* Revoked: store what is done while we still own the partitions. */
    store_offsets(in);
    mb_info("intake", "revoked %d partition(s)", parts->cnt);
    if (coop)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

/* ================================================================ offsets */

static held_part *held_find(mb_intake *in, const rd_kafka_message_t *m)
{
    for (size_t i = 0; i < in->nheld; i++) {
        if (in->held[i].rkt == m->rkt && in->held[i].partition == m->partition)
            return &in->held[i];
    }
    return NULL;
}

/* Counts a message taken into the held list. */
static void held_add(mb_intake *in, const rd_kafka_message_t *m)
{
    held_part *h = held_find(in, m);

    if (h == NULL && in->nheld == in->held_cap) {
        size_t cap = in->held_cap ? 2 * in->held_cap : 8;
        held_part *p = realloc(in->held, cap * sizeof(*p));
        if (p == NULL) {
            in->held_lost = 1;
            return;
        }
        in->held = p;
        in->held_cap = cap;
    }
    if (h == NULL) {
        h = &in->held[in->nheld++];
        *h = (held_part){m->rkt, m->partition, 0};
    }
    h->n++;
}

static void held_del(mb_intake *in, const rd_kafka_message_t *m)
{
    held_part *h = held_find(in, m);

    if (h != NULL && --h->n == 0)
        *h = in->held[--in->nheld];
}

/* Stores, per partition, the offset after the longest done prefix, and frees those
 * messages.  A message not done blocks later ones of its partition only.  The walk
 * stops once every partition with messages held is blocked: nothing after can go. */
static void store_offsets(mb_intake *in)
{
    rd_kafka_topic_partition_list_t *done = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_t *blocked = rd_kafka_topic_partition_list_new(8);
    in_msg **pp = &in->head;
    in_msg *prev = NULL;

    while (*pp) {
        in_msg *x = *pp;
        const char *topic = rd_kafka_topic_name(x->m->rkt);
        int32_t part = x->m->partition;
        int is_blocked;
        if (!in->held_lost && (size_t)blocked->cnt >= in->nheld)
            break;
        is_blocked = rd_kafka_topic_partition_list_find(blocked, topic, part) != NULL;
        if (x->state != ST_DONE || is_blocked) {
            if (!is_blocked)
                rd_kafka_topic_partition_list_add(blocked, topic, part);
            prev = x;
            pp = &x->next;
            continue;
        }
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(done, topic, part);
        if (tp == NULL)
            tp = rd_kafka_topic_partition_list_add(done, topic, part);
        tp->offset = x->m->offset + 1;
        *pp = x->next;
        if (in->tail == x)
            in->tail = prev;
        in->pending--;
        held_del(in, x->m);
        mb_order_free(x->o);
        free(x->canon);
        rd_kafka_message_destroy(x->m);
        free(x);
    }
    if (done->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(in->rk, done);
        /* Partitions revoked meanwhile refuse: their new owner re-delivers (a duplicate,
         * which accept joins). */
        if (err)
            mb_debug("intake", "offsets store: %s", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(done);
    rd_kafka_topic_partition_list_destroy(blocked);
}

/* ================================================================ parsing */

static void header_tp(const rd_kafka_message_t *m, char *out, size_t len)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;

    out[0] = '\0';
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (rd_kafka_header_get_last(h, "traceparent", &v, &n) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (v == NULL || n >= len)
        return;
    memcpy(out, v, n);
    out[n] = '\0';
    if (!mb_order_traceparent_valid(out))
        out[0] = '\0';
}

/* The CloudEvents Kafka binding (structured or binary content mode) is lib's. */
static int parse_message(const rd_kafka_message_t *m, char **canon, mb_order **o, mb_order_err *oe)
{
    mb_order_header h[MB_ORDER_MAX_HEADERS + 1];
    rd_kafka_headers_t *hs = NULL;
    size_t n = 0, clen;

    if (rd_kafka_message_headers(m, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        while (n < MB_ORDER_MAX_HEADERS + 1 &&
               rd_kafka_header_get_all(hs, n, &h[n].name, &h[n].value, &h[n].len) == 0)
            n++;
    }
    return mb_order_parse_message(h, n, m->payload ? m->payload : "", m->len, canon, &clen, o, oe);
}

static void parse(in_msg *x)
{
    const rd_kafka_message_t *m = x->m;
    char htp[MB_TRACEPARENT_LEN + 1];

    memset(&x->oe, 0, sizeof(x->oe));
    header_tp(m, htp, sizeof(htp));
    if (m->len > MB_ORDER_MAX_BYTES) {
        snprintf(x->oe.reason, sizeof(x->oe.reason), "message too large: %zu bytes > %d", m->len,
                 MB_ORDER_MAX_BYTES);
        x->cls = "oversize";
        snprintf(x->tp, sizeof(x->tp), "%s", htp);
        return;
    }
    if (parse_message(m, &x->canon, &x->o, &x->oe) < 0) {
        x->o = NULL;
        x->cls = "invalid";
        snprintf(x->tp, sizeof(x->tp), "%s", x->oe.traceparent[0] ? x->oe.traceparent : htp);
        return;
    }
    snprintf(x->tp, sizeof(x->tp), "%s", x->o->traceparent ? x->o->traceparent : htp);
}

/* The order failed a later check (the store refused it): send it to the DLQ too. */
static void make_invalid(in_msg *x, const char *cls, const char *reason)
{
    memset(&x->oe, 0, sizeof(x->oe));
    snprintf(x->oe.reason, sizeof(x->oe.reason), "%.300s", reason);
    x->cls = cls;
    mb_order_free(x->o);
    x->o = NULL;
}

/* ================================================================ events */

static json_t *event(const char *order_id, const char *acct, const char *mesh, const char *cluster,
                     mb_mesh_status status, const char *step, int idx, const char *msg,
                     const char *code, const char *tp, char *err, size_t errlen)
{
    char key[MB_ORDER_ID_MAX + MB_MESH_NAME_MAX + 2], mesh_id[MB_MESH_ID_LEN + 1];

    mb_order_key_of(acct, mesh, key, sizeof(key));
    mb_status_event ev = {
        .order_id = order_id,
        .mesh_id = mb_order_mesh_id(key, order_id, mesh_id, sizeof(mesh_id)),
        .account_id = acct,
        .mesh_name = mesh,
        .cluster_id = cluster && *cluster ? cluster : NULL,
        .status = status,
        .step = step,
        .step_index = idx,
        .step_total = STEP_TOTAL,
        .message = msg,
        .error_code = code,
        .error_message = code ? msg : NULL,
        .error_retryable = 0,
        .attempt = 1,
        .seq = 1, /* replaced by the store */
        .traceparent = tp && *tp ? tp : NULL,
    };
    return mb_event_build_json(&ev, err, errlen);
}

/* A delete reports Deleting from its acceptance on, counted in the delete saga's steps. */
static void as_delete(json_t *ev)
{
    json_t *d = json_object_get(ev, "data");

    json_object_set_new(d, "status", json_string(mb_mesh_status_name(MB_MESH_DELETING)));
    json_object_set_new(d, "step_total", json_integer(mb_saga_delete.nsteps));
    json_object_set_new(d, "message", json_string("delete order accepted"));
}

/* ================================================================ processing */

static void msg_key(const in_msg *x, char *key, size_t len)
{
    key[0] = '\0';
    if (x->m->key && x->m->key_len < len) {
        memcpy(key, x->m->key, x->m->key_len);
        key[x->m->key_len] = '\0';
    }
}

/* The producer refused x's DLQ copy (at produce time or in its delivery report). */
static void dlq_refused(mb_intake *in, in_msg *x, rd_kafka_resp_err_t err, long long now_ms)
{
    const rd_kafka_message_t *m = x->m;
    mb_log_ctx ctx = {x->oe.order_id[0] ? x->oe.order_id : NULL, NULL, NULL};
    char key[200];
    long long backoff;

    msg_key(x, key, sizeof(key));
    if (mb_kafka_err_is_permanent(err)) {
        snprintf(x->undeliverable, sizeof(x->undeliverable), "%s: %s", rd_kafka_err2name(err),
                 rd_kafka_err2str(err));
        in->m->dlq_undeliverable++;
        mb_log(MB_LOG_ERROR, "intake", &ctx,
               "DLQ copy of %s [%d] @%lld (key %s, %zu bytes) undeliverable to %s: %s; "
               "recorded in Redis, offset moves on",
               rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset,
               key[0] ? key : "-", m->len, in->o.dlq_topic, rd_kafka_err2str(err));
        x->state = ST_NEED_RECORD;
        return;
    }
    x->dlq_tries++;
    in->m->dlq_retries++;
    backoff = DLQ_BACKOFF_MIN_MS;
    for (int i = 1; i < x->dlq_tries && backoff < DLQ_BACKOFF_MAX_MS; i++)
        backoff *= 2;
    if (backoff > DLQ_BACKOFF_MAX_MS)
        backoff = DLQ_BACKOFF_MAX_MS;
    x->dlq_retry_at_ms = now_ms + backoff;
    x->state = ST_NEED_DLQ;
    /* Once per message: a DLQ down for an hour must not write a line per retry. */
    if (x->dlq_tries == 1)
        mb_log(MB_LOG_WARN, "intake", &ctx,
               "DLQ copy of %s [%d] @%lld refused: %s; retried with backoff (up to %d ms), "
               "its partition waits",
               rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset,
               rd_kafka_err2str(err), DLQ_BACKOFF_MAX_MS);
    else
        mb_debug("intake", "DLQ copy of %s [%d] @%lld refused again (%d): %s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset, x->dlq_tries,
                 rd_kafka_err2str(err));
}

static void on_dlq_dr(mb_dr_hdr *h, const rd_kafka_message_t *m)
{
    in_msg *x = (in_msg *)h;

    if (m->err) {
        dlq_refused(x->in, x, m->err, mb_loop_now_ms());
        return;
    }
    x->state = ST_NEED_RECORD;
    x->in->m->orders_dlq++;
}

static void produce_dlq(mb_intake *in, in_msg *x, long long now_ms)
{
    const rd_kafka_message_t *m = x->m;
    rd_kafka_headers_t *src = NULL, *h;
    char part[16], off[24];
    rd_kafka_resp_err_t err;

    if (in->producer == NULL || now_ms < x->dlq_retry_at_ms)
        return;
    if (rd_kafka_message_headers(m, &src) == RD_KAFKA_RESP_ERR_NO_ERROR && src)
        h = rd_kafka_headers_copy(src);
    else
        h = rd_kafka_headers_new(6);
    snprintf(part, sizeof(part), "%d", (int)m->partition);
    snprintf(off, sizeof(off), "%lld", (long long)m->offset);
    rd_kafka_header_add(h, "meshbuy-reason", -1, x->oe.reason, -1);
    rd_kafka_header_add(h, "meshbuy-error-class", -1, x->cls, -1);
    rd_kafka_header_add(h, "meshbuy-origin-topic", -1, rd_kafka_topic_name(m->rkt), -1);
    rd_kafka_header_add(h, "meshbuy-origin-partition", -1, part, -1);
    rd_kafka_header_add(h, "meshbuy-origin-offset", -1, off, -1);
    x->hdr.on_dr = on_dlq_dr;
    /* No copy: the consumer message lives until its report is in. */
    err =
        rd_kafka_producev(in->producer, RD_KAFKA_V_TOPIC(in->o.dlq_topic),
                          RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
                          RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(x), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        dlq_refused(in, x, err, now_ms);
        return;
    }
    x->state = ST_WAIT_DLQ;
}

static void note_again(mb_intake *in, long long now_ms, const mb_error *e)
{
    in->backoff_ms = in->backoff_ms ? in->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (in->backoff_ms > BACKOFF_MAX_MS)
        in->backoff_ms = BACKOFF_MAX_MS;
    in->retry_at_ms = now_ms + in->backoff_ms;
    in->m->redis_retries++;
    if (!in->paused)
        mb_warn("intake", "redis: %s: holding %zu message(s), retrying in %lld ms", e->msg,
                in->pending, in->backoff_ms);
    set_paused(in, 1);
}

/* Redis answered: consumption may go on (unless draining). */
static void note_ok(mb_intake *in)
{
    in->backoff_ms = 0;
    if (!in->stopped)
        set_paused(in, 0);
}

/* ---------------------------------------------------------------- requests
 * One Redis request of intake is out at a time (in->req, reused): a run of accepts, a
 * cancel, a reject or a DLQ record, for the first held message that needs Redis.  Messages
 * after it wait, so none overtakes it.  fn runs with a store (on the Redis thread when the
 * loop has one) and touches only the request; done applies the result on the loop. */

struct in_req {
    mb_intake *in;
    long long now_ms;
    size_t n;
    in_msg *run[MAX_BATCH];
    /* accept */
    mb_accept q[MAX_BATCH];
    mb_accept_result res[MAX_BATCH];
    mb_status sts[MAX_BATCH];
    mb_error errs[MAX_BATCH];
    json_t *acc[MAX_BATCH], *con[MAX_BATCH];
    char *body[MAX_BATCH];
    /* cancel */
    char key[300];
    const char *order_id; /* the cancel's, borrowed from its message */
    int found;
    char status[32];
    /* reject */
    mb_reject rj;
    json_t *ev;
    int queued;
    /* record */
    mb_dlq_record d;
    mb_status st;
    mb_error e;
};

static void req_accept_fn(mb_store *st, void *ctx)
{
    in_req *q = ctx;
    mb_store_accept(st, q->q, q->n, q->res, q->sts, q->errs);
}

static void req_cancel_fn(mb_store *st, void *ctx)
{
    in_req *q = ctx;
    mb_error_clear(&q->e);
    q->st =
        mb_store_cancel(st, q->order_id, q->key, &q->found, q->status, sizeof(q->status), &q->e);
}

static void req_reject_fn(mb_store *st, void *ctx)
{
    in_req *q = ctx;
    mb_error_clear(&q->e);
    q->st = mb_store_reject(st, &q->rj, &q->queued, &q->e);
}

static void req_record_fn(mb_store *st, void *ctx)
{
    in_req *q = ctx;
    mb_error_clear(&q->e);
    q->st = mb_store_dlq_record(st, &q->d, &q->e);
}

static void process(mb_intake *in, long long now_ms);

/* A status event for this mesh key is in Redis. */
static void events_queued(mb_intake *in, const char *key)
{
    if (in->on_events)
        in->on_events(in->on_events_ctx, key);
}

/* Every completion ends here: the request is free again, and the walk goes on (unless the
 * walk is what ran it: without a Redis thread done runs inside submit). */
static void req_end(mb_intake *in)
{
    in->busy = 0;
    if (!in->in_process)
        process(in, mb_loop_now_ms());
}

static void accept_done(void *ctx)
{
    in_req *q = ctx;
    mb_intake *in = q->in;
    int rc = 0;
    char key[200];

    for (size_t i = 0; i < q->n; i++) {
        in_msg *y = q->run[i];
        mb_log_ctx lctx = {y->o->order_id, y->o->order_id, NULL};
        if (rc == 0 && q->sts[i] == MB_OK) {
            y->state = ST_DONE;
            if (q->res[i].verdict != MB_ACCEPT_DUPLICATE) /* a duplicate queues nothing */
                events_queued(in, mb_order_key(y->o, key, sizeof(key)));
            if (q->res[i].verdict == MB_ACCEPT_NEW) {
                in->m->orders_accepted++;
                mb_log(MB_LOG_INFO, "intake", &lctx, "accepted %s/%s (seq %lld)", y->o->account_id,
                       y->o->mesh_name, q->res[i].seq);
            } else if (q->res[i].verdict == MB_ACCEPT_DUPLICATE) {
                in->m->orders_duplicate++;
                mb_log(MB_LOG_INFO, "intake", &lctx, "duplicate order joined (%s)",
                       q->res[i].other);
            } else {
                in->m->orders_conflict++;
                mb_log(MB_LOG_WARN, "intake", &lctx, "NameConflict: %s/%s held by %s",
                       y->o->account_id, y->o->mesh_name, q->res[i].other);
            }
        } else if (rc == 0 && q->sts[i] == MB_PERM) {
            make_invalid(y, "rejected", q->errs[i].msg);
            y->state = ST_NEW;
        } else if (rc == 0) {
            /* AGAIN, or FATAL (a script error): never skip an order; hold and retry. */
            if (q->sts[i] == MB_FATAL)
                mb_log(MB_LOG_ERROR, "intake", &lctx, "accept: %s", q->errs[i].msg);
            note_again(in, q->now_ms, &q->errs[i]);
            rc = -1;
        }
        json_decref(q->acc[i]);
        json_decref(q->con[i]);
        free(q->body[i]);
        q->acc[i] = q->con[i] = NULL;
        q->body[i] = NULL;
    }
    if (rc == 0 && q->n > 0)
        note_ok(in);
    req_end(in);
}

/* Builds the run of consecutive new buy and delete orders starting at x (at most opts.batch).
 * Returns how many. */
static size_t build_accept(mb_intake *in, in_req *q, in_msg *x)
{
    size_t n = 0, cap = in->o.batch;
    char err[256], msg[300];

    for (; x && n < cap && x->state == ST_NEW && x->o && ACCEPTED_KIND(x->o); x = x->next) {
        mb_order *o = x->o;
        q->run[n] = x;
        snprintf(msg, sizeof(msg), "mesh name %s is already used in account %s", o->mesh_name,
                 o->account_id);
        q->acc[n] = event(o->order_id, o->account_id, o->mesh_name, o->cluster_id, MB_MESH_ACCEPTED,
                          "validate", 1, "order accepted", NULL, x->tp, err, sizeof(err));
        q->con[n] = event(o->order_id, o->account_id, o->mesh_name, o->cluster_id, MB_MESH_FAILED,
                          "reserve", 2, msg, "NameConflict", x->tp, err, sizeof(err));
        if (o->kind == MB_ORDER_DELETE)
            as_delete(q->acc[n]);
        q->body[n] = mb_memdup_str(x->canon, strlen(x->canon));
        if (q->body[n] == NULL || q->acc[n] == NULL || q->con[n] == NULL) {
            /* Out of memory: accept what is batched; this one stays new for the next turn. */
            free(q->body[n]);
            json_decref(q->acc[n]);
            json_decref(q->con[n]);
            q->body[n] = NULL;
            q->acc[n] = q->con[n] = NULL;
            break;
        }
        q->q[n] = (mb_accept){o->order_id, o->account_id, o->mesh_name, q->body[n],
                              x->tp,       q->acc[n],     q->con[n]};
        q->q[n].mesh_id =
            json_string_value(json_object_get(json_object_get(q->acc[n], "data"), "mesh_id"));
        if (o->kind == MB_ORDER_DELETE)
            q->q[n].saga = mb_saga_delete.name;
        q->sts[n] = MB_OK;
        memset(&q->res[n], 0, sizeof(q->res[n]));
        mb_error_clear(&q->errs[n]);
        n++;
    }
    return n;
}

static void cancel_done(void *ctx)
{
    in_req *q = ctx;
    mb_intake *in = q->in;
    in_msg *x = q->run[0];
    mb_log_ctx lctx = {x->o->order_id, x->o->order_id, NULL};

    if (q->st != MB_OK) {
        if (q->e.status == MB_PERM)
            make_invalid(x, "rejected", q->e.msg);
        else
            note_again(in, q->now_ms, &q->e);
        req_end(in);
        return;
    }
    note_ok(in);
    x->state = ST_DONE;
    if (q->found) {
        in->m->cancels++;
        mb_log(MB_LOG_INFO, "intake", &lctx, "cancel requested (job %s)", q->status);
    } else {
        in->m->cancels_unknown++;
        mb_log(MB_LOG_WARN, "intake", &lctx, "cancel for an unknown order ignored");
    }
    req_end(in);
}

/* After the Redis side of an invalid message (or none to do): on to its DLQ copy. */
static void to_dlq(in_msg *x)
{
    const mb_order_err *oe = &x->oe;
    mb_log_ctx lctx = {oe->order_id[0] ? oe->order_id : NULL, NULL, NULL};

    x->rejected = 1;
    mb_log(MB_LOG_WARN, "intake", &lctx, "to DLQ (%s) %s [%d] @%lld: %s", x->cls,
           rd_kafka_topic_name(x->m->rkt), (int)x->m->partition, (long long)x->m->offset,
           oe->reason);
    x->state = ST_NEED_DLQ;
}

static void reject_done(void *ctx)
{
    in_req *q = ctx;
    mb_intake *in = q->in;
    in_msg *x = q->run[0];
    mb_log_ctx lctx = {x->oe.order_id[0] ? x->oe.order_id : NULL, NULL, NULL};

    json_decref(q->ev);
    q->ev = NULL;
    if (q->st == MB_AGAIN) {
        note_again(in, q->now_ms, &q->e);
        req_end(in);
        return;
    }
    note_ok(in);
    if (q->st != MB_OK)
        mb_log(MB_LOG_WARN, "intake", &lctx, "no Failed event for invalid order: %s", q->e.msg);
    else if (q->queued) { /* no order parsed: the key from what of it was readable */
        char key[200];
        events_queued(in, mb_order_key_of(x->oe.account_id, x->oe.mesh_name, key, sizeof(key)));
    }
    to_dlq(x);
    req_end(in);
}

static void record_done(void *ctx)
{
    in_req *q = ctx;
    mb_intake *in = q->in;
    in_msg *x = q->run[0];
    mb_log_ctx lctx = {x->oe.order_id[0] ? x->oe.order_id : NULL, NULL, NULL};

    if (q->st == MB_AGAIN) {
        note_again(in, q->now_ms, &q->e);
        req_end(in);
        return;
    }
    note_ok(in);
    if (q->st != MB_OK)
        mb_log(MB_LOG_WARN, "intake", &lctx, "DLQ record not kept: %s", q->e.msg);
    x->state = ST_DONE;
    req_end(in);
}

/* Runs fn then done, through the loop's Redis queue when there is one. */
static void submit(mb_intake *in, mb_req_fn *fn, mb_req_done *done, long long now_ms)
{
    mb_error e;

    in->busy = 1;
    if (in->submit == NULL) {
        fn(in->st, in->req);
        done(in->req);
        return;
    }
    if (in->submit(in->submitter, fn, done, in->req) == 0)
        return;
    /* Not queued (out of memory, or the queue is stopping): as if Redis were away. */
    in->busy = 0;
    mb_error_clear(&e);
    mb_error_set(&e, MB_AGAIN, "NotQueued", "redis queue refused the request");
    note_again(in, now_ms, &e);
}

/* Starts the Redis work x needs: returns 0 when a request was submitted (done may have run
 * already), -1 when none could be built (retried after a backoff). */
static int start_redis(mb_intake *in, in_msg *x, long long now_ms)
{
    in_req *q = in->req;

    q->in = in;
    q->now_ms = now_ms;
    q->run[0] = x;
    q->n = 1;
    if (x->state == ST_NEED_RECORD) {
        msg_key(x, q->key, sizeof(q->key));
        q->d = (mb_dlq_record){x->oe.reason,    x->cls,       rd_kafka_topic_name(x->m->rkt),
                               x->m->partition, x->m->offset, q->key,
                               x->oe.order_id,  x->m->len,    now_ms,
                               x->undeliverable};
        submit(in, req_record_fn, record_done, now_ms);
        return 0;
    }
    if (x->o && ACCEPTED_KIND(x->o)) {
        q->n = build_accept(in, q, x);
        if (q->n == 0) {
            in->retry_at_ms = now_ms + BACKOFF_MIN_MS; /* out of memory */
            return -1;
        }
        submit(in, req_accept_fn, accept_done, now_ms);
        return 0;
    }
    if (x->o) {
        mb_order_key(x->o, q->key, sizeof(q->key));
        q->order_id = x->o->order_id;
        submit(in, req_cancel_fn, cancel_done, now_ms);
        return 0;
    }
    /* Invalid: the Failed record/event when its identity was readable, else straight on. */
    if (x->rejected || !x->oe.order_id[0] || !x->oe.account_id[0] || !x->oe.mesh_name[0]) {
        to_dlq(x);
        return 0;
    }
    {
        const mb_order_err *oe = &x->oe;
        char err[256];
        q->ev = event(oe->order_id, oe->account_id, oe->mesh_name, oe->cluster_id, MB_MESH_FAILED,
                      "validate", 1, oe->reason, "InvalidOrder", x->tp, err, sizeof(err));
        if (q->ev == NULL) {
            mb_log_ctx lctx = {oe->order_id, NULL, NULL};
            mb_log(MB_LOG_WARN, "intake", &lctx, "no Failed event for invalid order: %s", err);
            to_dlq(x);
            return 0;
        }
        q->rj = (mb_reject){oe->order_id, oe->account_id, oe->mesh_name, x->tp,
                            oe->reason,   x->m->payload,  x->m->len,     q->ev};
        q->queued = 0;
        submit(in, req_reject_fn, reject_done, now_ms);
    }
    return 0;
}

/* Walks held messages in order: sends DLQ copies, and starts the Redis work of the first
 * message that needs it; stops there, so no later message overtakes it. */
static void process(mb_intake *in, long long now_ms)
{
    in_msg *x = in->head;

    in->in_process = 1;
    while (x) {
        if (x->state == ST_NEED_DLQ)
            produce_dlq(in, x, now_ms);
        if (x->state == ST_NEW || x->state == ST_NEED_RECORD) {
            if (in->busy || now_ms < in->retry_at_ms || start_redis(in, x, now_ms) < 0)
                break;
            continue; /* look at x again: without a Redis thread its request is done */
        }
        x = x->next;
    }
    in->in_process = 0;
    store_offsets(in);
}

static void consume(mb_intake *in)
{
    for (int i = 0; i < POLL_MAX && !in->stopped && in->pending < in->o.max_pending; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(in->rk, 0);
        in_msg *x;
        if (m == NULL)
            break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                mb_warn("intake", "consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        x = calloc(1, sizeof(*x));
        if (x == NULL) {
            /* Not stored, so re-delivered after a restart; seek back so this life
             * also gets it again. */
            rd_kafka_seek(m->rkt, m->partition, m->offset, 0);
            rd_kafka_message_destroy(m);
            break;
        }
        x->in = in;
        x->m = m;
        x->state = ST_NEW;
        in->m->orders_consumed++;
        parse(x);
        if (in->tail)
            in->tail->next = x;
        else
            in->head = x;
        in->tail = x;
        in->pending++;
        held_add(in, m);
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    mb_intake *in = arg;
    char buf[64];

    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    consume(in);
    process(in, mb_loop_now_ms());
}

void mb_intake_tick(mb_intake *in, long long now_ms)
{
    consume(in);
    process(in, now_ms);
}

/* ================================================================ life */

static int set_default(rd_kafka_conf_t *conf, const char *env, const char *key, const char *val,
                       char *err, size_t errlen)
{
    const char *v = getenv(env);
    if (v && *v)
        return 0; /* the operator's KAFKA_* setting wins */
    if (rd_kafka_conf_set(conf, key, val, err, errlen) != RD_KAFKA_CONF_OK)
        return -1;
    return 0;
}

mb_intake *mb_intake_new(struct event_base *base, mb_store *st, rd_kafka_t *producer,
                         const mb_intake_opts *o, mb_worker_metrics *m, char *err, size_t errlen)
{
    mb_intake *in = calloc(1, sizeof(*in));
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *topics = NULL;
    rd_kafka_resp_err_t kerr;

    if (in == NULL) {
        snprintf(err, errlen, "intake: out of memory");
        return NULL;
    }
    in->pipefd[0] = in->pipefd[1] = -1;
    in->st = st;
    in->producer = producer;
    in->o = *o;
    if (in->o.batch == 0)
        in->o.batch = 1;
    if (in->o.batch > MAX_BATCH)
        in->o.batch = MAX_BATCH;
    in->m = m;
    in->req = calloc(1, sizeof(*in->req));
    if (in->req == NULL) {
        snprintf(err, errlen, "intake: out of memory");
        goto err;
    }
    conf = mb_kafka_conf_new(o->client_id, err, errlen);
    if (conf == NULL)
        goto err;
    /* The contract of at-least-once intake: offsets stored by us, after acceptance. */
    if (rd_kafka_conf_set(conf, "group.id", o->group, err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "false", err, errlen) != RD_KAFKA_CONF_OK ||
        set_default(conf, "KAFKA_ENABLE_AUTO_COMMIT", "enable.auto.commit", "true", err, errlen) <
            0 ||
        set_default(conf, "KAFKA_AUTO_OFFSET_RESET", "auto.offset.reset", "earliest", err, errlen) <
            0 ||
        set_default(conf, "KAFKA_SESSION_TIMEOUT_MS", "session.timeout.ms", "6000", err, errlen) <
            0 ||
        set_default(conf, "KAFKA_HEARTBEAT_INTERVAL_MS", "heartbeat.interval.ms", "1000", err,
                    errlen) < 0 ||
        /* An order waits for its first status: do not let an idle fetch hold it 500 ms. */
        set_default(conf, "KAFKA_FETCH_WAIT_MAX_MS", "fetch.wait.max.ms", "50", err, errlen) < 0)
        goto err;
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_opaque(conf, in);
    in->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen);
    if (in->rk == NULL)
        goto err;
    conf = NULL; /* owned by rk */
    rd_kafka_poll_set_consumer(in->rk);
    if (pipe2(in->pipefd, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "intake: pipe: %s", strerror(errno));
        goto err;
    }
    in->q = rd_kafka_queue_get_consumer(in->rk);
    rd_kafka_queue_io_event_enable(in->q, in->pipefd[1], "1", 1);
    in->ev = event_new(base, in->pipefd[0], EV_READ | EV_PERSIST, on_wake, in);
    if (in->ev == NULL || event_add(in->ev, NULL) < 0) {
        snprintf(err, errlen, "intake: event_add failed");
        goto err;
    }
    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, o->orders_topic, RD_KAFKA_PARTITION_UA);
    kerr = rd_kafka_subscribe(in->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (kerr) {
        snprintf(err, errlen, "intake: subscribe %s: %s", o->orders_topic, rd_kafka_err2str(kerr));
        goto err;
    }
    return in;
err:
    if (conf)
        rd_kafka_conf_destroy(conf);
    mb_intake_free(in);
    return NULL;
}

void mb_intake_stop(mb_intake *in)
{
    if (in == NULL || in->stopped)
        return;
    in->stopped = 1;
    set_paused(in, 1);
}

void mb_intake_set_submit(mb_intake *in, mb_submit_fn *fn, void *submitter)
{
    in->submit = fn;
    in->submitter = submitter;
}

void mb_intake_set_on_events(mb_intake *in, void (*fn)(void *ctx, const char *key), void *ctx)
{
    in->on_events = fn;
    in->on_events_ctx = ctx;
}

void mb_intake_set_producer(mb_intake *in, rd_kafka_t *producer)
{
    if (in)
        in->producer = producer;
}

void mb_intake_producer_lost(mb_intake *in)
{
    size_t n = 0;

    if (in == NULL)
        return;
    for (in_msg *x = in->head; x; x = x->next) {
        if (x->state == ST_WAIT_DLQ) {
            x->state = ST_NEED_DLQ; /* unknown outcome: sent again (at-least-once) */
            n++;
        }
    }
    if (n)
        mb_warn("intake", "%zu DLQ cop(ies) without a delivery report: sent again", n);
}

size_t mb_intake_pending(const mb_intake *in)
{
    return in ? in->pending : 0;
}

int mb_intake_joined(const mb_intake *in)
{
    return in && in->joined;
}

void mb_intake_free(mb_intake *in)
{
    if (in == NULL)
        return;
    if (in->ev)
        event_free(in->ev);
    if (in->rk) {
        rd_kafka_resp_err_t err;
        store_offsets(in);
        /* Messages not done: dropped uncommitted (re-delivered to the next owner).  They
         * must be gone before the consumer closes. */
        while (in->head) {
            in_msg *x = in->head;
            in->head = x->next;
            mb_order_free(x->o);
            free(x->canon);
            rd_kafka_message_destroy(x->m);
            free(x);
        }
        if (in->q)
            rd_kafka_queue_destroy(in->q);
        err = rd_kafka_consumer_close(in->rk);
        if (err)
            mb_warn("intake", "consumer close: %s", rd_kafka_err2str(err));
        rd_kafka_destroy(in->rk);
    }
    free(in->req);
    free(in->held);
    if (in->pipefd[0] >= 0)
        close(in->pipefd[0]);
    if (in->pipefd[1] >= 0)
        close(in->pipefd[1]);
    free(in);
}

void mb_intake_lag(mb_intake *in,
                   void (*fn)(void *arg, const char *topic, int partition, long long lag),
                   void *arg)
{
    rd_kafka_topic_partition_list_t *parts = NULL;

    if (in == NULL || in->rk == NULL || rd_kafka_assignment(in->rk, &parts) != 0 || !parts)
        return;
    rd_kafka_position(in->rk, parts);
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &parts->elems[i];
        int64_t lo = -1, hi = -1;
        if (rd_kafka_get_watermark_offsets(in->rk, p->topic, p->partition, &lo, &hi) != 0 ||
            hi < 0 || p->offset < 0)
            continue;
        fn(arg, p->topic, (int)p->partition, hi > p->offset ? (long long)(hi - p->offset) : 0);
    }
    rd_kafka_topic_partition_list_destroy(parts);
}
