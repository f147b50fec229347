/* cs_fault.c: ordered fault rules, evaluated per request with a seeded PRNG. */
#include "cs_fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct rule {
    long id;
    char method[16];
    char *path_prefix, *path_contains;
    char *body; /* answered instead, status 200 */
    long latency_ms;
    double error_rate, throttle_rate;
    int error_status, retry_after, hang, after;
    long count; /* remaining firings; -1 = unlimited */
    long skip;  /* matching requests to let through first */
    long matched, fired;
    /* release_fail rules */
    int release_fail;
    char *cluster_id;
    const char *final_status;
    struct rule *next;
} rule;

struct cs_faults {
    rule *head;
    long next_id;
    uint64_t rng;
};

cs_faults *cs_faults_new(uint64_t seed)
{
    cs_faults *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return NULL;
    f->rng = seed ? seed : 0x9e3779b97f4a7c15ULL;
    return f;
}

static void rule_free(rule *r)
{
    if (r == NULL)
        return;
    free(r->path_prefix);
    free(r->path_contains);
    free(r->body);
    free(r->cluster_id);
    free(r);
}

void cs_faults_clear(cs_faults *f)
{
    while (f->head) {
        rule *n = f->head->next;
        rule_free(f->head);
        f->head = n;
    }
}

void cs_faults_free(cs_faults *f)
{
    if (f == NULL)
        return;
    cs_faults_clear(f);
    free(f);
}

/* splitmix64: small, seedable, good enough for fault rates. */
double cs_faults_rand(cs_faults *f)
{
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static int get_rate(const json_t *spec, const char *key, double *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(spec, key);

    if (v == NULL)
        return 0;
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) {
        snprintf(err, errlen, "%s must be a number in [0,1]", key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int get_int(const json_t *spec, const char *key, long lo, long hi, long *out, char *err,
                   size_t errlen)
{
    const json_t *v = json_object_get(spec, key);

    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s must be an integer in [%ld,%ld]", key, lo, hi);
        return -1;
    }
    *out = (long)json_integer_value(v);
    return 0;
}

static void append(cs_faults *f, rule *r)
{
    rule **pp = &f->head;

    while (*pp)
        pp = &(*pp)->next;
    *pp = r;
}

static long add_release_fail(cs_faults *f, rule *r, const json_t *rf, char *err, size_t errlen)
{
    const char *st = json_string_value(json_object_get(rf, "status"));
    const char *cid = json_string_value(json_object_get(rf, "cluster_id"));

    r->release_fail = 1;
    r->final_status = "FAILED";
    if (st && strcmp(st, "UNKNOWN") == 0)
        r->final_status = "UNKNOWN";
    else if (st && strcmp(st, "FAILED") != 0) {
        snprintf(err, errlen, "release_fail.status must be FAILED or UNKNOWN");
        rule_free(r);
        return -1;
    }
    if (cid)
        r->cluster_id = strdup(cid);
    if (get_int(rf, "count", 1, 1000000000, &r->count, err, errlen) < 0) {
        rule_free(r);
        return -1;
    }
    r->id = ++f->next_id;
    append(f, r);
    return r->id;
}

long cs_faults_add(cs_faults *f, const json_t *spec, char *err, size_t errlen)
{
    rule *r = calloc(1, sizeof(*r));
    const json_t *body;
    long v = 0;

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->count = -1;
    if (!json_is_object(spec)) {
        snprintf(err, errlen, "a fault must be a JSON object");
        goto err;
    }
    if (json_is_object(json_object_get(spec, "release_fail")))
        return add_release_fail(f, r, json_object_get(spec, "release_fail"), err, errlen);
    const json_t *match = json_object_get(spec, "match");
    if (match && !json_is_object(match)) {
        snprintf(err, errlen, "match must be an object");
        goto err;
    }
    const char *method = json_string_value(json_object_get(match, "method"));
    const char *pp = json_string_value(json_object_get(match, "path_prefix"));
    const char *pc = json_string_value(json_object_get(match, "path_contains"));
    if (method)
        snprintf(r->method, sizeof(r->method), "%s", method);
    r->path_prefix = pp ? strdup(pp) : NULL;
    r->path_contains = pc ? strdup(pc) : NULL;
    if (get_int(spec, "latency_ms", 0, 3600000, &r->latency_ms, err, errlen) < 0 ||
        get_rate(spec, "error_rate", &r->error_rate, err, errlen) < 0 ||
        get_rate(spec, "throttle_rate", &r->throttle_rate, err, errlen) < 0 ||
        get_int(spec, "count", 1, 1000000000, &r->count, err, errlen) < 0 ||
        get_int(spec, "skip", 0, 1000000000, &r->skip, err, errlen) < 0)
        goto err;
    v = 0;
    if (get_int(spec, "error_status", 400, 599, &v, err, errlen) < 0)
        goto err;
    r->error_status = (int)v;
    /* An error status without a rate means every matching request fails. */
    if (r->error_status && json_object_get(spec, "error_rate") == NULL)
        r->error_rate = 1.0;
    if (r->error_rate > 0 && r->error_status == 0)
        r->error_status = 503;
    if (json_is_true(json_object_get(spec, "throttle")) &&
        json_object_get(spec, "throttle_rate") == NULL)
        r->throttle_rate = 1.0;
    v = 1;
    if (get_int(spec, "retry_after", 0, 3600, &v, err, errlen) < 0)
        goto err;
    r->retry_after = (int)v;
    r->hang = json_is_true(json_object_get(spec, "hang"));
    r->after = json_is_true(json_object_get(spec, "after"));
    body = json_object_get(spec, "body");
    if (body != NULL && !json_is_string(body)) {
        snprintf(err, errlen, "body must be a string");
        goto err;
    }
    if (body != NULL && (r->body = strdup(json_string_value(body))) == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    r->id = ++f->next_id;
    append(f, r);
    return r->id;
err:
    rule_free(r);
    return -1;
}

int cs_faults_del(cs_faults *f, long id)
{
    for (rule **pp = &f->head; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            rule *r = *pp;
            *pp = r->next;
            rule_free(r);
            return 1;
        }
    }
    return 0;
}

static int matches(const rule *r, const char *method, const char *path)
{
    if (r->release_fail)
        return 0;
    if (r->method[0] && strcasecmp(r->method, method) != 0)
        return 0;
    if (r->path_prefix && strncmp(path, r->path_prefix, strlen(r->path_prefix)) != 0)
        return 0;
    if (r->path_contains && strstr(path, r->path_contains) == NULL)
        return 0;
    return 1;
}

/* Applies one matching rule; returns 1 if it fired. */
static int fire(cs_faults *f, rule *r, cs_fault_hit *out)
{
    int fired = 0;
    int decided = out->hang || out->throttle || out->error_status || out->body;

    if (r->latency_ms > 0) {
        out->latency_ms += r->latency_ms;
        fired = 1;
    }
    if (decided)
        return fired;
    if (r->hang) {
        out->hang = 1;
    } else if (r->throttle_rate > 0 && cs_faults_rand(f) < r->throttle_rate) {
        out->throttle = 1;
        out->retry_after = r->retry_after;
    } else if (r->error_rate > 0 && cs_faults_rand(f) < r->error_rate) {
        out->error_status = r->error_status;
    } else if (r->body != NULL && (out->body = strdup(r->body)) != NULL) {
        /* a reply a proxy cut or mangled: the client must read it as such */
    } else {
        return fired;
    }
    out->after = r->after;
    out->fault_id = r->id;
    return 1;
}

void cs_faults_eval(cs_faults *f, const char *method, const char *path, cs_fault_hit *out)
{
    rule **pp = &f->head;

    memset(out, 0, sizeof(*out));
    while (*pp) {
        rule *r = *pp;
        if (!matches(r, method, path)) {
            pp = &r->next;
            continue;
        }
        r->matched++;
        if (r->skip > 0) {
            r->skip--;
            pp = &r->next;
            continue;
        }
        if (fire(f, r, out)) {
            r->fired++;
            if (r->count > 0 && --r->count == 0) {
                *pp = r->next;
                rule_free(r);
                continue;
            }
        }
        pp = &r->next;
    }
}

const char *cs_faults_release_fail(cs_faults *f, const char *cluster_id)
{
    for (rule **pp = &f->head; *pp; pp = &(*pp)->next) {
        rule *r = *pp;
        if (!r->release_fail || (r->cluster_id && strcmp(r->cluster_id, cluster_id) != 0))
            continue;
        const char *st = r->final_status;
        r->fired++;
        if (r->count > 0 && --r->count == 0) {
            *pp = r->next;
            rule_free(r);
        }
        return st;
    }
    return NULL;
}

json_t *cs_faults_json(const cs_faults *f)
{
    json_t *arr = json_array();

    for (const rule *r = f->head; r; r = r->next) {
        json_t *o;
        if (r->release_fail) {
            o = json_pack("{s:I, s:{s:s?, s:s}}", "id", (json_int_t)r->id, "release_fail",
                          "cluster_id", r->cluster_id, "status", r->final_status);
        } else {
            o = json_pack("{s:I, s:{s:s?, s:s?, s:s?}, s:I, s:f, s:i, s:f, s:i, s:b, s:b}", "id",
                          (json_int_t)r->id, "match", "method", r->method[0] ? r->method : NULL,
                          "path_prefix", r->path_prefix, "path_contains", r->path_contains,
                          "latency_ms", (json_int_t)r->latency_ms, "error_rate", r->error_rate,
                          "error_status", r->error_status, "throttle_rate", r->throttle_rate,
                          "retry_after", r->retry_after, "hang", r->hang, "after", r->after);
            if (r->body != NULL)
                json_object_set_new(o, "body", json_string(r->body));
            json_object_set_new(o, "matched", json_integer(r->matched));
            json_object_set_new(o, "skip", json_integer(r->skip));
        }
        json_object_set_new(o, "fired", json_integer(r->fired));
        json_object_set_new(o, "count", r->count < 0 ? json_null() : json_integer(r->count));
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "faults", arr);
}
