/* test_saga.c: the saga engine on a fake saga of four scripted steps (no network, no
 * cloud), against a private redis-server: the happy path, a step past its deadline, a
 * compensation that gives up, park mode, cancel at every step boundary, a stale fence
 * mid-run, a replay from a step, an unknown saga, a stored order that no longer
 * parses, a checkpoint re-sent across a Redis stall, a lease lost in one, a claim whose
 * reply is lost in one, and polls
 * waited out in memory (and handed back by a drain).  Each test
 * drives the loop until a condition holds, within a bound. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "loop_util.h"
#include "mb_event.h"
#include "mb_saga.h"
#include "mb_sagadef.h"
#include "mb_step.h"
#include "mb_rq.h"
#include "mb_store.h"
#include "redis_util.h"

#define ACCOUNT  "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
#define TP       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define LEASE_MS 60000
#define BOUND_MS 20000 /* generous: the machine may be loaded and sanitized */
#define STALL_MS 3500  /* Redis SIGSTOPped this long (the queue's store times out at 2 s) */
#define HANG_MS  2500  /* a fake call that takes this long */

/* The lease of the lost-lease test: shorter than the stall and the hung call. */
#define SHORT_LEASE_MS 1500

/* ================================================================ a private Redis */

static int start_redis(void **state)
{
    (void)state;
    return redis_start();
}

static int teardown_all(void **state)
{
    (void)state;
    redis_cleanup();
    return 0;
}

static mb_store *open_store(const char *worker)
{
    mb_error e;
    mb_store *st;

    mb_error_clear(&e);
    st = mb_store_new(url, 16, 2000, worker, &e);
    assert_non_null(st);
    assert_int_equal(mb_store_ping(st, &e), MB_OK);
    return st;
}

/* ================================================================ the fake saga */

enum { ALPHA, BETA, GAMMA, DELTA, NFAKE };
static const char *const names[NFAKE] = {"alpha", "beta", "gamma", "delta"};

/* What each step does this test.  Zeroed by setup. */
typedef struct script {
    int fail_runs[NFAKE];  /* this many runs fail permanently ("Broken") */
    int again[NFAKE];      /* every run fails transiently ("Unavailable") */
    int undo_again[NFAKE]; /* every undo fails transiently */
    int cancel_in[NFAKE];  /* the run sets the job's cancel flag, as a cancel order would */
    int steal_in[NFAKE];   /* the run lets another worker take the job over (fence bumped) */
    int stall_in[NFAKE];   /* once: the run stops Redis (SIGSTOP, stall_len_ms), then acts */
    int hang_in[NFAKE];    /* once: the run waits on a call that takes HANG_MS (or hang_ms) */
    long hang_ms;          /* 0: HANG_MS */
    long extend_ms;        /* with stall_in: first, as a renewal whose reply is lost would,
                              the lease in Redis is made to end this much later */
    int polls[NFAKE];      /* the run waits for the "cloud" this many times (MB_STEP_POLL) */
    long poll_ms[NFAKE];   /* ... asking to look again this much later (0: the engine's) */
    int poll_spread;       /* with polls: an order whose id ends in "-n" looks again
                              after 5 x (1 + n) ms, each at its own pace */
    int drain_in_poll;     /* the first poll drains the engine */
    long effect_ms[NFAKE]; /* the run's effect ends this long after its first poll: it polls
                              until then (a release installing), counting in looks[] */
    int unsplit_in[NFAKE]; /* the run turns split checkpoints off, as when a worker of the
                              older layout joins */
} script;

static script sc;
/* The fake steps, defined below; not const: the local-step tests mark some local. */
static mb_step fake_alpha, fake_beta, fake_gamma, fake_delta;
static mb_step *const fake_steps[] = {&fake_alpha, &fake_beta, &fake_gamma, &fake_delta};
static int runs[NFAKE], undos[NFAKE];
static char calls[512][16]; /* "run alpha", "undo gamma", in order; a retry after a
                               transient error is not a new call */
static int ncalls;
static int retrying[2][NFAKE]; /* [0] run, [1] undo: the last one failed transiently */
static int looks;              /* polls of an effect (sc.effect_ms) that was still under way */
static long long effect_t0;    /* monotonic ms of the current effect's first poll; 0: none */
static mb_store *intruder;     /* the other worker */
static mb_store *store;        /* the test's own view of Redis (the engine has the queue's) */
static struct event_base *base;
static long long stall_end_ms; /* monotonic: when the current Redis stall ends */
static struct mb_saga *saga;   /* the engine under test */

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_cont(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    kill(redis_pid, SIGCONT);
}

static long stall_len_ms = STALL_MS; /* the next stall's length */

/* Stops Redis now; the loop continues it after stall_len_ms. */
static void stall_redis(void)
{
    struct timeval tv = {stall_len_ms / 1000, (stall_len_ms % 1000) * 1000};

    assert_int_equal(kill(redis_pid, SIGSTOP), 0);
    stall_end_ms = mono_ms() + stall_len_ms;
    assert_int_equal(event_base_once(base, -1, EV_TIMEOUT, on_cont, NULL, &tv), 0);
}

/* Moves the job's lease end (and due score) to ms from now on Redis's clock, lease
 * owner and fence unchanged. */
static void extend_lease(const char *order_id, const char *key, long ms)
{
    static const char script[] = "local t = redis.call('TIME')\n"
                                 "local u = t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2]\n"
                                 "redis.call('HSET', KEYS[1], 'lease_until', u)\n"
                                 "redis.call('ZADD', KEYS[2], u, ARGV[1])\n"
                                 "return 1\n";
    int shard = mb_store_shard_of(store, key);
    redisContext *c = redisConnectUnix(sock);
    redisReply *r;
    char job[160], due[32];

    assert_true(c != NULL && c->err == 0);
    snprintf(job, sizeof(job), "mb:{s%d}:job:%s", shard, order_id);
    snprintf(due, sizeof(due), "mb:{s%d}:due", shard);
    r = redisCommand(c, "EVAL %s 2 %s %s %s %ld", script, job, due, order_id, ms);
    assert_true(r != NULL && r->type == REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    redisFree(c);
}

/* The fake call's completion (arg: the engine's handle from mb_step_io). */
static void on_hang_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    mb_step_done(arg, NULL);
}

static void note(int undo, int i)
{
    if (retrying[undo][i]) {
        retrying[undo][i] = 0;
        return;
    }
    if (ncalls < (int)(sizeof(calls) / sizeof(calls[0])))
        snprintf(calls[ncalls++], sizeof(calls[0]), "%s %s", undo ? "undo" : "run", names[i]);
}

/* Another worker claims every job as if our leases had run out: each fence moves on.
 * Lease ends are Redis's clock, so the due scores are moved back by hand. */
static void steal(void)
{
    static const char expire[] = "for _, k in ipairs(redis.call('KEYS', 'mb:*:due')) do\n"
                                 "  for _, id in ipairs(redis.call('ZRANGE', k, 0, -1)) do\n"
                                 "    redis.call('ZADD', k, 0, id)\n"
                                 "  end\n"
                                 "end\n"
                                 "return 1\n";
    redisContext *c = redisConnectUnix(sock);
    mb_job **jobs = NULL;
    size_t n = 0;
    mb_error e;

    assert_true(c != NULL && c->err == 0);
    freeReplyObject(redisCommand(c, "EVAL %s 0", expire));
    redisFree(c);
    mb_error_clear(&e);
    assert_int_equal(mb_store_claim(intruder, LEASE_MS, 16, "intruder-1", 0, &jobs, &n, &e), MB_OK);
    assert_int_equal(n, 1);
    mb_job_free_array(jobs, n);
}

static void cancel_job(mb_store *st, const char *order_id)
{
    int found = 0;
    mb_error e;

    mb_error_clear(&e);
    assert_int_equal(mb_store_cancel(st, order_id, NULL, &found, NULL, 0, &e), MB_OK);
    assert_true(found);
}

/* Program counter of a fake run: it saves once (as a step does before a side effect
 * whose undo needs what it observed), then acts. */
enum { PC_OBSERVE, PC_ACT, PC_CALLED };

static mb_step_rc fake_run(mb_sjob *j, int i)
{
    if (j->pc == PC_OBSERVE && sc.effect_ms[i] > 0) {
        if (effect_t0 == 0)
            effect_t0 = mono_ms();
        if (mono_ms() < effect_t0 + sc.effect_ms[i]) {
            looks++;
            json_object_set_new(j->ck, "observed", json_true()); /* as "created": undo it */
            return MB_STEP_POLL;
        }
        effect_t0 = 0;
    }
    if (j->pc == PC_OBSERVE && sc.polls[i] > 0) { /* not there yet: look again later */
        sc.polls[i]--;
        j->poll_ms = sc.poll_spread ? 5 * (1 + strtol(strrchr(j->job->order_id, '-') + 1, NULL, 10))
                                    : sc.poll_ms[i];
        if (sc.drain_in_poll) {
            sc.drain_in_poll = 0;
            mb_saga_drain(saga);
        }
        return MB_STEP_POLL;
    }
    if (j->pc == PC_OBSERVE) {
        note(0, i);
        runs[i]++;
        json_object_set_new(j->ck, "observed", json_true());
        j->pc = PC_ACT;
        if (fake_steps[i]->local) /* a local step saves nothing and waits on nothing */
            return fake_run(j, i);
        return MB_STEP_SAVE;
    }
    if (sc.stall_in[i]) {
        sc.stall_in[i] = 0;
        if (sc.extend_ms > 0)
            extend_lease(j->job->order_id, j->job->key, sc.extend_ms);
        stall_redis();
    }
    if (sc.hang_in[i]) {
        long ms = sc.hang_ms > 0 ? sc.hang_ms : HANG_MS;
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        sc.hang_in[i] = 0;
        assert_int_equal(event_base_once(base, -1, EV_TIMEOUT, on_hang_done, mb_step_io(j), &tv),
                         0);
        j->pc = PC_CALLED;
        return MB_STEP_WAIT;
    }
    if (sc.cancel_in[i])
        cancel_job(store, j->job->order_id);
    if (sc.steal_in[i])
        steal();
    if (sc.again[i]) {
        retrying[0][i] = 1;
        mb_error_set(&j->err, MB_AGAIN, "Unavailable", "%s: the cloud answered 503", names[i]);
        return MB_STEP_ERROR;
    }
    if (sc.fail_runs[i] > 0) {
        sc.fail_runs[i]--;
        return mb_step_fail(j, "Broken", "%s broke", names[i]);
    }
    json_object_set_new(j->ck, "did", json_integer(runs[i]));
    if (sc.unsplit_in[i])
        mb_saga_set_split(saga, 0);
    if (i == DELTA) /* what an earlier step recorded, as open_port reads precheck's */
        json_object_set(j->ck, "alpha_did", json_object_get(mb_step_ck_of(j, "alpha"), "did"));
    snprintf(j->message, sizeof(j->message), "%s did it", names[i]);
    return MB_STEP_DONE;
}

static mb_step_rc fake_undo(mb_sjob *j, int i)
{
    note(1, i);
    undos[i]++;
    assert_true(json_is_true(json_object_get(j->ck, "observed")));
    if (sc.undo_again[i]) {
        retrying[1][i] = 1;
        mb_error_set(&j->err, MB_AGAIN, "Unavailable", "undo %s: the cloud answered 503", names[i]);
        return MB_STEP_ERROR;
    }
    return MB_STEP_DONE;
}

#define FAKE_RUN(I, NAME)                    \
    static mb_step_rc NAME##_run(mb_sjob *j) \
    {                                        \
        return fake_run(j, I);               \
    }
#define FAKE_UNDO(I, NAME)                    \
    static mb_step_rc NAME##_undo(mb_sjob *j) \
    {                                         \
        return fake_undo(j, I);               \
    }

FAKE_RUN(ALPHA, alpha)
FAKE_UNDO(ALPHA, alpha)
FAKE_RUN(BETA, beta)
FAKE_RUN(GAMMA, gamma)
FAKE_UNDO(GAMMA, gamma)
FAKE_RUN(DELTA, delta)
FAKE_UNDO(DELTA, delta)

static mb_step fake_alpha = {.name = "alpha", .run = alpha_run, .compensate = alpha_undo};
/* beta has nothing to undo: compensation passes it by. */
static mb_step fake_beta = {.name = "beta", .run = beta_run};
static mb_step fake_gamma = {.name = "gamma", .run = gamma_run, .compensate = gamma_undo};
static mb_step fake_delta = {.name = "delta", .run = delta_run, .compensate = delta_undo};

/* Not const: a test sets its step deadline (setup: LEASE_MS; the deadline tests: 500 ms). */
static mb_saga_def fake_def = {
    .name = "fake",
    .order_type = MB_TYPE_ORDER_BUY,
    .parse = mb_order_from_json,
    .steps = (const mb_step *const *)fake_steps,
    .nsteps = NFAKE,
    .active = "Installing",
    .active_event = MB_MESH_INSTALLING,
    .done = "Running",
    .done_event = MB_MESH_RUNNING,
    .start_message = "faking",
    .done_message = "the fake is done",
    .step_deadline_ms = LEASE_MS,
};
static const mb_saga_def *const fake_defs[] = {&fake_def};

/* ================================================================ the engine under test */

static mb_rq *rq;                         /* the engine's Redis queue */
static long lease_ms = LEASE_MS;          /* of the next engine made */
static int split;                         /* ... writes split checkpoints, as a worker whose
                                             peers all do: records are sealed between
                                             executions (the second run of the suite) */
static long poll_in_memory_ms = LEASE_MS; /* of the next engine made */
static size_t poll_in_memory_jobs;        /* of the next engine made (0 = no cap) */
static int poll_learn;                    /* of the next engine made */

static void make_rq(void)
{
    char err[256];

    rq = mb_rq_new(base, &(mb_rq_opts){url, 16, 2000, "test-worker", 0}, err, sizeof(err));
    if (rq == NULL)
        fail_msg("mb_rq_new: %s", err);
}

/* The keys the engine said it queued status events for (mb_saga_set_on_events). */
static char told[32][128];
static int ntold;

static void on_events(void *ctx, const char *key)
{
    (void)ctx;
    if (ntold < 32)
        snprintf(told[ntold], sizeof(told[ntold]), "%s", key);
    ntold++;
}

static void make_saga(int park)
{
    char err[256];
    mb_saga_opts o = {
        .worker_id = "test-worker",
        .lease_ms = lease_ms,
        .max_inflight = 16,
        .park_on_failure = park,
        .backoff_base_ms = 1,
        .backoff_max_ms = 4,
        .poll_ms = 10,
        .poll_in_memory_ms = poll_in_memory_ms,
        .poll_in_memory_jobs = poll_in_memory_jobs,
        .poll_learn = poll_learn,
        .step_deadline_ms = LEASE_MS, /* the fake definition's own deadline applies */
        .compensate_deadline_ms = 500,
        .defs = fake_defs,
        .ndefs = 1,
    };

    saga = mb_saga_new(base, rq, NULL, NULL, &o, err, sizeof(err));
    if (saga == NULL)
        fail_msg("mb_saga_new: %s", err);
    mb_saga_set_split(saga, split);
    mb_saga_set_on_events(saga, on_events, NULL);
}

/* A new engine (and queue: nothing of the old engine may still be out). */
static void remake_saga(int park)
{
    mb_rq_free(rq);
    mb_saga_free(saga);
    make_rq();
    make_saga(park);
}

static void reset_script(void)
{
    for (int i = 0; i < NFAKE; i++)
        fake_steps[i]->local = fake_steps[i]->saves_first = 0; /* setup: plain steps */
    memset(&sc, 0, sizeof(sc));
    memset(runs, 0, sizeof(runs));
    memset(undos, 0, sizeof(undos));
    memset(retrying, 0, sizeof(retrying));
    ncalls = 0;
    ntold = 0;
    looks = 0;
    effect_t0 = 0;
}

static int setup(void **state)
{
    redisContext *c = redisConnectUnix(sock);

    (void)state;
    /* Each test starts from an empty Redis (a command the store does not offer). */
    if (c == NULL || c->err)
        return -1;
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
    reset_script();
    lease_ms = LEASE_MS;
    poll_in_memory_ms = LEASE_MS;
    poll_in_memory_jobs = 0;
    poll_learn = 0;
    fake_def.step_deadline_ms = LEASE_MS;
    stall_end_ms = 0;
    stall_len_ms = STALL_MS;
    base = event_base_new();
    store = open_store("test-worker");
    intruder = open_store("intruder");
    make_rq();
    make_saga(0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    /* A failed stall test must not stop the next. */
    kill(redis_pid, SIGCONT);
    mb_rq_free(rq); /* every request's done runs first, while the engine is alive */
    rq = NULL;
    mb_saga_free(saga);
    saga = NULL;
    mb_store_free(store);
    mb_store_free(intruder);
    event_base_free(base);
    return 0;
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    /* The tests write jobs into Redis as other processes would (intake, meshctl): in a
     * worker the loop's wake-counter read wakes the claim then (mb_loop_stirred); here no
     * loop reads them, so every tick wakes it.  test_idle covers the pacing itself. */
    mb_saga_wake(arg);
    mb_saga_tick(arg);
}

/* Runs the loop (the engine ticking every millisecond, as mb_loop ticks it) until
 * done(arg) holds or limit_ms passes.  Returns done(arg). */
static int drive(int (*done)(void *), void *arg, long limit_ms)
{
    struct timeval tv = {0, 1000};
    struct event *t = event_new(base, -1, EV_PERSIST, tick, saga);
    long end = now_ms() + limit_ms;
    int ok = done(arg);

    event_add(t, &tv);
    while (!ok && now_ms() < end) {
        event_base_loop(base, EVLOOP_ONCE);
        ok = done(arg);
    }
    event_free(t);
    return ok;
}

static mb_job *get_job(const char *order_id)
{
    mb_job *j = NULL;
    mb_error e;

    mb_error_clear(&e);
    assert_int_equal(mb_store_get(store, order_id, &j, &e), MB_OK);
    assert_non_null(j);
    return j;
}

typedef struct want_status {
    const char *order_id;
    const char *status;
} want_status;

static int terminal(const char *status)
{
    static const char *const ends[] = {"Running", "Failed", "Cancelled", "NeedsAttention"};

    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++) {
        if (strcmp(status, ends[i]) == 0)
            return 1;
    }
    return 0;
}

/* The job has reached the status wanted, or another end, and left the engine's memory. */
static int settled(void *arg)
{
    want_status *w = arg;
    mb_job *j = get_job(w->order_id);
    int ok =
        (strcmp(j->status, w->status) == 0 || terminal(j->status)) && mb_saga_inflight(saga) == 0;

    mb_job_free(j);
    return ok;
}

static void drive_to(const char *order_id, const char *status)
{
    want_status w = {order_id, status};
    mb_job *j;

    drive(settled, &w, BOUND_MS);
    j = get_job(order_id);
    if (strcmp(j->status, status) != 0 || mb_saga_inflight(saga) != 0)
        fail_msg("job %s is %s (step %s, %s), not %s", order_id, j->status, j->step, j->error_code,
                 status);
    mb_job_free(j);
}

/* ================================================================ orders and events */

static json_t *accepted_event(const char *order_id, const char *mesh)
{
    char err[256];
    mb_status_event ev = {
        .order_id = order_id,
        .account_id = ACCOUNT,
        .mesh_name = mesh,
        .mesh_id = "mesh-0123456789abcdef", /* every event has one */
        .status = MB_MESH_ACCEPTED,
        .step = "alpha",
        .step_index = 1,
        .step_total = NFAKE,
        .message = "accepted",
        .attempt = 1,
        .seq = 1,
        .traceparent = TP,
    };
    json_t *j = mb_event_build_json(&ev, err, sizeof(err));

    if (j == NULL)
        fail_msg("event build: %s", err);
    return j;
}

/* Whether some order holds the mesh name (the store's name key; a command it does not offer). */
static int name_held(const char *mesh)
{
    char key[128], k[192];
    redisContext *c = redisConnectUnix(sock);
    redisReply *r;
    int held;

    assert_true(c != NULL && c->err == 0);
    snprintf(key, sizeof(key), "%s/%s", ACCOUNT, mesh);
    snprintf(k, sizeof(k), "mb:{s%d}:name:%s", mb_store_shard_of(store, key), key);
    r = redisCommand(c, "EXISTS %s", k);
    assert_non_null(r);
    held = (int)r->integer;
    freeReplyObject(r);
    redisFree(c);
    return held;
}

/* Accepts a buy order for mesh under order_id into the saga named saga_name; order_json
 * NULL = a valid order. */
static void accept_as(const char *order_id, const char *mesh, const char *saga_name,
                      const char *order_json)
{
    char order[1024];
    json_t *acc = accepted_event(order_id, mesh);
    mb_accept q = {
        .order_id = order_id,
        .account_id = ACCOUNT,
        .mesh_name = mesh,
        .order_json = order,
        .traceparent = TP,
        .accepted_event = acc,
        .conflict_event = acc,
        .saga = saga_name,
    };
    mb_accept_result res;
    mb_status s;
    mb_error e;

    if (order_json)
        snprintf(order, sizeof(order), "%s", order_json);
    else
        snprintf(order, sizeof(order),
                 "{\"specversion\":\"1.0\",\"id\":\"ce-%s\",\"source\":\"billing/orders\","
                 "\"type\":\"com.meshbuy.order.buy.v1\",\"time\":\"2024-05-01T12:00:00Z\","
                 "\"datacontenttype\":\"application/json\",\"traceparent\":\"" TP "\","
                 "\"data\":{\"order_id\":\"%s\",\"account_id\":\"" ACCOUNT "\","
                 "\"project_id\":\"77b6a44cba5143ab91d13ab9a8ff44fd\",\"region\":\"eu-de-01\","
                 "\"mesh\":{\"name\":\"%s\",\"edition\":\"basic\",\"istio_version\":\"1.18\","
                 "\"cluster_id\":\"5ee4a5a1-1a43-11ef-9a7e-0255ac100b02\","
                 "\"control_plane_nodes\":[\"n00\"]}}}",
                 order_id, order_id, mesh);
    mb_error_clear(&e);
    assert_int_equal(mb_store_accept(store, &q, 1, &res, &s, &e), MB_OK);
    assert_int_equal(res.verdict, MB_ACCEPT_NEW);
    json_decref(acc);
}

static void accept_order(const char *order_id, const char *mesh)
{
    accept_as(order_id, mesh, "fake", NULL);
}

/* Every event queued under the mesh's key, in order (a new array). */
static json_t *outbox(const char *mesh)
{
    char key[128];
    mb_outbox_batch b;
    const char *tok = "test-reader";
    json_t *arr = json_array();
    mb_error e;

    snprintf(key, sizeof(key), "%s/%s", ACCOUNT, mesh);
    memset(&b, 0, sizeof(b));
    b.shard = mb_store_shard_of(store, key);
    mb_error_clear(&e);
    assert_int_equal(mb_store_outbox_peek(store, &tok, &b, 1, 5000, 10000, &e), MB_OK);
    assert_true(b.held);
    for (size_t i = 0; i < b.n; i++) {
        json_t *ev;
        char err[256];
        if (strcmp(b.entries[i].key, key) != 0)
            continue;
        ev = json_loadb(b.entries[i].event, b.entries[i].event_len, 0, NULL);
        assert_non_null(ev);
        if (mb_event_check(ev, err, sizeof(err)) != 0)
            fail_msg("queued event %zu is not a valid status event: %s", i, err);
        json_array_append_new(arr, ev);
    }
    mb_outbox_batch_clear(&b);
    assert_int_equal(mb_store_outbox_release(store, b.shard, tok, &e), MB_OK);
    return arr;
}

/* One expected event: status, step, and the error code (NULL = no error object). */
typedef struct want_ev {
    const char *status;
    const char *step;
    const char *code;
} want_ev;

static int index_of(const char *step)
{
    for (int i = 0; i < NFAKE; i++) {
        if (strcmp(names[i], step) == 0)
            return i + 1;
    }
    return -1;
}

/* The key's events are exactly want, with seq 1..n (gapless), and step_index/step_total
 * from the fake definition.  Returns the events (a new array) for further checks. */
static json_t *expect_events(const char *mesh, const want_ev *want, size_t n)
{
    json_t *evs = outbox(mesh);

    for (size_t i = 0; i < json_array_size(evs) || i < n; i++) {
        json_t *d = json_object_get(json_array_get(evs, i), "data");
        json_t *err = json_object_get(d, "error");
        const char *status = json_string_value(json_object_get(d, "status"));
        const char *step = json_string_value(json_object_get(d, "step"));

        if (i >= n || i >= json_array_size(evs))
            fail_msg("event %zu: %s at %s; expected %zu events, got %zu", i + 1,
                     status ? status : "(none)", step ? step : "(none)", n, json_array_size(evs));
        if (strcmp(status, want[i].status) != 0 || strcmp(step, want[i].step) != 0)
            fail_msg("event %zu: %s at %s, expected %s at %s", i + 1, status, step, want[i].status,
                     want[i].step);
        assert_int_equal(json_integer_value(json_object_get(d, "seq")), (long long)i + 1);
        assert_int_equal(json_integer_value(json_object_get(d, "step_index")),
                         index_of(want[i].step));
        assert_int_equal(json_integer_value(json_object_get(d, "step_total")), NFAKE);
        if (want[i].code == NULL) {
            assert_null(err);
        } else {
            assert_non_null(err);
            assert_string_equal(json_string_value(json_object_get(err, "code")), want[i].code);
        }
    }
    return evs;
}

static const char *ev_message(const json_t *evs, size_t i)
{
    return json_string_value(
        json_object_get(json_object_get(json_array_get(evs, i), "data"), "message"));
}

static const json_t *ev_error(const json_t *evs, size_t i)
{
    return json_object_get(json_object_get(json_array_get(evs, i), "data"), "error");
}

/* The calls the fake steps saw are exactly want. */
static void expect_calls(const char *const *want, int n)
{
    for (int i = 0; i < ncalls; i++) {
        if (i >= n)
            fail_msg("unexpected call %d: %s", i + 1, calls[i]);
        if (strcmp(calls[i], want[i]) != 0)
            fail_msg("call %d: %s, expected %s", i + 1, calls[i], want[i]);
    }
    if (ncalls != n)
        fail_msg("%d calls, expected %d (next: %s)", ncalls, n, want[ncalls]);
}

static const char *step_status(const mb_job *j, const char *step)
{
    json_t *rec = json_object_get(json_object_get(j->state, "steps"), step);
    return json_string_value(json_object_get(rec, "status"));
}

/* ================================================================ the tests */

/* Each of n checkpoints, none re-sent, was seen once in every phase; the round trips took
 * time, and no phase longer than the whole test could. */
static void expect_ck_phases(long long n)
{
    for (int p = 0; p < MB_SAGA_CK_PHASES; p++) {
        mb_saga_hist h;
        mb_saga_checkpoint_hist(saga, p, &h);
        assert_int_equal(h.bucket[MB_SAGA_BUCKETS], n);
        assert_true(h.sum >= 0 && h.sum < 10 * n);
        if (strcmp(mb_saga_ck_phases[p], "redis") == 0)
            assert_true(h.sum > 0);
    }
}

static void test_happy(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},  {"Installing", "alpha", NULL}, {"Installing", "alpha", NULL},
        {"Installing", "beta", NULL}, {"Installing", "gamma", NULL}, {"Running", "delta", NULL},
    };
    static const char *const want_calls[] = {"run alpha", "run beta", "run gamma", "run delta"};
    mb_saga_stats stats;
    mb_job *j;
    json_t *evs;

    (void)state;
    accept_order("ord-happy", "mesh-happy");
    j = get_job("ord-happy");
    assert_string_equal(j->saga, "fake");
    mb_job_free(j);
    drive_to("ord-happy", "Running");
    evs = expect_events("mesh-happy", want, sizeof(want) / sizeof(want[0]));
    assert_string_equal(ev_message(evs, 1), "faking");
    assert_string_equal(ev_message(evs, 2), "alpha did it");
    /* The last step's own line wins over the definition's done message. */
    assert_string_equal(ev_message(evs, 5), "delta did it");
    json_decref(evs);
    expect_calls(want_calls, 4);
    j = get_job("ord-happy");
    assert_string_equal(j->step, "delta");
    assert_string_equal(j->error_code, "");
    assert_int_equal(j->next_run_ms, 0);
    assert_string_equal(j->lease_owner, "");
    for (int i = 0; i < NFAKE; i++)
        assert_string_equal(step_status(j, names[i]), "done");
    expect_ck_phases(j->checkpoints);
    mb_job_free(j);
    mb_saga_stats_get(saga, &stats);
    assert_int_equal(stats.running, 1);
    assert_int_equal(stats.steps_done, 4);
    /* The histograms are the definition's steps. */
    assert_int_equal(mb_saga_steps(saga), NFAKE);
    assert_string_equal(mb_saga_step_name(saga, 2), "gamma");
    /* The relay was told of the key once per checkpoint that queued events: at least the
     * last one's, at most one for each of the five events after Accepted. */
    assert_in_range(ntold, 1, 5);
    for (int i = 0; i < ntold; i++)
        assert_string_equal(told[i], ACCOUNT "/mesh-happy");
}

/* Runs one order of the fake saga to its end with its steps marked (0 plain, 1 local, 2
 * saves first); its events as (status, step, message, error code) lines, how many
 * checkpoints wrote events, and how many were written. */
static void run_local(const char *order, const char *mesh, const int *mark, const char *end,
                      char *lines, size_t len, int *told_n, long long *checkpoints)
{
    json_t *evs;
    mb_job *j;
    size_t at = 0;

    reset_script();
    for (int i = 0; i < NFAKE; i++) {
        fake_steps[i]->local = mark[i] == 1;
        fake_steps[i]->saves_first = mark[i] == 2;
    }
    sc.fail_runs[GAMMA] = strcmp(end, "Failed") == 0;
    accept_order(order, mesh);
    drive_to(order, end);
    evs = outbox(mesh);
    for (size_t i = 0; i < json_array_size(evs); i++) {
        json_t *d = json_object_get(json_array_get(evs, i), "data");
        const json_t *e = json_object_get(json_object_get(d, "error"), "code");
        assert_int_equal(json_integer_value(json_object_get(d, "seq")), (long long)i + 1);
        at += (size_t)snprintf(
            lines + at, len - at, "%s %s %s %s\n", json_string_value(json_object_get(d, "status")),
            json_string_value(json_object_get(d, "step")),
            json_string_value(json_object_get(d, "message")), e ? json_string_value(e) : "-");
        assert_true(at < len);
    }
    json_decref(evs);
    *told_n = ntold;
    j = get_job(order);
    *checkpoints = j->checkpoints;
    mb_job_free(j);
}

/* No checkpoint is written before a local step (no call, no save) or one that saves first:
 * the records and events ride with the next one.  The events are the same, in the same
 * order, with the same seqs, whether a saga ends Running or fails and rolls back. */
static void test_local_steps(void **state)
{
    static const int none[NFAKE] = {0, 0, 0, 0}, some[NFAKE] = {1, 1, 0, 1};
    /* gamma saves first (every fake step does): then beta's completion rides with its save,
     * unless that checkpoint would carry more than 4 events (bound: start, alpha, beta) */
    static const int first[NFAKE] = {0, 1, 2, 1}, bound[NFAKE] = {1, 1, 2, 1};
    char want[2048], got[2048];
    int told_want, told_got;
    long long ck_want, ck_got;

    (void)state;
    run_local("ord-loc-a", "mesh-loc-a", none, "Running", want, sizeof(want), &told_want, &ck_want);
    run_local("ord-loc-b", "mesh-loc-b", some, "Running", got, sizeof(got), &told_got, &ck_got);
    assert_string_equal(strstr(got, "\n") + 1, strstr(want, "\n") + 1); /* after Accepted */
    /* Events written by start, alpha, beta, gamma, delta; then by beta (start, alpha, beta)
     * and delta (gamma, Running). */
    assert_int_equal(told_want, 5);
    assert_int_equal(told_got, 2);
    /* Each fake step saves once before it acts; local ones do not.  Then: start, 4 saves,
     * 4 completions; with three local steps: beta's completion, gamma's save, delta's. */
    assert_int_equal(ck_want, 9);
    assert_int_equal(ck_got, 3);
    /* first: start, alpha's save, gamma's save (with alpha's and beta's completions),
     * delta's completion; with gamma plain, beta's completion would be a fifth. */
    run_local("ord-loc-e", "mesh-loc-e", first, "Running", got, sizeof(got), &told_got, &ck_got);
    assert_string_equal(strstr(got, "\n") + 1, strstr(want, "\n") + 1);
    assert_int_equal(ck_got, 4);
    run_local("ord-loc-f", "mesh-loc-f", bound, "Running", got, sizeof(got), &told_got, &ck_got);
    assert_string_equal(strstr(got, "\n") + 1, strstr(want, "\n") + 1);
    assert_int_equal(ck_got, 3);

    run_local("ord-loc-c", "mesh-loc-c", none, "Failed", want, sizeof(want), &told_want, &ck_want);
    run_local("ord-loc-d", "mesh-loc-d", some, "Failed", got, sizeof(got), &told_got, &ck_got);
    assert_string_equal(strstr(got, "\n") + 1, strstr(want, "\n") + 1);
    assert_true(told_got < told_want);
    assert_true(ck_got < ck_want);
}

static void test_past_deadline(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},
        {"Installing", "alpha", NULL},
        {"Installing", "alpha", NULL},
        {"Installing", "beta", NULL},
        {"RollingBack", "gamma", "Unavailable"},
        {"Failed", "gamma", "Unavailable"},
    };
    static const char *const want_calls[] = {"run alpha", "run beta", "run gamma", "undo gamma",
                                             "undo alpha"};
    mb_saga_stats stats;
    const json_t *err;
    mb_job *j;
    json_t *evs;

    (void)state;
    fake_def.step_deadline_ms = 500; /* the budget for gamma's transient errors */
    sc.again[GAMMA] = 1;
    accept_order("ord-late", "mesh-late");
    drive_to("ord-late", "Failed");
    /* Retried, each time a new execution, until the definition's 500 ms were spent. */
    assert_true(runs[GAMMA] >= 2);
    mb_saga_stats_get(saga, &stats);
    assert_true(stats.retries >= 1);
    assert_int_equal(stats.failed, 1);
    evs = expect_events("mesh-late", want, sizeof(want) / sizeof(want[0]));
    err = ev_error(evs, 5);
    assert_true(json_is_true(json_object_get(err, "retryable")));
    assert_non_null(strstr(json_string_value(json_object_get(err, "message")), "gave up after"));
    json_decref(evs);
    /* The step that failed may have half-acted: it is undone too, then alpha; beta has
     * nothing to undo; delta never started. */
    expect_calls(want_calls, 5);
    j = get_job("ord-late");
    assert_string_equal(j->error_code, "Unavailable");
    assert_string_equal(j->step, "gamma"); /* where it stopped, not where undoing ended */
    assert_string_equal(step_status(j, "gamma"), "compensated");
    assert_string_equal(step_status(j, "alpha"), "compensated");
    assert_string_equal(step_status(j, "beta"), "done");
    assert_null(step_status(j, "delta"));
    mb_job_free(j);
}

static void test_compensation_gives_up(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},
        {"Installing", "alpha", NULL},
        {"Installing", "alpha", NULL},
        {"Installing", "beta", NULL},
        {"Installing", "gamma", NULL},
        {"RollingBack", "delta", "Broken"},
        {"Failed", "gamma", "CompensationFailed"},
    };
    static const char *const want_calls[] = {"run alpha", "run beta",   "run gamma",
                                             "run delta", "undo delta", "undo gamma"};
    mb_saga_stats stats;
    mb_job *j;
    json_t *evs;

    (void)state;
    sc.fail_runs[DELTA] = 1;
    sc.undo_again[GAMMA] = 1;
    accept_order("ord-stuck", "mesh-stuck");
    drive_to("ord-stuck", "NeedsAttention");
    evs = expect_events("mesh-stuck", want, sizeof(want) / sizeof(want[0]));
    assert_non_null(strstr(ev_message(evs, 6), "undoing gamma failed"));
    json_decref(evs);
    /* Never silently half-undone: alpha is left as it is, for an operator. */
    expect_calls(want_calls, 6);
    assert_true(undos[GAMMA] >= 2);
    assert_int_equal(undos[ALPHA], 0);
    j = get_job("ord-stuck");
    assert_string_equal(j->error_code, "CompensationFailed");
    assert_string_equal(j->step, "gamma");
    assert_string_equal(step_status(j, "gamma"), "compensation_failed");
    assert_string_equal(step_status(j, "delta"), "compensated");
    assert_string_equal(step_status(j, "alpha"), "done");
    assert_int_equal(j->next_run_ms, 0);
    mb_job_free(j);
    mb_saga_stats_get(saga, &stats);
    assert_int_equal(stats.attention, 1);
}

static void test_park(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},  {"Installing", "alpha", NULL}, {"Installing", "alpha", NULL},
        {"Installing", "beta", NULL}, {"Failed", "gamma", "Broken"},
    };
    static const char *const want_calls[] = {"run alpha", "run beta", "run gamma"};
    mb_job *j;
    json_t *evs;

    (void)state;
    remake_saga(1);
    sc.fail_runs[GAMMA] = 1;
    accept_order("ord-park", "mesh-park");
    drive_to("ord-park", "Failed");
    evs = expect_events("mesh-park", want, sizeof(want) / sizeof(want[0]));
    assert_non_null(strstr(ev_message(evs, 4), "MESHBUY_ON_FAILURE=park"));
    json_decref(evs);
    expect_calls(want_calls, 3); /* no compensation at all */
    j = get_job("ord-park");
    assert_true(json_is_true(json_object_get(j->state, "parked")));
    assert_string_equal(j->error_code, "Broken");
    assert_string_equal(step_status(j, "alpha"), "done"); /* effects kept */
    assert_string_equal(step_status(j, "gamma"), "failed");
    mb_job_free(j);
}

/* A cancel that lands while step k-1 runs is seen at the boundary before step k:
 * everything started is undone in reverse order and the saga ends Cancelled.  At k = 0
 * the cancel comes before any worker took the job; at k = NFAKE it comes too late. */
static void test_cancel_each_boundary(void **state)
{
    (void)state;
    for (int k = 0; k <= NFAKE; k++) {
        char id[32], mesh[32];
        want_ev want[16];
        const char *want_calls[16];
        char bufs[16][16];
        size_t nw = 0;
        int nc = 0;
        json_t *evs;

        reset_script();
        snprintf(id, sizeof(id), "ord-cancel-%d", k);
        snprintf(mesh, sizeof(mesh), "mesh-cancel-%d", k);
        accept_order(id, mesh);
        if (k == 0)
            cancel_job(store, id);
        else
            sc.cancel_in[k - 1] = 1;
        drive_to(id, k == NFAKE ? "Running" : "Cancelled");

        want[nw++] = (want_ev){"Accepted", "alpha", NULL};
        want[nw++] = (want_ev){"Installing", "alpha", NULL};
        for (int i = 0; i < k; i++) {
            snprintf(bufs[nc], sizeof(bufs[0]), "run %s", names[i]);
            want_calls[nc] = bufs[nc];
            nc++;
            if (i < NFAKE - 1)
                want[nw++] = (want_ev){"Installing", names[i], NULL};
        }
        if (k == NFAKE) {
            want[nw++] = (want_ev){"Running", "delta", NULL};
        } else {
            /* Reported at the step where the saga stopped: the one that did not start. */
            want[nw++] = (want_ev){"RollingBack", names[k], NULL};
            for (int i = k - 1; i >= 0; i--) {
                if (fake_steps[i]->compensate == NULL)
                    continue;
                snprintf(bufs[nc], sizeof(bufs[0]), "undo %s", names[i]);
                want_calls[nc] = bufs[nc];
                nc++;
            }
            want[nw++] = (want_ev){"Cancelled", names[k], NULL};
        }
        evs = expect_events(mesh, want, nw);
        json_decref(evs);
        expect_calls(want_calls, nc);
        /* The name was claimed at acceptance: a compensated saga gives it back even when
         * no step that stands for it had started (a cancel before the first step). */
        assert_int_equal(name_held(mesh), k == NFAKE);
    }
}

typedef struct lost_ctx {
    int want;
} lost_ctx;

static int lost(void *arg)
{
    mb_saga_stats s;

    mb_saga_stats_get(saga, &s);
    return (int)s.lost >= ((lost_ctx *)arg)->want && mb_saga_inflight(saga) == 0;
}

/* Accepts the order and drives the engine until it drops the job, which another worker
 * ("intruder") takes over while beta runs. */
static void taken_over_in_beta(const char *order_id, const char *mesh)
{
    lost_ctx lc = {1};

    sc.steal_in[BETA] = 1;
    accept_order(order_id, mesh);
    if (!drive(lost, &lc, BOUND_MS))
        fail_msg("the engine did not drop the job %s", order_id);
}

/* Another worker takes the job over while beta runs: beta's checkpoint is refused, the
 * engine drops the job, and nothing more is written under the old fence. */
static void test_stale_fence(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},
        {"Installing", "alpha", NULL},
        {"Installing", "alpha", NULL},
    };
    static const char *const want_calls[] = {"run alpha", "run beta"};
    mb_job *before, *after;
    json_t *evs;

    (void)state;
    taken_over_in_beta("ord-stale", "mesh-stale");
    before = get_job("ord-stale");
    assert_string_equal(before->lease_owner, "intruder");
    assert_string_equal(before->status, "Installing");
    assert_string_equal(before->step, "beta"); /* beta's SAVE went through; its DONE did not */
    assert_string_equal(step_status(before, "beta"), "running");
    /* A few more turns of the loop: the job is not ours any more. */
    for (int i = 0; i < 20; i++) {
        mb_saga_tick(saga);
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    after = get_job("ord-stale");
    assert_int_equal(after->checkpoints, before->checkpoints);
    assert_int_equal(after->fence, before->fence);
    assert_int_equal(after->updated_ms, before->updated_ms);
    mb_job_free(before);
    mb_job_free(after);
    evs = expect_events("mesh-stale", want, sizeof(want) / sizeof(want[0]));
    json_decref(evs);
    expect_calls(want_calls, 2);
    assert_int_equal(mb_saga_inflight(saga), 0);
}

/* Another worker takes the job over while its first steps, all local, run: none of them
 * was written, so the job stands in Redis as it was accepted, for whoever resumes it to run
 * them again, and its stream holds only Accepted. */
static void test_lost_between_local_steps(void **state)
{
    static const want_ev want[] = {{"Accepted", "alpha", NULL}};
    mb_job *j;

    (void)state;
    fake_steps[ALPHA]->local = 1;
    fake_steps[BETA]->local = 1;
    taken_over_in_beta("ord-lostloc", "mesh-lostloc");
    j = get_job("ord-lostloc");
    assert_string_equal(j->lease_owner, "intruder");
    assert_string_equal(j->status, "Accepted");
    assert_int_equal(j->checkpoints, 0);
    assert_null(json_object_get(json_object_get(j->state, "steps"), "alpha"));
    mb_job_free(j);
    json_decref(expect_events("mesh-lostloc", want, 1));
}

/* As meshctl replay does: the state at the step, the failure forgotten, an announce for
 * the worker to publish; one atomic rewrite under the fence and checkpoint count read. */
static void replay_from(const char *order_id, int from)
{
    mb_job *j = get_job(order_id);
    json_t *s = json_deep_copy(j->state);
    char msg[128];
    mb_rewrite rw;
    mb_error e;

    json_object_set_new(s, "phase", json_string("run"));
    json_object_set_new(s, "step", json_integer(from));
    json_object_set_new(s, "attempt", json_integer(0));
    json_object_set_new(s, "step_started_ms", json_integer(0));
    json_object_del(s, "error");
    json_object_del(s, "outcome");
    json_object_del(s, "parked");
    snprintf(msg, sizeof(msg), "replay from %s requested by test", names[from]);
    json_object_set_new(s, "announce",
                        json_pack("{s:s, s:s}", "status", "Installing", "message", msg));
    memset(&rw, 0, sizeof(rw));
    rw.order_id = j->order_id;
    rw.key = j->key;
    rw.state = s;
    rw.status = "Installing";
    rw.step = names[from];
    rw.attempt = 0;
    rw.error_code = "";
    rw.error_msg = "";
    rw.history = msg;
    rw.clear_cancel = 1;
    rw.expect_fence = j->fence;
    rw.expect_ck = j->checkpoints;
    mb_error_clear(&e);
    if (mb_store_rewrite(store, &rw, &e) != MB_OK)
        fail_msg("rewrite: %s", e.msg);
    json_decref(s);
    mb_job_free(j);
}

static void test_replay_from_step(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},   {"Installing", "alpha", NULL}, {"Installing", "alpha", NULL},
        {"Installing", "beta", NULL},  {"Failed", "gamma", "Broken"}, {"Installing", "gamma", NULL},
        {"Installing", "gamma", NULL}, {"Running", "delta", NULL},
    };
    static const char *const want_calls[] = {"run alpha", "run beta", "run gamma", "run gamma",
                                             "run delta"};
    mb_job *j;
    json_t *evs;

    (void)state;
    remake_saga(1);
    sc.fail_runs[GAMMA] = 1;
    accept_order("ord-replay", "mesh-replay");
    drive_to("ord-replay", "Failed");
    replay_from("ord-replay", GAMMA);
    drive_to("ord-replay", "Running");
    evs = expect_events("mesh-replay", want, sizeof(want) / sizeof(want[0]));
    assert_string_equal(ev_message(evs, 5), "replay from gamma requested by test");
    json_decref(evs);
    /* alpha and beta kept their effects and are not run again. */
    expect_calls(want_calls, 5);
    assert_int_equal(runs[ALPHA], 1);
    assert_int_equal(runs[GAMMA], 2);
    j = get_job("ord-replay");
    assert_null(json_object_get(j->state, "announce"));
    assert_null(json_object_get(j->state, "parked"));
    assert_string_equal(j->error_code, "");
    mb_job_free(j);
}

typedef struct claimed_ctx {
    const char *order_id;
} claimed_ctx;

static int claimed(void *arg)
{
    mb_job *j = get_job(((claimed_ctx *)arg)->order_id);
    int ok = j->claims >= 1 && mb_saga_inflight(saga) == 0;

    mb_job_free(j);
    return ok;
}

/* A saga this worker does not know (written by a newer one): left to its lease, untouched. */
static void test_unknown_saga(void **state)
{
    static const want_ev want[] = {{"Accepted", "alpha", NULL}};
    claimed_ctx cc = {"ord-newer"};
    mb_job *j;
    json_t *evs;

    (void)state;
    accept_as("ord-newer", "mesh-newer", "delete-v9", NULL);
    if (!drive(claimed, &cc, BOUND_MS))
        fail_msg("the job was never claimed");
    j = get_job("ord-newer");
    assert_string_equal(j->status, "Accepted");
    assert_string_equal(j->saga, "delete-v9");
    assert_int_equal(j->checkpoints, 0);
    mb_job_free(j);
    evs = expect_events("mesh-newer", want, 1);
    json_decref(evs);
    assert_int_equal(ncalls, 0);
}

/* A record whose order no longer parses ends Failed InvalidOrder, and says so on the
 * status stream (the console would otherwise stay at Installing). */
static void test_invalid_stored_order(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},
        {"Failed", "alpha", "InvalidOrder"},
    };
    json_t *evs, *d;
    mb_job *j;

    (void)state;
    accept_as("ord-garbled", "mesh-garbled", "fake", "{\"data\":{\"order_id\":\"ord-garbled\"}}");
    drive_to("ord-garbled", "Failed");
    evs = expect_events("mesh-garbled", want, 2);
    d = json_object_get(json_array_get(evs, 1), "data");
    assert_string_equal(json_string_value(json_object_get(d, "order_id")), "ord-garbled");
    assert_string_equal(json_string_value(json_object_get(d, "account_id")), ACCOUNT);
    assert_string_equal(json_string_value(json_object_get(d, "mesh_name")), "mesh-garbled");
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 1), "traceparent")),
                        TP);
    json_decref(evs);
    j = get_job("ord-garbled");
    assert_string_equal(j->error_code, "InvalidOrder");
    assert_int_equal(j->next_run_ms, 0);
    mb_job_free(j);
    assert_int_equal(ncalls, 0);
}

typedef struct stall_ctx {
    int resends, lost; /* at least this many */
} stall_ctx;

/* The stall is over and the engine has re-sent (lost) as many: touches no Redis. */
static int stall_seen(void *arg)
{
    stall_ctx *c = arg;
    mb_saga_stats s;

    mb_saga_stats_get(saga, &s);
    return stall_end_ms > 0 && mono_ms() >= stall_end_ms && (int)s.resends >= c->resends &&
           (int)s.lost >= c->lost && (c->lost == 0 || mb_saga_inflight(saga) == 0);
}

/* Redis stops while beta acts: beta's checkpoint cannot be confirmed (it may or may not
 * land when Redis resumes), so the engine re-sends it, unchanged, until it is; the saga
 * then goes on with nothing repeated and nothing lost (the lease outlasts the stall). */
static void test_checkpoint_resent_across_stall(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},  {"Installing", "alpha", NULL}, {"Installing", "alpha", NULL},
        {"Installing", "beta", NULL}, {"Installing", "gamma", NULL}, {"Running", "delta", NULL},
    };
    static const char *const want_calls[] = {"run alpha", "run beta", "run gamma", "run delta"};
    stall_ctx sc_want = {1, 0};
    mb_saga_stats stats;
    json_t *evs;

    (void)state;
    sc.stall_in[BETA] = 1;
    accept_order("ord-stall", "mesh-stall");
    if (!drive(stall_seen, &sc_want, BOUND_MS))
        fail_msg("no checkpoint re-sent across the stall");
    drive_to("ord-stall", "Running");
    evs = expect_events("mesh-stall", want, sizeof(want) / sizeof(want[0]));
    json_decref(evs);
    expect_calls(want_calls, 4);
    mb_saga_stats_get(saga, &stats);
    assert_true(stats.resends >= 1);
    assert_int_equal(stats.lost, 0);
    assert_int_equal(stats.running, 1);
}

/* Redis stops while beta waits on a call longer than the lease: the renewals cannot reach
 * Redis, so when the lease end passes on the worker's clock the job is lost and leaves
 * memory (once its call is back: there is no cloud client to cancel it here).  When Redis
 * resumes, the job is due again, claimed again, and beta re-runs from its checkpoint. */
static void test_lease_lost_in_stall(void **state)
{
    static const want_ev want[] = {
        {"Accepted", "alpha", NULL},  {"Installing", "alpha", NULL}, {"Installing", "alpha", NULL},
        {"Installing", "beta", NULL}, {"Installing", "gamma", NULL}, {"Running", "delta", NULL},
    };
    static const char *const want_calls[] = {"run alpha", "run beta", "run beta", "run gamma",
                                             "run delta"};
    stall_ctx sc_want = {0, 1};
    mb_saga_stats stats;
    json_t *evs;
    mb_job *j;

    (void)state;
    lease_ms = SHORT_LEASE_MS;
    remake_saga(0);
    sc.stall_in[BETA] = 1;
    sc.hang_in[BETA] = 1;
    accept_order("ord-lost", "mesh-lost");
    if (!drive(stall_seen, &sc_want, BOUND_MS))
        fail_msg("the lease was not given up during the stall");
    drive_to("ord-lost", "Running");
    evs = expect_events("mesh-lost", want, sizeof(want) / sizeof(want[0]));
    json_decref(evs);
    expect_calls(want_calls, 5);
    mb_saga_stats_get(saga, &stats);
    assert_int_equal(stats.lost, 1);
    assert_int_equal(stats.running, 1);
    /* Claimed again after the stall (a claim sent into the stall that landed when Redis
     * resumed, its reply lost, is sent again under its id and gets the job back). */
    j = get_job("ord-lost");
    assert_true(j->claims >= 2);
    mb_job_free(j);
}

/* A claim sent into a Redis stall lands when Redis resumes, but its reply is lost: the
 * job is leased to this worker, which does not know it.  The claim goes out again under
 * the same id and gets the job back, so the job runs now and not after its lease (60 s,
 * beyond the bound); it was claimed once. */
static int settled_after_stall(void *arg)
{
    return mono_ms() > stall_end_ms + 100 && settled(arg); /* the test's reads wait too */
}

static int time_passed(void *arg)
{
    return mono_ms() >= *(const long long *)arg;
}

static void test_claim_reply_lost(void **state)
{
    want_status w = {"ord-claimlost", "Running"};
    long long t0;
    mb_job *j;

    (void)state;
    /* The engine's connection is up (its idle claims run), so the claim is sent at once. */
    t0 = mono_ms() + 300;
    drive(time_passed, &t0, BOUND_MS);
    accept_order("ord-claimlost", "mesh-claimlost");
    t0 = mono_ms();
    stall_redis();
    assert_true(drive(settled_after_stall, &w, BOUND_MS));
    assert_true(mono_ms() - t0 < LEASE_MS / 2);
    j = get_job("ord-claimlost");
    assert_string_equal(j->status, "Running");
    assert_int_equal(j->claims, 1);
    mb_job_free(j);
}

/* A stall outlasts the lease (3 s): the worker gives the job up when the lease ends on
 * its clock (its call, 3.5 s, still out).  In Redis the lease runs 60 s more, as when a
 * renewal landed whose reply was lost.  The job is handed back when Redis resumes, and
 * runs again long before that lease ends. */
static void test_handed_back_after_stall(void **state)
{
    want_status w = {"ord-handback", "Running"};
    mb_saga_stats stats;
    mb_job *j;

    (void)state;
    lease_ms = 3000;
    remake_saga(0);
    stall_len_ms = 6000;
    sc.stall_in[BETA] = 1;
    sc.hang_in[BETA] = 1;
    sc.hang_ms = 3500;
    sc.extend_ms = 60000;
    accept_order("ord-handback", "mesh-handback");
    assert_true(drive(settled_after_stall, &w, BOUND_MS));
    assert_true(mono_ms() < stall_end_ms + BOUND_MS);
    mb_saga_stats_get(saga, &stats);
    assert_int_equal(stats.lost, 1);
    j = get_job("ord-handback");
    assert_string_equal(j->status, "Running");
    assert_int_equal(j->claims, 2);
    mb_job_free(j);
}

/* Short polls are waited out in memory, lease held: one claim for the whole run. */
static void test_poll_in_memory(void **state)
{
    static const char *const want_calls[] = {"run alpha", "run beta", "run gamma", "run delta"};
    mb_job *j;

    (void)state;
    sc.polls[GAMMA] = 3;
    accept_order("ord-poll", "mesh-poll");
    drive_to("ord-poll", "Running");
    expect_calls(want_calls, 4);
    assert_int_equal(runs[GAMMA], 1);
    j = get_job("ord-poll");
    assert_int_equal(j->claims, 1);
    assert_string_equal(step_status(j, "gamma"), "done");
    mb_job_free(j);
}

/* With MESHBUY_POLL_IN_MEMORY_MS=0 every poll hands the job back: one claim a poll. */
static void test_poll_handed_back(void **state)
{
    mb_job *j;

    (void)state;
    poll_in_memory_ms = 0;
    remake_saga(0);
    sc.polls[GAMMA] = 3;
    accept_order("ord-pollout", "mesh-pollout");
    drive_to("ord-pollout", "Running");
    assert_int_equal(runs[GAMMA], 1);
    j = get_job("ord-pollout");
    assert_int_equal(j->claims, 4);
    mb_job_free(j);
}

/* Two jobs held, each polling once: waited in memory while the engine may hold two jobs
 * waiting; handed back to Redis (a claim more) when it may hold one. */
static int claims_of_two(size_t cap, const char *a, const char *b)
{
    const char *ids[] = {a, b};
    int claims = 0;

    poll_in_memory_jobs = cap;
    remake_saga(0);
    reset_script();
    sc.polls[GAMMA] = 2;
    accept_order(a, a);
    accept_order(b, b);
    drive_to(a, "Running");
    drive_to(b, "Running");
    assert_int_equal(runs[GAMMA], 2);
    for (int i = 0; i < 2; i++) {
        mb_job *j = get_job(ids[i]);
        claims += j->claims;
        mb_job_free(j);
    }
    return claims;
}

static void test_poll_handed_back_when_crowded(void **state)
{
    (void)state;
    assert_int_equal(claims_of_two(2, "ord-crowd-a", "ord-crowd-b"), 2);
    /* the first poll comes with both held; the second may come after the first left */
    assert_true(claims_of_two(1, "ord-crowd-c", "ord-crowd-d") >= 3);
}

/* The job of a draining engine (stopping on SIGTERM) waiting in memory for a long poll
 * (3 s here) is handed back at once, not after the wait, due when the wait would have
 * ended; another engine takes it on from there. */
static int handed_back(void *arg)
{
    mb_job *j = get_job(arg);
    int ok = j->claims == 1 && strcmp(j->step, "gamma") == 0 && mb_saga_inflight(saga) == 0 &&
             strcmp(j->lease_owner, "") == 0;

    mb_job_free(j);
    return ok;
}

static void test_poll_drain(void **state)
{
    char id[] = "ord-pdrain";
    long long t0 = mono_ms();
    mb_job *j;

    (void)state;
    sc.polls[GAMMA] = 1;
    sc.poll_ms[GAMMA] = 3000;
    sc.drain_in_poll = 1;
    accept_order(id, "mesh-pdrain");
    assert_true(drive(handed_back, id, BOUND_MS));
    assert_true(mono_ms() - t0 < 2500);
    j = get_job("ord-pdrain");
    assert_string_equal(j->status, "Installing");
    assert_string_equal(j->step, "gamma");
    assert_true(j->next_run_ms > 0);
    mb_job_free(j);
    remake_saga(0);
    drive_to("ord-pdrain", "Running");
    j = get_job("ord-pdrain");
    assert_int_equal(j->claims, 2);
    mb_job_free(j);
}

/* A wait of 100 ms or more is spent with the state document as text (the tree freed).
 * Meanwhile the job still counts at its step in /metrics; it wakes with everything the
 * earlier steps recorded, so none of them runs again; a drain wakes it early. */
static long long asleep_since;

static int asleep_in_gamma(void *arg)
{
    (void)arg;
    if (sc.polls[GAMMA] != (int)(intptr_t)arg)
        return 0;
    if (asleep_since == 0)
        asleep_since = mono_ms();
    return mono_ms() - asleep_since >= 50; /* a few loop turns into the wait */
}

static void expect_at_gamma(void)
{
    uint64_t at[NFAKE];

    mb_saga_inflight_steps(saga, at);
    assert_int_equal(at[ALPHA] + at[BETA] + at[DELTA], 0);
    assert_int_equal(at[GAMMA], 1);
}

static void test_poll_state_as_text(void **state)
{
    static const char *const want_calls[] = {"run alpha", "run beta", "run gamma", "run delta"};
    mb_job *j;
    json_t *ck;

    (void)state;
    asleep_since = 0;
    sc.polls[GAMMA] = 2;
    sc.poll_ms[GAMMA] = 300;
    accept_order("ord-ptext", "mesh-ptext");
    assert_true(drive(asleep_in_gamma, (void *)(intptr_t)1, BOUND_MS));
    expect_at_gamma();
    asleep_since = 0;
    assert_true(drive(asleep_in_gamma, (void *)(intptr_t)0, BOUND_MS));
    expect_at_gamma();
    drive_to("ord-ptext", "Running");
    expect_calls(want_calls, 4);
    j = get_job("ord-ptext");
    assert_int_equal(j->claims, 1);
    assert_string_equal(step_status(j, "gamma"), "done");
    ck = json_object_get(json_object_get(json_object_get(j->state, "steps"), "beta"), "ck");
    assert_true(json_is_true(json_object_get(ck, "observed")));
    mb_job_free(j);
}

/* MESHBUY_POLL_LEARN: an effect of 300 ms looked at every 10 ms is ~30 looks; once the engine
 * saw one end, the next is looked at first at 4/5 of that (240 ms), then every 10 ms: a few
 * looks, and the job is no later for it.  The first and last polls' stamps are in the step's
 * record until the step is done; with every poll handed back to Redis (no wait in memory) they
 * are what the claims count from. */
static int looks_of(const char *order_id, long long *took_ms)
{
    long long t0 = mono_ms();
    mb_job *j;
    json_t *rec;

    reset_script();
    sc.effect_ms[GAMMA] = 300;
    accept_order(order_id, order_id);
    drive_to(order_id, "Running");
    *took_ms = mono_ms() - t0;
    j = get_job(order_id);
    rec = json_object_get(json_object_get(j->state, "steps"), "gamma");
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "done");
    assert_null(json_object_get(rec, "poll_since_ms"));
    assert_null(json_object_get(rec, "poll_last_ms"));
    mb_job_free(j);
    return looks;
}

static void test_poll_learnt(void **state)
{
    long long took[4];
    int first, second, handed, fixed;

    (void)state;
    poll_learn = 1;
    remake_saga(0);
    first = looks_of("ord-learn-1", &took[0]);
    second = looks_of("ord-learn-2", &took[1]);
    assert_true(first >= 10);
    assert_true(second <= first / 2);
    assert_true(took[1] < took[0] + 250);
    poll_in_memory_ms = 0; /* every poll a hand-back and a claim: the stamp is in Redis */
    remake_saga(0);        /* a new engine: nothing learnt yet */
    assert_true(looks_of("ord-learn-3", &took[2]) >= 10);
    handed = looks_of("ord-learn-4", &took[3]);
    assert_true(handed <= first / 2);
    poll_learn = 0;
    poll_in_memory_ms = LEASE_MS;
    remake_saga(0);
    assert_true(looks_of("ord-learn-5", &took[0]) >= 10);
    fixed = looks_of("ord-learn-6", &took[1]);
    assert_true(fixed >= 10); /* MESHBUY_POLL_LEARN=false: every POLL_MS, as before */
}

/* A release stuck installing: its effect still under way at the step's deadline (500 ms here,
 * looked at every 10 ms for 5 s) fails the step, "Timeout", and what was done is undone; with
 * learning, the first look is not put off past the deadline either. */
static void test_poll_past_deadline(void **state)
{
    static const char *const want_calls[] = {"run alpha", "run beta", "undo gamma", "undo alpha"};
    long long t0 = mono_ms();
    mb_job *j;

    (void)state;
    fake_def.step_deadline_ms = 500;
    poll_learn = 1;
    remake_saga(0);
    sc.effect_ms[GAMMA] = 5000;
    accept_order("ord-stuck", "mesh-stuck");
    drive_to("ord-stuck", "Failed");
    assert_true(mono_ms() - t0 < 4000); /* not the effect's 5 s */
    assert_true(looks >= 10);
    expect_calls(want_calls, 4); /* gamma never reached its act: no "run gamma" */
    j = get_job("ord-stuck");
    assert_string_equal(j->error_code, "Timeout");
    assert_string_equal(j->step, "gamma");
    assert_string_equal(step_status(j, "gamma"), "compensated");
    assert_null(json_object_get(json_object_get(json_object_get(j->state, "steps"), "gamma"),
                                "poll_since_ms"));
    mb_job_free(j);
}

static void test_poll_state_as_text_drain(void **state)
{
    char id[] = "ord-ptdrain";
    long long t0 = mono_ms();

    (void)state;
    asleep_since = 0;
    sc.polls[GAMMA] = 1;
    sc.poll_ms[GAMMA] = 3000;
    accept_order(id, "mesh-ptdrain");
    assert_true(drive(asleep_in_gamma, (void *)(intptr_t)0, BOUND_MS));
    mb_saga_drain(saga);
    assert_true(drive(handed_back, id, BOUND_MS));
    assert_true(mono_ms() - t0 < 2500);
    remake_saga(0);
    drive_to(id, "Running");
    assert_int_equal(runs[ALPHA] + runs[BETA] + runs[GAMMA] + runs[DELTA], 4);
}

/* Redis stops as sixteen jobs polling, each at its own pace, find the cloud ready, so each
 * queues its checkpoint in a loop turn of its own: no more than MB_SAGA_CK_OUT_MAX
 * checkpoint requests go out (the queue holds them, and a claim, a renewal and a handback at
 * most); the other checkpoints wait in the engine, and go out when Redis is back: every job
 * reaches Running. */
#define HELD_JOBS 16 /* the engine's max_inflight */

typedef struct held_ctx {
    size_t depth_max;  /* requests out at Redis, at most */
    uint64_t held_max; /* checkpoints held in the engine, at most */
} held_ctx;

#define HELD_POLLS 1000000

/* Every job at gamma, and polls enough for their paces to have drawn them apart. */
static int all_polling(void *arg)
{
    uint64_t at[NFAKE];

    (void)arg;
    mb_saga_inflight_steps(saga, at);
    return at[GAMMA] == HELD_JOBS && sc.polls[GAMMA] <= HELD_POLLS - 20 * HELD_JOBS;
}

static int held_through_stall(void *arg)
{
    held_ctx *c = arg;
    mb_rq_health h;
    mb_saga_stats st;

    mb_rq_health_get(rq, &h);
    mb_saga_stats_get(saga, &st);
    if (h.depth > c->depth_max)
        c->depth_max = h.depth;
    if (st.ck_held > c->held_max)
        c->held_max = st.ck_held;
    /* out of memory too: their last checkpoints confirmed */
    return mono_ms() >= stall_end_ms && st.running == HELD_JOBS && mb_saga_inflight(saga) == 0;
}

static void test_checkpoints_held_in_stall(void **state)
{
    held_ctx c = {0, 0};
    mb_saga_stats st;
    char id[32];

    (void)state;
    sc.polls[GAMMA] = HELD_POLLS;
    sc.poll_spread = 1;
    for (int i = 0; i < HELD_JOBS; i++) {
        snprintf(id, sizeof(id), "ord-held-%d", i);
        accept_order(id, id);
    }
    assert_true(drive(all_polling, NULL, BOUND_MS));
    sc.polls[GAMMA] = 0; /* each job's next look, at its own pace, finds the cloud ready */
    stall_len_ms = 1000; /* within the queue's 2 s timeout: the requests out just wait */
    stall_redis();
    assert_true(drive(held_through_stall, &c, BOUND_MS));
    assert_true(c.depth_max <= MB_SAGA_CK_OUT_MAX + 3);
    assert_true(c.held_max >= 1); /* none without the bound */
    for (int i = 0; i < HELD_JOBS; i++) {
        mb_job *j;
        snprintf(id, sizeof(id), "ord-held-%d", i);
        j = get_job(id);
        assert_string_equal(j->status, "Running");
        assert_int_equal(j->claims, 1);
        mb_job_free(j);
    }
    mb_saga_stats_get(saga, &st);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.ck_held, 0);
    assert_int_equal(runs[GAMMA], HELD_JOBS);
}

/* Every record as the steps left it, read back by a later step (delta reads alpha's) and
 * by compensation (whether each step has something to undo).  In the split run each is
 * kept as text between executions. */
static void expect_records(const char *order_id, const char *const *status)
{
    mb_job *j = get_job(order_id);
    json_t *steps = json_object_get(j->state, "steps");

    for (int i = 0; i < NFAKE; i++) {
        json_t *rec = json_object_get(steps, names[i]);
        assert_string_equal(json_string_value(json_object_get(rec, "status")), status[i]);
        assert_true(json_is_true(json_object_get(json_object_get(rec, "ck"), "observed")));
    }
    mb_job_free(j);
}

static void test_records_read_back(void **state)
{
    static const char *const done[] = {"done", "done", "done", "done"};
    mb_job *j;
    json_t *ck;

    (void)state;
    accept_order("ord-recs", "mesh-recs");
    drive_to("ord-recs", "Running");
    expect_records("ord-recs", done);
    j = get_job("ord-recs");
    ck = json_object_get(json_object_get(json_object_get(j->state, "steps"), "delta"), "ck");
    assert_int_equal(json_integer_value(json_object_get(ck, "alpha_did")), 1);
    mb_job_free(j);
}

/* Split checkpoints turned off with records sealed: the whole document written next (which
 * drops the records' own fields in Redis) carries every record. */
static void test_records_whole_again(void **state)
{
    static const char *const done[] = {"done", "done", "done", "done"};

    (void)state;
    sc.unsplit_in[DELTA] = 1;
    accept_order("ord-recs-whole", "mesh-recs-whole");
    drive_to("ord-recs-whole", "Running");
    expect_records("ord-recs-whole", done);
}

static void test_records_undone(void **state)
{
    static const char *const want_calls[] = {"run alpha",  "run beta",   "run gamma", "run delta",
                                             "undo delta", "undo gamma", "undo alpha"};
    static const char *const undone[] = {"compensated", "done", "compensated", "compensated"};

    (void)state;
    sc.fail_runs[DELTA] = 1;
    sc.polls[GAMMA] = 1; /* a re-execution between: its record stays in the tree */
    accept_order("ord-recs-undo", "mesh-recs-undo");
    drive_to("ord-recs-undo", "Failed");
    expect_calls(want_calls, 7);
    expect_records("ord-recs-undo", undone);
}

/* A record written before records named their saga runs the create saga; the engine
 * refuses to start without definitions. */
static void test_defs(void **state)
{
    mb_saga_opts o = {.worker_id = "w", .lease_ms = 1000, .max_inflight = 1};
    char err[128] = "";

    (void)state;
    assert_ptr_equal(mb_saga_def_find(mb_saga_defs, mb_saga_defs_count, NULL), &mb_saga_create);
    assert_ptr_equal(mb_saga_def_find(mb_saga_defs, mb_saga_defs_count, ""), &mb_saga_create);
    assert_ptr_equal(mb_saga_def_find(mb_saga_defs, mb_saga_defs_count, "create"), &mb_saga_create);
    assert_null(mb_saga_def_find(mb_saga_defs, mb_saga_defs_count, "fake"));
    assert_int_equal(mb_saga_create.nsteps, 9);
    assert_int_equal(mb_saga_def_step(&mb_saga_create, "finish"), 8);
    assert_int_equal(mb_saga_def_step(&mb_saga_create, "nope"), -1);
    assert_null(mb_saga_new(base, rq, NULL, NULL, &o, err, sizeof(err)));
    assert_string_equal(err, "no saga definitions");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_happy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_local_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_past_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compensation_gives_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_park, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_each_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_fence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_between_local_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_from_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_saga, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_stored_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_resent_across_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lease_lost_in_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_reply_lost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handed_back_after_stall, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_in_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_handed_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_handed_back_when_crowded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_state_as_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_state_as_text_drain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_learnt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_past_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_read_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_undone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_whole_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints_held_in_stall, setup, teardown),
    };
    int failed;

    signal(SIGPIPE, SIG_IGN);
    /* One Redis for both runs: started before the first, stopped after the second. */
    failed = cmocka_run_group_tests_name("whole checkpoints", tests, start_redis, NULL);
    split = 1;
    return failed + cmocka_run_group_tests_name("split checkpoints", tests, NULL, teardown_all);
}
