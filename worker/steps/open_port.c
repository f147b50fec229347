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
    UNDO_DELETE,  /* delete the rule this job created (or look for it: UNDO_FOUND) */
    UNDO_DELETED, /* the delete was sent */
    UNDO_FOUND,   /* the rules were listed: the one naming this order is deleted */
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

/* The description names the order: how compensation recognises a rule this
 * job created when the create's reply never came. */
static void description(const mb_sjob *j, char *buf, size_t len)
{
    snprintf(buf, len, "meshbuy order %s: Istio sidecar injection webhook", j->order->order_id);
}

/* A rule like ours that names this order. */
static int is_ours(const mb_sjob *j, const mb_sg_rule *r)
{
    char want[160];

    description(j, want, sizeof(want));
    return is_like_ours(r) && r->description && strcmp(r->description, want) == 0;
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
    description(j, desc, sizeof(desc));
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

static mb_step_rc delete_rule(mb_sjob *j, const char *id)
{
    mb_step_call(j, mb_cloud_sg_rule_delete(j->cloud, &j->target, id, mb_step_done, mb_step_io(j)));
    j->pc = UNDO_DELETED;
    return MB_STEP_WAIT;
}

/* Deletes the rule this job created: by its id when the create answered 201.
 * Otherwise, when the intent was saved (the reply never came, the worker died,
 * or a retried create got 409 "exists" for the rule its lost first attempt
 * made), the rule is found by its fields and the description naming this
 * order.  A rule that covered 7443 before is never touched. */
static mb_step_rc open_port_compensate(mb_sjob *j)
{
    open_port *s = j->scratch;
    json_t *created = json_object_get(j->ck, "created");
    const char *id = json_string_value(json_object_get(j->ck, "rule_id"));
    const char *sg = sg_of(j);

    switch (j->pc) {
    case UNDO_DELETE:
        if (json_is_true(created) && id != NULL)
            return delete_rule(j, id);
        /* No id of ours (no reply, or a 409 "exists" that may answer our own lost
         * create): look for the rule, if this job ever meant to create one. */
        if (!json_is_true(json_object_get(j->ck, "creating")) || sg == NULL)
            return MB_STEP_DONE;
        mb_step_call(j, mb_cloud_sg_rules_list(j->cloud, &j->target, sg, "ingress", "tcp",
                                               &s->rules, mb_step_done, mb_step_io(j)));
        j->pc = UNDO_FOUND;
        return MB_STEP_WAIT;
    case UNDO_DELETED: /* a 404 counts: already gone */
        return j->err.status != MB_OK ? MB_STEP_ERROR : MB_STEP_DONE;
    default: /* UNDO_FOUND: the listing after an unknown outcome */
        if (j->err.status != MB_OK)
            return MB_STEP_ERROR;
        for (size_t i = 0; i < s->rules.n; i++) {
            if (is_ours(j, &s->rules.items[i]))
                return delete_rule(j, s->rules.items[i].id);
        }
        return MB_STEP_DONE;
    }
}

/* Read-only face: the group's ingress rules now, judged as run() would. */
enum {
    CHECK_LIST,  /* list the group's ingress rules */
    CHECK_JUDGE, /* listed: say what run() would do */
};

static void check_judge(mb_sjob *j, const open_port *s, const char *sg)
{
    const mb_sg_rule *covering = NULL, *like = NULL;

    for (size_t i = 0; i < s->rules.n; i++) {
        const mb_sg_rule *r = &s->rules.items[i];
        if (covering == NULL && mb_sg_rule_allows(r, WEBHOOK_PORT))
            covering = r;
        if (like == NULL && is_like_ours(r))
            like = r;
    }
    if (json_is_true(json_object_get(j->ck, "creating")) && like)
        mb_step_seen(j, "security group %s: rule %s (this order's) allows tcp %d: no call", sg,
                     like->id ? like->id : "?", WEBHOOK_PORT);
    else if (covering)
        mb_step_seen(j, "security group %s: rule %s (%s) already allows tcp %d: no call", sg,
                     covering->id ? covering->id : "?",
                     covering->multiport && *covering->multiport ? covering->multiport
                                                                 : "all ports",
                     WEBHOOK_PORT);
    else
        mb_step_would(j, "POST security-group rule ingress tcp %d on %s (no rule covers it now)",
                      WEBHOOK_PORT, sg);
}

static mb_step_rc open_port_check(mb_sjob *j)
{
    open_port *s = j->scratch;
    const char *sg = sg_of(j);

    if (sg == NULL || *sg == '\0')
        return mb_step_fail(j, "NotRecorded",
                            "precheck has not recorded the node security group: it reads it when "
                            "it runs, then a rule for tcp %d is created unless one covers it",
                            WEBHOOK_PORT);
    if (j->pc == CHECK_LIST) {
        mb_step_call(j, mb_cloud_sg_rules_list(j->cloud, &j->target, sg, "ingress", NULL, &s->rules,
                                               mb_step_done, mb_step_io(j)));
        j->pc = CHECK_JUDGE;
        return MB_STEP_WAIT;
    }
    if (j->err.status != MB_OK)
        return MB_STEP_ERROR;
    check_judge(j, s, sg);
    return MB_STEP_DONE;
}

const mb_step mb_step_open_port = {
    .name = "open_port",
    .run = open_port_run,
    .check = open_port_check,
    .compensate = open_port_compensate,
    .clear = open_port_clear,
    .scratch_size = sizeof(open_port),
    .deadline_ms = 120000,
};
