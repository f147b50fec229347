/* open_port.c: step 6: inbound TCP 7443 on the node security group. */
#include <stdio.h>
#include <string.h>

#include "mb_step.h"

#define WEBHOOK_PORT 7443

/* Where an execution stands (j->pc). */
enum {
    RUN_LIST,    /* list the group's ingress rules */
    RUN_JUDGE,   /* listed: covered, ours already, or create (after saving the intent) */
    RUN_CREATED, /* the create was sent */
};
enum {
    UNDO_DELETE,  /* delete the rule this job created */
    UNDO_DELETED, /* the delete was sent */
};

typedef struct open_port {
    mb_sg_rule_list rules;
    mb_sg_rule_created created;
} open_port;

static void open_port_clear(void *p)
{
    open_port *s = p;

    mb_sg_rule_list_clear(&s->rules);
    mb_sg_rule_created_clear(&s->created);
}

static const char *sg_of(mb_sjob *j)
{
    return json_string_value(json_object_get(mb_step_ck_of(j, "precheck"), "security_group_id"));
}

/* A rule exactly like the one this step creates. */
static int is_like_ours(const mb_sg_rule *r)
{
    return mb_sg_rule_allows(r, WEBHOOK_PORT) && r->multiport &&
           strcmp(r->multiport, "7443") == 0 &&
           (r->remote_ip_prefix == NULL || *r->remote_ip_prefix == '\0' ||
            strcmp(r->remote_ip_prefix, "0.0.0.0/0") == 0);
}

/* The intent to create is persisted before the create: a re-run after a
 * crash that finds a rule like ours, with the intent recorded, knows the rule
 * is this job's (and deletes it on compensation); without the intent, any
 * rule covering 7443 was there before and is left alone. */
static mb_step_rc judge(mb_sjob *j, open_port *s)
{
    char desc[160];
    const mb_sg_rule *covering = NULL, *like = NULL;
    int intent = json_is_true(json_object_get(j->ck, "creating"));

    for (size_t i = 0; i < s->rules.n; i++) {
        const mb_sg_rule *r = &s->rules.items[i];
        if (covering == NULL && mb_sg_rule_allows(r, WEBHOOK_PORT))
            covering = r;
        if (like == NULL && is_like_ours(r))
            like = r;
    }
    if (intent && like) {
        json_object_set_new(j->ck, "created", json_true());
        json_object_set_new(j->ck, "rule_id", json_string(like->id));
        return MB_STEP_DONE;
    }
    if (covering) {
        json_object_set_new(j->ck, "created", json_false());
        json_object_set_new(j->ck, "covered_by", json_string(covering->id));
        return MB_STEP_DONE;
    }
    if (!intent) {
        json_object_set_new(j->ck, "creating", json_true());
        return MB_STEP_SAVE; /* called again at this pc, with the same listing */
    }
    snprintf(desc, sizeof(desc), "meshbuy order %s: Istio sidecar injection webhook",
             j->order->order_id);
    mb_sg_rule_spec spec = {
        .security_group_id = sg_of(j),
        .direction = "ingress",
        .ethertype = "IPv4",
        .protocol = "tcp",
        .multiport = "7443",
        .action = "allow",
        .priority = 1,
        .description = desc,
    };
    mb_step_call(j, mb_cloud_sg_rule_create(j->cloud, &j->target, &spec, &s->created, mb_step_done,
                                            mb_step_io(j)));
    j->pc = RUN_CREATED;
    return MB_STEP_WAIT;
}

static mb_step_rc open_port_run(mb_sjob *j)
{
    open_port *s = j->scratch;
    const char *sg = sg_of(j);

    if (sg == NULL || *sg == '\0')
        return mb_step_fail(j, "NoSecurityGroup", "cluster %s reports no node security group",
                            j->order->cluster_id);
    switch (j->pc) {
    case RUN_LIST:
        mb_step_call(j, mb_cloud_sg_rules_list(j->cloud, &j->target, sg, "ingress", NULL, &s->rules,
                                               mb_step_done, mb_step_io(j)));
        j->pc = RUN_JUDGE;
        return MB_STEP_WAIT;
    case RUN_JUDGE:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        return judge(j, s);
    case RUN_CREATED:
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        /* VPC.9902: an identical rule appeared meanwhile; it is not ours to delete. */
        json_object_set_new(j->ck, "created", json_boolean(!s->created.existed));
        json_object_set_new(j->ck, "rule_id", json_string(s->created.id));
        return MB_STEP_DONE;
    default: return mb_step_fail(j, "Internal", "open_port: no state %d", j->pc);
    }
}

static mb_step_rc open_port_compensate(mb_sjob *j)
{
    const char *id = json_string_value(json_object_get(j->ck, "rule_id"));

    if (!json_is_true(json_object_get(j->ck, "created")) || id == NULL)
        return MB_STEP_DONE;
    if (j->pc == UNDO_DELETE) {
        mb_step_call(
            j, mb_cloud_sg_rule_delete(j->cloud, &j->target, id, mb_step_done, mb_step_io(j)));
        j->pc = UNDO_DELETED;
        return MB_STEP_WAIT;
    }
    return j->err.status != MB_OK ? MB_STEP_ERROR : MB_STEP_DONE;
}

const mb_step mb_step_open_port = {
    .name = "open_port",
    .run = open_port_run,
    .compensate = open_port_compensate,
    .clear = open_port_clear,
    .scratch_size = sizeof(open_port),
    .deadline_ms = 120000,
};
