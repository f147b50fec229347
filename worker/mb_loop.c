/* mb_loop.c: the worker's one event loop: Kafka intake, outbox relay, the saga tick, drain.
 *
 * One event_base.  Wake-ups: the consumer queue and the producer queue each write to a pipe
 * (rd_kafka_queue_io_event_enable); the admin HTTP port; signals; and one periodic tick that
 * does all periodic work in a bounded turn (redis serverCron): intake retries, relay,
 * the saga engine, delivery reports, drain progress.
 *
 * The producer heals: a fatal error (error_cb with ERR__FATAL, or rd_kafka_fatal_error seen
 * at a tick: an idempotent producer that cannot keep its guarantees) makes /readyz false,
 * stops the relay and the DLQ from producing, purges the dead producer and serves its
 * reports (bounded), tells the relay (which trims what was delivered and gives up its
 * leases), destroys it and builds a new one in-process, retrying with backoff until it can.
 *
 * Drain (SIGTERM/SIGINT): stop consuming, tell the saga to stop claiming, keep ticking until
 * nothing is in flight (or MESHBUY_DRAIN_MS passes), give up relay leases, flush the
 * producer, close the consumer (commits stored offsets).  A second signal exits at once.
 */
#include "mb_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mb_admin.h"
#include "mb_beat.h"
#include "mb_intake.h"
#include "mb_kafka.h"
#include "mb_log.h"
#include "mb_redis.h"
#include "mb_relay.h"
#include "mb_rq.h"
#include "mb_sagadef.h"
#include "mb_store.h"
#include "mb_version.h"

#define REDIS_TIMEOUT_MS 2000
/* /readyz wants an answer from Redis this recent (the Redis thread PINGs once a second when
 * idle; a stall shows after a couple of store timeouts). */
#define REDIS_READY_AGE_MS 5000
#define RELAY_BATCH        500
/* An empty outbox is looked at again after this, or as soon as its shard's wake counter
 * moves (STIR_EVERY_MS): its relay lease may lapse meanwhile, the next look takes it again. */
#define RELAY_IDLE_MS 30000
/* How often the shards' wake counters are read (one MGET): the delay with which an idle
 * worker notices work another worker queued (its own acceptances wake it at once). */
#define STIR_EVERY_MS  250
#define RELAY_LEASE_MS 10000
/* message.timeout.ms by default, and the bound on it: a batch's reports are all in before
 * its relay lease can lapse (the peek that renewed it came a little before the produce). */
#define RELAY_MSG_TIMEOUT_MS  6000
#define RELAY_LEASE_MARGIN_MS 2000
#define HEAL_PURGE_WAIT_MS    3000 /* reports of a dead producer waited for, at most */
/* Before building a new producer: HEAL_PAUSE_MS, doubled for each fatal error that comes
 * within HEAL_CALM_MS of the last rebuild (a cause that outlives producers, such as a
 * refused authorization, must not make a rebuild loop), at most HEAL_BACKOFF_MAX_MS. */
#define HEAL_PAUSE_MS       500
#define HEAL_CALM_MS        60000
#define HEAL_BACKOFF_MAX_MS 30000
#define INTAKE_BATCH        256
#define INTAKE_MAX_PENDING  2000

const mb_conf_key mb_loop_conf_keys[] = {
    {"KAFKA_BROKERS", MB_CONF_STR, NULL, 0, 0, NULL,
     "Kafka bootstrap servers (other KAFKA_* pass through to librdkafka)", 1},
    {"REDIS_URL", MB_CONF_STR, NULL, 0, 0, NULL,
     "redis://[:password@]host:port[/db] or unix:///path/redis.sock (REDIS_PASSWORD[_FILE])", 1},
    {"MESHBUY_ORDERS_TOPIC", MB_CONF_STR, "mesh.orders", 0, 0, NULL, "orders topic"},
    {"MESHBUY_STATUS_TOPIC", MB_CONF_STR, "mesh.status", 0, 0, NULL, "status events topic"},
    {"MESHBUY_DLQ_TOPIC", MB_CONF_STR, "mesh.orders.dlq", 0, 0, NULL, "rejected orders topic"},
    {"MESHBUY_GROUP", MB_CONF_STR, "meshbuy-workers", 0, 0, NULL, "consumer group"},
    {"MESHBUY_CCE_URL", MB_CONF_STR, NULL, 0, 0, NULL,
     "CCE API base URL (this, the VPC and K8S URLs, AK and SK: needed when sagas run)"},
    {"MESHBUY_VPC_URL", MB_CONF_STR, NULL, 0, 0, NULL, "VPC API base URL"},
    {"MESHBUY_K8S_URL", MB_CONF_STR, NULL, 0, 0, NULL,
     "Kubernetes API base template with {cluster_id}"},
    {"MESHBUY_AK", MB_CONF_STR, NULL, 0, 0, NULL, "access key for AK/SK signing"},
    {"MESHBUY_SK", MB_CONF_SECRET, NULL, 0, 0, NULL, "secret key for AK/SK signing"},
    {"MESHBUY_CA_FILE", MB_CONF_STR, NULL, 0, 0, NULL, "CA bundle for TLS to the cloud APIs"},
    {"MESHBUY_CATALOG", MB_CONF_STR, NULL, 0, 0, NULL,
     "Istio catalog file (default schemas/istio-catalog.json)"},
    {"MESHBUY_SHARDS", MB_CONF_INT, "16", 1, 1024, NULL,
     "Redis job queue shards (must match the data already in Redis)"},
    {"MESHBUY_HTTP_PORT", MB_CONF_INT, "9464", 0, 65535, NULL,
     "port of /healthz /readyz /metrics (0 = off)"},
    {"MESHBUY_HTTP_ADDR", MB_CONF_STR, "127.0.0.1", 0, 0, NULL, "address of that port"},
    {"MESHBUY_WORKER_ID", MB_CONF_STR, NULL, 0, 0, NULL,
     "this worker's name in leases (default <hostname>-<pid>)"},
    {"MESHBUY_LEASE_MS", MB_CONF_INT, "120000", 1000, 3600000, NULL,
     "job lease: a dead worker's jobs resume elsewhere after this (at least 3 x "
     "MESHBUY_HTTP_TIMEOUT_MS + MESHBUY_LEASE_MARGIN_MS)"},
    {"MESHBUY_LEASE_MARGIN_MS", MB_CONF_INT, "5000", 0, 600000, NULL,
     "a cloud change starts only while the job's lease has its timeout + this left"},
    {"MESHBUY_RUN_SAGAS", MB_CONF_BOOL, "true", 0, 0, NULL,
     "run sagas; false: intake and status relay only (a dedicated intake tier)"},
    {"MESHBUY_ON_FAILURE", MB_CONF_ENUM, "compensate", 0, 0, "compensate|park",
     "on a failed step: undo what was done, or park the job for an SRE"},
    {"MESHBUY_MAX_INFLIGHT", MB_CONF_INT, "10000", 1, 1000000, NULL,
     "sagas held in memory at once"},
    {"MESHBUY_LOG_LEVEL", MB_CONF_ENUM, "info", 0, 0, "debug|info|warn|error|off", "log level"},
    {"MESHBUY_DRAIN_MS", MB_CONF_INT, "10000", 0, 600000, NULL,
     "SIGTERM: time to finish or release work before exiting"},
    {"MESHBUY_TICK_MS", MB_CONF_INT, "20", 1, 1000, NULL, "period of the loop's tick"},
    MB_SAGA_CONF_DEADLINES,
    {"MESHBUY_POLL_MS", MB_CONF_INT, "2000", 10, 600000, NULL,
     "how often a waiting step looks again"},
    {"MESHBUY_POLL_IN_MEMORY_MS", MB_CONF_INT, "30000", 0, 3600000, NULL,
     "a poll wait up to this long (and a quarter lease) is spent in memory, lease held; 0: none"},
    {"MESHBUY_POLL_LEARN", MB_CONF_BOOL, "true", 0, 0, NULL,
     "skip the looks before 4/5 of an effect's usual time, learnt here; false: every POLL_MS"},
    {"MESHBUY_BACKOFF_BASE_MS", MB_CONF_INT, "200", 1, 600000, NULL, "first retry delay cap"},
    {"MESHBUY_BACKOFF_MAX_MS", MB_CONF_INT, "30000", 1, 3600000, NULL, "retry delay cap"},
    {"MESHBUY_HTTP_TIMEOUT_MS", MB_CONF_INT, "30000", 100, 600000, NULL,
     "timeout of one cloud API call"},
    {"MESHBUY_HTTP_MAX_ACTIVE", MB_CONF_INT, "3072", 1, 100000, NULL,
     "cloud calls on the wire at once (the rest queue in order)"},
    {"MESHBUY_HTTP_MAX_CONNECTIONS", MB_CONF_INT, "2048", 1, 100000, NULL,
     "idle connections to the cloud APIs kept alive"},
    {"MESHBUY_CONNECT_TIMEOUT_MS", MB_CONF_INT, "5000", 100, 600000, NULL,
     "connect timeout of cloud API calls"},
    {"MESHBUY_CALL_RETRY_BASE_MS", MB_CONF_INT, "100", 1, 600000, NULL,
     "first retry delay cap of one cloud request (full jitter, doubling)"},
    {"MESHBUY_CALL_RETRY_MAX_MS", MB_CONF_INT, "5000", 1, 3600000, NULL,
     "retry delay cap of one cloud request"},
    {"MESHBUY_RETRY_AFTER_MAX_MS", MB_CONF_INT, "30000", 1, 3600000, NULL,
     "longest Retry-After a cloud request waits for"},
    {"MESHBUY_RETENTION_S", MB_CONF_INT, "604800", 0, 31622400, NULL,
     "finished (Failed, Cancelled, Deleted) and rejected jobs are kept this long; 0 = forever"},
    {"MESHBUY_RETENTION_ORDER_IDS_S", MB_CONF_INT, "2592000", 0, 315360000, NULL,
     "a finished order's id is remembered this long (redeliveries start nothing); 0 = "
     "forever; at least MESHBUY_RETENTION_S"},
    {"MESHBUY_TEST_HOOKS", MB_CONF_BOOL, "false", 0, 0, NULL,
     "tests only: SIGUSR2 injects a producer fatal error"},
    {NULL},
};

struct mb_loop {
    const mb_conf *conf;
    struct event_base *base;
    struct event *tick_ev, *sig_term, *sig_int, *prod_ev, *sig_test;
    int prod_pipe[2];
    rd_kafka_t *producer; /* NULL between a dead one and its replacement */
    rd_kafka_queue_t *prod_q;
    /* healing: 0 healthy; 1 dead, purged, waiting for its reports; 2 destroyed, a new one
     * not built yet */
    int heal;
    long long heal_deadline_ms; /* monotonic: end of the report wait, or next build try */
    long heal_backoff_ms;
    long long rebuilt_at_ms;   /* monotonic: when the last new producer came up */
    uint64_t producer_fatal;   /* fatal errors seen */
    uint64_t producer_rebuilt; /* producers built after one died */
    mb_store *st;              /* synchronous: the start-up ping, and intake and relay for now */
    mb_rq *rq;                 /* the Redis thread: every other Redis call goes through it */
    mb_intake *in;
    mb_relay *relay;
    mb_admin *admin;
    mb_beat *beat; /* the heartbeat meshctl workers reads */
    mb_loop_saga saga;
    mb_worker_metrics m;
    char worker_id[256];
    long tick_ms;
    long drain_ms;
    int signals;
    int draining;
    long long drain_deadline_ms;
    int exit_code;
    const char *status_topic;
    /* Redis-backed gauges (outbox depth, due and delayed jobs, NeedsAttention), gathered at
     * most every DEPTH_EVERY_MS: the last complete reading is what /metrics shows. */
    struct depth_req *depth_req;          /* the request out, or NULL */
    mb_store_depth *depth;                /* shards entries, valid once depth_ok_ms > 0 */
    long long depth_ok_ms, depth_next_ms; /* monotonic */
    /* The shards' wake counters as last read (mb_store_stirs), and how many reads saw one
     * move (the saga engine claims when this changes). */
    unsigned long long *stir;
    unsigned long long stir_gen;
    int stir_known;
    int stir_out; /* a read is out */
    long long stir_next_ms;
};

long long mb_loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ================================================================ producer */

/* Delivery reports come from rd_kafka_poll on the loop thread: dispatch on the opaque. */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    mb_dr_hdr *h = m->_private;

    (void)rk;
    (void)opaque;
    if (h && h->on_dr)
        h->on_dr(h, m);
}

static void on_producer(evutil_socket_t fd, short what, void *arg)
{
    mb_loop *l = arg;
    char buf[64];

    (void)what;
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    if (l->producer)
        rd_kafka_poll(l->producer, 0);
}

/* librdkafka errors come through rd_kafka_poll on the loop thread.  Most are transient and
 * retried inside librdkafka (log them); a fatal one means this producer is done. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    mb_loop *l = opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512] = "";
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, why, sizeof(why));
        if (l->heal == 0)
            mb_error("loop",
                     "producer fatal error: %s: %s: replacing the producer (not ready "
                     "meanwhile)",
                     rd_kafka_err2name(orig), why[0] ? why : reason);
        l->producer_fatal += l->heal == 0;
        l->heal = l->heal ? l->heal : -1; /* picked up at the next tick */
        return;
    }
    mb_warn("kafka", "%s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err),
            reason);
}

static int producer_new(mb_loop *l, char *err, size_t errlen)
{
    char cid[300];
    rd_kafka_conf_t *conf;

    snprintf(cid, sizeof(cid), "meshworker-%s", l->worker_id);
    /* The relay's order and no-duplicate guarantees rest on idempotence, acks=all, and
     * gapless (a gap is a fatal error, healed below, never a silent loss). */
    conf = mb_kafka_producer_conf_new(cid, RELAY_MSG_TIMEOUT_MS,
                                      RELAY_LEASE_MS - RELAY_LEASE_MARGIN_MS, err, errlen);
    if (conf == NULL)
        return -1;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, l);
    l->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (l->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    mb_kafka_know_topic(l->producer, l->status_topic);
    mb_kafka_know_topic(l->producer, mb_conf_str(l->conf, "MESHBUY_DLQ_TOPIC"));
    if (l->prod_pipe[0] < 0 && pipe2(l->prod_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    l->prod_q = rd_kafka_queue_get_main(l->producer);
    rd_kafka_queue_io_event_enable(l->prod_q, l->prod_pipe[1], "1", 1);
    if (l->prod_ev == NULL) {
        l->prod_ev = event_new(l->base, l->prod_pipe[0], EV_READ | EV_PERSIST, on_producer, l);
        if (l->prod_ev == NULL || event_add(l->prod_ev, NULL) < 0) {
            snprintf(err, errlen, "producer: event_add failed");
            return -1;
        }
    }
    return 0;
}

/* ================================================================ Redis gauges */

/* Four commands a shard each time: every 15 s keeps an idle worker's cost near 4 commands a
 * second at 16 shards, and a Prometheus scrape every 15-30 s sees fresh figures. */
#define DEPTH_EVERY_MS 15000

typedef struct depth_req {
    mb_loop *l;
    long long now_ms; /* wall clock: the due bound */
    mb_store_depth *d;
    mb_status st;
} depth_req;

/* On the Redis thread: touches only the request. */
static void depth_run(mb_store *st, void *ctx)
{
    depth_req *r = ctx;
    mb_error e;

    mb_error_clear(&e);
    r->st = mb_store_depths(st, r->now_ms, r->d, &e);
}

static void depth_done(void *ctx)
{
    depth_req *r = ctx;
    mb_loop *l = r->l;

    l->depth_req = NULL;
    if (r->st == MB_OK) {
        free(l->depth);
        l->depth = r->d;
        r->d = NULL;
        l->depth_ok_ms = mono_ms();
    }
    free(r->d);
    free(r);
}

static void depth_tick(mb_loop *l)
{
    long long now = mono_ms();
    depth_req *r;

    if (l->depth_req || now < l->depth_next_ms)
        return;
    l->depth_next_ms = now + DEPTH_EVERY_MS;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->l = l;
    r->now_ms = mb_loop_now_ms();
    r->d = calloc((size_t)mb_store_shards(l->st), sizeof(*r->d));
    if (r->d == NULL) {
        free(r);
        return;
    }
    if (mb_rq_submit(l->rq, depth_run, depth_done, r) < 0) {
        free(r->d);
        free(r);
        return;
    }
    l->depth_req = r;
}

static void lag_sample(void *arg, const char *topic, int partition, long long lag)
{
    evbuffer_add_printf(arg, "meshbuy_consumer_lag{topic=\"%s\",partition=\"%d\"} %lld\n", topic,
                        partition, lag);
}

/* The gauges, one sample a shard: every worker reports the same Redis, so aggregate with
 * max by (shard), not sum. */
static void depth_metrics(mb_loop *l, struct evbuffer *b)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } fam[] = {
        {"meshbuy_outbox_depth", "status events queued in Redis, not yet delivered to Kafka",
         offsetof(mb_store_depth, outbox)},
        {"meshbuy_jobs_due", "jobs due now and not held by a live lease (waiting for a worker)",
         offsetof(mb_store_depth, due)},
        {"meshbuy_jobs_delayed", "jobs due later (retry backoff, polls) or leased by a worker",
         offsetof(mb_store_depth, delayed)},
        {"meshbuy_jobs_needs_attention", "jobs in NeedsAttention (an undo gave up)",
         offsetof(mb_store_depth, attention)},
    };
    int shards = mb_store_shards(l->st);

    if (l->depth_ok_ms == 0)
        return;
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        evbuffer_add_printf(b, "# HELP %s %s (Redis, per shard)\n# TYPE %s gauge\n", fam[f].name,
                            fam[f].help, fam[f].name);
        for (int i = 0; i < shards; i++)
            evbuffer_add_printf(b, "%s{shard=\"%d\"} %lld\n", fam[f].name, i,
                                *(const long long *)((const char *)&l->depth[i] + fam[f].off));
    }
    evbuffer_add_printf(b,
                        "# HELP meshbuy_redis_gauges_age_seconds age of the Redis-backed "
                        "gauges above\n# TYPE meshbuy_redis_gauges_age_seconds gauge\n"
                        "meshbuy_redis_gauges_age_seconds %.3f\n",
                        (double)(mono_ms() - l->depth_ok_ms) / 1000.0);
}

/* ================================================================ wake-ups */

typedef struct stir_req {
    mb_loop *l;
    unsigned long long *w; /* shards entries */
    mb_status st;
} stir_req;

/* On the Redis thread: touches only the request. */
static void stir_run(mb_store *st, void *ctx)
{
    stir_req *r = ctx;
    mb_error e;

    mb_error_clear(&e);
    r->st = mb_store_stirs(st, r->w, &e);
}

/* A shard whose counter moved has new events (its relay looks now) or a job due for anyone
 * (the saga claims now). */
static void stir_done(void *ctx)
{
    stir_req *r = ctx;
    mb_loop *l = r->l;
    int moved = 0;

    l->stir_out = 0;
    if (r->st == MB_OK) {
        for (int i = 0; i < mb_store_shards(l->st); i++) {
            if (l->stir_known && r->w[i] == l->stir[i])
                continue;
            moved = 1;
            mb_relay_wake(l->relay, i);
        }
        free(l->stir);
        l->stir = r->w;
        r->w = NULL;
        if (moved && l->stir_known)
            l->stir_gen++;
        l->stir_known = 1;
    }
    free(r->w);
    free(r);
}

/* Reads the shards' wake counters at most every STIR_EVERY_MS, one read out at a time. */
static void stir_tick(mb_loop *l)
{
    long long now = mono_ms();
    stir_req *r;

    if (l->stir_out || now < l->stir_next_ms)
        return;
    l->stir_next_ms = now + STIR_EVERY_MS;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return;
    r->l = l;
    r->w = calloc((size_t)mb_store_shards(l->st), sizeof(*r->w));
    if (r->w == NULL) {
        free(r);
        return;
    }
    if (mb_rq_submit(l->rq, stir_run, stir_done, r) < 0) {
        free(r->w);
        free(r);
        return;
    }
    l->stir_out = 1;
}

unsigned long long mb_loop_stirred(const mb_loop *l)
{
    return l->stir_gen;
}

void mb_loop_events_queued(void *ctx, const char *key)
{
    mb_loop *l = ctx;

    mb_relay_wake_own(l->relay, mb_store_shard_of(l->st, key));
}

static void producer_destroy(mb_loop *l)
{
    if (l->prod_q) {
        rd_kafka_queue_io_event_enable(l->prod_q, -1, NULL, 0);
        rd_kafka_queue_destroy(l->prod_q);
        l->prod_q = NULL;
    }
    if (l->producer)
        rd_kafka_destroy(l->producer);
    l->producer = NULL;
}

/* A fatal error was seen: stop producing through it, purge it, wait for its reports. */
static void heal_start(mb_loop *l)
{
    l->heal = 1;
    l->heal_deadline_ms = mono_ms() + HEAL_PURGE_WAIT_MS;
    mb_relay_set_producer(l->relay, NULL);
    mb_intake_set_producer(l->in, NULL);
    rd_kafka_purge(l->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

/* One step of healing per tick; never blocks the loop for long. */
static void heal_step(mb_loop *l)
{
    char err[512];

    if (l->heal < 0 || (l->heal == 0 && rd_kafka_fatal_error(l->producer, NULL, 0))) {
        if (l->heal == 0) {
            l->producer_fatal++;
            mb_error("loop", "producer fatal error: replacing the producer (not ready "
                             "meanwhile)");
        }
        heal_start(l);
    }
    if (l->heal == 1) {
        rd_kafka_poll(l->producer, 0); /* the purged messages' reports */
        if (rd_kafka_outq_len(l->producer) > 0 && mono_ms() < l->heal_deadline_ms)
            return;
        producer_destroy(l); /* no report can come after this */
        mb_relay_producer_lost(l->relay);
        mb_intake_producer_lost(l->in);
        l->heal = 2;
        if (l->rebuilt_at_ms && mono_ms() - l->rebuilt_at_ms < HEAL_CALM_MS)
            l->heal_backoff_ms = l->heal_backoff_ms * 2;
        else
            l->heal_backoff_ms = HEAL_PAUSE_MS;
        if (l->heal_backoff_ms < HEAL_PAUSE_MS)
            l->heal_backoff_ms = HEAL_PAUSE_MS;
        if (l->heal_backoff_ms > HEAL_BACKOFF_MAX_MS)
            l->heal_backoff_ms = HEAL_BACKOFF_MAX_MS;
        l->heal_deadline_ms = mono_ms() + l->heal_backoff_ms;
        mb_info("loop", "producer destroyed, relay leases given up; a new one in %ld ms",
                l->heal_backoff_ms);
    }
    if (l->heal == 2 && mono_ms() >= l->heal_deadline_ms) {
        if (producer_new(l, err, sizeof(err)) < 0) {
            producer_destroy(l);
            l->heal_backoff_ms *= 2;
            if (l->heal_backoff_ms > HEAL_BACKOFF_MAX_MS)
                l->heal_backoff_ms = HEAL_BACKOFF_MAX_MS;
            l->heal_deadline_ms = mono_ms() + l->heal_backoff_ms;
            mb_error("loop", "new producer: %s (next try in %ld ms)", err, l->heal_backoff_ms);
            return;
        }
        mb_relay_set_producer(l->relay, l->producer);
        mb_intake_set_producer(l->in, l->producer);
        l->heal = 0;
        l->rebuilt_at_ms = mono_ms();
        l->producer_rebuilt++;
        mb_info("loop", "new producer up: relaying and DLQ resume");
    }
}

/* MESHBUY_TEST_HOOKS=1 only: SIGUSR2 makes the producer fail as an idempotent producer
 * that lost a sequence would (the tests' way to reach the healing path). */
static void on_test_signal(evutil_socket_t sig, short what, void *arg)
{
    mb_loop *l = arg;
    rd_kafka_resp_err_t e;

    (void)sig;
    (void)what;
    if (l->producer == NULL || l->heal != 0)
        return;
    e = rd_kafka_test_fatal_error(l->producer, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                                  "injected by SIGUSR2 (MESHBUY_TEST_HOOKS)");
    mb_warn("loop", "test hook: producer fatal error injected: %s", rd_kafka_err2str(e));
}

/* ================================================================ tick, signals */

static int drained(mb_loop *l)
{
    size_t saga = l->saga.inflight ? l->saga.inflight(l->saga.ctx) : 0;
    return saga == 0 && mb_intake_pending(l->in) == 0 && mb_relay_inflight(l->relay) == 0;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    mb_loop *l = arg;
    long long start = mono_ms();
    long long now = mb_loop_now_ms();

    (void)fd;
    (void)what;
    l->m.ticks++;
    if (l->producer || l->heal)
        heal_step(l);
    mb_intake_tick(l->in, now);
    stir_tick(l);
    if (l->saga.tick)
        l->saga.tick(l->saga.ctx);
    mb_relay_tick(l->relay, now);
    depth_tick(l);
    mb_beat_tick(l->beat, mono_ms());
    if (l->producer)
        rd_kafka_poll(l->producer, 0);
    if (l->draining) {
        if (drained(l)) {
            mb_info("loop", "drained");
            event_base_loopbreak(l->base);
        } else if (mono_ms() >= l->drain_deadline_ms) {
            mb_warn("loop",
                    "drain bound reached: %zu saga(s), %zu message(s), %zu event(s) "
                    "left to their leases",
                    l->saga.inflight ? l->saga.inflight(l->saga.ctx) : 0, mb_intake_pending(l->in),
                    mb_relay_inflight(l->relay));
            event_base_loopbreak(l->base);
        }
    }
    if (mono_ms() - start > l->tick_ms)
        l->m.tick_overruns++;
}

static void start_drain(mb_loop *l)
{
    if (l->draining)
        return;
    l->draining = 1;
    l->drain_deadline_ms = mono_ms() + l->drain_ms;
    mb_info("loop", "draining (at most %ld ms)", l->drain_ms);
    mb_intake_stop(l->in);
    if (l->saga.drain)
        l->saga.drain(l->saga.ctx);
}

/* libevent runs this from the loop: its own signal handler only writes to a socketpair. */
static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    mb_loop *l = arg;

    (void)what;
    l->signals++;
    if (l->signals >= 2) {
        mb_warn("loop", "second signal (%s): exiting now without draining", strsignal((int)sig));
        l->exit_code = 1;
        event_base_loopbreak(l->base);
        return;
    }
    mb_info("loop", "%s received", strsignal((int)sig));
    start_drain(l);
}

/* ================================================================ life */

/* The modules' submitter: their requests run on the Redis thread. */
static int rq_submit(void *rq, mb_req_fn *fn, mb_req_done *done, void *ctx)
{
    return mb_rq_submit(rq, fn, done, ctx);
}

static void default_worker_id(char *buf, size_t len)
{
    char host[200];

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "worker");
    host[sizeof(host) - 1] = '\0';
    snprintf(buf, len, "%s-%ld", host, (long)getpid());
}

/* The heartbeat: who this worker is, for meshctl workers. */
static int beat_new(mb_loop *l, const mb_conf *conf, char *err, size_t errlen)
{
    char host[256] = "?", admin[300] = "";
    long port = (long)mb_conf_int(conf, "MESHBUY_HTTP_PORT");

    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "?");
    host[sizeof(host) - 1] = '\0';
    if (port > 0)
        snprintf(admin, sizeof(admin), "%s:%ld", mb_conf_str(conf, "MESHBUY_HTTP_ADDR"), port);
    l->beat = mb_beat_new(l->rq, &(mb_worker_info){
                                     .host = host,
                                     .version = mb_version(),
                                     .admin = admin,
                                     .pid = (long)getpid(),
                                     .started_ms = mb_loop_now_ms(),
                                     .lease_ms = mb_conf_int(conf, "MESHBUY_LEASE_MS"),
                                     .sagas = mb_conf_bool(conf, "MESHBUY_RUN_SAGAS"),
                                 });
    if (l->beat == NULL) {
        snprintf(err, errlen, "heartbeat: out of memory");
        return -1;
    }
    return 0;
}

/* Retention of finished jobs (mb_store_set_retention).  A tombstone shorter than the
 * record would let an order id be forgotten while its record still says it ran. */
static int retention_set(mb_store *st, const mb_conf *conf, char *err, size_t errlen)
{
    long long keep = mb_conf_int(conf, "MESHBUY_RETENTION_S");
    long long ids = mb_conf_int(conf, "MESHBUY_RETENTION_ORDER_IDS_S");

    if (ids != 0 && (keep == 0 || ids < keep)) {
        snprintf(err, errlen,
                 "MESHBUY_RETENTION_ORDER_IDS_S=%lld must be 0 (forever) or at "
                 "least MESHBUY_RETENTION_S=%lld (and not finite when that is 0 = forever)",
                 ids, keep);
        return -1;
    }
    mb_store_set_retention(st, keep * 1000, ids * 1000);
    return 0;
}

/* The loop's base.  The HTTP client moves a socket's interest between read
 * and write (a connect, a request that did not fit the send buffer); the
 * changelist folds those moves into one epoll_ctl per socket per loop turn.  Safe because no fd given to the loop is a dup() of
 * another (the changelist's one caveat with epoll). */
static struct event_base *new_base(void)
{
    struct event_config *cfg = event_config_new();
    struct event_base *base;

    if (cfg == NULL)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return base;
}

mb_loop *mb_loop_new(const mb_conf *conf, char *err, size_t errlen)
{
    mb_loop *l = calloc(1, sizeof(*l));
    const char *wid = mb_conf_str(conf, "MESHBUY_WORKER_ID");
    mb_error e;
    struct timeval tv;
    mb_intake_opts io;
    mb_relay_opts ro;
    mb_status s;

    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->prod_pipe[0] = l->prod_pipe[1] = -1;
    l->conf = conf;
    l->tick_ms = mb_conf_int(conf, "MESHBUY_TICK_MS");
    l->drain_ms = mb_conf_int(conf, "MESHBUY_DRAIN_MS");
    if (wid && *wid)
        snprintf(l->worker_id, sizeof(l->worker_id), "%s", wid);
    else
        default_worker_id(l->worker_id, sizeof(l->worker_id));
    l->status_topic = mb_conf_str(conf, "MESHBUY_STATUS_TOPIC");
    l->base = new_base();
    if (l->base == NULL) {
        snprintf(err, errlen, "event_base_new failed");
        goto err;
    }
    mb_error_clear(&e);
    l->st = mb_store_new(mb_conf_str(conf, "REDIS_URL"), (int)mb_conf_int(conf, "MESHBUY_SHARDS"),
                         REDIS_TIMEOUT_MS, l->worker_id, &e);
    if (l->st == NULL) {
        snprintf(err, errlen, "%s", e.msg);
        goto err;
    }
    if (retention_set(l->st, conf, err, errlen) < 0)
        goto err;
    s = mb_store_ping(l->st, &e);
    if (s == MB_FATAL || s == MB_PERM) {
        snprintf(err, errlen, "redis: %s", e.msg);
        goto err;
    }
    if (s == MB_AGAIN)
        mb_warn("loop", "redis not reachable yet (%s): retrying in the background", e.msg);
    l->rq =
        mb_rq_new(l->base,
                  &(mb_rq_opts){mb_conf_str(conf, "REDIS_URL"),
                                (int)mb_conf_int(conf, "MESHBUY_SHARDS"), REDIS_TIMEOUT_MS,
                                l->worker_id, 0, mb_conf_int(conf, "MESHBUY_RETENTION_S") * 1000LL,
                                mb_conf_int(conf, "MESHBUY_RETENTION_ORDER_IDS_S") * 1000LL},
                  err, errlen);
    if (l->rq == NULL)
        goto err;
    if (producer_new(l, err, errlen) < 0)
        goto err;
    io = (mb_intake_opts){
        .group = mb_conf_str(conf, "MESHBUY_GROUP"),
        .orders_topic = mb_conf_str(conf, "MESHBUY_ORDERS_TOPIC"),
        .dlq_topic = mb_conf_str(conf, "MESHBUY_DLQ_TOPIC"),
        .client_id = l->worker_id,
        .max_pending = INTAKE_MAX_PENDING,
        .batch = INTAKE_BATCH,
    };
    l->in = mb_intake_new(l->base, l->st, l->producer, &io, &l->m, err, errlen);
    if (l->in == NULL)
        goto err;
    ro = (mb_relay_opts){l->status_topic, l->worker_id, RELAY_LEASE_MS, RELAY_BATCH, RELAY_IDLE_MS};
    l->relay = mb_relay_new(l->st, l->producer, &ro, &l->m);
    if (l->relay == NULL) {
        snprintf(err, errlen, "relay: out of memory");
        goto err;
    }
    /* Their Redis work goes through the Redis thread; the synchronous store stays for the
     * start-up ping and the relay's release at shutdown (the thread has stopped by then). */
    mb_intake_set_submit(l->in, rq_submit, l->rq);
    mb_intake_set_on_events(l->in, mb_loop_events_queued, l);
    mb_relay_set_submit(l->relay, rq_submit, l->rq);
    if (mb_conf_int(conf, "MESHBUY_HTTP_PORT") > 0) {
        l->admin = mb_admin_new(l->base, mb_conf_str(conf, "MESHBUY_HTTP_ADDR"),
                                (int)mb_conf_int(conf, "MESHBUY_HTTP_PORT"), l, err, errlen);
        if (l->admin == NULL)
            goto err;
    }
    if (beat_new(l, conf, err, errlen) < 0)
        goto err;
    tv.tv_sec = l->tick_ms / 1000;
    tv.tv_usec = (l->tick_ms % 1000) * 1000;
    l->tick_ev = event_new(l->base, -1, EV_PERSIST, on_tick, l);
    l->sig_term = evsignal_new(l->base, SIGTERM, on_signal, l);
    l->sig_int = evsignal_new(l->base, SIGINT, on_signal, l);
    if (l->tick_ev == NULL || l->sig_term == NULL || l->sig_int == NULL ||
        event_add(l->tick_ev, &tv) < 0 || event_add(l->sig_term, NULL) < 0 ||
        event_add(l->sig_int, NULL) < 0) {
        snprintf(err, errlen, "event set-up failed");
        goto err;
    }
    if (mb_conf_bool(conf, "MESHBUY_TEST_HOOKS")) {
        l->sig_test = evsignal_new(l->base, SIGUSR2, on_test_signal, l);
        if (l->sig_test == NULL || event_add(l->sig_test, NULL) < 0) {
            snprintf(err, errlen, "event set-up failed");
            goto err;
        }
        mb_warn("loop", "MESHBUY_TEST_HOOKS: SIGUSR2 injects a producer fatal error");
    }
    mb_info("loop", "worker %s: orders %s, status %s, dlq %s, group %s, %d shards", l->worker_id,
            io.orders_topic, l->status_topic, io.dlq_topic, io.group, mb_store_shards(l->st));
    return l;
err:
    mb_loop_free(l);
    return NULL;
}

void mb_loop_set_saga(mb_loop *l, const mb_loop_saga *saga)
{
    l->saga = *saga;
}

int mb_loop_run(mb_loop *l)
{
    event_base_dispatch(l->base);
    /* The loop is over: the Redis thread runs what is still queued (without reconnecting)
     * and every completion is delivered now, before the modules that own them are freed. */
    mb_rq_stop(l->rq);
    if (l->exit_code == 0 && !l->draining) {
        /* The loop ended without a signal: nothing left to wait on, a bug. */
        mb_error("loop", "event loop ended unexpectedly");
        l->exit_code = 2;
    }
    return l->exit_code;
}

struct event_base *mb_loop_base(mb_loop *l)
{
    return l->base;
}

struct mb_store *mb_loop_store(mb_loop *l)
{
    return l->st;
}

struct mb_rq *mb_loop_rq(mb_loop *l)
{
    return l->rq;
}

const char *mb_loop_worker_id(const mb_loop *l)
{
    return l->worker_id;
}

int mb_loop_peers_current(const mb_loop *l)
{
    return mb_beat_peers_current(l->beat);
}

mb_worker_metrics *mb_loop_metrics(mb_loop *l)
{
    return &l->m;
}

int mb_loop_ready(mb_loop *l)
{
    return !l->draining && l->heal == 0 && l->producer != NULL &&
           mb_rq_ready(l->rq, REDIS_READY_AGE_MS) && mb_intake_joined(l->in);
}

static void counter(struct evbuffer *b, const char *name, const char *help, uint64_t v)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                        (unsigned long long)v);
}

static void gauge(struct evbuffer *b, const char *name, const char *help, double v)
{
    evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

void mb_loop_metrics_text(mb_loop *l, struct evbuffer *b)
{
    const mb_worker_metrics *m = &l->m;
    mb_rq_health h;

    mb_rq_health_get(l->rq, &h);

    /* the version --version prints, as a label (the usual *_build_info shape) */
    evbuffer_add_printf(b,
                        "# HELP meshbuy_build_info the build (git describe), always 1\n"
                        "# TYPE meshbuy_build_info gauge\nmeshbuy_build_info{version=\"%s\"} 1\n",
                        mb_version());
    counter(b, "meshbuy_orders_consumed_total", "order messages consumed", m->orders_consumed);
    counter(b, "meshbuy_orders_accepted_total", "orders accepted as new jobs", m->orders_accepted);
    counter(b, "meshbuy_orders_duplicate_total", "redelivered orders joined to their job",
            m->orders_duplicate);
    counter(b, "meshbuy_orders_conflict_total", "orders failed with NameConflict",
            m->orders_conflict);
    counter(b, "meshbuy_orders_dlq_total", "messages delivered to the DLQ topic", m->orders_dlq);
    counter(b, "meshbuy_dlq_undeliverable_total",
            "DLQ copies refused for good (recorded in Redis, offset moved on)",
            m->dlq_undeliverable);
    counter(b, "meshbuy_dlq_retries_total", "DLQ copies refused for a transient reason",
            m->dlq_retries);
    counter(b, "meshbuy_cancels_total", "cancel orders applied", m->cancels);
    counter(b, "meshbuy_cancels_unknown_total", "cancel orders for no known job",
            m->cancels_unknown);
    counter(b, "meshbuy_intake_redis_retries_total", "intake waits for Redis", m->redis_retries);
    counter(b, "meshbuy_events_relayed_total", "status events delivered to Kafka",
            m->events_relayed);
    counter(b, "meshbuy_relay_failures_total", "status event deliveries failed (retried)",
            m->relay_failures);
    counter(b, "meshbuy_redis_commands_total", "commands sent to Redis",
            mb_store_commands(l->st) + h.commands);
    counter(b, "meshbuy_redis_round_trips_total", "round trips to Redis",
            mb_store_round_trips(l->st) + h.round_trips);
    counter(b, "meshbuy_redis_requests_total", "requests the Redis thread ran", h.requests);
    counter(b, "meshbuy_producer_fatal_total", "producer fatal errors (each replaces it)",
            l->producer_fatal);
    counter(b, "meshbuy_producer_rebuilt_total", "producers built after one died",
            l->producer_rebuilt);
    gauge(b, "meshbuy_producer_up", "1 while the producer works (0: being replaced)",
          l->heal == 0 && l->producer != NULL);
    counter(b, "meshbuy_ticks_total", "loop ticks", m->ticks);
    counter(b, "meshbuy_tick_overruns_total", "ticks longer than the tick period",
            m->tick_overruns);
    gauge(b, "meshbuy_redis_up", "1 if the Redis thread's last exchange succeeded", h.connected);
    gauge(b, "meshbuy_redis_answer_age_seconds",
          "time since Redis last answered the Redis thread (-1: never)",
          h.age_ms < 0 ? -1 : (double)h.age_ms / 1000);
    gauge(b, "meshbuy_redis_queue_depth", "Redis requests queued or running, not completed",
          (double)h.depth);
    gauge(b, "meshbuy_ready", "1 while /readyz answers 200 (Redis, consumer group, not draining)",
          mb_loop_ready(l));
    gauge(b, "meshbuy_intake_pending", "order messages taken and not done",
          (double)mb_intake_pending(l->in));
    gauge(b, "meshbuy_relay_inflight", "status events awaiting delivery",
          (double)mb_relay_inflight(l->relay));
    gauge(b, "meshbuy_draining", "1 while draining after SIGTERM", l->draining);
    gauge(b, "meshbuy_relay_shards_held",
          "shards whose status events this worker relays "
          "(relay lease held at its last look; an idle shard's lease may lapse)",
          (double)mb_relay_held(l->relay));
    depth_metrics(l, b);
    evbuffer_add_printf(b, "# HELP meshbuy_consumer_lag orders in the topic beyond this worker's "
                           "position, per assigned partition (librdkafka's last fetch)\n"
                           "# TYPE meshbuy_consumer_lag gauge\n");
    mb_intake_lag(l->in, lag_sample, b);
    if (l->saga.metrics)
        l->saga.metrics(l->saga.ctx, b);
}

void mb_loop_free(mb_loop *l)
{
    if (l == NULL)
        return;
    mb_rq_free(l->rq); /* stopped by mb_loop_run; here too when the loop never ran */
    l->rq = NULL;
    mb_admin_free(l->admin);
    if (l->relay && l->exit_code == 0)
        mb_relay_release(l->relay);
    if (l->exit_code == 0)
        mb_beat_gone(l->beat, l->st);
    mb_beat_free(l->beat);
    if (l->producer && l->heal == 0) {
        long left = l->draining ? l->drain_deadline_ms - mono_ms() : 0;
        /* Delivery reports must all be served before the intake and relay go: their
         * opaques point into them. */
        mb_kafka_flush(l->producer, l->exit_code == 0 ? (int)(left > 1000 ? left : 1000) : 0);
        rd_kafka_purge(l->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(l->producer, 0);
    }
    if (l->producer && l->heal != 0) {
        /* Dead producer: its reports are void; serve what purging yields. */
        rd_kafka_purge(l->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(l->producer, 0);
    }
    /* Offsets of what finished meanwhile (DLQ reports just served) are stored on close. */
    mb_intake_free(l->in);
    producer_destroy(l);
    mb_relay_free(l->relay);
    if (l->tick_ev)
        event_free(l->tick_ev);
    if (l->sig_term)
        event_free(l->sig_term);
    if (l->sig_int)
        event_free(l->sig_int);
    if (l->sig_test)
        event_free(l->sig_test);
    if (l->prod_ev)
        event_free(l->prod_ev);
    if (l->prod_pipe[0] >= 0)
        close(l->prod_pipe[0]);
    if (l->prod_pipe[1] >= 0)
        close(l->prod_pipe[1]);
    free(l->depth);
    free(l->stir);
    mb_store_free(l->st);
    if (l->base)
        event_base_free(l->base);
    free(l);
}
