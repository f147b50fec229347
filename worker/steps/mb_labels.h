/* mb_labels.h: set one label on a list of Kubernetes objects, remembering what it replaced,
 * and put it back (a compensation, or a later delete saga). */
#ifndef MB_LABELS_H
#define MB_LABELS_H

#include "mb_step.h"

/* What to label.  names are borrowed for the call. */
typedef struct mb_labels_spec {
    mb_k8s_kind kind;
    const char *key, *value;
    const char *const *names;
    size_t n;
} mb_labels_spec;

/* Scratch a labelling step needs (its scratch_size and clear hook).  Sized to the objects
 * the step looks at: thousands of jobs may be at a labelling step at once. */
typedef struct mb_labels_scratch {
    mb_k8s_meta *seen;  /* what was read, one per object */
    size_t nseen;       /* seen[0..nseen) were allocated: what the clear hook frees */
    const char **names; /* mb_labels_restore: the objects it looks at (borrowed) */
    size_t n;
} mb_labels_scratch;

void mb_labels_clear(void *scratch);

/* run: reads every object, records the prior value of key (once: a re-run
 * after a crash must not take our own label for the prior one) in
 * ck.prior, persists it, then patches the objects that differ. */
mb_step_rc mb_labels_run(mb_sjob *j, const mb_labels_spec *spec);

/* check: reads every object and says which would be patched (and from what) and which
 * already carry the value; a missing object is what run() would fail with. */
mb_step_rc mb_labels_check(mb_sjob *j, const mb_labels_spec *spec);

/* compensate: restores each recorded prior value (null deletes the label);
 * objects whose prior value was already ours are left alone, as are objects
 * that no longer exist. */
mb_step_rc mb_labels_compensate(mb_sjob *j, const mb_labels_spec *spec);

/* restore (the delete saga): prior is what a create recorded ({name: value-or-null}, its
 * ck.prior); spec gives kind, key and the value the create set.  Reads every object the
 * create changed; once, records in ck.plan which still hold spec->value ("restore") and
 * which the customer changed since ("left": {name: value now, null if removed}; "gone":
 * objects deleted since), persists it, then patches back the prior value (null removes the
 * label) on those that still hold spec->value.  A re-run after a crash reads again and
 * skips what is already back, so each object is patched once. */
mb_step_rc mb_labels_restore(mb_sjob *j, const mb_labels_spec *spec, const json_t *prior);

/* check of restore: reads the objects the create changed and says which would be patched
 * back (to what), which are back already, which the customer changed since (left as set)
 * and which are gone. */
mb_step_rc mb_labels_restore_check(mb_sjob *j, const mb_labels_spec *spec, const json_t *prior);

/* "kind name key=value" for each object ck.plan.left names, into buf (appended after what
 * it holds, ", "-separated).  Returns how many. */
size_t mb_labels_left_text(const json_t *ck, const char *kind, const char *key, char *buf,
                           size_t len);

#endif
