/* main.c: meshbench, a load generator: publishes N buy orders, follows mesh.status, prints figures.
 *
 * One idempotent producer publishes N distinct valid buy orders (cluster bench-<first+i>,
 * nodes bench-<first+i>-node-1 and -node-2 in az1/az2, namespace "shop", restart off), key
 * "<account>/<mesh>", as fast as it can or at --rate orders/s.  A consumer thread, assigned to
 * every partition of mesh.status from the end offsets read BEFORE the first publish (or from the
 * beginning with --from-beginning), timestamps each order's events on arrival: the first
 * Accepted and the terminal one (Running, Failed, Cancelled).  Nothing here is a pass/fail test:
 * the figures are printed, and the exit code says only whether every order reached Running.
 *
 * Mesh names carry a run tag ("b<tag>-<i>") so events of other runs on the same topic are
 * ignored.  Per-key seq numbers are checked (a duplicate is dropped as the contract says, a gap
 * is counted).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "mb_jscan.h"
#include "mb_json.h"
#include "mb_kafka.h"
#include "mb_log.h"
#include "mb_order.h"
#include "mb_version.h"

/* Exit codes (documented in --help). */
enum {
    EXIT_OK = 0,     /* every order reached Running */
    EXIT_NOTALL = 1, /* some order failed, or did not end within --timeout */
    EXIT_USAGE = 2,  /* bad flags */
    EXIT_KAFKA = 3,  /* Kafka configuration or metadata error */
};

#define MAX_CODES      32
#define MAX_PARTITIONS 1024

typedef struct opts {
    long orders;
    double rate; /* orders/s; 0 = as fast as possible */
    int timeout_s;
    const char *account;
    long accounts; /* accounts the orders spread over */
    long first;    /* first cluster index */
    const char *project, *region, *istio, *cluster_prefix, *namespace;
    const char *events_path, *json_path;
    int from_beginning;
    int quiet;
} opts;

/* One order's life as seen on mesh.status.  Times: CLOCK_MONOTONIC ns (0 = not seen). */
typedef struct order_rec {
    int64_t pub_ns; /* written by the publisher (atomically), read by the consumer */
    int64_t accepted_ns;
    int64_t installing_ns; /* first Installing event */
    int64_t end_ns;
    long long last_seq;
    char end;         /* 0, 'R', 'F', 'C' */
    signed char code; /* index into codes[] for Failed, -1 none */
    int delivery_err; /* librdkafka error of its delivery report */
} order_rec;

typedef struct bench {
    opts o;
    char tag[16];
    order_rec *rec;
    rd_kafka_t *producer, *consumer;
    const char *orders_topic, *status_topic;
    int stop; /* __atomic */
    /* counted by the consumer thread only, read after join or (racy, for progress) by main */
    long ended, running, failed, cancelled, dup_events, seq_gaps, foreign, bad_events;
    long delivered, delivery_failed;
    char codes[MAX_CODES][64];
    long code_count[MAX_CODES];
    int ncodes;
    FILE *events;
    int64_t t0_ns, pub_done_ns;
} bench;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: meshbench [--orders N] [--rate R] [--timeout SEC] [--account PREFIX]\n"
            "                 [--accounts K] [--first I] [--project P] [--region R]\n"
            "                 [--istio V] [--cluster-prefix S] [--namespace NS | --no-namespace]\n"
            "                 [--from-beginning] [--events FILE] [--json FILE] [--quiet]\n"
            "\n"
            "Publishes N distinct buy orders (one idempotent producer, batched) and follows\n"
            "mesh.status until every order ended (Running, Failed, Cancelled) or --timeout.\n"
            "Prints orders published/s, sagas completed/s end to end, publish->Accepted and\n"
            "publish->Running latency (p50/p90/p99/max), failures by error code, seq checks.\n"
            "\n"
            "  --orders N          orders to publish (default 1000)\n"
            "  --rate R            orders per second, 0 = as fast as possible (default 0)\n"
            "  --timeout SEC       wait at most SEC s after the first publish (default 300)\n"
            "  --account PREFIX    account ids PREFIX-<k> (default acct-bench)\n"
            "  --accounts K        orders spread over K accounts (default 100)\n"
            "  --first I           order i uses cluster <prefix><I+i> (default 0)\n"
            "  --project P         project of the clusters (default proj-bench)\n"
            "  --region R          region (default bench-region-1)\n"
            "  --istio V           Istio minor (default 1.18)\n"
            "  --cluster-prefix S  cluster ids S<i>, nodes S<i>-node-1, S<i>-node-2\n"
            "                      (default bench-, as ops/cloudsim/scenarios/bench.json)\n"
            "  --namespace NS      sidecar injection namespace (default shop)\n"
            "  --no-namespace      no sidecar namespace\n"
            "  --from-beginning    read mesh.status from the beginning (a fresh stack) instead of\n"
            "                      the end offsets taken before publishing\n"
            "  --events FILE       one line per status event of this run (tab-separated: index,\n"
            "                      cluster, status, step, seq, occurred_at ms, received ms\n"
            "                      (epoch), error code)\n"
            "  --json FILE         the figures as one JSON object\n"
            "  --quiet             no progress lines on stderr\n"
            "\n"
            "Environment: KAFKA_BROKERS (required), KAFKA_<X> librdkafka properties,\n"
            "MESHBUY_ORDERS_TOPIC, MESHBUY_STATUS_TOPIC.\n"
            "\n"
            "exit codes: 0 every order Running; 1 some failed or did not end in time;\n"
            "            2 usage; 3 Kafka configuration or metadata error\n");
}

/* ------------------------------------------------------------------ flags */

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, opts *o)
{
    static const struct option lo[] = {
        {"orders", required_argument, NULL, 'n'},
        {"rate", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 't'},
        {"account", required_argument, NULL, 'a'},
        {"accounts", required_argument, NULL, 'A'},
        {"first", required_argument, NULL, 'f'},
        {"project", required_argument, NULL, 'p'},
        {"region", required_argument, NULL, 'R'},
        {"istio", required_argument, NULL, 'i'},
        {"cluster-prefix", required_argument, NULL, 'c'},
        {"namespace", required_argument, NULL, 's'},
        {"no-namespace", no_argument, NULL, 'S'},
        {"from-beginning", no_argument, NULL, 'b'},
        {"events", required_argument, NULL, 'e'},
        {"json", required_argument, NULL, 'j'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long v;
    char *end;
    int li = 0;

    *o = (opts){.orders = 1000,
                .timeout_s = 300,
                .account = "acct-bench",
                .accounts = 100,
                .project = "proj-bench",
                .region = "bench-region-1",
                .istio = "1.18",
                .cluster_prefix = "bench-",
                .namespace = "shop"};
    for (;;) {
        opterr = 0; /* bad_noarg's one line names the flag */
        int c = getopt_long(argc, argv, "h", lo, &li);
        if (c == -1)
            break;
        switch (c) {
        case 'n':
            if (parse_long(optarg, 1, 10000000, &o->orders) < 0)
                goto bad;
            break;
        case 'r':
            errno = 0;
            o->rate = strtod(optarg, &end);
            if (errno || end == optarg || *end || o->rate < 0)
                goto bad;
            break;
        case 't':
            if (parse_long(optarg, 1, 86400, &v) < 0)
                goto bad;
            o->timeout_s = (int)v;
            break;
        case 'a': o->account = optarg; break;
        case 'A':
            if (parse_long(optarg, 1, 1000000, &o->accounts) < 0)
                goto bad;
            break;
        case 'f':
            if (parse_long(optarg, 0, 100000000, &o->first) < 0)
                goto bad;
            break;
        case 'p': o->project = optarg; break;
        case 'R': o->region = optarg; break;
        case 'i': o->istio = optarg; break;
        case 'c': o->cluster_prefix = optarg; break;
        case 's': o->namespace = optarg; break;
        case 'S': o->namespace = NULL; break;
        case 'b': o->from_beginning = 1; break;
        case 'e': o->events_path = optarg; break;
        case 'j': o->json_path = optarg; break;
        case 'q': o->quiet = 1; break;
        case 'h': usage(stdout); exit(EXIT_OK);
        default: goto bad_noarg;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "meshbench: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "meshbench: bad value for --%s: %s\n", lo[li].name, optarg);
    return -1;
bad_noarg:
    fprintf(stderr, "meshbench: unknown option or missing value: %s (see meshbench --help)\n",
            argv[optind - 1]);
    return -1;
}

/* ------------------------------------------------------------------ orders */

static void mesh_name(const bench *b, long i, char *buf, size_t len)
{
    snprintf(buf, len, "b%s-%ld", b->tag, i);
}

/* The CloudEvent of order i as compact JSON (new: free) and its key into key. */
static char *build_order(const bench *b, long i, char *key, size_t keylen, char *tp, size_t tplen)
{
    char account[80], name[64], cluster[96], n1[128], n2[128], oid[64];
    const opts *o = &b->o;
    json_t *data, *env, *ns;
    char *out;

    snprintf(account, sizeof(account), "%s-%ld", o->account, i % o->accounts);
    mesh_name(b, i, name, sizeof(name));
    snprintf(cluster, sizeof(cluster), "%s%ld", o->cluster_prefix, o->first + i);
    snprintf(n1, sizeof(n1), "%s-node-1", cluster);
    snprintf(n2, sizeof(n2), "%s-node-2", cluster);
    snprintf(key, keylen, "%s/%s", account, name);
    if (mb_order_new_id("ord-", oid, sizeof(oid)) < 0 || mb_order_new_traceparent(tp, tplen) < 0)
        return NULL;
    ns = o->namespace ? json_pack("[s]", o->namespace) : json_array();
    data = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:[s,s], s:{s:o, s:b}}}",
                     "order_id", oid, "account_id", account, "project_id", o->project, "region",
                     o->region, "mesh", "name", name, "edition", "basic", "istio_version", o->istio,
                     "cluster_id", cluster, "control_plane_nodes", n1, n2, "sidecar", "namespaces",
                     ns, "restart_existing", 0);
    if (data == NULL)
        return NULL;
    env = mb_order_envelope(MB_ORDER_BUY, data, "meshbench", tp);
    data = NULL; /* taken over */
    if (env == NULL)
        return NULL;
    out = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    return out;
}

/* ------------------------------------------------------------------ Kafka */

static int conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "meshbench: kafka %s: %s\n", k, err);
        return -1;
    }
    return 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    bench *b = opaque;
    long i = (long)(intptr_t)m->_private;

    (void)rk;
    if (m->err) {
        b->delivery_failed++;
        if (i >= 0 && i < b->o.orders)
            b->rec[i].delivery_err = m->err;
        return;
    }
    b->delivered++;
}

static int producer_new(bench *b)
{
    char err[512];
    rd_kafka_conf_t *c = mb_kafka_conf_new("meshbench", err, sizeof(err));

    if (c == NULL) {
        fprintf(stderr, "meshbench: %s\n", err);
        return -1;
    }
    /* batched: the broker sees few large produce requests, not one per order */
    if (conf_set(c, "enable.idempotence", "true") < 0 || conf_set(c, "acks", "all") < 0 ||
        conf_set(c, "linger.ms", "5") < 0 || conf_set(c, "batch.num.messages", "10000") < 0 ||
        conf_set(c, "queue.buffering.max.messages", "1000000") < 0 ||
        conf_set(c, "queue.buffering.max.kbytes", "1048576") < 0 ||
        conf_set(c, "message.timeout.ms", "120000") < 0) {
        rd_kafka_conf_destroy(c);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_opaque(c, b);
    b->producer = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (b->producer == NULL) {
        fprintf(stderr, "meshbench: producer: %s\n", err);
        rd_kafka_conf_destroy(c);
        return -1;
    }
    /* Without it, a third of the runs had their first delivery a second late (the topic
     * met only in the first produce call, after the connection was up). */
    mb_kafka_know_topic(b->producer, b->orders_topic);
    return 0;
}

/* A consumer assigned to every partition of the status topic: at the end offsets as they
 * are now (before anything is published) or at the beginning. */
static int consumer_new(bench *b)
{
    char err[512], group[64];
    rd_kafka_conf_t *c = mb_kafka_conf_new("meshbench-status", err, sizeof(err));
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt;
    rd_kafka_topic_partition_list_t *parts;
    int np, rc = -1;

    if (c == NULL) {
        fprintf(stderr, "meshbench: %s\n", err);
        return -1;
    }
    snprintf(group, sizeof(group), "meshbench-%ld", (long)getpid());
    if (conf_set(c, "group.id", group) < 0 || conf_set(c, "enable.auto.commit", "false") < 0 ||
        conf_set(c, "auto.offset.reset", "earliest") < 0 ||
        conf_set(c, "fetch.wait.max.ms", "10") < 0) {
        rd_kafka_conf_destroy(c);
        return -1;
    }
    b->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (b->consumer == NULL) {
        fprintf(stderr, "meshbench: consumer: %s\n", err);
        rd_kafka_conf_destroy(c);
        return -1;
    }
    rkt = rd_kafka_topic_new(b->consumer, b->status_topic, NULL);
    if (rkt == NULL || rd_kafka_metadata(b->consumer, 0, rkt, &md, 10000) != 0 ||
        md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        fprintf(stderr, "meshbench: no metadata for topic %s\n", b->status_topic);
        goto out;
    }
    np = md->topics[0].partition_cnt;
    parts = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np && p < MAX_PARTITIONS; p++) {
        int64_t lo = 0, hi = 0;
        int32_t id = md->topics[0].partitions[p].id;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(b->consumer, b->status_topic, id, &lo, &hi, 10000);
        if (e) {
            fprintf(stderr, "meshbench: watermarks of %s [%d]: %s\n", b->status_topic, (int)id,
                    rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(parts);
            goto out;
        }
        rd_kafka_topic_partition_list_add(parts, b->status_topic, id)->offset =
            b->o.from_beginning ? RD_KAFKA_OFFSET_BEGINNING : hi;
    }
    if (rd_kafka_assign(b->consumer, parts) != 0) {
        fprintf(stderr, "meshbench: assign failed\n");
        rd_kafka_topic_partition_list_destroy(parts);
        goto out;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rc = 0;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    return rc;
}

/* ------------------------------------------------------------------ following mesh.status */

static int code_index(bench *b, const char *code)
{
    for (int i = 0; i < b->ncodes; i++)
        if (strcmp(b->codes[i], code) == 0)
            return i;
    if (b->ncodes >= MAX_CODES)
        return MAX_CODES - 1; /* the last slot collects the rest */
    snprintf(b->codes[b->ncodes], sizeof(b->codes[0]), "%s", code);
    return b->ncodes++;
}

/* The order index from a key "<account>/b<tag>-<i>", or -1 when it is not this run's. */
static long index_of(const bench *b, const char *key, size_t len)
{
    const char *slash = memchr(key, '/', len);
    size_t taglen = strlen(b->tag);
    long v = 0;

    if (slash == NULL)
        return -1;
    const char *p = slash + 1, *end = key + len;
    if (end - p < (ptrdiff_t)(taglen + 3) || p[0] != 'b' || memcmp(p + 1, b->tag, taglen) != 0 ||
        p[1 + taglen] != '-')
        return -1;
    for (p += taglen + 2; p < end; p++) {
        if (*p < '0' || *p > '9' || v > 100000000)
            return -1;
        v = v * 10 + (*p - '0');
    }
    return v < b->o.orders ? v : -1;
}

/* epoch ms from "YYYY-MM-DDTHH:MM:SS.mmmZ"; 0 when it does not read so. */
static long long parse_time_ms(const char *s)
{
    struct tm tm;
    int ms = 0;

    if (s == NULL)
        return 0;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (long long)timegm(&tm) * 1000 + ms;
}

/* The fields meshbench reads of a status event, read without building a tree: the consumer
 * reads every event of the run on the same two cores as the stack it measures. */
static const char *const event_paths[] = {"data.status", "data.step", "data.seq", "data.error.code",
                                          "data.occurred_at"};
enum { EV_STATUS, EV_STEP, EV_SEQ, EV_CODE, EV_AT, EV_N };

static void on_status(bench *b, const rd_kafka_message_t *m, int64_t now)
{
    long i = m->key ? index_of(b, m->key, m->key_len) : -1;
    mb_jval v[EV_N];
    char status[32], step[64] = "", code[64] = "", at[64] = "";
    long long seq = 0;
    order_rec *r;

    if (i < 0) {
        b->foreign++;
        return;
    }
    r = &b->rec[i];
    if (mb_jscan(m->payload, m->len, event_paths, EV_N, v) != 0 ||
        mb_jval_str(&v[EV_STATUS], status, sizeof(status)) != 0 || !mb_jval_int(&v[EV_SEQ], &seq) ||
        seq < 1) {
        b->bad_events++;
        return;
    }
    if (seq <= r->last_seq) { /* a re-relayed duplicate: the contract says drop it */
        b->dup_events++;
        return;
    }
    if (seq != r->last_seq + 1)
        b->seq_gaps++;
    r->last_seq = seq;
    mb_jval_str(&v[EV_STEP], step, sizeof(step));
    mb_jval_str(&v[EV_CODE], code, sizeof(code));
    if (b->events) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        mb_jval_str(&v[EV_AT], at, sizeof(at));
        fprintf(b->events, "%ld\t%s%ld\t%s\t%s\t%lld\t%lld\t%lld\t%s\n", i, b->o.cluster_prefix,
                b->o.first + i, status, step, seq, parse_time_ms(at[0] ? at : NULL),
                (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, code);
    }
    if (strcmp(status, "Accepted") == 0 && r->accepted_ns == 0)
        r->accepted_ns = now;
    else if (strcmp(status, "Installing") == 0 && r->installing_ns == 0)
        r->installing_ns = now;
    if (r->end == 0) {
        char end = 0;
        if (strcmp(status, "Running") == 0)
            end = 'R';
        else if (strcmp(status, "Failed") == 0)
            end = 'F';
        else if (strcmp(status, "Cancelled") == 0)
            end = 'C';
        if (end) {
            r->end = end;
            r->end_ns = now;
            r->code = -1;
            __atomic_fetch_add(&b->ended, 1, __ATOMIC_RELAXED);
            if (end == 'R')
                __atomic_fetch_add(&b->running, 1, __ATOMIC_RELAXED);
            else if (end == 'C')
                b->cancelled++;
            else {
                __atomic_fetch_add(&b->failed, 1, __ATOMIC_RELAXED);
                r->code = (signed char)code_index(b, code[0] ? code : "(none)");
                b->code_count[r->code]++;
            }
        }
    }
}

static void *consume_thread(void *arg)
{
    bench *b = arg;
    rd_kafka_message_t *msgs[512];
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(b->consumer);

    while (!__atomic_load_n(&b->stop, __ATOMIC_RELAXED) &&
           __atomic_load_n(&b->ended, __ATOMIC_RELAXED) < b->o.orders) {
        /* rd_kafka_consume_batch_queue waits out its whole timeout to fill a batch, which
         * stamped events up to that late: wait for one message, then take what is there. */
        ssize_t n = 0;
        int64_t now;
        msgs[0] = rd_kafka_consume_queue(q, 100);
        if (msgs[0]) {
            n = rd_kafka_consume_batch_queue(q, 0, msgs + 1, 511);
            n = n < 0 ? 1 : n + 1;
        }
        now = mono_ns();
        for (ssize_t k = 0; k < n; k++) {
            if (msgs[k]->err == 0)
                on_status(b, msgs[k], now);
            rd_kafka_message_destroy(msgs[k]);
        }
    }
    rd_kafka_queue_destroy(q);
    return NULL;
}

/* ------------------------------------------------------------------ publishing */

static void sleep_until(int64_t t_ns)
{
    struct timespec ts = {(time_t)(t_ns / 1000000000), (long)(t_ns % 1000000000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !interrupted)
        ;
}

static int publish_all(bench *b)
{
    char key[256], tp[MB_TRACEPARENT_LEN + 1];

    for (long i = 0; i < b->o.orders && !interrupted; i++) {
        char *value = build_order(b, i, key, sizeof(key), tp, sizeof(tp));
        rd_kafka_resp_err_t e;

        if (value == NULL) {
            fprintf(stderr, "meshbench: cannot build order %ld\n", i);
            return -1;
        }
        if (i == 0) { /* the worker's own parser: an order it would refuse benches nothing */
            mb_order_err oe;
            mb_order *ord = NULL;
            if (mb_order_parse(value, strlen(value), &ord, &oe) < 0) {
                fprintf(stderr, "meshbench: the order built is invalid: %s\n", oe.reason);
                free(value);
                return -1;
            }
            mb_order_free(ord);
        }
        if (b->o.rate > 0)
            sleep_until(b->t0_ns + (int64_t)((double)i * 1e9 / b->o.rate));
        __atomic_store_n(&b->rec[i].pub_ns, mono_ns(), __ATOMIC_RELEASE);
        for (;;) {
            e = rd_kafka_producev(
                b->producer, RD_KAFKA_V_TOPIC(b->orders_topic), RD_KAFKA_V_KEY(key, strlen(key)),
                RD_KAFKA_V_VALUE(value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                RD_KAFKA_V_HEADER("traceparent", tp, -1),
                RD_KAFKA_V_HEADER("content-type", "application/cloudevents+json", -1),
                RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(b->producer, 10);
        }
        if (e) {
            fprintf(stderr, "meshbench: produce order %ld: %s\n", i, rd_kafka_err2str(e));
            free(value);
            return -1;
        }
        value = NULL; /* owned by librdkafka (F_FREE) */
        if ((i & 255) == 0)
            rd_kafka_poll(b->producer, 0);
    }
    return 0;
}

/* ------------------------------------------------------------------ figures */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct dist {
    long n;
    double p50, p90, p99, max, mean; /* ms */
} dist;

/* Nearest-rank percentiles of v[0..n) (sorted in place), in ms. */
static dist dist_of(int64_t *v, long n)
{
    dist d = {0};
    double sum = 0;

    d.n = n;
    if (n == 0)
        return d;
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    for (long i = 0; i < n; i++)
        sum += (double)v[i];
#define PCT(p) ((double)v[(long)((double)(n - 1) * (p) + 0.5)] / 1e6)
    d.p50 = PCT(0.50);
    d.p90 = PCT(0.90);
    d.p99 = PCT(0.99);
#undef PCT
    d.max = (double)v[n - 1] / 1e6;
    d.mean = sum / (double)n / 1e6;
    return d;
}

static json_t *dist_json(const dist *d)
{
    return json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "n", (json_int_t)d->n, "p50_ms", d->p50,
                     "p90_ms", d->p90, "p99_ms", d->p99, "max_ms", d->max, "mean_ms", d->mean);
}

static void print_dist(const char *what, const dist *d)
{
    printf("  %-26s n=%-7ld p50 %9.1f  p90 %9.1f  p99 %9.1f  max %9.1f  mean %9.1f ms\n", what,
           d->n, d->p50, d->p90, d->p99, d->max, d->mean);
}

static int report(bench *b)
{
    long n = b->o.orders, nl = 0, na = 0, nr = 0;
    int64_t *lat = calloc((size_t)n, sizeof(*lat)), *acc = calloc((size_t)n, sizeof(*acc));
    int64_t *ends = calloc((size_t)n, sizeof(*ends)), last_end = 0, last_acc = 0;
    double pub_s = (double)(b->pub_done_ns - b->t0_ns) / 1e9, e2e_s = 0, mid_rate = 0;
    dist dl, da;
    json_t *j;
    struct rusage ru;
    double cpu_s = 0, acc_s = 0;

    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

    if (lat == NULL || acc == NULL || ends == NULL) {
        free(lat);
        free(acc);
        free(ends);
        return EXIT_NOTALL;
    }
    for (long i = 0; i < n; i++) {
        order_rec *r = &b->rec[i];
        if (r->accepted_ns && r->pub_ns)
            acc[na++] = r->accepted_ns - r->pub_ns;
        if (r->accepted_ns > last_acc)
            last_acc = r->accepted_ns;
        if (r->end == 'R') {
            lat[nl++] = r->end_ns - r->pub_ns;
            if (r->end_ns > last_end)
                last_end = r->end_ns;
        }
        if (r->end)
            ends[nr++] = r->end_ns;
    }
    if (last_end)
        e2e_s = (double)(last_end - b->t0_ns) / 1e9;
    if (last_acc)
        acc_s = (double)(last_acc - b->t0_ns) / 1e9;
    /* steady state: between the 10th and the 90th percentile of end times (ramp-up and
     * the tail excluded) */
    qsort(ends, (size_t)nr, sizeof(*ends), cmp_i64);
    if (nr >= 20) {
        long lo = nr / 10, hi = nr - 1 - nr / 10;
        if (ends[hi] > ends[lo])
            mid_rate = (double)(hi - lo) / ((double)(ends[hi] - ends[lo]) / 1e9);
    }
    dl = dist_of(lat, nl);
    da = dist_of(acc, na);

    printf("meshbench: run tag %s, %ld orders, clusters %s%ld..%s%ld\n", b->tag, n,
           b->o.cluster_prefix, b->o.first, b->o.cluster_prefix, b->o.first + n - 1);
    printf("  published                  %ld in %.3f s (%.0f orders/s), delivered %ld, "
           "delivery failures %ld\n",
           n, pub_s, pub_s > 0 ? (double)n / pub_s : 0.0, b->delivered, b->delivery_failed);
    printf("  ended                      %ld of %ld: Running %ld, Failed %ld, Cancelled %ld, "
           "not ended %ld\n",
           b->ended, n, b->running, b->failed, b->cancelled, n - b->ended);
    printf("  sagas/s end to end         %.1f  (%ld Running in %.3f s, first publish -> last "
           "Running)\n",
           e2e_s > 0 ? (double)b->running / e2e_s : 0.0, b->running, e2e_s);
    printf("  completion burst rate      %.1f/s  (between the 10th and 90th percentile of end "
           "times; sagas move in waves, so this is no sustained rate)\n",
           mid_rate);
    printf("  last order Accepted at     %.3f s after the first publish (ingestion)\n", acc_s);
    print_dist("publish -> Accepted", &da);
    print_dist("publish -> Running", &dl);
    for (int c = 0; c < b->ncodes; c++)
        printf("  failure code %-24s %ld\n", b->codes[c], b->code_count[c]);
    printf("  status events: duplicates dropped %ld, seq gaps %ld, unreadable %ld, other runs' "
           "%ld\n",
           b->dup_events, b->seq_gaps, b->bad_events, b->foreign);

    if (b->o.json_path) {
        json_t *codes = json_object();
        for (int c = 0; c < b->ncodes; c++)
            json_object_set_new(codes, b->codes[c], json_integer(b->code_count[c]));
        j = json_pack("{s:s, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:o, "
                      "s:o, s:o, s:I, s:I}",
                      "tag", b->tag, "orders", (json_int_t)n, "publish_s", pub_s, "delivered",
                      (json_int_t)b->delivered, "delivery_failed", (json_int_t)b->delivery_failed,
                      "ended", (json_int_t)b->ended, "running", (json_int_t)b->running, "failed",
                      (json_int_t)b->failed, "cancelled", (json_int_t)b->cancelled, "not_ended",
                      (json_int_t)(n - b->ended), "e2e_s", e2e_s, "sagas_per_s",
                      e2e_s > 0 ? (double)b->running / e2e_s : 0.0, "steady_sagas_per_s", mid_rate,
                      "latency_running", dist_json(&dl), "latency_accepted", dist_json(&da),
                      "failure_codes", codes, "seq_gaps", (json_int_t)b->seq_gaps, "dup_events",
                      (json_int_t)b->dup_events);
        json_object_set_new(j, "last_accepted_s", json_real(acc_s));
        json_object_set_new(j, "cpu_s", json_real(cpu_s));
        if (j == NULL || json_dump_file(j, b->o.json_path, JSON_COMPACT) < 0)
            fprintf(stderr, "meshbench: cannot write %s\n", b->o.json_path);
        json_decref(j);
    }
    free(lat);
    free(acc);
    free(ends);
    return b->running == n ? EXIT_OK : EXIT_NOTALL;
}

/* ------------------------------------------------------------------ main */

static long ended(bench *b)
{
    return __atomic_load_n(&b->ended, __ATOMIC_RELAXED);
}

int main(int argc, char **argv)
{
    bench b;
    pthread_t th;
    int rc = EXIT_KAFKA, started = 0;
    unsigned char rnd[3];
    FILE *ur;

    memset(&b, 0, sizeof(b));
    mb_log_init("meshbench");
    if (mb_version_flag(argc, argv, "meshbench"))
        return EXIT_OK;
    if (parse_args(argc, argv, &b.o) < 0)
        return EXIT_USAGE;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    signal(SIGPIPE, SIG_IGN);
    /* a run tag keeps this run's events apart from any earlier run on the same topic */
    ur = fopen("/dev/urandom", "rb");
    if (ur == NULL || fread(rnd, 1, sizeof(rnd), ur) != sizeof(rnd)) {
        fprintf(stderr, "meshbench: /dev/urandom unreadable\n");
        if (ur)
            fclose(ur);
        return EXIT_USAGE;
    }
    fclose(ur);
    snprintf(b.tag, sizeof(b.tag), "%02x%02x%02x", rnd[0], rnd[1], rnd[2]);
    b.orders_topic = mb_kafka_topic(MB_TOPIC_ORDERS);
    b.status_topic = mb_kafka_topic(MB_TOPIC_STATUS);
    b.rec = calloc((size_t)b.o.orders, sizeof(*b.rec));
    if (b.rec == NULL) {
        fprintf(stderr, "meshbench: out of memory\n");
        return EXIT_USAGE;
    }
    if (b.o.events_path) {
        b.events = fopen(b.o.events_path, "w");
        if (b.events == NULL) {
            fprintf(stderr, "meshbench: %s: %s\n", b.o.events_path, strerror(errno));
            goto out;
        }
    }
    if (consumer_new(&b) < 0 || producer_new(&b) < 0)
        goto out;
    if (pthread_create(&th, NULL, consume_thread, &b) != 0) {
        fprintf(stderr, "meshbench: pthread_create failed\n");
        goto out;
    }
    started = 1;
    b.t0_ns = mono_ns();
    if (publish_all(&b) < 0) {
        rc = EXIT_NOTALL;
        __atomic_store_n(&b.stop, 1, __ATOMIC_RELAXED);
        goto out;
    }
    b.pub_done_ns = mono_ns();
    {
        int64_t deadline = b.t0_ns + (int64_t)b.o.timeout_s * 1000000000;
        int64_t next_note = mono_ns() + 1000000000;
        while (!interrupted && ended(&b) < b.o.orders && mono_ns() < deadline) {
            rd_kafka_poll(b.producer, 50);
            if (!b.o.quiet && mono_ns() >= next_note) {
                fprintf(stderr,
                        "meshbench: %.0f s: %ld of %ld ended (%ld Running, %ld "
                        "Failed)\n",
                        (double)(mono_ns() - b.t0_ns) / 1e9, ended(&b), b.o.orders,
                        __atomic_load_n(&b.running, __ATOMIC_RELAXED),
                        __atomic_load_n(&b.failed, __ATOMIC_RELAXED));
                next_note += 1000000000;
            }
        }
    }
    if (b.ended < b.o.orders)
        fprintf(stderr, "meshbench: %s: %ld of %ld orders ended\n",
                interrupted ? "interrupted" : "timeout", b.ended, b.o.orders);
    __atomic_store_n(&b.stop, 1, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    started = 0;
    mb_kafka_flush(b.producer, 5000);
    rc = report(&b);
out:
    __atomic_store_n(&b.stop, 1, __ATOMIC_RELAXED);
    if (started)
        pthread_join(th, NULL);
    if (b.consumer) {
        rd_kafka_consumer_close(b.consumer);
        rd_kafka_destroy(b.consumer);
    }
    if (b.producer) {
        rd_kafka_purge(b.producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(b.producer, 0);
        rd_kafka_destroy(b.producer);
    }
    if (b.events)
        fclose(b.events);
    free(b.rec);
    return rc;
}
