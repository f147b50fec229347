/* mb_sagadoc.c: the saga state document's rewrites (see mb_sagadoc.h). */
#include "mb_sagadoc.h"

#include <stdio.h>
#include <string.h>

static const char *str_of(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static const char *step_status(const mb_saga_def *d, const json_t *state, int i)
{
    json_t *rec = json_object_get(json_object_get(state, "steps"), d->steps[i]->name);

    return str_of(rec, "status");
}

void mb_sagadoc_position(json_t *state, int step)
{
    json_object_set_new(state, "step", json_integer(step));
    json_object_set_new(state, "attempt", json_integer(0));
    json_object_set_new(state, "step_started_ms", json_integer(0));
}

const char *mb_sagadoc_stopped_at(const json_t *state)
{
    const char *s = str_of(json_object_get(state, "error"), "step");

    return s ? s : str_of(state, "outcome_step");
}

int mb_sagadoc_last_started(const mb_saga_def *d, const json_t *state)
{
    json_t *steps = json_object_get(state, "steps");

    for (int i = d->nsteps - 1; i >= 0; i--) {
        json_t *rec = json_object_get(steps, d->steps[i]->name);
        if (rec && (json_integer_value(json_object_get(rec, "started_ms")) > 0 ||
                    json_object_get(rec, "status")))
            return i;
    }
    return -1;
}

int mb_sagadoc_default_from(const mb_saga_def *d, const json_t *state, const char *status)
{
    if (json_is_true(json_object_get(state, "parked")) ||
        (d->keep_effects && mb_sagadoc_stopped_at(state))) {
        int i = mb_saga_def_step(d, mb_sagadoc_stopped_at(state));
        return i < 0 ? 0 : i;
    }
    if (strcmp(status, "Failed") == 0 || strcmp(status, "Cancelled") == 0 ||
        strcmp(status, "NeedsAttention") == 0) {
        for (int i = 0; i < d->nsteps; i++) {
            if (d->steps[i]->compensate)
                return i;
        }
    }
    return 0;
}

static int undone(const char *s)
{
    return s && (strcmp(s, "compensated") == 0 || strcmp(s, "compensating") == 0 ||
                 strcmp(s, "compensation_failed") == 0);
}

int mb_sagadoc_check_skipped(const mb_saga_def *d, const json_t *state, int from, char *why,
                             size_t len)
{
    for (int i = 0; i < from && i < d->nsteps; i++) {
        const char *s = step_status(d, state, i);
        if (d->steps[i]->compensate == NULL || !undone(s))
            continue;
        snprintf(why, len,
                 "step %s before %s was undone (%s): replay from %s or earlier, or add --force",
                 d->steps[i]->name, d->steps[from]->name, s, d->steps[i]->name);
        return -1;
    }
    return 0;
}

int mb_sagadoc_claims_name(const mb_saga_def *d, int from)
{
    for (int i = from < 0 ? 0 : from; i < d->nsteps; i++) {
        if (d->steps[i]->releases_name)
            return 1;
    }
    return 0;
}

void mb_sagadoc_compensate(const mb_saga_def *d, json_t *state, int from, const char *outcome,
                           const json_t *error)
{
    int n = d->nsteps;

    json_object_set_new(state, "phase", json_string("compensate"));
    json_object_set_new(state, "outcome", json_string(outcome));
    json_object_set_new(state, "outcome_step",
                        json_string(d->steps[from < 0    ? 0
                                             : from >= n ? n - 1
                                                         : from]
                                        ->name));
    if (error)
        json_object_set(state, "error", (json_t *)error);
    mb_sagadoc_position(state, from);
}

void mb_sagadoc_announce(json_t *state, const char *status, const char *message)
{
    json_object_set_new(state, "announce",
                        json_pack("{s:s, s:s}", "status", status, "message", message));
}

/* A copy of state to rewrite: an object even when the stored one is not. */
static json_t *copy_of(const json_t *state)
{
    json_t *s = json_deep_copy(state);

    if (s == NULL || !json_is_object(s)) {
        json_decref(s);
        s = json_object();
    }
    return s;
}

json_t *mb_sagadoc_replay(const mb_saga_def *d, const json_t *state, int from, const char *who,
                          const char *status_was, long long now_ms)
{
    json_t *s = copy_of(state);
    json_t *replays;
    char msg[300];

    if (s == NULL)
        return NULL;
    json_object_set_new(s, "phase", json_string("run"));
    mb_sagadoc_position(s, from);
    json_object_del(s, "error");
    json_object_del(s, "outcome");
    json_object_del(s, "outcome_step");
    json_object_del(s, "parked");
    replays = json_object_get(s, "replays");
    if (!json_is_array(replays)) {
        replays = json_array();
        json_object_set_new(s, "replays", replays);
    }
    json_array_append_new(replays,
                          json_pack("{s:s, s:s, s:I, s:s}", "by", who, "from", d->steps[from]->name,
                                    "at_ms", (json_int_t)now_ms, "status_was", status_was));
    snprintf(msg, sizeof(msg), "replay from %s requested by %s", d->steps[from]->name, who);
    mb_sagadoc_announce(s, mb_mesh_status_name(d->active_event), msg);
    return s;
}

json_t *mb_sagadoc_rollback(const mb_saga_def *d, const json_t *state, int from, const char *msg)
{
    json_t *s = copy_of(state);
    json_t *error;

    if (s == NULL)
        return NULL;
    error = json_pack("{s:s, s:s, s:s, s:b}", "step", d->steps[from]->name, "code", "RolledBack",
                      "message", msg, "retryable", 0);
    mb_sagadoc_compensate(d, s, from, "Failed", error);
    json_decref(error);
    json_object_del(s, "parked");
    mb_sagadoc_announce(s, mb_mesh_status_name(MB_MESH_ROLLING_BACK), msg);
    return s;
}
