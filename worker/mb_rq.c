/* mb_rq.c: the Redis request queue: one thread that owns a store connection runs the loop's
 * Redis work in order, so a slow or stalled Redis never blocks the event loop.
 *
 * Hand-over: the loop appends a request to `waiting` (mutex + condition); the thread takes the
 * first, runs fn(st, ctx) with the mutex released, appends it to `done` and, when `done` was
 * empty, writes the eventfd.  The loop's event on the eventfd takes the whole `done` list and
 * calls each done(ctx) in order.  So requests run one at a time in submission order, dones
 * come back in the same order, several per wake-up, each exactly once.
 *
 * hiredis 0.14's async API has no timeouts, so the store stays synchronous, on its own
 * thread: a Redis that stops answering blocks the thread for one timeout per reconnect
 * pause (mb_store's backoff), never the loop.  When idle, the thread PINGs now and then so
 * /readyz can tell "Redis answered recently" without any traffic.
 */
#include "mb_rq.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "mb_log.h"
#include "mb_store.h"

#define IDLE_PING_MS 1000

typedef struct req {
    mb_rq_fn *fn;
    mb_rq_done *done;
    void *ctx;
    struct req *next;
} req;

/* A FIFO of requests. */
typedef struct fifo {
    req *head, *tail;
} fifo;

struct mb_rq {
    struct event_base *base;
    struct event *wake_ev; /* the eventfd is readable: dones are waiting */
    int efd;
    mb_store *st; /* the thread's, never touched by the loop after start */
    long idle_ping_ms;

    pthread_t th;
    int started;
    int stopped; /* mb_rq_stop ran (loop thread only) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    fifo waiting; /* under mu */
    fifo done;    /* under mu */
    int stopping; /* under mu: no more submits; the thread ends when waiting is empty */

    /* Health, written by the thread, read by the loop. */
    atomic_int connected;
    atomic_llong last_ok_ms;
    atomic_size_t depth; /* submitted, done not yet called (touched by both threads) */
    atomic_ullong requests;
    atomic_ullong commands;
    atomic_ullong round_trips;
};

static long long mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fifo_push(fifo *f, req *r)
{
    r->next = NULL;
    if (f->tail)
        f->tail->next = r;
    else
        f->head = r;
    f->tail = r;
}

static req *fifo_pop(fifo *f)
{
    req *r = f->head;

    if (r == NULL)
        return NULL;
    f->head = r->next;
    if (f->head == NULL)
        f->tail = NULL;
    r->next = NULL;
    return r;
}

/* ================================================================ the Redis thread */

/* Publishes what the store knows after an exchange (the store itself is the thread's). */
static void publish_health(mb_rq *q)
{
    atomic_store(&q->connected, mb_store_connected(q->st));
    atomic_store(&q->last_ok_ms, mb_store_last_ok_ms(q->st));
    atomic_store(&q->commands, mb_store_commands(q->st));
    atomic_store(&q->round_trips, mb_store_round_trips(q->st));
}

static void wake_loop(mb_rq *q)
{
    uint64_t one = 1;

    /* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
    if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        mb_error("rq", "eventfd write: %s", strerror(errno));
}

static void idle_ping(mb_rq *q)
{
    mb_error e;

    mb_error_clear(&e);
    mb_store_ping(q->st, &e);
    publish_health(q);
}

/* Waits for a request; NULL when stopping with nothing left.  Called with mu held. */
static req *next_request(mb_rq *q)
{
    while (q->waiting.head == NULL && !q->stopping) {
        long long idle_since = mono_ms();
        struct timespec until;
        int rc;

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += q->idle_ping_ms / 1000;
        until.tv_nsec += (q->idle_ping_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        rc = pthread_cond_timedwait(&q->cv, &q->mu, &until);
        if (rc == ETIMEDOUT && q->waiting.head == NULL && !q->stopping &&
            mono_ms() - idle_since >= q->idle_ping_ms) {
            pthread_mutex_unlock(&q->mu);
            idle_ping(q);
            pthread_mutex_lock(&q->mu);
        }
    }
    if (q->stopping)
        mb_store_set_offline(q->st, 1); /* drain what is queued without reconnecting */
    return fifo_pop(&q->waiting);
}

static void *thread_main(void *arg)
{
    mb_rq *q = arg;

    pthread_mutex_lock(&q->mu);
    for (;;) {
        req *r = next_request(q);
        int was_empty;

        if (r == NULL)
            break;
        pthread_mutex_unlock(&q->mu);
        r->fn(q->st, r->ctx);
        atomic_fetch_add(&q->requests, 1);
        publish_health(q);
        pthread_mutex_lock(&q->mu);
        was_empty = q->done.head == NULL;
        fifo_push(&q->done, r);
        if (was_empty)
            wake_loop(q);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* ================================================================ the loop side */

/* Calls the dones of a list taken off the queue, in order. */
static void run_dones(mb_rq *q, req *r)
{
    while (r) {
        req *next = r->next;
        mb_rq_done *done = r->done;
        void *ctx = r->ctx;

        free(r);
        atomic_fetch_sub(&q->depth, 1);
        done(ctx);
        r = next;
    }
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    mb_rq *q = arg;
    uint64_t n;
    req *list;

    (void)what;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        mb_error("rq", "eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&q->mu);
    list = q->done.head;
    q->done.head = q->done.tail = NULL;
    pthread_mutex_unlock(&q->mu);
    run_dones(q, list);
}

mb_rq *mb_rq_new(struct event_base *base, const mb_rq_opts *o, char *err, size_t errlen)
{
    mb_rq *q = calloc(1, sizeof(*q));
    sigset_t all, old;
    mb_error e;

    if (q == NULL) {
        snprintf(err, errlen, "redis queue: out of memory");
        return NULL;
    }
    q->efd = -1;
    q->base = base;
    q->idle_ping_ms = o->idle_ping_ms > 0 ? o->idle_ping_ms : IDLE_PING_MS;
    pthread_mutex_init(&q->mu, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    mb_error_clear(&e);
    q->st = mb_store_new(o->url, o->shards, o->timeout_ms, o->worker_id, &e);
    if (q->st == NULL) {
        snprintf(err, errlen, "%s", e.msg);
        goto err;
    }
    mb_store_set_retention(q->st, o->retain_ms, o->tombstone_ms);
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        snprintf(err, errlen, "redis queue: eventfd: %s", strerror(errno));
        goto err;
    }
    q->wake_ev = event_new(base, q->efd, EV_READ | EV_PERSIST, on_wake, q);
    if (q->wake_ev == NULL || event_add(q->wake_ev, NULL) < 0) {
        snprintf(err, errlen, "redis queue: event set-up failed");
        goto err;
    }
    /* Signals belong to the loop thread (libevent's handlers): the new thread blocks all. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&q->th, NULL, thread_main, q) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        snprintf(err, errlen, "redis queue: cannot start its thread");
        goto err;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    q->started = 1;
    return q;
err:
    mb_rq_free(q);
    return NULL;
}

int mb_rq_submit(mb_rq *q, mb_rq_fn *fn, mb_rq_done *done, void *ctx)
{
    req *r = malloc(sizeof(*r));

    if (r == NULL)
        return -1;
    r->fn = fn;
    r->done = done;
    r->ctx = ctx;
    pthread_mutex_lock(&q->mu);
    if (q->stopping || !q->started) {
        pthread_mutex_unlock(&q->mu);
        free(r);
        return -1;
    }
    fifo_push(&q->waiting, r);
    atomic_fetch_add(&q->depth, 1);
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

void mb_rq_health_get(const mb_rq *q, mb_rq_health *out)
{
    mb_rq *m = (mb_rq *)q; /* atomics are read through a non-const pointer */
    long long ok = atomic_load(&m->last_ok_ms);

    out->connected = atomic_load(&m->connected);
    out->last_ok_ms = ok;
    out->age_ms = ok ? mono_ms() - ok : -1;
    out->depth = atomic_load(&m->depth);
    out->requests = atomic_load(&m->requests);
    out->commands = atomic_load(&m->commands);
    out->round_trips = atomic_load(&m->round_trips);
}

int mb_rq_ready(const mb_rq *q, long long max_age_ms)
{
    mb_rq_health h;

    mb_rq_health_get(q, &h);
    return h.connected && h.age_ms >= 0 && h.age_ms <= max_age_ms;
}

void mb_rq_stop(mb_rq *q)
{
    req *list;

    if (q == NULL || q->stopped)
        return;
    q->stopped = 1;
    pthread_mutex_lock(&q->mu);
    q->stopping = 1;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (q->started)
        pthread_join(q->th, NULL);
    q->started = 0;
    /* The thread is gone: what it finished is ours to complete.  A done may submit again
     * (refused: stopping), never adding to the list taken here. */
    pthread_mutex_lock(&q->mu);
    list = q->done.head;
    q->done.head = q->done.tail = NULL;
    pthread_mutex_unlock(&q->mu);
    run_dones(q, list);
}

void mb_rq_free(mb_rq *q)
{
    if (q == NULL)
        return;
    mb_rq_stop(q);
    if (q->wake_ev)
        event_free(q->wake_ev);
    if (q->efd >= 0)
        close(q->efd);
    mb_store_free(q->st);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}
