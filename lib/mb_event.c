/* mb_event.c: building and checking mesh.status CloudEvents (see mb_event.h).
 *
 * The rules mirror schemas/mesh-status.schema.json; both are held to the same
 * verdict on every fixture in tests/fixtures/mesh-status. */
#include "mb_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_json.h"
#include "mb_order.h"

#define STEP_MAX    64
#define ATTEMPT_MAX 2147483647LL
#define SEQ_MAX     9007199254740991LL /* 2^53 - 1: exact in every JSON reader */
#define TEXT_MAX    1024

static const char *const STATUS_NAMES[] = {
    "Accepted", "Installing", "Running",  "RollingBack",
    "Failed",   "Cancelled",  "Deleting", "Deleted",
};
#define N_STATUS (sizeof STATUS_NAMES / sizeof STATUS_NAMES[0])

const char *mb_mesh_status_name(mb_mesh_status s)
{
    if ((size_t)s >= N_STATUS)
        return "Unknown";
    return STATUS_NAMES[s];
}

int mb_mesh_status_parse(const char *name, mb_mesh_status *out)
{
    for (size_t i = 0; i < N_STATUS; i++) {
        if (strcmp(name, STATUS_NAMES[i]) == 0) {
            *out = (mb_mesh_status)i;
            return 0;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------- rules */

static const char *rule_status(const char *s)
{
    mb_mesh_status st;
    if (mb_mesh_status_parse(s, &st) < 0)
        return "must be one of Accepted, Installing, Running, RollingBack, Failed, Cancelled, "
               "Deleting, Deleted";
    return NULL;
}

static const char *rule_step(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 32 || s[0] < 'a' || s[0] > 'z')
        return "must be 1 to 32 characters starting with a lowercase letter";
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return "may contain only lowercase letters, digits and '_'";
    }
    return NULL;
}

static const char *rule_text(const char *s)
{
    return mb_json_utf8_len(s) > TEXT_MAX ? "must be at most 1024 characters" : NULL;
}

static const char *rule_error_code(const char *s)
{
    return mb_order_check_order_id(s); /* same form: ^[A-Za-z0-9._:-]{1,64}$ */
}

static const char *rule_time(const char *s)
{
    if (strlen(s) > 64 || !mb_json_rfc3339(s))
        return "must be an RFC 3339 date-time like 2024-05-01T12:00:00Z";
    return NULL;
}

/* ---------------------------------------------------------------- check */

static int check_error(mb_jcheck *c, const json_t *e)
{
    const char *s;
    if (!json_is_object(e))
        return mb_jcheck_fail(c, "data.error", "must be an object");
    /* Open to additive fields, like data: a consumer must ignore what it does not know. */
    if (mb_jcheck_str(c, e, "data.error", "code", 1, rule_error_code, &s) < 0 ||
        mb_jcheck_str(c, e, "data.error", "message", 1, rule_text, &s) < 0)
        return -1;
    const json_t *r = json_object_get(e, "retryable");
    if (!r)
        return mb_jcheck_fail(c, "data.error.retryable", "is required");
    if (!json_is_boolean(r))
        return mb_jcheck_fail(c, "data.error.retryable", "must be a boolean");
    return 0;
}

static int check_data(mb_jcheck *c, const json_t *d)
{
    const char *s, *status;
    long long n;
    if (!json_is_object(d))
        return mb_jcheck_fail(c, "event.data", "must be an object");
    /* Open to additive fields: required are those every event carries, which consumers
     * may rely on; cluster_id is absent only on the Failed event of an order that did
     * not carry a valid one. */
    if (mb_jcheck_str(c, d, "data", "order_id", 1, mb_order_check_order_id, &s) < 0 ||
        mb_jcheck_str(c, d, "data", "mesh_id", 1, mb_order_check_id, &s) < 0 ||
        mb_jcheck_str(c, d, "data", "account_id", 1, mb_order_check_id, &s) < 0 ||
        mb_jcheck_str(c, d, "data", "mesh_name", 1, mb_order_check_mesh_name, &s) < 0 ||
        mb_jcheck_str(c, d, "data", "cluster_id", 0, mb_order_check_id, &s) < 0 ||
        mb_jcheck_str(c, d, "data", "status", 1, rule_status, &status) < 0 ||
        mb_jcheck_str(c, d, "data", "step", 1, rule_step, &s) < 0 ||
        mb_jcheck_int(c, d, "data", "step_index", 1, 1, STEP_MAX, &n) < 0 ||
        mb_jcheck_int(c, d, "data", "step_total", 1, 1, STEP_MAX, &n) < 0 ||
        mb_jcheck_str(c, d, "data", "message", 1, rule_text, &s) < 0 ||
        mb_jcheck_int(c, d, "data", "attempt", 1, 1, ATTEMPT_MAX, &n) < 0 ||
        mb_jcheck_int(c, d, "data", "seq", 1, 1, SEQ_MAX, &n) < 0 ||
        mb_jcheck_str(c, d, "data", "occurred_at", 1, rule_time, &s) < 0)
        return -1;
    const json_t *e = json_object_get(d, "error");
    if (e && check_error(c, e) < 0)
        return -1;
    mb_mesh_status st = MB_MESH_ACCEPTED;
    mb_mesh_status_parse(status, &st);
    if (st == MB_MESH_FAILED && !e)
        return mb_jcheck_fail(c, "data.error", "is required when status is Failed");
    if (e && st != MB_MESH_FAILED && st != MB_MESH_ROLLING_BACK)
        return mb_jcheck_fail(c, "data.error",
                              "is allowed only when status is Failed or "
                              "RollingBack");
    return 0;
}

int mb_event_check(const json_t *env, char *err, size_t errlen)
{
    mb_jcheck c;
    const char *type;
    mb_jcheck_init(&c, err, errlen);
    /* time and datacontenttype are optional on orders; every status event has them */
    if (mb_order_check_envelope(&c, env) < 0 ||
        mb_jcheck_str(&c, env, "event", "time", 1, NULL, &type) < 0 ||
        mb_jcheck_str(&c, env, "event", "datacontenttype", 1, NULL, &type) < 0 ||
        mb_jcheck_str(&c, env, "event", "type", 1, NULL, &type) < 0)
        return -1;
    if (strcmp(type, MB_TYPE_MESH_STATUS) != 0)
        return mb_jcheck_fail(&c, "event.type", "must be \"%s\"", MB_TYPE_MESH_STATUS);
    const json_t *d = json_object_get(env, "data");
    if (!d)
        return mb_jcheck_fail(&c, "event.data", "is required");
    return check_data(&c, d);
}

json_t *mb_event_parse(const void *buf, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    if (len > MB_ORDER_MAX_BYTES) {
        snprintf(err, errlen, "message: %zu bytes, more than the %d allowed", len,
                 MB_ORDER_MAX_BYTES);
        return NULL;
    }
    json_t *env = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!env) {
        snprintf(err, errlen, "message: not JSON: %s at line %d column %d", jerr.text, jerr.line,
                 jerr.column);
        return NULL;
    }
    if (mb_event_check(env, err, errlen) < 0) {
        json_decref(env);
        return NULL;
    }
    return env;
}

/* ---------------------------------------------------------------- build */

static int set_str(json_t *obj, const char *key, const char *val)
{
    if (!val)
        return 0;
    json_t *s = json_string(val);
    if (!s)
        return -1; /* invalid UTF-8 or out of memory */
    return json_object_set_new(obj, key, s);
}

static int set_int(json_t *obj, const char *key, long long v)
{
    return json_object_set_new(obj, key, json_integer(v));
}

static json_t *build_data(const mb_status_event *ev, const char *when)
{
    json_t *d = json_object();
    if (!d)
        return NULL;
    int rc = 0;
    rc |= set_str(d, "order_id", ev->order_id);
    rc |= set_str(d, "mesh_id", ev->mesh_id);
    rc |= set_str(d, "account_id", ev->account_id);
    rc |= set_str(d, "mesh_name", ev->mesh_name);
    rc |= set_str(d, "cluster_id", ev->cluster_id);
    rc |= set_str(d, "status", mb_mesh_status_name(ev->status));
    rc |= set_str(d, "step", ev->step);
    rc |= set_int(d, "step_index", ev->step_index);
    rc |= set_int(d, "step_total", ev->step_total);
    rc |= set_str(d, "message", ev->message ? ev->message : "");
    if (ev->error_code) {
        json_t *e = json_pack("{s:s, s:s, s:b}", "code", ev->error_code, "message",
                              ev->error_message ? ev->error_message : "", "retryable",
                              ev->error_retryable ? 1 : 0);
        rc |= e ? json_object_set_new(d, "error", e) : -1;
    }
    rc |= set_int(d, "attempt", ev->attempt);
    rc |= set_int(d, "seq", ev->seq);
    rc |= set_str(d, "occurred_at", when);
    if (rc) {
        json_decref(d);
        return NULL;
    }
    return d;
}

json_t *mb_event_build_json(const mb_status_event *ev, char *err, size_t errlen)
{
    char when[32], id[256], subject[160];
    mb_json_time_ms(ev->occurred_ms ? ev->occurred_ms : mb_json_now_ms(), when, sizeof when);
    if (!ev->account_id || !ev->mesh_name) {
        snprintf(err, errlen, "data.%s: is required", ev->account_id ? "mesh_name" : "account_id");
        return NULL;
    }
    snprintf(id, sizeof id, "%.64s/%.64s#%lld", ev->account_id, ev->mesh_name, ev->seq);
    snprintf(subject, sizeof subject, "%.64s/%.64s", ev->account_id, ev->mesh_name);
    json_t *data = build_data(ev, when);
    if (!data) {
        snprintf(err, errlen, "event: a string is not valid UTF-8, or out of memory");
        return NULL;
    }
    json_t *env = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id",
                            id, "source", ev->source ? ev->source : MB_EVENT_SOURCE, "type",
                            MB_TYPE_MESH_STATUS, "time", when, "datacontenttype",
                            "application/json", "subject", subject, "data", data);
    if (!env || set_str(env, "traceparent", ev->traceparent) < 0) {
        snprintf(err, errlen, "event: out of memory");
        json_decref(env);
        return NULL;
    }
    /* the worker must never publish what consumers would reject */
    if (mb_event_check(env, err, errlen) < 0) {
        json_decref(env);
        return NULL;
    }
    return env;
}

char *mb_event_build(const mb_status_event *ev, char *err, size_t errlen)
{
    json_t *env = mb_event_build_json(ev, err, errlen);
    if (!env)
        return NULL;
    char *s = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    if (!s)
        snprintf(err, errlen, "event: out of memory");
    return s;
}

/* ---------------------------------------------------------------- view */

static const char *str_at(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static long long int_at(const json_t *obj, const char *key)
{
    long long n = 0;
    mb_json_integer(json_object_get(obj, key), &n);
    return n;
}

int mb_event_view(const json_t *env, mb_status_event *out)
{
    memset(out, 0, sizeof *out);
    const json_t *d = json_object_get(env, "data");
    if (!json_is_object(d) || !str_at(d, "status"))
        return -1;
    if (mb_mesh_status_parse(str_at(d, "status"), &out->status) < 0)
        return -1;
    out->order_id = str_at(d, "order_id");
    out->mesh_id = str_at(d, "mesh_id");
    out->account_id = str_at(d, "account_id");
    out->mesh_name = str_at(d, "mesh_name");
    out->cluster_id = str_at(d, "cluster_id");
    out->step = str_at(d, "step");
    out->step_index = (int)int_at(d, "step_index");
    out->step_total = (int)int_at(d, "step_total");
    out->message = str_at(d, "message");
    out->attempt = (long)int_at(d, "attempt");
    out->seq = int_at(d, "seq");
    const json_t *e = json_object_get(d, "error");
    if (json_is_object(e)) {
        out->error_code = str_at(e, "code");
        out->error_message = str_at(e, "message");
        out->error_retryable = json_is_true(json_object_get(e, "retryable"));
    }
    out->traceparent = str_at(env, "traceparent");
    out->source = str_at(env, "source");
    return 0;
}
