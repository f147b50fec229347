/* test_rq.c: the Redis request queue against a private redis-server: order, each done once,
 * the loop turning while Redis is SIGSTOPped, shutdown with queued work, and the store's
 * reconnect backoff under a stalled server. */
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
#include "mb_rq.h"
#include "mb_store.h"
#include "redis_util.h"

#define TIMEOUT_MS 500 /* the queue's store: connect and round-trip bound */

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

static void redis_stop(void)
{
    assert_int_equal(kill(redis_pid, SIGSTOP), 0);
}

static void redis_cont(void)
{
    assert_int_equal(kill(redis_pid, SIGCONT), 0);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static mb_rq *new_queue(struct event_base *base)
{
    mb_rq_opts o = {url, 16, TIMEOUT_MS, "w-rq", 200};
    char err[256];
    mb_rq *q = mb_rq_new(base, &o, err, sizeof(err));

    if (q == NULL)
        fail_msg("mb_rq_new: %s", err);
    return q;
}

/* ---- requests the tests submit */

typedef struct item {
    int idx;
    long long retry_until; /* fn retries MB_AGAIN until this monotonic ms (0: once) */
    mb_status st;          /* fn's result */
    char msg[sizeof(((mb_error *)0)->msg)];
    int ran; /* run position on the Redis thread, from 1 */
    int done_calls;
    int done_pos; /* done position on the loop, from 1 */
} item;

static int ran_count;  /* touched by the Redis thread only while requests run */
static int done_count; /* loop thread */

/* RPUSHes the item's number to a history list (so Redis sees the order), or PINGs. */
static void fn_hist(mb_store *st, void *ctx)
{
    item *it = ctx;
    char line[32];
    mb_error e;

    it->ran = ++ran_count;
    snprintf(line, sizeof(line), "%d", it->idx);
    for (;;) {
        mb_error_clear(&e);
        it->st = mb_store_history_add(st, "acct/rq", "o-rq", line, &e);
        snprintf(it->msg, sizeof(it->msg), "%s", e.msg);
        if (it->st != MB_AGAIN || mono_ms() >= it->retry_until)
            return;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void fn_ping(mb_store *st, void *ctx)
{
    item *it = ctx;
    mb_error e;

    it->ran = ++ran_count;
    for (;;) {
        mb_error_clear(&e);
        it->st = mb_store_ping(st, &e);
        snprintf(it->msg, sizeof(it->msg), "%s", e.msg);
        if (it->st != MB_AGAIN || mono_ms() >= it->retry_until)
            return;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void on_done(void *ctx)
{
    item *it = ctx;

    it->done_calls++;
    it->done_pos = ++done_count;
}

static void reset_counts(void)
{
    ran_count = 0;
    done_count = 0;
}

static redisContext *raw(void)
{
    redisContext *c = redisConnectUnix(sock);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    return c;
}

/* The history lines Redis holds for the test's job, as numbers. */
static size_t hist_lines(int *out, size_t max)
{
    mb_error e;
    mb_store *st;
    redisContext *c = raw();
    redisReply *r;
    size_t n = 0;

    mb_error_clear(&e);
    st = mb_store_new(url, 16, 1000, "w-probe", &e);
    assert_non_null(st);
    r = redisCommand(c, "LRANGE mb:{s%d}:hist:o-rq 0 -1", mb_store_shard_of(st, "acct/rq"));
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    for (size_t i = 0; i < r->elements && n < max; i++)
        out[n++] = (int)strtol(r->element[i]->str, NULL, 10);
    freeReplyObject(r);
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
    mb_store_free(st);
    return n;
}

/* ---- the loop's heartbeat while Redis stalls */

typedef struct beat {
    int n;
    long long last, max_gap;
} beat;

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
    beat *b = arg;
    long long now = mono_ms();

    (void)fd;
    (void)what;
    if (b->n > 0 && now - b->last > b->max_gap)
        b->max_gap = now - b->last;
    b->last = now;
    b->n++;
}

/* ================================================================ tests */

/* 150 requests: they run in submission order (Redis holds the lines in that order), every
 * done runs once, in the same order, on the loop; health counts them. */
static void test_order_and_done_once(void **state)
{
    enum { N = 150 };
    struct event_base *base = event_base_new();
    mb_rq *q = new_queue(base);
    item *its = calloc(N, sizeof(*its));
    int lines[N + 10];
    mb_rq_health h;

    (void)state;
    reset_counts();
    for (int i = 0; i < N; i++) {
        its[i].idx = i;
        assert_int_equal(mb_rq_submit(q, fn_hist, on_done, &its[i]), 0);
    }
    run_until(base, &done_count, N, 20000);
    assert_int_equal(done_count, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(its[i].st, MB_OK);
        assert_int_equal(its[i].ran, i + 1);
        assert_int_equal(its[i].done_calls, 1);
        assert_int_equal(its[i].done_pos, i + 1);
    }
    assert_int_equal(hist_lines(lines, N + 10), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(lines[i], i);
    mb_rq_health_get(q, &h);
    assert_int_equal(h.depth, 0);
    assert_true(h.requests >= N);
    assert_true(h.commands >= N);
    assert_true(h.round_trips >= N);
    assert_int_equal(h.connected, 1);
    assert_true(mb_rq_ready(q, 5000));
    mb_rq_free(q);
    /* Nothing more is delivered after free. */
    for (int i = 0; i < N; i++)
        assert_int_equal(its[i].done_calls, 1);
    free(its);
    event_base_free(base);
}

/* Redis SIGSTOPped for 3 s with requests queued: the loop's timer keeps firing (no gap near
 * a store timeout), no done runs early, health turns not-ready; after SIGCONT every queued
 * request completes (its fn retries), in order. */
static void test_loop_runs_while_redis_stalls(void **state)
{
    enum { N = 20 };
    struct event_base *base = event_base_new();
    mb_rq *q = new_queue(base);
    item first = {.idx = -1};
    item *its = calloc(N, sizeof(*its));
    beat b = {0};
    struct timeval tv = {0, 50 * 1000};
    struct event *t = event_new(base, -1, EV_PERSIST, on_beat, &b);
    int never = 0;
    long long stall_end;

    (void)state;
    reset_counts();
    assert_int_equal(mb_rq_submit(q, fn_ping, on_done, &first), 0);
    run_until(base, &done_count, 1, 10000);
    assert_int_equal(first.st, MB_OK);
    reset_counts();

    event_add(t, &tv);
    redis_stop();
    stall_end = mono_ms() + 3000;
    for (int i = 0; i < N; i++) {
        its[i].idx = i;
        its[i].retry_until = mono_ms() + 30000;
        assert_int_equal(mb_rq_submit(q, fn_ping, on_done, &its[i]), 0);
    }
    run_until(base, &never, 1, stall_end - mono_ms());
    assert_int_equal(done_count, 0);
    /* 50 ms beats over 3 s; a loaded machine may stretch them, a blocked loop would not
     * beat at all for a whole store timeout. */
    assert_true(b.n >= 20);
    assert_true(b.max_gap < TIMEOUT_MS);
    assert_false(mb_rq_ready(q, 1000));
    {
        mb_rq_health h;
        mb_rq_health_get(q, &h);
        assert_int_equal(h.depth, N);
    }
    redis_cont();
    run_until(base, &done_count, N, 30000);
    assert_int_equal(done_count, N);
    for (int i = 0; i < N; i++) {
        if (its[i].st != MB_OK)
            fail_msg("request %d: %s", i, its[i].msg);
        assert_int_equal(its[i].ran, i + 1);
        assert_int_equal(its[i].done_calls, 1);
        assert_int_equal(its[i].done_pos, i + 1);
    }
    /* Redis answers again: ready within a few idle pings. */
    {
        int ready = 0;
        long long end = mono_ms() + 10000;
        while (!ready && mono_ms() < end) {
            event_base_loop(base, EVLOOP_ONCE);
            ready = mb_rq_ready(q, 2000);
        }
        assert_true(ready);
    }
    event_free(t);
    mb_rq_free(q);
    free(its);
    event_base_free(base);
}

/* Work queued behind a stalled Redis at shutdown: free returns within about one store timeout,
 * every done is called once (during free), the requests that could not run say why; later
 * submits are refused. */
static void test_shutdown_with_queued_work(void **state)
{
    enum { N = 30 };
    struct event_base *base = event_base_new();
    mb_rq *q = new_queue(base);
    item first = {.idx = -1};
    item *its = calloc(N, sizeof(*its));
    item late = {.idx = 99};
    long long t0;

    (void)state;
    reset_counts();
    assert_int_equal(mb_rq_submit(q, fn_ping, on_done, &first), 0);
    run_until(base, &done_count, 1, 10000);
    assert_int_equal(first.st, MB_OK);
    reset_counts();

    redis_stop();
    for (int i = 0; i < N; i++) {
        its[i].idx = i;
        assert_int_equal(mb_rq_submit(q, fn_hist, on_done, &its[i]), 0);
    }
    t0 = mono_ms();
    mb_rq_stop(q);
    assert_true(mono_ms() - t0 < 3 * TIMEOUT_MS + 1000);
    assert_int_equal(mb_rq_submit(q, fn_ping, on_done, &late), -1);
    assert_int_equal(done_count, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(its[i].done_calls, 1);
        assert_int_equal(its[i].done_pos, i + 1);
        assert_int_equal(its[i].st, MB_AGAIN);
    }
    assert_non_null(strstr(its[N - 1].msg, "shutting down"));
    mb_rq_free(q);
    assert_int_equal(late.done_calls, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(its[i].done_calls, 1);
    redis_cont();
    free(its);
    event_base_free(base);
}

/* A stalled server (accepts connections, never answers) costs one timeout per reconnect
 * pause, not one per call: most calls meanwhile fail at once with MB_AGAIN. */
static void test_store_backoff_under_stall(void **state)
{
    mb_error e;
    mb_store *st;
    long long end;
    int calls = 0, slow = 0;
    mb_status s = MB_AGAIN;

    (void)state;
    mb_error_clear(&e);
    st = mb_store_new(url, 16, 300, "w-backoff", &e);
    assert_non_null(st);
    assert_int_equal(mb_store_ping(st, &e), MB_OK);
    assert_true(mb_store_last_ok_ms(st) > 0);
    redis_stop();
    end = mono_ms() + 3000;
    while (mono_ms() < end) {
        long long t = mono_ms();
        struct timespec ts = {0, 10 * 1000 * 1000};
        mb_error_clear(&e);
        assert_int_equal(mb_store_ping(st, &e), MB_AGAIN);
        calls++;
        if (mono_ms() - t >= 150)
            slow++;
        nanosleep(&ts, NULL);
    }
    redis_cont();
    /* Pauses of 50, 100, 200, ... 2000 ms after each 300 ms timeout: at most 7 in 3 s;
     * without the pause every call would be slow. */
    assert_true(slow >= 1);
    assert_true(slow <= 7);
    assert_true(calls >= 3 * slow);
    end = mono_ms() + 10000;
    while (s != MB_OK && mono_ms() < end) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        mb_error_clear(&e);
        s = mb_store_ping(st, &e);
        nanosleep(&ts, NULL);
    }
    assert_int_equal(s, MB_OK);
    mb_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_done_once),
        cmocka_unit_test(test_loop_runs_while_redis_stalls),
        cmocka_unit_test(test_shutdown_with_queued_work),
        cmocka_unit_test(test_store_backoff_under_stall),
    };
    return cmocka_run_group_tests(tests, start_redis, teardown_all);
}
