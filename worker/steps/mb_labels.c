/* mb_labels.c: the observe, remember, patch cycle that label_nodes and inject share. */
#include "mb_labels.h"

#include <string.h>

/* Where an execution stands (j->pc). */
enum {
    RUN_READ,    /* read every object */
    RUN_CHECK,   /* read: all exist? remember the prior values (once), save */
    RUN_PATCH,   /* patch the objects whose label differs */
    RUN_PATCHED, /* the patches were sent */
};
enum {
    UNDO_RESTORE,  /* put the prior values back */
    UNDO_RESTORED, /* the patches were sent */
};

void mb_labels_clear(void *scratch)
{
    mb_labels_scratch *s = scratch;

    for (size_t i = 0; i < sizeof(s->seen) / sizeof(s->seen[0]); i++)
        mb_k8s_meta_clear(&s->seen[i]);
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

    if (spec->n > sizeof(s->seen) / sizeof(s->seen[0]))
        return mb_step_fail(j, "InvalidOrder", "too many objects to label (%zu)", spec->n);
    switch (j->pc) {
    case RUN_READ:
        for (size_t i = 0; i < spec->n; i++)
            mb_step_call(j, mb_cloud_k8s_get(j->cloud, &j->target, spec->kind, spec->names[i],
                                             &s->seen[i], mb_step_done, mb_step_io(j)));
        j->pc = RUN_CHECK;
        return MB_STEP_WAIT;
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
