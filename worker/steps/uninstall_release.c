/* uninstall_release.c: delete step 5: release istio-master gone, if the create made it. */
#include <stdio.h>
#include <string.h>

#include "mb_step.h"
#include "mb_target.h"

#define RELEASE_NAME "istio-master"
#define RELEASE_NS   "istio-system"

/* Where an execution stands (j->pc). */
enum {
    RUN_READ,    /* read the release */
    RUN_JUDGE,   /* read: gone, not the create's, deleting, or delete it */
    RUN_DELETED, /* the delete was sent: poll until it reads as gone */
};

typedef struct uninstall {
    mb_release rel;
} uninstall;

static void uninstall_clear(void *p)
{
    mb_release_clear(&((uninstall *)p)->rel);
}

/* The create wrote its order into the release's description (install_release.c): that is
 * how a release it created or adopted is told from one installed since by somebody else. */
static int the_creates(const mb_sjob *j, const mb_release *r)
{
    char want[160];

    snprintf(want, sizeof(want), "meshbuy order %s: mesh %s", mb_target_order_id(j),
             j->order->mesh_name);
    return r->description && strcmp(r->description, want) == 0;
}

static mb_step_rc judge(mb_sjob *j, const mb_release *r)
{
    if (!r->exists)
        return MB_STEP_DONE;
    if (!the_creates(j, r)) {
        json_object_set_new(j->ck, "left", json_string(r->description ? r->description : ""));
        snprintf(j->message, sizeof(j->message),
                 "release %s/%s is not the one this mesh installed (%s): left in place", RELEASE_NS,
                 RELEASE_NAME, r->description ? r->description : "no description");
        return MB_STEP_DONE;
    }
    if (r->status && strcmp(r->status, "DELETING") == 0)
        return MB_STEP_POLL;
    json_object_set_new(j->ck, "deleted", json_true());
    mb_step_call(j, mb_cloud_release_delete(j->cloud, &j->target, RELEASE_NS, RELEASE_NAME,
                                            mb_step_done, mb_step_io(j)));
    j->pc = RUN_DELETED;
    return MB_STEP_WAIT;
}

static mb_step_rc uninstall_run(mb_sjob *j)
{
    uninstall *s = j->scratch;

    if (!json_is_true(json_object_get(mb_target_ck(j, "install_release"), "created"))) {
        json_object_set_new(j->ck, "installed", json_false());
        return MB_STEP_DONE; /* the create never got to install it */
    }
    switch (j->pc) {
    case RUN_READ:
        mb_step_call(j, mb_cloud_release_get(j->cloud, &j->target, RELEASE_NS, RELEASE_NAME,
                                             &s->rel, mb_step_done, mb_step_io(j)));
        j->pc = RUN_JUDGE;
        return MB_STEP_WAIT;
    case RUN_JUDGE:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        return judge(j, &s->rel);
    case RUN_DELETED:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        return MB_STEP_POLL; /* until it reads as gone (404) */
    default: return mb_step_fail(j, "Internal", "uninstall_release: no state %d", j->pc);
    }
}

/* Read-only face: the release now, judged as run() would. */
enum {
    CHECK_READ,  /* read the release */
    CHECK_JUDGE, /* read: say what run() would do */
};

static void check_judge(mb_sjob *j, const mb_release *r)
{
    if (!r->exists)
        mb_step_seen(j, "release %s/%s is gone already: no call", RELEASE_NS, RELEASE_NAME);
    else if (!the_creates(j, r))
        mb_step_seen(j, "release %s/%s is not the one this mesh installed (%s): left in place",
                     RELEASE_NS, RELEASE_NAME, r->description ? r->description : "no description");
    else if (r->status && strcmp(r->status, "DELETING") == 0)
        mb_step_would(j, "poll release %s/%s (DELETING) until it is gone", RELEASE_NS,
                      RELEASE_NAME);
    else
        mb_step_would(j, "DELETE release %s in %s (%s), then poll until it is gone", RELEASE_NAME,
                      RELEASE_NS, r->status ? r->status : "?");
}

static mb_step_rc uninstall_check(mb_sjob *j)
{
    uninstall *s = j->scratch;

    if (!json_is_true(json_object_get(mb_target_ck(j, "install_release"), "created"))) {
        mb_step_seen(j, "the create never installed the release: no call");
        return MB_STEP_DONE;
    }
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

const mb_step mb_step_uninstall_release = {
    .name = "uninstall_release",
    .run = uninstall_run,
    .check = uninstall_check,
    .clear = uninstall_clear,
    .scratch_size = sizeof(uninstall),
    .deadline_ms = 15 * 60 * 1000,
};
