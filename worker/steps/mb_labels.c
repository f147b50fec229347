/* mb_labels.c: the observe, remember, patch cycle that label_nodes and inject share. */
#include "mb_labels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OBJECTS 64 /* an order names at most 64 namespaces (schemas/order-buy.schema.json) */

/* Where an execution stands (j->pc). */
enum {
    RUN_READ,    /* read every object */
    RUN_CHECK,   /* read: all exist? remember the prior values (once), save */
    RUN_PATCH,   /* patch the objects whose label differs */
    RUN_PATCHED, /* the patches were sent */
};
enum {
    CHECK_READ,  /* read every object */
    CHECK_JUDGE, /* read: say what run() would patch */
};
enum {
    UNDO_RESTORE,  /* put the prior values back */
    UNDO_RESTORED, /* the patches were sent */
};
enum {
    BACK_READ,    /* read every object the create changed */
    BACK_PLAN,    /* read: decide (once) which still hold the create's value, save */
    BACK_PATCH,   /* patch those back to their prior value */
    BACK_PATCHED, /* the patches were sent */
};

void mb_labels_clear(void *scratch)
{
    mb_labels_scratch *s = scratch;

    for (size_t i = 0; i < s->nseen; i++)
        mb_k8s_meta_clear(&s->seen[i]);
    free(s->seen);
    free(s->names);
}

/* Reads the n objects named in names into seen[0..n): MB_STEP_WAIT, or MB_STEP_ERROR when
 * out of memory. */
static mb_step_rc read_all(mb_sjob *j, mb_labels_scratch *s, mb_k8s_kind kind,
                           const char *const *names, size_t n)
{
    if (n > 0 && s->seen == NULL) { /* once an execution: the scratch starts zeroed */
        s->seen = calloc(n, sizeof(*s->seen));
        if (s->seen == NULL)
            return mb_step_oom(j, "labels");
        s->nseen = n;
    }
    for (size_t i = 0; i < n; i++)
        mb_step_call(j, mb_cloud_k8s_get(j->cloud, &j->target, kind, names[i], &s->seen[i],
                                         mb_step_done, mb_step_io(j)));
    return MB_STEP_WAIT;
}

static const char *label_of(const mb_k8s_meta *m, const char *key)
{
    return json_string_value(json_object_get(m->labels, key));
}

static int same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* ck.prior = {name: value-or-null}, from what was just read. */
static void remember(mb_sjob *j, const mb_labels_spec *spec, const mb_labels_scratch *s)
{
    json_t *prior = json_object();

    for (size_t i = 0; i < spec->n; i++) {
        const char *v = label_of(&s->seen[i], spec->key);
        json_object_set_new(prior, spec->names[i], v ? json_string(v) : json_null());
    }
    json_object_set_new(j->ck, "prior", prior);
}

mb_step_rc mb_labels_run(mb_sjob *j, const mb_labels_spec *spec)
{
    mb_labels_scratch *s = j->scratch;
    json_t *changed;

    if (spec->n > MAX_OBJECTS)
        return mb_step_fail(j, "InvalidOrder", "too many objects to label (%zu)", spec->n);
    switch (j->pc) {
    case RUN_READ: j->pc = RUN_CHECK; return read_all(j, s, spec->kind, spec->names, spec->n);
    case RUN_CHECK:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        for (size_t i = 0; i < spec->n; i++) {
            if (!s->seen[i].exists)
                return mb_step_fail(j, "NotFound", "%s %s does not exist",
                                    spec->kind == MB_K8S_NODE ? "node" : "namespace",
                                    spec->names[i]);
        }
        j->pc = RUN_PATCH;
        if (json_object_get(j->ck, "prior") == NULL) {
            remember(j, spec, s);
            return MB_STEP_SAVE;
        }
        /* fall through */
    case RUN_PATCH:
        changed = json_array();
        json_object_set_new(j->ck, "changed", changed);
        for (size_t i = 0; i < spec->n; i++) {
            if (same(label_of(&s->seen[i], spec->key), spec->value))
                continue; /* already in place: a read, no write */
            json_array_append_new(changed, json_string(spec->names[i]));
            mb_step_call(j, mb_cloud_k8s_label_patch(j->cloud, &j->target, spec->kind,
                                                     spec->names[i], spec->key, spec->value,
                                                     mb_step_done, mb_step_io(j)));
        }
        j->pc = RUN_PATCHED;
        return MB_STEP_WAIT;
    case RUN_PATCHED: return j->err.status != MB_OK ? MB_STEP_ERROR : MB_STEP_DONE;
    default: return mb_step_fail(j, "Internal", "labels: no state %d", j->pc);
    }
}

mb_step_rc mb_labels_compensate(mb_sjob *j, const mb_labels_spec *spec)
{
    json_t *prior = json_object_get(j->ck, "prior");
    const char *name;
    json_t *v;

    if (j->pc == UNDO_RESTORE) {
        j->pc = UNDO_RESTORED;
        json_object_foreach(prior, name, v)
        {
            if (same(json_string_value(v), spec->value))
                continue; /* it was there before us: not ours to remove */
            mb_step_call(j, mb_cloud_k8s_label_patch(j->cloud, &j->target, spec->kind, name,
                                                     spec->key, json_string_value(v), mb_step_done,
                                                     mb_step_io(j)));
        }
        return MB_STEP_WAIT;
    }
    if (j->err.status != MB_OK && strcmp(j->err.code, "NotFound") != 0)
        return MB_STEP_ERROR;
    return MB_STEP_DONE;
}

mb_step_rc mb_labels_check(mb_sjob *j, const mb_labels_spec *spec)
{
    mb_labels_scratch *s = j->scratch;
    const char *what = spec->kind == MB_K8S_NODE ? "node" : "namespace";

    if (spec->n > MAX_OBJECTS)
        return mb_step_fail(j, "InvalidOrder", "too many objects to label (%zu)", spec->n);
    if (j->pc == CHECK_READ) {
        j->pc = CHECK_JUDGE;
        return read_all(j, s, spec->kind, spec->names, spec->n);
    }
    if (j->err.status != MB_OK)
        return MB_STEP_ERROR;
    for (size_t i = 0; i < spec->n; i++) {
        const char *now = label_of(&s->seen[i], spec->key);
        if (!s->seen[i].exists)
            mb_step_would_fail(j, "NotFound", "%s %s does not exist", what, spec->names[i]);
        else if (same(now, spec->value))
            mb_step_seen(j, "%s %s already has %s=%s: no call", what, spec->names[i], spec->key,
                         spec->value);
        else
            mb_step_would(j, "PATCH /api/v1/%ss/%s labels %s=%s (now: %s)", what, spec->names[i],
                          spec->key, spec->value, now ? now : "absent");
    }
    return MB_STEP_DONE;
}

/* ---- restore (the delete saga) ---------------------------------------------------- */

/* The objects the create changed: those whose prior value was not already its own.  0, or
 * -1 when out of memory. */
static int restore_names(mb_labels_scratch *s, const mb_labels_spec *spec, const json_t *prior)
{
    const char *name;
    json_t *v;

    if (s->names == NULL && json_object_size(prior) > 0) {
        s->names = calloc(json_object_size(prior), sizeof(*s->names));
        if (s->names == NULL)
            return -1;
    }
    s->n = 0;
    json_object_foreach((json_t *)prior, name, v)
    {
        if (!same(json_string_value(v), spec->value))
            s->names[s->n++] = name;
    }
    return 0;
}

/* ck.plan, from what was just read: decided once, so a re-run does not take an object it
 * already put back for one the customer changed. */
static void plan(mb_sjob *j, const mb_labels_spec *spec, const mb_labels_scratch *s)
{
    json_t *restore = json_array(), *left = json_object(), *gone = json_array();

    for (size_t i = 0; i < s->n; i++) {
        const char *now = label_of(&s->seen[i], spec->key);
        if (!s->seen[i].exists)
            json_array_append_new(gone, json_string(s->names[i]));
        else if (same(now, spec->value))
            json_array_append_new(restore, json_string(s->names[i]));
        else
            json_object_set_new(left, s->names[i], now ? json_string(now) : json_null());
    }
    json_object_set_new(
        j->ck, "plan",
        json_pack("{s:o, s:o, s:o}", "restore", restore, "left", left, "gone", gone));
}

static int planned(const json_t *ck, const char *name)
{
    json_t *restore = json_object_get(json_object_get(ck, "plan"), "restore");
    size_t i;
    json_t *v;

    json_array_foreach(restore, i, v)
    {
        if (same(json_string_value(v), name))
            return 1;
    }
    return 0;
}

mb_step_rc mb_labels_restore(mb_sjob *j, const mb_labels_spec *spec, const json_t *prior)
{
    mb_labels_scratch *s = j->scratch;

    if (restore_names(s, spec, prior) < 0)
        return mb_step_oom(j, "labels");
    switch (j->pc) {
    case BACK_READ:
        if (s->n == 0 && json_object_get(j->ck, "plan") == NULL)
            plan(j, spec, s);
        j->pc = BACK_PLAN;
        return read_all(j, s, spec->kind, s->names, s->n);
    case BACK_PLAN:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        j->pc = BACK_PATCH;
        if (json_object_get(j->ck, "plan") == NULL) {
            plan(j, spec, s);
            return MB_STEP_SAVE;
        }
        /* fall through */
    case BACK_PATCH:
        for (size_t i = 0; i < s->n; i++) {
            if (!planned(j->ck, s->names[i]) || !s->seen[i].exists ||
                !same(label_of(&s->seen[i], spec->key), spec->value))
                continue; /* not ours to touch, or already back */
            mb_step_call(j, mb_cloud_k8s_label_patch(
                                j->cloud, &j->target, spec->kind, s->names[i], spec->key,
                                json_string_value(json_object_get(prior, s->names[i])),
                                mb_step_done, mb_step_io(j)));
        }
        j->pc = BACK_PATCHED;
        return MB_STEP_WAIT;
    case BACK_PATCHED:
        if (j->err.status != MB_OK && strcmp(j->err.code, "NotFound") != 0)
            return MB_STEP_ERROR;
        return MB_STEP_DONE;
    default: return mb_step_fail(j, "Internal", "labels restore: no state %d", j->pc);
    }
}

mb_step_rc mb_labels_restore_check(mb_sjob *j, const mb_labels_spec *spec, const json_t *prior)
{
    mb_labels_scratch *s = j->scratch;
    const char *what = spec->kind == MB_K8S_NODE ? "node" : "namespace";
    int decided = json_object_get(j->ck, "plan") != NULL;

    if (restore_names(s, spec, prior) < 0)
        return mb_step_oom(j, "labels");
    if (j->pc == CHECK_READ) {
        j->pc = CHECK_JUDGE;
        return read_all(j, s, spec->kind, s->names, s->n);
    }
    if (j->err.status != MB_OK)
        return MB_STEP_ERROR;
    if (s->n == 0)
        mb_step_seen(j, "the create changed no %s's %s label: no call", what, spec->key);
    for (size_t i = 0; i < s->n; i++) {
        const char *now = label_of(&s->seen[i], spec->key);
        const char *was = json_string_value(json_object_get(prior, s->names[i]));
        if (!s->seen[i].exists)
            mb_step_seen(j, "%s %s is gone: nothing to put back", what, s->names[i]);
        else if (same(now, spec->value) && (!decided || planned(j->ck, s->names[i])))
            mb_step_would(j, "PATCH /api/v1/%ss/%s labels %s=%s (now: %s)", what, s->names[i],
                          spec->key, was ? was : "(removed)", now);
        else if (same(now, was) || (now == NULL && was == NULL))
            mb_step_seen(j, "%s %s is back to %s=%s already: no call", what, s->names[i], spec->key,
                         was ? was : "(none)");
        else
            mb_step_seen(j, "%s %s was changed since the purchase (%s=%s): left as set", what,
                         s->names[i], spec->key, now ? now : "(removed)");
    }
    return MB_STEP_DONE;
}

size_t mb_labels_left_text(const json_t *ck, const char *kind, const char *key, char *buf,
                           size_t len)
{
    json_t *left = json_object_get(json_object_get(ck, "plan"), "left");
    size_t n = 0, used = strlen(buf);
    const char *name;
    json_t *v;

    json_object_foreach(left, name, v)
    {
        const char *val = json_string_value(v);
        if (used < len)
            used += (size_t)snprintf(buf + used, len - used, "%s%s %s %s%s%s", used ? ", " : "",
                                     kind, name, key, val ? "=" : " removed", val ? val : "");
        n++;
    }
    return n;
}
