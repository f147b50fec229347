/* close_port.c: delete step 6: the 7443 rule gone, if the create made it. */
#include <string.h>

#include "mb_step.h"
#include "mb_target.h"

/* Where an execution stands (j->pc). */
enum {
    RUN_LIST,    /* list the ingress rules of the node security group */
    RUN_JUDGE,   /* listed: delete the create's rule if it is still there */
    RUN_DELETED, /* the delete was sent */
};

typedef struct close_port {
    mb_sg_rule_list rules;
} close_port;

static void close_port_clear(void *p)
{
    mb_sg_rule_list_clear(&((close_port *)p)->rules);
}

static int listed(const mb_sg_rule_list *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i].id && strcmp(l->items[i].id, id) == 0)
            return 1;
    }
    return 0;
}

/* A rule that covered 7443 before the create is not recorded as created and stays; the
 * rule the create made is deleted if it is still there (looked up first, so a re-run
 * after a crash deletes nothing twice). */
static mb_step_rc close_port_run(mb_sjob *j)
{
    close_port *s = j->scratch;
    const json_t *ck = mb_target_ck(j, "open_port");
    const char *id = json_string_value(json_object_get(ck, "rule_id"));
    const char *sg =
        json_string_value(json_object_get(mb_target_ck(j, "precheck"), "security_group_id"));

    if (!json_is_true(json_object_get(ck, "created")) || id == NULL || sg == NULL) {
        json_object_set_new(j->ck, "created_by_mesh", json_false());
        return MB_STEP_DONE;
    }
    switch (j->pc) {
    case RUN_LIST:
        mb_step_call(j, mb_cloud_sg_rules_list(j->cloud, &j->target, sg, "ingress", NULL, &s->rules,
                                               mb_step_done, mb_step_io(j)));
        j->pc = RUN_JUDGE;
        return MB_STEP_WAIT;
    case RUN_JUDGE:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        if (!listed(&s->rules, id))
            return MB_STEP_DONE; /* gone already */
        json_object_set_new(j->ck, "deleted", json_string(id));
        mb_step_call(
            j, mb_cloud_sg_rule_delete(j->cloud, &j->target, id, mb_step_done, mb_step_io(j)));
        j->pc = RUN_DELETED;
        return MB_STEP_WAIT;
    case RUN_DELETED: return j->err.status != MB_OK ? MB_STEP_ERROR : MB_STEP_DONE;
    default: return mb_step_fail(j, "Internal", "close_port: no state %d", j->pc);
    }
}

/* Read-only face: the group's rules now, judged as run() would. */
enum {
    CHECK_LIST,  /* list the ingress rules */
    CHECK_JUDGE, /* listed: say what run() would do */
};

static mb_step_rc close_port_check(mb_sjob *j)
{
    close_port *s = j->scratch;
    const json_t *ck = mb_target_ck(j, "open_port");
    const char *id = json_string_value(json_object_get(ck, "rule_id"));
    const char *sg =
        json_string_value(json_object_get(mb_target_ck(j, "precheck"), "security_group_id"));

    if (!json_is_true(json_object_get(ck, "created")) || id == NULL || sg == NULL) {
        mb_step_seen(j, "the create made no 7443 rule (one covered it before): no call");
        return MB_STEP_DONE;
    }
    if (j->pc == CHECK_LIST) {
        mb_step_call(j, mb_cloud_sg_rules_list(j->cloud, &j->target, sg, "ingress", NULL, &s->rules,
                                               mb_step_done, mb_step_io(j)));
        j->pc = CHECK_JUDGE;
        return MB_STEP_WAIT;
    }
    if (j->err.status != MB_OK)
        return MB_STEP_ERROR;
    if (listed(&s->rules, id))
        mb_step_would(j, "DELETE security-group rule %s on %s (the create's 7443 rule)", id, sg);
    else
        mb_step_seen(j, "security group %s: the create's rule %s is gone already: no call", sg, id);
    return MB_STEP_DONE;
}

const mb_step mb_step_close_port = {
    .name = "close_port",
    .run = close_port_run,
    .check = close_port_check,
    .clear = close_port_clear,
    .scratch_size = sizeof(close_port),
    .deadline_ms = 120000,
};
