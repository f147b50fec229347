/* install_release.c: step 5: the control plane as Helm release istio-master, until DEPLOYED. */
#include <stdio.h>
#include <string.h>

#include "mb_step.h"

#define RELEASE_NAME "istio-master"
#define RELEASE_NS   "istio-system"

/* Where an execution stands (j->pc). */
enum {
    RUN_READ,       /* save the intent to create (first execution) and create, else read */
    RUN_JUDGE,      /* it was read: create, adopt, wait or fail */
    RUN_CREATED,    /* the create was sent */
    RUN_RECREATING, /* our failed release is being deleted, to be created again */
};
enum {
    UNDO_READ,     /* read the release */
    UNDO_JUDGE,    /* it was read: delete it if it is ours */
    UNDO_DELETING, /* the delete was sent */
};

typedef struct install {
    mb_release rel;
    int refused; /* the create met a 409 in this execution */
    int first;   /* this execution saved the intent: no create was ever sent before it */
} install;

static void install_clear(void *p)
{
    mb_release_clear(&((install *)p)->rel);
}

/* The description names the order: it is how a re-run recognises a release
 * this job created (adopt) from somebody else's (refuse to touch). */
static void description(const mb_sjob *j, char *buf, size_t len)
{
    snprintf(buf, len, "meshbuy order %s: mesh %s", j->order->order_id, j->order->mesh_name);
}

static int ours(const mb_sjob *j, const mb_release *r)
{
    char want[160];

    description(j, want, sizeof(want));
    return r->description && strcmp(r->description, want) == 0;
}

static mb_step_rc create(mb_sjob *j)
{
    json_t *v = mb_step_ck_of(j, "validate");
    char desc[160];
    json_t *values =
        json_pack("{s:{s:s}, s:{s:s, s:s, s:s}}", "nodeSelector", "istio", "master", "global",
                  "meshName", j->order->mesh_name, "meshID", j->order->order_id, "tag",
                  json_string_value(json_object_get(v, "build")));
    mb_release_spec spec = {
        .chart_id = json_string_value(json_object_get(v, "chart_id")),
        .name = RELEASE_NAME,
        .namespace = RELEASE_NS,
        .version = json_string_value(json_object_get(v, "chart_version")),
        .values = values,
        .description = desc,
    };

    description(j, desc, sizeof(desc));
    mb_step_call(j,
                 mb_cloud_release_create(j->cloud, &j->target, &spec, mb_step_done, mb_step_io(j)));
    json_decref(values);
    j->pc = RUN_CREATED;
    return MB_STEP_WAIT;
}

static int failed(const char *status)
{
    return status && (strcmp(status, "FAILED") == 0 || strcmp(status, "UNKNOWN") == 0);
}

/* Where the release stands decides: absent -> create, ours and installing ->
 * look again later, DEPLOYED -> done, failed -> the step fails.  The intent
 * to create ("creating") was saved before the first read (RUN_READ): a create
 * whose outcome is unknown (reply lost, timed out, worker gone) may have left a
 * release, and compensation then looks for it even though "created" was never
 * recorded. */
static mb_step_rc judge(mb_sjob *j, const mb_release *r)
{
    const char *st = r->status ? r->status : "";
    install *s = j->scratch;

    if (!r->exists && s->refused) { /* refused, yet gone: look again after a backoff */
        mb_error_set(&j->err, MB_AGAIN, "Conflict",
                     "release %s/%s: the create was refused (409) and the release is not there",
                     RELEASE_NS, RELEASE_NAME);
        return MB_STEP_ERROR;
    }
    if (!r->exists)
        return create(j);
    if (!ours(j, r))
        return mb_step_fail(j, "ReleaseExists",
                            "release %s/%s exists and was not installed by this order (%s)",
                            RELEASE_NS, RELEASE_NAME, r->description ? r->description : "");
    json_object_set_new(j->ck, "created", json_true());
    if (failed(st) && failed(json_string_value(json_object_get(j->ck, "status")))) {
        /* Our release had already failed this step once: this is a replay (the job was
         * parked with it in place).  Helm cannot install over a failed release: delete
         * it, wait until it is gone, then create it again. */
        json_object_set_new(j->ck, "status", json_string("RECREATING"));
        mb_step_call(j, mb_cloud_release_delete(j->cloud, &j->target, RELEASE_NS, RELEASE_NAME,
                                                mb_step_done, mb_step_io(j)));
        j->pc = RUN_RECREATING;
        return MB_STEP_WAIT;
    }
    json_object_set_new(j->ck, "status", json_string(st));
    if (strcmp(st, "DEPLOYED") == 0)
        return MB_STEP_DONE;
    if (failed(st))
        return mb_step_fail(j, "ReleaseFailed", "release %s/%s is %s: %s", RELEASE_NS, RELEASE_NAME,
                            st, r->status_description ? r->status_description : "");
    return MB_STEP_POLL; /* PENDING_INSTALL, DELETING (being recreated) and friends */
}

static mb_step_rc read_release(mb_sjob *j)
{
    install *s = j->scratch;

    mb_step_call(j, mb_cloud_release_get(j->cloud, &j->target, RELEASE_NS, RELEASE_NAME, &s->rel,
                                         mb_step_done, mb_step_io(j)));
    j->pc = RUN_JUDGE;
    return MB_STEP_WAIT;
}

static mb_step_rc install_run(mb_sjob *j)
{
    install *s = j->scratch;

    switch (j->pc) {
    case RUN_READ:
        if (!json_is_true(json_object_get(j->ck, "creating"))) {
            /* Saved before anything is sent (saves_first): compensation then looks for a
             * release by name and deletes it only if its description names this order, so
             * an intent recorded before the create costs nothing, and the checkpoint of the
             * step before rides with this one.  Called again at RUN_READ. */
            json_object_set_new(j->ck, "creating", json_true());
            s->first = 1;
            return MB_STEP_SAVE;
        }
        /* No intent saved before this execution: no create of this job was ever sent, and
         * the create itself looks, as Helm refuses a name in use (409: the read judges).
         * A read first would cost every saga a call for what precheck found absent (no
         * istio-system).  Any later execution reads first. */
        return s->first ? create(j) : read_release(j);
    case RUN_JUDGE:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        return judge(j, &s->rel);
    case RUN_CREATED: /* it is installing now */
        if (j->err.status != MB_OK && j->err.http_status == 409) {
            /* the name was taken since the read: ours from a create whose reply was lost,
             * or another's; the read decides */
            mb_error_clear(&j->err);
            s->refused = 1;
            return read_release(j);
        }
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        json_object_set_new(j->ck, "created", json_true());
        json_object_set_new(j->ck, "status", json_string("PENDING_INSTALL"));
        return MB_STEP_POLL;
    case RUN_RECREATING: return j->err.status != MB_OK ? MB_STEP_ERROR : MB_STEP_POLL;
    default: return mb_step_fail(j, "Internal", "install_release: no state %d", j->pc);
    }
}

/* Deletes the release this job created, or may have created (the intent was
 * saved; the reply never came), then waits until it is gone.  Only a release
 * whose description names this order is touched. */
static mb_step_rc install_compensate(mb_sjob *j)
{
    install *s = j->scratch;

    if (!json_is_true(json_object_get(j->ck, "created")) &&
        !json_is_true(json_object_get(j->ck, "creating")))
        return MB_STEP_DONE;
    switch (j->pc) {
    case UNDO_READ:
        mb_step_call(j, mb_cloud_release_get(j->cloud, &j->target, RELEASE_NS, RELEASE_NAME,
                                             &s->rel, mb_step_done, mb_step_io(j)));
        j->pc = UNDO_JUDGE;
        return MB_STEP_WAIT;
    case UNDO_JUDGE:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        if (!s->rel.exists)
            return MB_STEP_DONE;
        if (!ours(j, &s->rel))
            return MB_STEP_DONE; /* replaced by someone else's: not ours to delete */
        if (s->rel.status && strcmp(s->rel.status, "DELETING") == 0)
            return MB_STEP_POLL;
        mb_step_call(j, mb_cloud_release_delete(j->cloud, &j->target, RELEASE_NS, RELEASE_NAME,
                                                mb_step_done, mb_step_io(j)));
        j->pc = UNDO_DELETING;
        return MB_STEP_WAIT;
    case UNDO_DELETING:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        return MB_STEP_POLL; /* until the release reads as gone */
    default: return mb_step_fail(j, "Internal", "install_release undo: no state %d", j->pc);
    }
}

/* Read-only face: the release now, judged as run() would. */
enum {
    CHECK_READ,  /* read the release */
    CHECK_JUDGE, /* read: say what run() would do */
};

static void check_judge(mb_sjob *j, const mb_release *r)
{
    json_t *v = mb_step_ck_of(j, "validate");
    const char *st = r->status ? r->status : "";

    if (!r->exists)
        mb_step_would(j, "POST release %s in %s (chart %s %s), then poll until DEPLOYED",
                      RELEASE_NAME, RELEASE_NS,
                      v ? json_string_value(json_object_get(v, "chart_id")) : "?",
                      v ? json_string_value(json_object_get(v, "chart_version")) : "?");
    else if (!ours(j, r))
        mb_step_would_fail(j, "ReleaseExists",
                           "release %s/%s exists and was not installed by this order (%s)",
                           RELEASE_NS, RELEASE_NAME, r->description ? r->description : "");
    else if (failed(st) && failed(json_string_value(json_object_get(j->ck, "status"))))
        mb_step_would(j,
                      "DELETE this order's %s release %s/%s, then POST it again and poll "
                      "until DEPLOYED",
                      st, RELEASE_NS, RELEASE_NAME);
    else if (strcmp(st, "DEPLOYED") == 0)
        mb_step_seen(j, "release %s/%s is DEPLOYED and this order's: adopted, no call", RELEASE_NS,
                     RELEASE_NAME);
    else if (failed(st))
        mb_step_would_fail(j, "ReleaseFailed", "release %s/%s is %s: %s", RELEASE_NS, RELEASE_NAME,
                           st, r->status_description ? r->status_description : "");
    else
        mb_step_would(j, "poll this order's release %s/%s (%s) until DEPLOYED", RELEASE_NS,
                      RELEASE_NAME, st);
}

static mb_step_rc install_check(mb_sjob *j)
{
    install *s = j->scratch;

    if (j->pc == CHECK_READ) {
        mb_step_call(j, mb_cloud_release_get(j->cloud, &j->target, RELEASE_NS, RELEASE_NAME,
                                             &s->rel, mb_step_done, mb_step_io(j)));
        j->pc = CHECK_JUDGE;
        return MB_STEP_WAIT;
    }
    if (j->err.status != MB_OK)
        return MB_STEP_ERROR;
    check_judge(j, &s->rel);
    return MB_STEP_DONE;
}

const mb_step mb_step_install_release = {
    .name = "install_release",
    .run = install_run,
    .check = install_check,
    .compensate = install_compensate,
    .clear = install_clear,
    .scratch_size = sizeof(install),
    .deadline_ms = 15 * 60 * 1000, /* a real install takes 1 to 3 minutes */
    .saves_first = 1,              /* the intent to create, before the read (RUN_READ) */
};
