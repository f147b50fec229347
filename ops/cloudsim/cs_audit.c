/* cs_audit.c: fixed-size request ring and an append-only mutation list. */
#include "cs_audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cs_model.h"

static const char *const mut_names[CS_MUT_NKINDS] = {
    "node_label_patch", "namespace_label_patch", "release_create", "release_delete",
    "sg_rule_create",   "sg_rule_delete",        "workload_patch",
};

typedef struct req_rec {
    unsigned long long seq;
    long long t_ms, done_ms;
    char method[8];
    char uri[200];
    char traceparent[56]; /* the W3C header as received, "" when absent */
    char user_agent[120]; /* as received (cut), "" when absent */
    short status;         /* 0 = no response yet (held, hanging) */
    signed char sig_ok;
    const char *fault;
    const char *media; /* reply Content-Type when not plain application/json; static */
} req_rec;

typedef struct mut_rec {
    unsigned long long seq, req_seq;
    long long t_ms;
    cs_mut_kind kind;
    int changed;
    char *cluster, *target;
    char *user_agent; /* of the request that made it; NULL when absent */
} mut_rec;

struct cs_audit {
    req_rec *reqs;
    size_t req_cap;
    unsigned long long req_seq;
    mut_rec *muts;
    size_t mut_len, mut_alloc, mut_cap;
    unsigned long long mut_seq, counts[CS_MUT_NKINDS];
};

cs_audit *cs_audit_new(size_t req_cap, size_t mut_cap)
{
    cs_audit *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return NULL;
    a->req_cap = req_cap ? req_cap : 1;
    a->mut_cap = mut_cap ? mut_cap : 1;
    a->reqs = calloc(a->req_cap, sizeof(*a->reqs));
    if (a->reqs == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

static void clear_muts(cs_audit *a)
{
    for (size_t i = 0; i < a->mut_len; i++) {
        free(a->muts[i].cluster);
        free(a->muts[i].target);
        free(a->muts[i].user_agent);
    }
    a->mut_len = 0;
}

void cs_audit_free(cs_audit *a)
{
    if (a == NULL)
        return;
    clear_muts(a);
    free(a->muts);
    free(a->reqs);
    free(a);
}

void cs_audit_clear(cs_audit *a)
{
    clear_muts(a);
    memset(a->reqs, 0, a->req_cap * sizeof(*a->reqs));
    memset(a->counts, 0, sizeof(a->counts));
    /* Sequence numbers keep counting so that a poller's "since" stays valid. */
}

unsigned long long cs_audit_request(cs_audit *a, long long now_ms, const char *method,
                                    const char *uri, const char *traceparent,
                                    const char *user_agent)
{
    unsigned long long seq = ++a->req_seq;
    req_rec *r = &a->reqs[seq % a->req_cap];

    memset(r, 0, sizeof(*r));
    r->seq = seq;
    r->t_ms = now_ms;
    r->sig_ok = -1;
    snprintf(r->method, sizeof(r->method), "%s", method);
    snprintf(r->uri, sizeof(r->uri), "%s", uri);
    snprintf(r->traceparent, sizeof(r->traceparent), "%s", traceparent ? traceparent : "");
    snprintf(r->user_agent, sizeof(r->user_agent), "%s", user_agent ? user_agent : "");
    return seq;
}

void cs_audit_finish(cs_audit *a, unsigned long long seq, long long now_ms, int status, int sig_ok,
                     const char *fault)
{
    req_rec *r = &a->reqs[seq % a->req_cap];

    if (r->seq != seq)
        return;
    r->done_ms = now_ms;
    r->status = (short)status;
    r->sig_ok = (signed char)sig_ok;
    r->fault = fault;
}

void cs_audit_media(cs_audit *a, unsigned long long seq, const char *media)
{
    req_rec *r = &a->reqs[seq % a->req_cap];

    if (r->seq == seq)
        r->media = media;
}

void cs_audit_mutation(cs_audit *a, long long now_ms, cs_mut_kind kind, const char *cluster,
                       const char *target, int changed, unsigned long long req_seq)
{
    a->counts[kind]++;
    a->mut_seq++;
    if (a->mut_len >= a->mut_cap)
        return; /* counters stay exact; the list is bounded */
    if (a->mut_len == a->mut_alloc) {
        size_t n = a->mut_alloc ? a->mut_alloc * 2 : 1024;
        mut_rec *p = realloc(a->muts, n * sizeof(*p));
        if (p == NULL)
            return;
        a->muts = p;
        a->mut_alloc = n;
    }
    const req_rec *r = &a->reqs[req_seq % a->req_cap];
    mut_rec *m = &a->muts[a->mut_len++];
    m->user_agent = r->seq == req_seq && r->user_agent[0] ? strdup(r->user_agent) : NULL;
    m->seq = a->mut_seq;
    m->req_seq = req_seq;
    m->t_ms = now_ms;
    m->kind = kind;
    m->changed = changed;
    m->cluster = strdup(cluster ? cluster : "");
    m->target = strdup(target ? target : "");
}

json_t *cs_audit_requests_json(const cs_audit *a, unsigned long long since, size_t limit)
{
    json_t *arr = json_array();
    unsigned long long first = a->req_seq >= a->req_cap ? a->req_seq - a->req_cap + 1 : 1;
    char t[32];

    if (since + 1 > first)
        first = since + 1;
    for (unsigned long long s = first; s <= a->req_seq && json_array_size(arr) < limit; s++) {
        const req_rec *r = &a->reqs[s % a->req_cap];
        if (r->seq != s)
            continue;
        json_t *e = json_pack("{s:I, s:s, s:I, s:s, s:s, s:i}", "seq", (json_int_t)r->seq, "time",
                              cs_time_text(r->t_ms, t, sizeof(t)), "t_ms", (json_int_t)r->t_ms,
                              "method", r->method, "path", r->uri, "status", r->status);
        json_object_set_new(e, "signature_ok",
                            r->sig_ok < 0 ? json_null() : json_boolean(r->sig_ok));
        json_object_set_new(e, "fault", r->fault ? json_string(r->fault) : json_null());
        if (r->media)
            json_object_set_new(e, "content_type", json_string(r->media));
        json_object_set_new(e, "traceparent",
                            r->traceparent[0] ? json_string(r->traceparent) : json_null());
        json_object_set_new(e, "user_agent",
                            r->user_agent[0] ? json_string(r->user_agent) : json_null());
        if (r->done_ms)
            json_object_set_new(e, "ms", json_integer(r->done_ms - r->t_ms));
        json_array_append_new(arr, e);
    }
    return json_pack("{s:I, s:o}", "total", (json_int_t)a->req_seq, "requests", arr);
}

json_t *cs_audit_mutations_json(const cs_audit *a, const char *kind)
{
    json_t *counts = json_object(), *list = json_array();
    char t[32];

    unsigned long long total = 0;

    for (int k = 0; k < CS_MUT_NKINDS; k++) {
        json_object_set_new(counts, mut_names[k], json_integer((json_int_t)a->counts[k]));
        total += a->counts[k];
    }
    for (size_t i = 0; i < a->mut_len; i++) {
        const mut_rec *m = &a->muts[i];
        if (kind && strcmp(kind, mut_names[m->kind]) != 0)
            continue;
        json_t *e =
            json_pack("{s:I, s:s, s:s, s:s, s:s, s:b, s:I}", "seq", (json_int_t)m->seq, "time",
                      cs_time_text(m->t_ms, t, sizeof(t)), "kind", mut_names[m->kind],
                      m->kind == CS_MUT_SG_RULE_CREATE || m->kind == CS_MUT_SG_RULE_DELETE
                          ? "security_group_id"
                          : "cluster_id",
                      m->cluster, "target", m->target, "changed", m->changed, "request_seq",
                      (json_int_t)m->req_seq);
        json_object_set_new(e, "user_agent",
                            m->user_agent ? json_string(m->user_agent) : json_null());
        json_array_append_new(list, e);
    }
    return json_pack("{s:o, s:I, s:o}", "counts", counts, "total", (json_int_t)total, "mutations",
                     list);
}
