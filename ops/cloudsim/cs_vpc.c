/* cs_vpc.c: VPC v3 security-group rules: list (filters, marker paging), create, show, delete. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_api.h"

static int is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* Filters that may repeat (?protocol=tcp&protocol=udp means either). */
static const char *const filter_keys[] = {
    "id",     "security_group_id", "direction",       "protocol", "ethertype",
    "action", "remote_ip_prefix",  "remote_group_id", "priority", "description",
    NULL};

static int rule_passes(const cs_call *c, const json_t *rule)
{
    for (const char *const *k = filter_keys; *k; k++) {
        int seen = 0, ok = 0;
        const json_t *v = json_object_get(rule, *k);
        char num[24];
        const char *have = json_string_value(v);
        if (json_is_integer(v)) {
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
            have = num;
        }
        for (int i = 0; i < c->nq; i++) {
            if (!is(c->qname[i], *k))
                continue;
            seen = 1;
            if (have && is(have, c->qval[i]))
                ok = 1;
        }
        if (seen && !ok)
            return 0;
    }
    return 1;
}

static void list_rules(cs_call *c, const char *project)
{
    cs_model *m = c->srv->m;
    const char *marker = cs_query(c, "marker");
    const char *lim = cs_query(c, "limit");
    long limit = lim ? strtol(lim, NULL, 10) : 2000;
    json_t *out = json_array();
    int started = marker == NULL, more = 0;
    const char *first = NULL, *last = NULL;

    if (limit <= 0 || limit > 2000)
        limit = 2000;
    /* With a security_group_id filter only those groups are walked. */
    for (int i = -1; i < c->nq; i++) {
        cs_map_it *it = NULL;
        cs_sg *one = NULL;
        if (i == -1 && cs_query(c, "security_group_id") == NULL)
            it = cs_map_first(m->sgs);
        else if (i >= 0 && is(c->qname[i], "security_group_id"))
            one = cs_model_sg(m, c->qval[i]);
        else
            continue;
        while (one || it) {
            cs_sg *sg = one ? one : cs_map_value(it);
            size_t k;
            json_t *r;
            if (is(sg->project_id, project)) {
                json_array_foreach(sg->rules, k, r)
                {
                    const char *id = json_string_value(json_object_get(r, "id"));
                    if (!started) {
                        started = is(id, marker);
                        continue;
                    }
                    if (!rule_passes(c, r))
                        continue;
                    if ((long)json_array_size(out) >= limit) {
                        more = 1;
                        break;
                    }
                    json_array_append(out, r);
                    if (first == NULL)
                        first = id;
                    last = id;
                }
            }
            if (one)
                break;
            it = cs_map_next(it);
        }
    }
    json_t *page = json_pack("{s:i}", "current_count", (int)json_array_size(out));
    if (first)
        json_object_set_new(page, "previous_marker", json_string(first));
    if (more && last)
        json_object_set_new(page, "next_marker", json_string(last));
    cs_reply_json(c, 200,
                  json_pack("{s:s, s:o, s:o}", "request_id", c->request_id, "security_group_rules",
                            out, "page_info", page));
}

static int same_rule(const json_t *a, const json_t *b)
{
    static const char *const keys[] = {"direction",
                                       "ethertype",
                                       "protocol",
                                       "multiport",
                                       "action",
                                       "priority",
                                       "remote_ip_prefix",
                                       "remote_group_id",
                                       "remote_address_group_id",
                                       NULL};

    for (const char *const *k = keys; *k; k++) {
        if (!json_equal(json_object_get(a, *k), json_object_get(b, *k)))
            return 0;
    }
    return 1;
}

static void create_rule(cs_call *c, const char *project)
{
    cs_model *m = c->srv->m;
    char err[512];
    json_t *body = cs_body_json(c, err, sizeof(err));

    if (body == NULL) {
        cs_reply_cloud(c, 400, "VPC.9902", "Invalid request body: %s", err);
        return;
    }
    const json_t *in = json_object_get(body, "security_group_rule");
    const char *sgid = json_string_value(json_object_get(in, "security_group_id"));
    cs_sg *sg = sgid ? cs_model_sg(m, sgid) : NULL;
    json_t *rule = NULL;

    if (!json_is_object(in)) {
        cs_reply_cloud(c, 400, "VPC.9902",
                       "Invalid request body: security_group_rule is "
                       "required and must be an object");
    } else if (sgid == NULL) {
        cs_reply_cloud(c, 400, "VPC.9902", "Invalid value for security_group_id: required");
    } else if (sg == NULL || !is(sg->project_id, project)) {
        cs_reply_cloud(c, 404, "VPC.9904", "Security group %s could not be found.", sgid);
    } else if ((rule = cs_sg_rule_build(m, sg, in, c->now_ms, err, sizeof(err))) == NULL) {
        cs_reply_cloud(c, 400, "VPC.9902", "%s", err);
    } else {
        size_t i;
        json_t *r;
        json_object_set_new(rule, "id", json_null()); /* callers cannot choose ids */
        json_array_foreach(sg->rules, i, r)
        {
            if (same_rule(r, rule)) {
                cs_reply_cloud(c, 409, "VPC.9902",
                               "Security group rule already exists. Rule id is %s.",
                               json_string_value(json_object_get(r, "id")));
                goto out;
            }
        }
        if ((long)json_array_size(sg->rules) >= m->sg_rule_quota) {
            cs_reply_cloud(c, 409, "VPC.9905",
                           "Quota exceeded for resources: ['security_group_rule'].");
            goto out;
        }
        if (json_is_true(json_object_get(body, "dry_run"))) {
            cs_reply_cloud(c, 202, "SYS.0202",
                           "Request validation has been passed with dry run...");
            goto out;
        }
        char id[37];
        cs_model_uuid(m, id);
        json_object_set_new(rule, "id", json_string(id));
        json_array_append(sg->rules, rule);
        cs_map_put(m->rules, id, sg);
        cs_mutation(c, CS_MUT_SG_RULE_CREATE, sg->id, id, 1);
        cs_reply_json(
            c, 201,
            json_pack("{s:s, s:O}", "request_id", c->request_id, "security_group_rule", rule));
    }
out:
    json_decref(rule);
    json_decref(body);
}

static void one_rule(cs_call *c, const char *project, const char *id)
{
    cs_model *m = c->srv->m;
    cs_sg *sg = cs_map_get(m->rules, id);
    size_t i;
    json_t *r;

    if (sg == NULL || !is(sg->project_id, project)) {
        cs_reply_cloud(c, 404, "VPC.9904", "Security group rule %s could not be found.", id);
        return;
    }
    json_array_foreach(sg->rules, i, r)
    {
        if (!is(json_string_value(json_object_get(r, "id")), id))
            continue;
        if (is(c->method, "GET")) {
            cs_reply_json(
                c, 200,
                json_pack("{s:s, s:O}", "request_id", c->request_id, "security_group_rule", r));
        } else if (is(c->method, "DELETE")) {
            char sgid[256];
            snprintf(sgid, sizeof(sgid), "%s", sg->id);
            json_array_remove(sg->rules, i);
            cs_map_del(m->rules, id);
            cs_mutation(c, CS_MUT_SG_RULE_DELETE, sgid, id, 1);
            cs_reply_empty(c, 204);
        } else {
            cs_reply_cloud(c, 405, "VPC.0405", "Method %s is not allowed", c->method);
        }
        return;
    }
    cs_reply_cloud(c, 404, "VPC.9904", "Security group rule %s could not be found.", id);
}

/* /v3/{project}/vpc/security-group-rules[/{id}] */
void cs_vpc_handle(cs_call *c)
{
    const char *project = c->seg[1];

    if (c->nseg < 4 || c->nseg > 5 || !is(c->seg[3], "security-group-rules")) {
        cs_reply_cloud(c, 404, "APIGW.0101",
                       "The API does not exist or has not been published in the environment");
        return;
    }
    if (c->nseg == 5) {
        one_rule(c, project, c->seg[4]);
    } else if (is(c->method, "GET")) {
        list_rules(c, project);
    } else if (is(c->method, "POST")) {
        create_rule(c, project);
    } else {
        cs_reply_cloud(c, 405, "VPC.0405", "Method %s is not allowed", c->method);
    }
}
