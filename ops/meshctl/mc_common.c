/* mc_common.c: helpers every meshctl command uses: the store, errors, formats, job views. */
#include "mc.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "mb_json.h"
#include "mb_order.h"
#include "mb_sagadef.h"
#include "mb_sagadoc.h"
#include "mc_out.h"

#define STORE_TIMEOUT_MS 5000
/* A lease is only called abandoned, and a due job unclaimed, after this much slack:
 * a busy worker renews late, a claim tick comes late. */
#define STUCK_GRACE_MS 30000

long long mc_now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

long long mc_store_now_ms(mc_ctx *c)
{
    mb_store *st = mc_store(c);
    long long now;
    mb_error e;

    mb_error_clear(&e);
    if (st == NULL || mb_store_time_ms(st, &now, &e) != MB_OK)
        return mc_now_ms();
    return now;
}

int mc_fail(int code, const char *fmt, ...)
{
    va_list ap;

    fputs("meshctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int mc_store_fail(const char *what, const mb_error *e)
{
    if (e->status == MB_AGAIN || e->status == MB_FATAL)
        return mc_fail(MC_EXIT_CONFIG, "%s: %s (is REDIS_URL right and Redis up?)", what, e->msg);
    return mc_fail(MC_EXIT_FAILED, "%s: %s", what, e->msg);
}

mb_store *mc_store(mc_ctx *c)
{
    mb_error e;
    char id[240];

    if (c->store)
        return c->store;
    mb_error_clear(&e);
    snprintf(id, sizeof(id), "meshctl:%s", c->who);
    c->store = mb_store_new(mb_conf_str(c->conf, "REDIS_URL"),
                            (int)mb_conf_int(c->conf, "MESHBUY_SHARDS"), STORE_TIMEOUT_MS, id, &e);
    if (c->store == NULL) {
        mc_fail(MC_EXIT_CONFIG, "REDIS_URL: %s", e.msg);
        return NULL;
    }
    if (mb_store_ping(c->store, &e) != MB_OK) {
        mc_fail(MC_EXIT_CONFIG,
                "cannot use Redis: %s (check REDIS_URL and MESHBUY_SHARDS: "
                "they must match the workers')",
                e.msg);
        mb_store_free(c->store);
        c->store = NULL;
        return NULL;
    }
    return c->store;
}

char *mc_fmt_age(long long ms, char *buf, size_t len)
{
    long long s = ms / 1000;

    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(buf, len, "%llds", s);
    else if (s < 2 * 3600)
        snprintf(buf, len, "%lldm", s / 60);
    else if (s < 2 * 86400)
        snprintf(buf, len, "%lldh", s / 3600);
    else
        snprintf(buf, len, "%lldd", s / 86400);
    return buf;
}

char *mc_fmt_time(long long ms, char *buf, size_t len)
{
    if (ms <= 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    return mb_json_time_ms(ms, buf, len);
}

int mc_parse_duration(const char *s, long long *ms)
{
    char *end;
    long long v, unit = 1000;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -1;
    if (*end == 's' || *end == '\0')
        unit = 1000;
    else if (*end == 'm')
        unit = 60000;
    else if (*end == 'h')
        unit = 3600000;
    else if (*end == 'd')
        unit = 86400000;
    else
        return -1;
    if (*end != '\0' && end[1] != '\0')
        return -1;
    if (v > 100LL * 365 * 86400000 / unit)
        return -1;
    *ms = v * unit;
    return 0;
}

int mc_parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int mc_parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The engine's own status words; the sagas add theirs (active and done words). */
static const char *const STATUSES[] = {
    "Accepted", "RollingBack", "Failed", "Cancelled", "NeedsAttention", NULL,
};

void mc_status_words(const char **out, size_t max)
{
    size_t n = 0;

    for (int i = 0; STATUSES[i] && n + 1 < max; i++)
        out[n++] = STATUSES[i];
    for (size_t i = 0; i < mb_saga_defs_count && n + 2 < max; i++) {
        out[n++] = mb_saga_defs[i]->active;
        out[n++] = mb_saga_defs[i]->done;
    }
    if (n + 1 < max)
        out[n++] = "stuck";
    out[n] = NULL;
}

const char *mc_status_canon(const char *s)
{
    if (strcasecmp(s, "stuck") == 0)
        return "stuck";
    for (int i = 0; STATUSES[i]; i++) {
        if (strcasecmp(s, STATUSES[i]) == 0)
            return STATUSES[i];
    }
    for (size_t i = 0; i < mb_saga_defs_count; i++) {
        if (strcasecmp(s, mb_saga_defs[i]->active) == 0)
            return mb_saga_defs[i]->active;
        if (strcasecmp(s, mb_saga_defs[i]->done) == 0)
            return mb_saga_defs[i]->done;
    }
    return NULL;
}

int mc_status_done(const char *st)
{
    for (size_t i = 0; i < mb_saga_defs_count; i++) {
        if (strcmp(st, mb_saga_defs[i]->done) == 0)
            return 1;
    }
    return 0;
}

int mc_status_terminal(const char *st)
{
    return mb_store_status_terminal(st);
}

/* The job's definition, or NULL (a saga of a newer build). */
static const mb_saga_def *def_of(const mb_job *j)
{
    return mb_saga_def_find(mb_saga_defs, mb_saga_defs_count, j->saga);
}

int mc_saga_of(const mb_job *j, const mb_saga_def **out)
{
    *out = def_of(j);
    if (*out)
        return MC_EXIT_OK;
    return mc_fail(MC_EXIT_FAILED,
                   "job %s runs saga \"%s\", which this meshctl does not know "
                   "(use the meshctl of the workers' release)",
                   j->order_id, j->saga);
}

int mc_job_leased(const mb_job *j, long long now)
{
    return j->lease_owner[0] != '\0' && j->lease_until_ms > now;
}

/* The deadline of the step the job is at: the step's own, else the workers' default. */
static long long step_deadline(const mc_ctx *c, const mb_job *j)
{
    long long i = json_integer_value(json_object_get(j->state, "step"));
    const char *phase = json_string_value(json_object_get(j->state, "phase"));
    const mb_saga_def *d = def_of(j);

    if (phase && strcmp(phase, "compensate") == 0)
        return mb_conf_int(c->conf, "MESHBUY_COMPENSATE_DEADLINE_MS");
    if (d && i >= 0 && i < d->nsteps && d->steps[i]->deadline_ms > 0)
        return d->steps[i]->deadline_ms;
    if (d && d->step_deadline_ms > 0)
        return d->step_deadline_ms;
    return mb_conf_int(c->conf, "MESHBUY_STEP_DEADLINE_MS");
}

const char *mc_stuck_reason(const mc_ctx *c, const mb_job *j, long long now, char *buf, size_t len)
{
    long long started = json_integer_value(json_object_get(j->state, "step_started_ms"));
    long long deadline;
    char age[16];

    buf[0] = '\0';
    if (mc_status_terminal(j->status))
        return buf;
    if (j->lease_owner[0] && j->lease_until_ms + STUCK_GRACE_MS < now) {
        snprintf(buf, len, "lease of %s expired %s ago: the worker stopped renewing",
                 j->lease_owner, mc_fmt_age(now - j->lease_until_ms, age, sizeof(age)));
        return buf;
    }
    deadline = step_deadline(c, j);
    if (started > 0 && now - started > deadline + STUCK_GRACE_MS) {
        snprintf(buf, len, "step %s started %s ago, past its %llds deadline",
                 j->step[0] ? j->step : "?", mc_fmt_age(now - started, age, sizeof(age)),
                 deadline / 1000);
        return buf;
    }
    if (j->lease_owner[0] == '\0' && j->next_run_ms > 0 && j->next_run_ms + STUCK_GRACE_MS < now)
        snprintf(buf, len, "due %s ago and not claimed: are workers running?",
                 mc_fmt_age(now - j->next_run_ms, age, sizeof(age)));
    return buf;
}

const char *mc_job_step(const mb_job *j)
{
    const char *at = mb_sagadoc_stopped_at(j->state);

    /* After compensation the stored position is the start of the saga; where it stopped
     * is what the operator needs (the Failed event says the same). */
    if (at && (strcmp(j->status, "Failed") == 0 || strcmp(j->status, "Cancelled") == 0 ||
               strcmp(j->status, "NeedsAttention") == 0))
        return at;
    return j->step;
}

/* The step's index in its saga (1-based) and the saga's length, as status events count. */
static void step_pos(const mb_job *j, const char *step, json_t *o)
{
    const mb_saga_def *d = def_of(j);
    int i = d ? mb_saga_def_step(d, step) : -1;

    json_object_set_new(o, "step_index", i < 0 ? json_null() : json_integer(i + 1));
    json_object_set_new(o, "step_total", d ? json_integer(d->nsteps) : json_null());
}

json_t *mc_job_summary(const mc_ctx *c, const mb_job *j, long long now)
{
    char why[300];
    long long attempts = json_integer_value(json_object_get(j->state, "attempt"));
    json_t *mesh = json_object_get(json_object_get(j->order, "data"), "mesh");
    const mb_saga_def *d = def_of(j);
    const char *slash = strchr(j->key, '/');
    json_t *o = json_object();

    if (o == NULL)
        return NULL;
    mc_stuck_reason(c, j, now, why, sizeof(why));
    /* One shape wherever a job is printed: numbers as numbers, each epoch value with its
     * RFC 3339 time beside it, null for what is absent. */
    json_object_set_new(o, "order_id", json_string(j->order_id));
    json_object_set_new(o, "mesh", json_string(j->key));
    json_object_set_new(o, "account",
                        slash ? json_stringn(j->key, (size_t)(slash - j->key)) : json_null());
    json_object_set_new(o, "cluster",
                        mc_json_str(json_string_value(json_object_get(mesh, "cluster_id"))));
    json_object_set_new(o, "saga", json_string(d ? d->name : j->saga));
    json_object_set_new(o, "status", json_string(j->status));
    json_object_set_new(o, "step", mc_json_str(mc_job_step(j)));
    step_pos(j, mc_job_step(j), o);
    json_object_set_new(o, "attempts", json_integer(attempts > 0 ? attempts : j->attempt));
    json_object_set_new(o, "parked",
                        json_boolean(json_is_true(json_object_get(j->state, "parked"))));
    json_object_set_new(o, "created_ms", json_integer(j->created_ms));
    json_object_set_new(o, "created", mc_json_time(j->created_ms));
    json_object_set_new(o, "updated_ms", json_integer(j->updated_ms));
    json_object_set_new(o, "updated", mc_json_time(j->updated_ms));
    json_object_set_new(o, "age_ms", json_integer(now - j->created_ms));
    json_object_set_new(o, "next_run_ms",
                        j->next_run_ms > 0 ? json_integer(j->next_run_ms) : json_null());
    json_object_set_new(o, "next_run", mc_json_time(j->next_run_ms));
    json_object_set_new(o, "error_code", mc_json_str(j->error_code));
    json_object_set_new(o, "error_msg", mc_json_str(j->error_msg));
    json_object_set_new(o, "lease_owner", mc_json_str(j->lease_owner));
    json_object_set_new(o, "lease_until_ms",
                        j->lease_owner[0] ? json_integer(j->lease_until_ms) : json_null());
    json_object_set_new(o, "lease_until",
                        j->lease_owner[0] ? mc_json_time(j->lease_until_ms) : json_null());
    json_object_set_new(o, "fence", json_integer(j->fence));
    json_object_set_new(o, "claims", json_integer(j->claims));
    json_object_set_new(o, "cancel_requested", json_boolean(j->cancel_requested));
    json_object_set_new(o, "stuck", json_boolean(why[0] != '\0'));
    json_object_set_new(o, "stuck_reason", mc_json_str(why));
    return o;
}

int mc_get_job(mc_ctx *c, const char *id, mb_job **out)
{
    mb_store *st = mc_store(c);
    mb_error e;

    *out = NULL;
    if (st == NULL)
        return MC_EXIT_CONFIG;
    if (mb_order_check_order_id(id) != NULL)
        return mc_fail(MC_EXIT_USAGE,
                       "'%s' is not an order id (letters, digits, ._:-, "
                       "at most 64)",
                       id);
    mb_error_clear(&e);
    if (mb_store_get(st, id, out, &e) != MB_OK)
        return mc_store_fail("reading the job", &e);
    if (*out == NULL)
        return mc_fail(MC_EXIT_NOTFOUND, "no job for order %s (list jobs with: meshctl jobs)", id);
    return MC_EXIT_OK;
}
