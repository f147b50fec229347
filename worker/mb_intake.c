/* mb_intake.c: order intake: the orders consumer, acceptance into Redis, the DLQ.
 *
 * At-least-once, never skipping: a message's offset is stored only once its effect is
 * durable (the job in Redis, or the DLQ delivery report in), and offsets advance per
 * partition only over a done prefix, so a crash at any point re-delivers what was not
 * finished; accept is idempotent on the order id.  While Redis is unreachable the
 * partitions are paused and the held messages retried with backoff, in order.
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
#define POLL_MAX 500 /* messages taken per wake-up: keeps one turn of the loop bounded */
#define STEP_TOTAL (mb_saga_create.nsteps) /* an accepted buy order runs the create saga */
/* Orders accepted as jobs: a buy runs the create saga, a delete the delete saga. */
#define ACCEPTED_KIND(o) ((o)->kind == MB_ORDER_BUY || (o)->kind == MB_ORDER_DELETE)
#define MAX_BATCH 64 /* accepts per round trip */

enum { ST_NEW, ST_NEED_DLQ, ST_WAIT_DLQ, ST_DONE };

typedef struct in_msg {
    mb_dr_hdr hdr; /* first: DLQ delivery reports come back here */
    struct mb_intake *in;
    rd_kafka_message_t *m;
    int state;
    mb_order *o;      /* parsed, valid; NULL when invalid */
    char *canon;      /* o as a structured envelope, whatever the content mode (new) */
    mb_order_err oe;  /* why invalid, and what identity was readable */
    const char *cls;  /* error class header */
    char tp[MB_TRACEPARENT_LEN + 1];
    int rejected;     /* the Failed record/event is in Redis */
    int recorded;     /* the DLQ record is in Redis */
    struct in_msg *next;
} in_msg;

struct mb_intake {
    mb_store *st;
    rd_kafka_t *rk;        /* consumer */
    rd_kafka_t *producer;  /* DLQ, borrowed */
    rd_kafka_queue_t *q;
    struct event *ev;
    int pipefd[2];
    mb_intake_opts o;
    mb_worker_metrics *m;
    in_msg *head, *tail;
    size_t pending;
    int stopped;
    int joined;
    int paused;
    long long retry_at_ms;
    long long backoff_ms;
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

/* Stores, per partition, the offset after the longest done prefix, and frees those
 * messages.  A message not done blocks later ones of its partition only. */
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
        if (x->state != ST_DONE ||
            rd_kafka_topic_partition_list_find(blocked, topic, part) != NULL) {
            if (rd_kafka_topic_partition_list_find(blocked, topic, part) == NULL)
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
static int parse_message(const rd_kafka_message_t *m, char **canon, mb_order **o,
                         mb_order_err *oe)
{
    mb_order_header h[MB_ORDER_MAX_HEADERS + 1];
    rd_kafka_headers_t *hs = NULL;
    size_t n = 0, clen;

    if (rd_kafka_message_headers(m, &hs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        while (n < MB_ORDER_MAX_HEADERS + 1 &&
               rd_kafka_header_get_all(hs, n, &h[n].name, &h[n].value, &h[n].len) == 0)
            n++;
    }
    return mb_order_parse_message(h, n, m->payload ? m->payload : "", m->len, canon, &clen, o,
                                  oe);
}

static void parse(in_msg *x)
{
    const rd_kafka_message_t *m = x->m;
    char htp[MB_TRACEPARENT_LEN + 1];

    memset(&x->oe, 0, sizeof(x->oe));
    header_tp(m, htp, sizeof(htp));
    if (m->len > MB_ORDER_MAX_BYTES) {
        snprintf(x->oe.reason, sizeof(x->oe.reason), "message too large: %zu bytes > %d",
                 m->len, MB_ORDER_MAX_BYTES);
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

static json_t *event(const char *order_id, const char *acct, const char *mesh,
                     const char *cluster, mb_mesh_status status, const char *step, int idx,
                     const char *msg, const char *code, const char *tp, char *err,
                     size_t errlen)
{
    char key[MB_ORDER_ID_MAX + MB_MESH_NAME_MAX + 2], mesh_id[MB_MESH_ID_LEN + 1];

    snprintf(key, sizeof(key), "%s/%s", acct, mesh);
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

/* Accepts the run of consecutive new buy orders starting at x (at most opts.batch) in one
 * round trip.  Returns 0, or -1 when Redis must be waited for. */
static int accept_run(mb_intake *in, in_msg *x, long long now_ms)
{
    size_t n = 0, cap = in->o.batch;
    in_msg *run[MAX_BATCH];
    mb_accept q[MAX_BATCH] = {{0}};
    mb_accept_result res[MAX_BATCH];
    mb_status sts[MAX_BATCH];
    mb_error errs[MAX_BATCH];
    json_t *acc[MAX_BATCH], *con[MAX_BATCH];
    char *body[MAX_BATCH];
    char err[256], msg[300];
    int rc = 0;

    for (; x && n < cap && x->state == ST_NEW && x->o && ACCEPTED_KIND(x->o); x = x->next) {
        mb_order *o = x->o;
        run[n] = x;
        snprintf(msg, sizeof(msg), "mesh name %s is already used in account %s",
                 o->mesh_name, o->account_id);
        acc[n] = event(o->order_id, o->account_id, o->mesh_name, o->cluster_id,
                       MB_MESH_ACCEPTED, "validate", 1, "order accepted", NULL, x->tp, err,
                       sizeof(err));
        con[n] = event(o->order_id, o->account_id, o->mesh_name, o->cluster_id,
                       MB_MESH_FAILED, "reserve", 2, msg, "NameConflict", x->tp, err,
                       sizeof(err));
        if (o->kind == MB_ORDER_DELETE)
            as_delete(acc[n]);
        body[n] = mb_memdup_str(x->canon, strlen(x->canon));
        if (body[n] == NULL || acc[n] == NULL || con[n] == NULL) {
            /* Out of memory: accept what is batched; this one stays new for the next turn. */
            free(body[n]);
            json_decref(acc[n]);
            json_decref(con[n]);
            break;
        }
        q[n] =
            (mb_accept){o->order_id, o->account_id, o->mesh_name, body[n], x->tp, acc[n], con[n]};
        q[n].mesh_id = json_string_value(json_object_get(json_object_get(acc[n], "data"),
                                                         "mesh_id"));
        if (o->kind == MB_ORDER_DELETE)
            q[n].saga = mb_saga_delete.name;
        mb_error_clear(&errs[n]);
        n++;
    }
    memset(sts, 0, sizeof(sts));
    memset(res, 0, sizeof(res));
    mb_store_accept(in->st, q, n, res, sts, errs);
    for (size_t i = 0; i < n; i++) {
        in_msg *y = run[i];
        mb_log_ctx ctx = {y->o->order_id, y->o->order_id, NULL};
        if (rc == 0 && sts[i] == MB_OK) {
            y->state = ST_DONE;
            if (res[i].verdict == MB_ACCEPT_NEW) {
                in->m->orders_accepted++;
                mb_log(MB_LOG_INFO, "intake", &ctx, "accepted %s/%s (seq %lld)",
                       y->o->account_id, y->o->mesh_name, res[i].seq);
            } else if (res[i].verdict == MB_ACCEPT_DUPLICATE) {
                in->m->orders_duplicate++;
                mb_log(MB_LOG_INFO, "intake", &ctx, "duplicate order joined (%s)",
                       res[i].other);
            } else {
                in->m->orders_conflict++;
                mb_log(MB_LOG_WARN, "intake", &ctx, "NameConflict: %s/%s held by %s",
                       y->o->account_id, y->o->mesh_name, res[i].other);
            }
        } else if (rc == 0 && sts[i] == MB_PERM) {
            make_invalid(y, "rejected", errs[i].msg);
            y->state = ST_NEW;
        } else if (rc == 0) {
            /* AGAIN, or FATAL (a script error): never skip an order; hold and retry. */
            if (sts[i] == MB_FATAL)
                mb_log(MB_LOG_ERROR, "intake", &ctx, "accept: %s", errs[i].msg);
            note_again(in, now_ms, &errs[i]);
            rc = -1;
        }
        json_decref(acc[i]);
        json_decref(con[i]);
        free(body[i]);
    }
    return rc;
}

static int do_cancel(mb_intake *in, in_msg *x, long long now_ms)
{
    char key[160], status[32];
    mb_error e;
    int found = 0;
    mb_log_ctx ctx = {x->o->order_id, x->o->order_id, NULL};

    mb_order_key(x->o, key, sizeof(key));
    mb_error_clear(&e);
    if (mb_store_cancel(in->st, x->o->order_id, key, &found, status, sizeof(status), &e) != MB_OK) {
        if (e.status == MB_PERM) {
            make_invalid(x, "rejected", e.msg);
            return 0;
        }
        note_again(in, now_ms, &e);
        return -1;
    }
    x->state = ST_DONE;
    if (found) {
        in->m->cancels++;
        mb_log(MB_LOG_INFO, "intake", &ctx, "cancel requested (job %s)", status);
    } else {
        in->m->cancels_unknown++;
        mb_log(MB_LOG_WARN, "intake", &ctx, "cancel for an unknown order ignored");
    }
    return 0;
}

/* The Redis side of an invalid message: the Failed record/event when its identity was
 * readable, and the DLQ record.  Returns -1 when Redis must be waited for. */
static int do_reject(mb_intake *in, in_msg *x, long long now_ms)
{
    const mb_order_err *oe = &x->oe;
    mb_error e;
    mb_log_ctx ctx = {oe->order_id[0] ? oe->order_id : NULL, NULL, NULL};

    mb_error_clear(&e);
    if (!x->rejected && oe->order_id[0] && oe->account_id[0] && oe->mesh_name[0]) {
        char err[256];
        int queued = 0;
        json_t *ev = event(oe->order_id, oe->account_id, oe->mesh_name, oe->cluster_id,
                           MB_MESH_FAILED, "validate", 1, oe->reason, "InvalidOrder", x->tp,
                           err, sizeof(err));
        mb_reject r = {oe->order_id, oe->account_id, oe->mesh_name, x->tp,
                       oe->reason,   x->m->payload,  x->m->len,     ev};
        mb_status s = ev ? mb_store_reject(in->st, &r, &queued, &e) : MB_PERM;
        json_decref(ev);
        if (s == MB_AGAIN) {
            note_again(in, now_ms, &e);
            return -1;
        }
        if (s != MB_OK)
            mb_log(MB_LOG_WARN, "intake", &ctx, "no Failed event for invalid order: %s",
                   ev ? e.msg : err);
    }
    x->rejected = 1;
    if (!x->recorded) {
        char key[300] = "";
        if (x->m->key && x->m->key_len < sizeof(key)) {
            memcpy(key, x->m->key, x->m->key_len);
            key[x->m->key_len] = '\0';
        }
        mb_dlq_record d = {oe->reason, x->cls, rd_kafka_topic_name(x->m->rkt),
                           x->m->partition, x->m->offset, key, oe->order_id, x->m->len,
                           now_ms};
        mb_error_clear(&e);
        if (mb_store_dlq_record(in->st, &d, &e) == MB_AGAIN) {
            note_again(in, now_ms, &e);
            return -1;
        }
    }
    x->recorded = 1;
    mb_log(MB_LOG_WARN, "intake", &ctx, "to DLQ (%s) %s [%d] @%lld: %s", x->cls,
           rd_kafka_topic_name(x->m->rkt), (int)x->m->partition, (long long)x->m->offset,
           oe->reason);
    x->state = ST_NEED_DLQ;
    return 0;
}

static void on_dlq_dr(mb_dr_hdr *h, const rd_kafka_message_t *m)
{
    in_msg *x = (in_msg *)h;

    if (m->err) {
        mb_warn("intake", "DLQ delivery failed: %s (retried)", rd_kafka_err2str(m->err));
        x->state = ST_NEED_DLQ;
        return;
    }
    x->state = ST_DONE;
    x->in->m->orders_dlq++;
}

static void produce_dlq(mb_intake *in, in_msg *x)
{
    const rd_kafka_message_t *m = x->m;
    rd_kafka_headers_t *src = NULL, *h;
    char part[16], off[24];
    rd_kafka_resp_err_t err;

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
    err = rd_kafka_producev(in->producer, RD_KAFKA_V_TOPIC(in->o.dlq_topic),
                            RD_KAFKA_V_KEY(m->key, m->key_len),
                            RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_HEADERS(h),
                            RD_KAFKA_V_OPAQUE(x), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        mb_warn("intake", "DLQ produce: %s (retried)", rd_kafka_err2str(err));
        return;
    }
    x->state = ST_WAIT_DLQ;
}

/* Walks held messages in order; stops at the first that must wait for Redis, so no later
 * message overtakes it. */
static void process(mb_intake *in, long long now_ms)
{
    int redis_ok = now_ms >= in->retry_at_ms;
    int all_ok = 1;

    for (in_msg *x = in->head; x; x = x->next) {
        if (x->state == ST_NEW && !redis_ok) {
            all_ok = 0;
            break;
        }
        if (x->state == ST_NEW && x->o && ACCEPTED_KIND(x->o)) {
            if (accept_run(in, x, now_ms) < 0) {
                all_ok = 0;
                break;
            }
            /* accept_run may have turned some into invalid ones: look at x again. */
            if (x->state == ST_NEW && x->o == NULL && do_reject(in, x, now_ms) < 0) {
                all_ok = 0;
                break;
            }
        } else if (x->state == ST_NEW && x->o) {
            if (do_cancel(in, x, now_ms) < 0) {
                all_ok = 0;
                break;
            }
        }
        if (x->state == ST_NEW && x->o == NULL && do_reject(in, x, now_ms) < 0) {
            all_ok = 0;
            break;
        }
        if (x->state == ST_NEED_DLQ)
            produce_dlq(in, x);
    }
    if (all_ok && redis_ok) {
        in->backoff_ms = 0;
        if (!in->stopped)
            set_paused(in, 0);
    }
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

static int set_default(rd_kafka_conf_t *conf, const char *env, const char *key,
                       const char *val, char *err, size_t errlen)
{
    const char *v = getenv(env);
    if (v && *v)
        return 0; /* the operator's KAFKA_* setting wins */
    if (rd_kafka_conf_set(conf, key, val, err, errlen) != RD_KAFKA_CONF_OK)
        return -1;
    return 0;
}

mb_intake *mb_intake_new(struct event_base *base, mb_store *st, rd_kafka_t *producer,
                         const mb_intake_opts *o, mb_worker_metrics *m, char *err,
                         size_t errlen)
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
    conf = mb_kafka_conf_new(o->client_id, err, errlen);
    if (conf == NULL)
        goto err;
    /* The contract of at-least-once intake: offsets stored by us, after acceptance. */
    if (rd_kafka_conf_set(conf, "group.id", o->group, err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "false", err, errlen) !=
            RD_KAFKA_CONF_OK ||
        set_default(conf, "KAFKA_ENABLE_AUTO_COMMIT", "enable.auto.commit", "true", err,
                    errlen) < 0 ||
        set_default(conf, "KAFKA_AUTO_OFFSET_RESET", "auto.offset.reset", "earliest", err,
                    errlen) < 0 ||
        set_default(conf, "KAFKA_SESSION_TIMEOUT_MS", "session.timeout.ms", "6000", err,
                    errlen) < 0 ||
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
        snprintf(err, errlen, "intake: subscribe %s: %s", o->orders_topic,
                 rd_kafka_err2str(kerr));
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
    if (in->pipefd[0] >= 0)
        close(in->pipefd[0]);
    if (in->pipefd[1] >= 0)
        close(in->pipefd[1]);
    free(in);
}
