/* cs_admin.c: unsigned test/ops endpoints: state, request log, mutation counts, faults, reset. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_api.h"
#include "mb_log.h"

static int is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

static void admin_err(cs_call *c, int status, const char *msg)
{
    cs_reply_json(c, status, json_pack("{s:s}", "error", msg));
}

static long long query_ll(const cs_call *c, const char *name, long long def)
{
    const char *v = cs_query(c, name);
    char *end;

    if (v == NULL || *v == '\0')
        return def;
    long long n = strtoll(v, &end, 10);
    return *end == '\0' ? n : def;
}

/* Loads scenario (borrowed) into a fresh model, clearing logs and faults. */
static int load(cs_call *c, const json_t *scenario)
{
    cs_server *s = c->srv;
    char err[512];
    cs_model *m = cs_model_new(scenario, s->install_ms, s->delete_ms, err, sizeof(err));

    if (m == NULL) {
        admin_err(c, 400, err);
        return -1;
    }
    cs_server_set_model(s, m);
    cs_audit_clear(s->audit);
    cs_faults_clear(s->faults);
    mb_info("cloudsim", "scenario loaded: %zu clusters, %zu security groups",
            cs_map_count(m->clusters), cs_map_count(m->sgs));
    return 0;
}

static void faults(cs_call *c)
{
    cs_server *s = c->srv;
    char err[256];

    if (c->nseg == 3 && is(c->method, "DELETE")) {
        char *end;
        long id = strtol(c->seg[2], &end, 10);
        if (*end != '\0' || !cs_faults_del(s->faults, id))
            admin_err(c, 404, "no such fault");
        else
            cs_reply_empty(c, 204);
        return;
    }
    if (c->nseg != 2) {
        admin_err(c, 404, "not found");
    } else if (is(c->method, "GET")) {
        cs_reply_json(c, 200, cs_faults_json(s->faults));
    } else if (is(c->method, "DELETE")) {
        cs_faults_clear(s->faults);
        cs_reply_empty(c, 204);
    } else if (is(c->method, "POST")) {
        json_t *spec = cs_body_json(c, err, sizeof(err));
        long id = spec ? cs_faults_add(s->faults, spec, err, sizeof(err)) : -1;
        json_decref(spec);
        if (id < 0)
            admin_err(c, 400, err);
        else
            cs_reply_json(c, 201, json_pack("{s:I}", "id", (json_int_t)id));
    } else {
        admin_err(c, 405, "method not allowed");
    }
}

static json_t *config_json(const cs_server *s)
{
    return json_pack("{s:I, s:I, s:I, s:b, s:b}", "latency_ms", (json_int_t)s->latency_ms,
                     "release_install_ms", (json_int_t)s->install_ms, "release_delete_ms",
                     (json_int_t)s->delete_ms, "kubectl_read", s->kubectl_read, "no_auth",
                     s->no_auth);
}

static void config(cs_call *c)
{
    cs_server *s = c->srv;
    char err[256];

    if (is(c->method, "GET")) {
        cs_reply_json(c, 200, config_json(s));
        return;
    }
    json_t *body = cs_body_json(c, err, sizeof(err));
    if (body == NULL) {
        admin_err(c, 400, err);
        return;
    }
    const json_t *v;
    if (json_is_integer(v = json_object_get(body, "latency_ms")))
        s->latency_ms = (long)json_integer_value(v);
    if (json_is_integer(v = json_object_get(body, "release_install_ms")))
        s->install_ms = s->m->install_ms = json_integer_value(v);
    if (json_is_integer(v = json_object_get(body, "release_delete_ms")))
        s->delete_ms = s->m->delete_ms = json_integer_value(v);
    if (json_is_boolean(v = json_object_get(body, "kubectl_read")))
        s->kubectl_read = json_is_true(v);
    json_decref(body);
    cs_reply_json(c, 200, config_json(s));
}

/* POST /admin/warm {"count":N}: the first N clusters of each cluster set built now. */
static void warm(cs_call *c)
{
    char err[256];
    json_t *body = cs_body_json(c, err, sizeof(err));
    const json_t *v = json_object_get(body, "count");
    long built;

    if (body == NULL) {
        admin_err(c, 400, err);
    } else if (!json_is_integer(v) || json_integer_value(v) < 0) {
        admin_err(c, 400, "count: a whole number >= 0 is required");
    } else if ((built = cs_model_warm(c->srv->m, (long)json_integer_value(v))) < 0) {
        admin_err(c, 500,
                  "a cluster could not be built: its set's template is invalid, or "
                  "out of memory");
    } else {
        cs_reply_json(c, 200,
                      json_pack("{s:I, s:I}", "built", (json_int_t)built, "clusters",
                                (json_int_t)cs_map_count(c->srv->m->clusters)));
    }
    json_decref(body);
}

void cs_admin_handle(cs_call *c)
{
    cs_server *s = c->srv;
    const char *what = c->nseg >= 2 ? c->seg[1] : "";
    char err[256];

    if (is(c->seg[0], "healthz")) {
        cs_reply_json(c, 200,
                      json_pack("{s:s, s:I, s:o}", "status", "ok", "held", (json_int_t)s->held.n,
                                "loops", cs_server_loops_json(s)));
    } else if (is(what, "state") && is(c->method, "GET")) {
        const char *cid = cs_query(c, "cluster");
        json_t *st = cs_model_state(s->m, cid, c->now_ms);
        if (st == NULL)
            admin_err(c, 404, "no such cluster");
        else
            cs_reply_json(c, 200, st);
    } else if (is(what, "requests") && is(c->method, "GET")) {
        long long since = query_ll(c, "since", 0), limit = query_ll(c, "limit", 100000);
        cs_reply_json(c, 200,
                      cs_audit_requests_json(s->audit, (unsigned long long)since,
                                             limit > 0 ? (size_t)limit : 0));
    } else if (is(what, "mutations") && is(c->method, "GET")) {
        cs_reply_json(c, 200, cs_audit_mutations_json(s->audit, cs_query(c, "kind")));
    } else if (is(what, "reset") && is(c->method, "POST")) {
        json_t *doc = json_incref(s->m->doc);
        if (load(c, doc) == 0)
            cs_reply_json(c, 200, json_pack("{s:s}", "status", "reset"));
        json_decref(doc);
    } else if (is(what, "scenario") && is(c->method, "POST")) {
        json_t *doc = cs_body_json(c, err, sizeof(err));
        if (doc == NULL)
            admin_err(c, 400, err);
        else if (load(c, doc) == 0)
            cs_reply_json(c, 200, json_pack("{s:s}", "status", "loaded"));
        json_decref(doc);
    } else if (is(what, "scenario") && is(c->method, "GET")) {
        cs_reply_json(c, 200, json_incref(s->m->doc));
    } else if (is(what, "faults")) {
        faults(c);
    } else if (is(what, "config") && (is(c->method, "GET") || is(c->method, "POST"))) {
        config(c);
    } else if (is(what, "warm") && is(c->method, "POST")) {
        warm(c);
    } else if (is(what, "expire-continue") && is(c->method, "POST")) {
        s->m->pods_epoch++;
        cs_reply_json(c, 200, json_pack("{s:I}", "pods_epoch", (json_int_t)s->m->pods_epoch));
    } else {
        admin_err(c, 404, "unknown admin endpoint or method");
    }
}
