/* mb_engine.c: wiring of the saga engine to the loop, the store and the cloud. */
#include "mb_engine.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "mb_catalog.h"
#include "mb_cloud.h"
#include "mb_http.h"
#include "mb_log.h"
#include "mb_saga.h"
#include "mb_sagadef.h"

#ifndef MESHBUY_VERSION
#define MESHBUY_VERSION "dev"
#endif

struct mb_engine {
    mb_http *http;
    mb_cloud *cloud;
    mb_catalog *catalog;
    mb_saga *saga;
    mb_loop *loop;                /* borrowed */
    unsigned long long wake_seen; /* acceptances + cancels + stirs at the last tick */
};

/* An idle saga waits for its next due job; it claims at once when this worker accepted an
 * order or applied a cancel, or when the loop saw any worker's scripts queue work. */
static void tick(void *ctx)
{
    mb_engine *e = ctx;
    const mb_worker_metrics *m = mb_loop_metrics(e->loop);
    unsigned long long w = m->orders_accepted + m->cancels + mb_loop_stirred(e->loop);

    mb_saga_set_split(e->saga, mb_loop_peers_current(e->loop));
    if (w != e->wake_seen) {
        e->wake_seen = w;
        mb_saga_wake(e->saga);
    }
    mb_saga_tick(e->saga);
}

static void drain(void *ctx)
{
    mb_saga_drain(((mb_engine *)ctx)->saga);
}

static size_t inflight(void *ctx)
{
    return mb_saga_inflight(((mb_engine *)ctx)->saga);
}

/* One histogram per step of every saga, labelled by both (the create and the delete share
 * step names: validate, precheck, restart, finish).  The engine numbers the steps of the
 * definitions it was given (mb_saga_defs, below) in their order. */
static void step_histograms(const mb_saga *saga, struct evbuffer *out)
{
    int k = 0;

    evbuffer_add_printf(out, "# HELP meshbuy_step_execution_seconds One execution of a saga "
                             "step, start to done or poll.\n"
                             "# TYPE meshbuy_step_execution_seconds histogram\n");
    for (size_t d = 0; d < mb_saga_defs_count; d++) {
        const char *sg = mb_saga_defs[d]->name;
        for (int i = 0; i < mb_saga_defs[d]->nsteps && k < mb_saga_steps(saga); i++, k++) {
            const char *name = mb_saga_step_name(saga, k);
            mb_saga_hist h;
            mb_saga_step_hist(saga, k, &h);
            for (int b = 0; b < MB_SAGA_BUCKETS; b++)
                evbuffer_add_printf(out,
                                    "meshbuy_step_execution_seconds_bucket{saga=\"%s\","
                                    "step=\"%s\",le=\"%g\"} %llu\n",
                                    sg, name, mb_saga_bucket_le[b],
                                    (unsigned long long)h.bucket[b]);
            evbuffer_add_printf(
                out,
                "meshbuy_step_execution_seconds_bucket{saga=\"%s\",step=\"%s\",le=\"+Inf\"} "
                "%llu\n"
                "meshbuy_step_execution_seconds_sum{saga=\"%s\",step=\"%s\"} %.6f\n"
                "meshbuy_step_execution_seconds_count{saga=\"%s\",step=\"%s\"} %llu\n",
                sg, name, (unsigned long long)h.bucket[MB_SAGA_BUCKETS], sg, name, h.sum, sg, name,
                (unsigned long long)h.bucket[MB_SAGA_BUCKETS]);
        }
    }
}

/* One histogram's samples (HELP and TYPE written by the caller); labels is the text inside
 * the braces before le. */
static void hist_samples(struct evbuffer *out, const char *name, const char *labels,
                         const double *le, const mb_saga_hist *h)
{
    for (int b = 0; b < MB_SAGA_BUCKETS; b++)
        evbuffer_add_printf(out, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, le[b],
                            (unsigned long long)h->bucket[b]);
    evbuffer_add_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n%s_sum{%s} %.6f\n%s_count{%s} %llu\n",
                        name, labels, (unsigned long long)h->bucket[MB_SAGA_BUCKETS], name, labels,
                        h->sum, name, labels, (unsigned long long)h->bucket[MB_SAGA_BUCKETS]);
}

/* A checkpoint's time by phase: whether a step waits on Redis, on the Redis thread's queue
 * or on this worker's own loop. */
static void checkpoint_histograms(const mb_saga *saga, struct evbuffer *out)
{
    char labels[32];

    evbuffer_add_printf(out, "# HELP meshbuy_checkpoint_seconds A checkpoint's time by phase: "
                             "held in the worker until sent, queue (behind the Redis thread's "
                             "earlier requests), redis (the round trip), back (until the batch's "
                             "completion runs on the loop).\n"
                             "# TYPE meshbuy_checkpoint_seconds histogram\n");
    for (int p = 0; p < MB_SAGA_CK_PHASES; p++) {
        mb_saga_hist h;
        mb_saga_checkpoint_hist(saga, p, &h);
        snprintf(labels, sizeof(labels), "phase=\"%s\"", mb_saga_ck_phases[p]);
        hist_samples(out, "meshbuy_checkpoint_seconds", labels, mb_saga_checkpoint_le, &h);
    }
}

/* Saga durations by saga and final status, and the sagas in memory by step (every step of
 * every saga, zeros included, so a series never disappears). */
static void saga_families(const mb_saga *saga, struct evbuffer *out)
{
    int n = mb_saga_steps(saga), k = 0;
    uint64_t *at = calloc(n > 0 ? (size_t)n : 1, sizeof(*at));
    char labels[160];

    evbuffer_add_printf(out, "# HELP meshbuy_saga_duration_seconds Sagas from acceptance to "
                             "their end, by saga and final status.\n"
                             "# TYPE meshbuy_saga_duration_seconds histogram\n");
    for (size_t d = 0; d < mb_saga_defs_count; d++) {
        for (int o = 0; o < MB_SAGA_OUTCOMES; o++) {
            mb_saga_hist h;
            mb_saga_duration_hist(saga, d, o, &h);
            snprintf(labels, sizeof(labels), "saga=\"%s\",outcome=\"%s\"", mb_saga_defs[d]->name,
                     mb_saga_outcomes[o]);
            hist_samples(out, "meshbuy_saga_duration_seconds", labels, mb_saga_duration_le, &h);
        }
    }
    if (at == NULL)
        return;
    mb_saga_inflight_steps(saga, at);
    evbuffer_add_printf(out, "# HELP meshbuy_sagas_inflight Sagas held in memory by this "
                             "worker, by saga and the step they are at.\n"
                             "# TYPE meshbuy_sagas_inflight gauge\n");
    for (size_t d = 0; d < mb_saga_defs_count; d++)
        for (int i = 0; i < mb_saga_defs[d]->nsteps && k < n; i++, k++)
            evbuffer_add_printf(out, "meshbuy_sagas_inflight{saga=\"%s\",step=\"%s\"} %llu\n",
                                mb_saga_defs[d]->name, mb_saga_step_name(saga, k),
                                (unsigned long long)at[k]);
    free(at);
}

/* What the worker learnt of the steps that poll (a release installing, deleting): a series
 * appears once one such effect ended here. */
static void poll_usual(const mb_saga *saga, struct evbuffer *out)
{
    static const char *const phase[2] = {"run", "compensate"};
    int k = 0;

    evbuffer_add_printf(out, "# HELP meshbuy_poll_usual_seconds The usual time of a polled "
                             "effect, its first poll to the last that saw it under way, as "
                             "this worker learnt it.\n"
                             "# TYPE meshbuy_poll_usual_seconds gauge\n");
    for (size_t d = 0; d < mb_saga_defs_count; d++)
        for (int i = 0; i < mb_saga_defs[d]->nsteps && k < mb_saga_steps(saga); i++, k++)
            for (int c = 0; c < 2; c++) {
                long long ms = mb_saga_poll_usual_ms(saga, k, c);
                if (ms >= 0)
                    evbuffer_add_printf(out,
                                        "meshbuy_poll_usual_seconds{saga=\"%s\",step=\"%s\","
                                        "phase=\"%s\"} %.3f\n",
                                        mb_saga_defs[d]->name, mb_saga_step_name(saga, k), phase[c],
                                        (double)ms / 1000);
            }
}

/* One family, HELP and TYPE first (promtool check metrics), one sample. */
static void family(struct evbuffer *out, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                        v);
}

static void metrics(void *ctx, struct evbuffer *out)
{
    mb_engine *e = ctx;
    mb_saga_stats s;
    mb_http_counters h;
    mb_cloud_counters c;
    unsigned long long perm;

    mb_saga_stats_get(e->saga, &s);
    mb_http_stats(e->http, &h);
    mb_cloud_stats(e->cloud, &c);
    family(out, "meshbuy_saga_claims_total", "counter", "Jobs claimed (leased) by this worker.",
           (unsigned long long)s.claimed);
    family(out, "meshbuy_saga_steps_total", "counter", "Saga steps completed.",
           (unsigned long long)s.steps_done);
    evbuffer_add_printf(
        out,
        "# HELP meshbuy_sagas_ended_total Sagas this worker brought to an end, by final status.\n"
        "# TYPE meshbuy_sagas_ended_total counter\n"
        "meshbuy_sagas_ended_total{status=\"Running\"} %llu\n"
        "meshbuy_sagas_ended_total{status=\"Failed\"} %llu\n"
        "meshbuy_sagas_ended_total{status=\"Cancelled\"} %llu\n"
        "meshbuy_sagas_ended_total{status=\"NeedsAttention\"} %llu\n"
        "meshbuy_sagas_ended_total{status=\"Deleted\"} %llu\n",
        (unsigned long long)s.running, (unsigned long long)s.failed,
        (unsigned long long)s.cancelled, (unsigned long long)s.attention,
        (unsigned long long)s.deleted);
    family(out, "meshbuy_saga_retries_total", "counter",
           "Steps rescheduled with backoff after a transient error.",
           (unsigned long long)s.retries);
    family(out, "meshbuy_saga_lost_total", "counter",
           "Jobs dropped by this worker: stale fence (another worker holds the job) or store "
           "error.",
           (unsigned long long)s.lost);
    family(out, "meshbuy_checkpoint_resends_total", "counter",
           "Checkpoints sent again after an unknown outcome (Redis stall or lost reply).",
           (unsigned long long)s.resends);
    family(out, "meshbuy_checkpoints_held", "gauge",
           "Checkpoints held back while the worker's checkpoint requests out at Redis are at "
           "their bound: Redis is behind.",
           (unsigned long long)s.ck_held);
    /* A 404 the caller expected (observe-before-act reads, deletes of what is gone) reaches
     * the HTTP layer as a permanent error; it is counted apart, as "absent". */
    perm = h.perm > c.absent ? (unsigned long long)(h.perm - c.absent) : 0;
    evbuffer_add_printf(
        out,
        "# HELP meshbuy_cloud_requests_total Cloud API requests completed, by outcome: ok, "
        "again (transient: timeout, 5xx, 429), permanent (other errors), absent (a 404 the "
        "caller expected: not an error).\n"
        "# TYPE meshbuy_cloud_requests_total counter\n"
        "meshbuy_cloud_requests_total{outcome=\"ok\"} %llu\n"
        "meshbuy_cloud_requests_total{outcome=\"again\"} %llu\n"
        "meshbuy_cloud_requests_total{outcome=\"permanent\"} %llu\n"
        "meshbuy_cloud_requests_total{outcome=\"absent\"} %llu\n",
        (unsigned long long)h.ok, (unsigned long long)h.again, perm, (unsigned long long)c.absent);
    evbuffer_add_printf(
        out,
        "# HELP meshbuy_cloud_calls Cloud API calls now: on the wire (holding one of "
        "MESHBUY_HTTP_MAX_ACTIVE slots) or waiting for a slot. Calls waiting for long: the "
        "worker's calls are at their bound, or the cloud is slow.\n"
        "# TYPE meshbuy_cloud_calls gauge\n"
        "meshbuy_cloud_calls{state=\"wire\"} %llu\n"
        "meshbuy_cloud_calls{state=\"waiting\"} %llu\n",
        (unsigned long long)h.active, (unsigned long long)h.queued);
    family(out, "meshbuy_cloud_connections_total", "counter",
           "Connections opened to the cloud APIs.", (unsigned long long)h.new_conns);
    family(out, "meshbuy_cloud_retries_total", "counter",
           "Cloud requests sent again after a transient failure.", (unsigned long long)c.retries);
    family(out, "meshbuy_cloud_refused_total", "counter",
           "Cloud changes not sent: the job's lease was lost or too short for the call.",
           (unsigned long long)c.refused);
    step_histograms(e->saga, out);
    checkpoint_histograms(e->saga, out);
    saga_families(e->saga, out);
    poll_usual(e->saga, out);
}

/* A cloud change starts only while the job's lease has the call's timeout + the margin
 * left (mb_saga's guard).  A lease of at least 3 timeouts + the margin leaves room for
 * calls between renewals; a shorter one would refuse most of them. */
static int check_lease(const mb_conf *conf, char *err, size_t errlen)
{
    long long lease = mb_conf_int(conf, "MESHBUY_LEASE_MS");
    long long timeout = mb_conf_int(conf, "MESHBUY_HTTP_TIMEOUT_MS");
    long long margin = mb_conf_int(conf, "MESHBUY_LEASE_MARGIN_MS");

    if (lease >= 3 * timeout + margin)
        return 0;
    snprintf(err, errlen,
             "MESHBUY_LEASE_MS=%lld is too short: it must be at least 3 x "
             "MESHBUY_HTTP_TIMEOUT_MS (%lld) + MESHBUY_LEASE_MARGIN_MS (%lld) = %lld, so that "
             "a cloud call never outlives the job's lease",
             lease, timeout, margin, 3 * timeout + margin);
    return -1;
}

int mb_engine_check_conf(const mb_conf *conf, char *err, size_t errlen)
{
    static const char *const needed[] = {"MESHBUY_CCE_URL", "MESHBUY_VPC_URL", "MESHBUY_K8S_URL",
                                         "MESHBUY_AK", "MESHBUY_SK"};

    if (!mb_conf_bool(conf, "MESHBUY_RUN_SAGAS"))
        return 0;
    /* No default credentials anywhere (a container without them must not start against
     * a simulator's keys): say what to set, and how to run without cloud access. */
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
        if (mb_conf_str(conf, needed[i]) == NULL) {
            snprintf(err, errlen,
                     "%s: required when sagas run: set MESHBUY_CCE_URL, MESHBUY_VPC_URL, "
                     "MESHBUY_K8S_URL, MESHBUY_AK and MESHBUY_SK (or MESHBUY_SK_FILE); "
                     "MESHBUY_RUN_SAGAS=false runs intake and the status relay without them",
                     needed[i]);
            return -1;
        }
    }
    return check_lease(conf, err, errlen);
}

/* Open files kept for what is not a cloud call: Kafka (a socket or two per broker per
 * client), Redis, the admin server's clients, logs, libevent's own descriptors. */
#define FD_RESERVE 128

/* Every cloud call on the wire and every idle connection kept is a socket.  Past the
 * process's open-file limit, a connect (and, worse, a Redis or Kafka reconnect) fails with
 * EMFILE; so the calls and idle connections are cut to fit, half and half, and said so.
 * main() has already raised the soft limit to the hard one. */
static void fit_fd_limit(long *active, long *idle)
{
    struct rlimit rl;
    long room, want = *active + *idle;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        (long long)rl.rlim_cur >= (long long)want + FD_RESERVE)
        return;
    room = (long)rl.rlim_cur - FD_RESERVE;
    if (room < 2)
        room = 2;
    if (*active > room / 2)
        *active = room / 2;
    if (*idle > room - *active)
        *idle = room - *active;
    mb_warn("engine",
            "open files limit %llu is below MESHBUY_HTTP_MAX_ACTIVE + MESHBUY_HTTP_MAX_CONNECTIONS "
            "(%ld) + %d for Kafka, Redis and the admin server: using %ld calls on the wire and "
            "%ld idle connections (raise the limit: ulimit -n, systemd LimitNOFILE=, the "
            "container runtime's nofile)",
            (unsigned long long)rl.rlim_cur, want, FD_RESERVE, *active, *idle);
}

mb_engine *mb_engine_new(mb_loop *loop, const mb_conf *conf, char *err, size_t errlen)
{
    mb_engine *e = calloc(1, sizeof(*e));
    char ua[256];
    long active = mb_conf_int(conf, "MESHBUY_HTTP_MAX_ACTIVE");
    long idle = mb_conf_int(conf, "MESHBUY_HTTP_MAX_CONNECTIONS");

    fit_fd_limit(&active, &idle);
    mb_http_opts ho = {
        .connect_timeout_ms = mb_conf_int(conf, "MESHBUY_CONNECT_TIMEOUT_MS"),
        .timeout_ms = mb_conf_int(conf, "MESHBUY_HTTP_TIMEOUT_MS"),
        .ca_file = mb_conf_str(conf, "MESHBUY_CA_FILE"),
        .max_active = active,
        .max_connections = idle,
        .ak = mb_conf_str(conf, "MESHBUY_AK"),
        .sk = mb_conf_str(conf, "MESHBUY_SK"),
        .user_agent = ua, /* cloudsim and cloud audit logs tell workers apart by it */
    };
    mb_cloud_opts co = {
        .cce_url = mb_conf_str(conf, "MESHBUY_CCE_URL"),
        .vpc_url = mb_conf_str(conf, "MESHBUY_VPC_URL"),
        .k8s_url = mb_conf_str(conf, "MESHBUY_K8S_URL"),
        .retry_base_ms = mb_conf_int(conf, "MESHBUY_CALL_RETRY_BASE_MS"),
        .retry_max_ms = mb_conf_int(conf, "MESHBUY_CALL_RETRY_MAX_MS"),
        .retry_after_max_ms = mb_conf_int(conf, "MESHBUY_RETRY_AFTER_MAX_MS"),
    };
    mb_saga_opts so = {
        .worker_id = mb_loop_worker_id(loop),
        .lease_ms = mb_conf_int(conf, "MESHBUY_LEASE_MS"),
        .lease_margin_ms = mb_conf_int(conf, "MESHBUY_LEASE_MARGIN_MS"),
        .max_inflight = (size_t)mb_conf_int(conf, "MESHBUY_MAX_INFLIGHT"),
        /* One round of calls on the wire keeps the client busy: in the bench's 10,000-order
         * run (100 ms calls), 2,048 on the wire with as many out took 14-15 s at 57-59 MB,
         * with twice as many out 14 s at 72 MB, and 1,024 with twice as many out 20-21 s. */
        .max_cloud_backlog = (size_t)active,
        .park_on_failure = strcmp(mb_conf_str(conf, "MESHBUY_ON_FAILURE"), "park") == 0,
        .backoff_base_ms = mb_conf_int(conf, "MESHBUY_BACKOFF_BASE_MS"),
        .backoff_max_ms = mb_conf_int(conf, "MESHBUY_BACKOFF_MAX_MS"),
        .poll_ms = mb_conf_int(conf, "MESHBUY_POLL_MS"),
        .poll_in_memory_ms = mb_conf_int(conf, "MESHBUY_POLL_IN_MEMORY_MS"),
        .poll_learn = mb_conf_bool(conf, "MESHBUY_POLL_LEARN"),
        /* Past what the client keeps busy, a waiting job holds memory for nothing: Redis
         * keeps it until it is due. */
        .poll_in_memory_jobs = (size_t)active,
        .step_deadline_ms = mb_conf_int(conf, "MESHBUY_STEP_DEADLINE_MS"),
        .compensate_deadline_ms = mb_conf_int(conf, "MESHBUY_COMPENSATE_DEADLINE_MS"),
        .defs = mb_saga_defs,
        .ndefs = mb_saga_defs_count,
    };

    if (e == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(ua, sizeof(ua), "meshworker/%s (%s)", MESHBUY_VERSION, mb_loop_worker_id(loop));
    if (mb_engine_check_conf(conf, err, errlen) < 0)
        goto err;
    e->catalog = mb_catalog_load(mb_conf_str(conf, "MESHBUY_CATALOG"), err, errlen);
    if (e->catalog == NULL)
        goto err;
    e->http = mb_http_new(mb_loop_base(loop), &ho, err, errlen);
    if (e->http == NULL)
        goto err;
    e->cloud = mb_cloud_new(e->http, &co, err, errlen);
    if (e->cloud == NULL)
        goto err;
    e->loop = loop;
    e->saga =
        mb_saga_new(mb_loop_base(loop), mb_loop_rq(loop), e->cloud, e->catalog, &so, err, errlen);
    if (e->saga == NULL)
        goto err;
    mb_saga_set_on_events(e->saga, mb_loop_events_queued, loop);
    mb_loop_set_saga(loop, &(mb_loop_saga){e, tick, drain, inflight, metrics});
    return e;
err:
    mb_engine_free(e);
    return NULL;
}

void mb_engine_free(mb_engine *e)
{
    if (e == NULL)
        return;
    /* Cloud first: it cancels every call, so no callback reaches a freed job. */
    mb_cloud_free(e->cloud);
    mb_http_free(e->http);
    mb_saga_free(e->saga);
    mb_catalog_free(e->catalog);
    free(e);
}
