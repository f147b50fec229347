/* mc_plan.c: replay --dry-run.  Every step of the job's saga that a replay would run says,
 * through its own read-only face (mb_step.check, driven by mb_check on a private libevent
 * loop), what it would change and what is already in place.  Nothing here knows a step:
 * a new step is planned by its own face.  Reads only: the driver refuses any write. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "mb_catalog.h"
#include "mb_check.h"
#include "mb_cloud.h"
#include "mb_http.h"
#include "mb_order.h"
#include "mc.h"
#include "mc_out.h"

/* The cloud as the check faces read it. */
typedef struct cloudside {
    struct event_base *base;
    mb_http *http;
    mb_cloud *cloud;
    mb_catalog *catalog;
} cloudside;

static void cloud_close(cloudside *p)
{
    mb_cloud_free(p->cloud);
    mb_http_free(p->http);
    if (p->base)
        event_base_free(p->base);
    mb_catalog_free(p->catalog);
}

static int cloud_open(mc_ctx *c, cloudside *p, char *err, size_t errlen)
{
    mb_http_opts ho = {0};
    mb_cloud_opts co = {mb_conf_str(c->conf, "MESHBUY_CCE_URL"),
                        mb_conf_str(c->conf, "MESHBUY_VPC_URL"),
                        mb_conf_str(c->conf, "MESHBUY_K8S_URL")};
    char cerr[300];

    if (!co.cce_url || !co.vpc_url || !co.k8s_url) {
        snprintf(err, errlen,
                 "MESHBUY_CCE_URL, MESHBUY_VPC_URL and MESHBUY_K8S_URL are not all "
                 "set: the cloud was not read");
        return -1;
    }
    /* The steps that need the catalog say so when it cannot be loaded. */
    p->catalog = mb_catalog_load(mb_conf_str(c->conf, "MESHBUY_CATALOG"), cerr, sizeof(cerr));
    ho.timeout_ms = mb_conf_int(c->conf, "MESHBUY_HTTP_TIMEOUT_MS");
    ho.ca_file = mb_conf_str(c->conf, "MESHBUY_CA_FILE");
    ho.ak = mb_conf_str(c->conf, "MESHBUY_AK");
    ho.sk = mb_conf_str(c->conf, "MESHBUY_SK");
    p->base = event_base_new();
    if (p->base == NULL) {
        snprintf(err, errlen, "event_base_new failed");
        return -1;
    }
    p->http = mb_http_new(p->base, &ho, err, errlen);
    if (p->http == NULL)
        return -1;
    p->cloud = mb_cloud_new(p->http, &co, err, errlen);
    return p->cloud ? 0 : -1;
}

/* One step's entry in the plan: its face's report, or why it was not asked. */
static json_t *plan_step(const cloudside *p, int opened, const char *why, const mb_saga_def *d,
                         int i, int from, const mb_job *j, const mb_order *o, long timeout_ms)
{
    const mb_step *st = d->steps[i];
    mb_cloud_target t = {o->project_id, o->region, o->cluster_id, NULL};
    mb_check_env env = {p->base, p->cloud, p->catalog, timeout_ms};
    json_t *e;

    if (i < from)
        e = json_pack("{s:s, s:b, s:[], s:[], s:n, s:n}", "step", st->name, "observed", 0,
                      "changes", "in_place", "fails", "error");
    else if (!opened)
        e = json_pack("{s:s, s:b, s:[], s:[], s:n, s:{s:s, s:s}}", "step", st->name, "observed", 0,
                      "changes", "in_place", "fails", "error", "code", "NotRead", "message", why);
    else
        e = mb_check_step(&env, st, j->state, o, &t);
    if (e == NULL)
        return NULL;
    json_object_set_new(e, "index", json_integer(i + 1));
    json_object_set_new(e, "runs", json_boolean(i >= from));
    return e;
}

static json_t *plan_doc(mc_ctx *c, const mb_job *j, const mb_saga_def *d, const mb_order *o,
                        int from)
{
    cloudside p;
    char why[600] = "";
    int opened;
    long tmo = mb_conf_int(c->conf, "MESHBUY_HTTP_TIMEOUT_MS") + 1000;
    json_t *doc, *steps;

    memset(&p, 0, sizeof(p));
    opened = cloud_open(c, &p, why, sizeof(why)) == 0;
    doc = json_pack("{s:s, s:s, s:s, s:s, s:b, s:[]}", "order_id", j->order_id, "saga", d->name,
                    "from_step", d->steps[from]->name, "status", j->status, "observed", opened,
                    "steps");
    if (doc == NULL) {
        cloud_close(&p);
        return NULL;
    }
    if (!opened)
        json_object_set_new(doc, "not_observed", json_string(why));
    steps = json_object_get(doc, "steps");
    for (int i = 0; i < d->nsteps; i++)
        json_array_append_new(steps, plan_step(&p, opened, why, d, i, from, j, o, tmo));
    cloud_close(&p);
    return doc;
}

static void print_lines(const json_t *arr, const char *label)
{
    size_t k;
    json_t *v;

    json_array_foreach(arr, k, v)
    {
        printf("      %s %s\n", label, json_string_value(v));
    }
}

static void print_plan(const json_t *doc)
{
    json_t *steps = json_object_get(doc, "steps");
    size_t i;
    json_t *st;

    printf("replay plan for %s (%s saga, status %s), from %s; nothing has been changed\n",
           json_string_value(json_object_get(doc, "order_id")),
           json_string_value(json_object_get(doc, "saga")),
           json_string_value(json_object_get(doc, "status")),
           json_string_value(json_object_get(doc, "from_step")));
    if (json_object_get(doc, "not_observed"))
        printf("cloud NOT read: %s\n", json_string_value(json_object_get(doc, "not_observed")));
    json_array_foreach(steps, i, st)
    {
        json_t *fails = json_object_get(st, "fails"), *err = json_object_get(st, "error");
        int runs = json_is_true(json_object_get(st, "runs"));

        printf("  %zu %-16s %s\n", i + 1, json_string_value(json_object_get(st, "step")),
               runs ? "runs" : "skipped (before the replay step)");
        if (!runs)
            continue;
        print_lines(json_object_get(st, "changes"), "may call:");
        print_lines(json_object_get(st, "in_place"), "in place:");
        if (json_is_object(fails))
            printf("      would fail: %s: %s\n", json_string_value(json_object_get(fails, "code")),
                   json_string_value(json_object_get(fails, "message")));
        if (json_is_object(err))
            printf("      not observed: %s: %s\n", json_string_value(json_object_get(err, "code")),
                   json_string_value(json_object_get(err, "message")));
    }
}

int mc_plan_show(mc_ctx *c, const mb_job *j, const mb_saga_def *d, int from, int fmt)
{
    mb_order *o = NULL;
    mb_order_err oe;
    json_t *doc;

    memset(&oe, 0, sizeof(oe));
    if (d->parse(j->order, &o, &oe) != 0)
        return mc_fail(MC_EXIT_FAILED,
                       "the stored order of %s does not parse (%s): it cannot "
                       "be replayed",
                       j->order_id, oe.reason);
    /* As the engine does: a saga may complete its order from the state (a delete takes the
     * cluster, nodes and namespaces from the create it undoes). */
    if (d->resolve && d->resolve(o, j->state) < 0) {
        mb_order_free(o);
        return mc_fail(MC_EXIT_FAILED, "out of memory completing the order of %s", j->order_id);
    }
    doc = plan_doc(c, j, d, o, from);
    mb_order_free(o);
    if (doc == NULL)
        return mc_fail(MC_EXIT_FAILED, "out of memory building the plan");
    if (fmt == MC_FMT_JSON || fmt == MC_FMT_YAML) {
        mc_out o = {(mc_fmt)fmt, 0};
        mc_out_doc(&o, doc, stdout);
    } else {
        print_plan(doc);
    }
    json_decref(doc);
    return MC_EXIT_OK;
}
