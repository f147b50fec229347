/* mb_check.c: the check driver: one step's read-only face, run to its end on a loop. */
#include "mb_check.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

typedef struct cjob {
    mb_sjob pub; /* first: the face sees only this */
    struct event_base *base;
    int pending;   /* calls in flight */
    int timed_out; /* the bound passed before they were back */
} cjob;

static void drv_io(mb_sjob *pub)
{
    cjob *c = (cjob *)pub;

    if (c->pending++ == 0) /* a new batch: its first error is what the face sees next */
        mb_error_clear(&c->pub.err);
}

static void drv_done(mb_sjob *pub, const mb_error *err)
{
    cjob *c = (cjob *)pub;

    if (err && err->status != MB_OK && c->pub.err.status == MB_OK)
        c->pub.err = *err;
    if (--c->pending == 0)
        event_base_loopbreak(c->base);
}

static void drv_lost(mb_sjob *pub)
{
    cjob *c = (cjob *)pub;

    c->pending--;
    mb_error_set(&c->pub.err, MB_FATAL, "OutOfMemory", "cloud call not started: out of memory");
}

static const mb_step_host driver_host = {drv_io, drv_done, drv_lost};

/* A check face only reads: any write it tried would stop here, before the wire. */
static int refuse_writes(void *arg, long timeout_ms, mb_error *err)
{
    (void)arg;
    (void)timeout_ms;
    mb_error_set(err, MB_PERM, "ReadOnly", "a check face tried to change the cloud");
    return -1;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    cjob *c = arg;

    (void)fd;
    (void)what;
    c->timed_out = 1;
    event_base_loopbreak(c->base);
}

static long long wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Runs the loop until the face's calls are back or the bound passes.  0 or -1. */
static int wait_calls(cjob *c)
{
    while (c->pending > 0 && !c->timed_out) {
        if (event_base_loop(c->base, EVLOOP_ONCE) < 0)
            return -1;
    }
    return c->pending > 0 ? -1 : 0;
}

static void set_error(json_t *plan, const char *code, const char *msg)
{
    json_object_set_new(plan, "observed", json_false());
    json_object_set_new(plan, "error", json_pack("{s:s, s:s}", "code", code, "message", msg));
}

/* Drives the face: runs it again each time its batch of calls is back. */
static void drive(cjob *c, const mb_step *st, const mb_check_env *env, json_t *plan)
{
    struct timeval tv = {env->timeout_ms / 1000, (env->timeout_ms % 1000) * 1000};
    struct event *timer = evtimer_new(env->base, on_timeout, c);
    mb_step_rc rc = MB_STEP_ERROR;

    if (timer == NULL) {
        set_error(plan, "OutOfMemory", "no timer");
        return;
    }
    evtimer_add(timer, &tv);
    for (;;) {
        rc = st->check(&c->pub);
        if (rc != MB_STEP_WAIT)
            break;
        if (c->pending > 0 && wait_calls(c) != 0)
            break;
    }
    evtimer_del(timer);
    event_free(timer);
    if (c->pending > 0) { /* the face's outs are freed next: no callback may reach them */
        mb_cloud_cancel_owner(env->cloud, c);
        c->pending = 0;
        set_error(plan, "Timeout", "the reads did not complete within the bound");
    } else if (rc == MB_STEP_ERROR) {
        set_error(plan, c->pub.err.code[0] ? c->pub.err.code : "Error", c->pub.err.msg);
    } else if (rc != MB_STEP_DONE) {
        set_error(plan, "Internal", "the check face asked to save or poll; it may only read");
    }
}

static json_t *new_plan(const mb_step *st)
{
    return json_pack("{s:s, s:b, s:[], s:[], s:n, s:n}", "step", st->name, "observed", 1, "changes",
                     "in_place", "fails", "error");
}

json_t *mb_check_step(const mb_check_env *env, const mb_step *st, const json_t *state,
                      const mb_order *order, const mb_cloud_target *t)
{
    json_t *plan = new_plan(st);
    json_t *ck;
    cjob c;

    if (plan == NULL)
        return NULL;
    if (st->check == NULL) {
        json_object_set_new(plan, "observed", json_false());
        mb_step_would(&(mb_sjob){.plan = plan},
                      "unknown: step %s has no read-only face; it may change whatever its run "
                      "changes",
                      st->name);
        return plan;
    }
    memset(&c, 0, sizeof(c));
    c.base = env->base;
    c.pub.host = &driver_host;
    c.pub.plan = plan;
    c.pub.order = order;
    c.pub.cloud = env->cloud;
    c.pub.catalog = env->catalog;
    c.pub.target = *t;
    c.pub.target.guard = refuse_writes;
    c.pub.target.guard_arg = NULL;
    c.pub.target.owner = &c;
    c.pub.target.deadline_ms = wall_ms() + env->timeout_ms;
    c.pub.state = json_is_object(state) ? json_deep_copy(state) : json_object();
    ck = json_object_get(json_object_get(json_object_get(c.pub.state, "steps"), st->name), "ck");
    c.pub.ck = json_is_object(ck) ? json_deep_copy(ck) : json_object();
    if (st->scratch_size)
        c.pub.scratch = calloc(1, st->scratch_size);
    if (c.pub.state == NULL || c.pub.ck == NULL || (st->scratch_size && c.pub.scratch == NULL))
        set_error(plan, "OutOfMemory", "no room for the check");
    else
        drive(&c, st, env, plan);
    if (c.pub.scratch && st->clear)
        st->clear(c.pub.scratch);
    free(c.pub.scratch);
    json_decref(c.pub.ck);
    json_decref(c.pub.state);
    return plan;
}
