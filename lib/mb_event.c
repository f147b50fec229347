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
        mb_jcheck_str(c, d, "data", "occurred_at", 1, mb_order_check_time, &s) < 0)
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

/* ---------------------------------------------------------------- build
 *
 * The builder checks its inputs, not what it built.  It once built the tree with json_pack
 * and json_object_set_new and ran mb_event_check over it: half of the ~46k instructions an
 * event cost.  Everything in the tree that does not come from the caller is fixed here
 * (keys, specversion, type, datacontenttype, the shape of id and subject, booleans), so the
 * rules that can fail are the ones on the caller's strings and integers: they run once, on
 * the inputs, through the same rule functions mb_event_check applies and in its order, so
 * the first error and its text are what the check of the tree reported.  Then the tree is
 * built with the non-validating setters.  test_event holds the two to the same verdict and
 * the same bytes on every field's edge cases (build_agrees_with_check). */

/* Records "<path>: is required" or "<path>: <rule's reason>".  0 or -1. */
static int in_str(mb_jcheck *c, const char *path, const char *v, int required, mb_jrule rule)
{
    const char *why;

    if (v == NULL)
        return required ? mb_jcheck_fail(c, path, "is required") : 0;
    why = rule(v);
    return why ? mb_jcheck_fail(c, path, "%s", why) : 0;
}

static int in_int(mb_jcheck *c, const char *path, long long v, long long min, long long max)
{
    if (v < min || v > max)
        return mb_jcheck_fail(c, path, "must be between %lld and %lld", min, max);
    return 0;
}

static int utf8_ok(const char *s)
{
    return s == NULL || mb_json_utf8_valid(s, strlen(s));
}

/* What jansson refused while building (json_string on invalid UTF-8), in the order it met
 * it.  0, or -1 with err set. */
static int check_utf8(const mb_status_event *ev, const char *id, const char *subject, char *err,
                      size_t errlen)
{
    if (!utf8_ok(ev->order_id) || !utf8_ok(ev->mesh_id) || !utf8_ok(ev->account_id) ||
        !utf8_ok(ev->mesh_name) || !utf8_ok(ev->cluster_id) || !utf8_ok(ev->step) ||
        !utf8_ok(ev->message) ||
        (ev->error_code && (!utf8_ok(ev->error_code) || !utf8_ok(ev->error_message)))) {
        snprintf(err, errlen, "event: a string is not valid UTF-8, or out of memory");
        return -1;
    }
    if (!utf8_ok(id) || !utf8_ok(subject) || !utf8_ok(ev->source) || !utf8_ok(ev->traceparent)) {
        snprintf(err, errlen, "event: out of memory");
        return -1;
    }
    return 0;
}

/* mb_event_check's rules on the caller's fields, in its order.  0 or -1. */
static int check_inputs(mb_jcheck *c, const mb_status_event *ev, const char *id,
                        const char *subject, const char *when)
{
    const char *status = mb_mesh_status_name(ev->status);

    /* envelope (mb_order_check_envelope) */
    if (in_str(c, "event.id", id, 1, mb_order_check_printable256) < 0 ||
        in_str(c, "event.source", ev->source ? ev->source : MB_EVENT_SOURCE, 1,
               mb_order_check_printable256) < 0 ||
        in_str(c, "event.time", when, 1, mb_order_check_time) < 0 ||
        in_str(c, "event.subject", subject, 1, mb_order_check_printable256) < 0 ||
        in_str(c, "event.traceparent", ev->traceparent, 0, mb_order_check_traceparent) < 0)
        return -1;
    /* data (check_data) */
    if (in_str(c, "data.order_id", ev->order_id, 1, mb_order_check_order_id) < 0 ||
        in_str(c, "data.mesh_id", ev->mesh_id, 1, mb_order_check_id) < 0 ||
        in_str(c, "data.account_id", ev->account_id, 1, mb_order_check_id) < 0 ||
        in_str(c, "data.mesh_name", ev->mesh_name, 1, mb_order_check_mesh_name) < 0 ||
        in_str(c, "data.cluster_id", ev->cluster_id, 0, mb_order_check_id) < 0 ||
        in_str(c, "data.status", status, 1, rule_status) < 0 ||
        in_str(c, "data.step", ev->step, 1, rule_step) < 0 ||
        in_int(c, "data.step_index", ev->step_index, 1, STEP_MAX) < 0 ||
        in_int(c, "data.step_total", ev->step_total, 1, STEP_MAX) < 0 ||
        in_str(c, "data.message", ev->message ? ev->message : "", 1, rule_text) < 0 ||
        in_int(c, "data.attempt", ev->attempt, 1, ATTEMPT_MAX) < 0 ||
        in_int(c, "data.seq", ev->seq, 1, SEQ_MAX) < 0 ||
        in_str(c, "data.occurred_at", when, 1, mb_order_check_time) < 0)
        return -1;
    if (ev->error_code && (in_str(c, "data.error.code", ev->error_code, 1, rule_error_code) < 0 ||
                           in_str(c, "data.error.message",
                                  ev->error_message ? ev->error_message : "", 1, rule_text) < 0))
        return -1;
    if (ev->status == MB_MESH_FAILED && !ev->error_code)
        return mb_jcheck_fail(c, "data.error", "is required when status is Failed");
    if (ev->error_code && ev->status != MB_MESH_FAILED && ev->status != MB_MESH_ROLLING_BACK)
        return mb_jcheck_fail(c, "data.error",
                              "is allowed only when status is Failed or "
                              "RollingBack");
    return 0;
}

/* obj[key] = s, a string already checked.  NULL s: nothing.  0 or -1 (out of memory). */
static int put_str(json_t *obj, const char *key, const char *s)
{
    if (s == NULL)
        return 0;
    return json_object_set_new_nocheck(obj, key, json_string_nocheck(s));
}

static int put_int(json_t *obj, const char *key, long long v)
{
    return json_object_set_new_nocheck(obj, key, json_integer(v));
}

/* The data object, members in the contract's order.  New, or NULL (out of memory). */
static json_t *build_data(const mb_status_event *ev, const char *when)
{
    json_t *d = json_object();
    int rc = 0;

    if (!d)
        return NULL;
    rc |= put_str(d, "order_id", ev->order_id);
    rc |= put_str(d, "mesh_id", ev->mesh_id);
    rc |= put_str(d, "account_id", ev->account_id);
    rc |= put_str(d, "mesh_name", ev->mesh_name);
    rc |= put_str(d, "cluster_id", ev->cluster_id);
    rc |= put_str(d, "status", mb_mesh_status_name(ev->status));
    rc |= put_str(d, "step", ev->step);
    rc |= put_int(d, "step_index", ev->step_index);
    rc |= put_int(d, "step_total", ev->step_total);
    rc |= put_str(d, "message", ev->message ? ev->message : "");
    if (ev->error_code) {
        json_t *e = json_object();
        rc |= e ? json_object_set_new_nocheck(d, "error", e) : -1;
        rc |= put_str(e, "code", ev->error_code);
        rc |= put_str(e, "message", ev->error_message ? ev->error_message : "");
        rc |= e ? json_object_set_new_nocheck(e, "retryable",
                                              json_boolean(ev->error_retryable ? 1 : 0))
                : -1;
    }
    rc |= put_int(d, "attempt", ev->attempt);
    rc |= put_int(d, "seq", ev->seq);
    rc |= put_str(d, "occurred_at", when);
    if (rc) {
        json_decref(d);
        return NULL;
    }
    return d;
}

/* "<account_id>/<mesh_name>", each cut at 64 bytes, into subject (130 bytes), and the same
 * with "#<seq>" into id (151 bytes). */
static void make_ids(const mb_status_event *ev, char *id, char *subject)
{
    size_t an = strnlen(ev->account_id, 64), mn = strnlen(ev->mesh_name, 64);
    size_t n = 0;

    memcpy(subject, ev->account_id, an);
    n = an;
    subject[n++] = '/';
    memcpy(subject + n, ev->mesh_name, mn);
    n += mn;
    subject[n] = '\0';
    memcpy(id, subject, n);
    id[n++] = '#';
    mb_json_fmt_ll(id + n, ev->seq);
}

enum { WHEN_MAX = 32 }; /* "2024-05-01T12:00:00.123Z" and room to spare */

/* What both builders start from: the time, id and subject, and every input checked. */
static int prepare(const mb_status_event *ev, char *when, char *id, char *subject, char *err,
                   size_t errlen)
{
    mb_jcheck c;

    mb_json_time_ms(ev->occurred_ms ? ev->occurred_ms : mb_json_now_ms(), when, WHEN_MAX);
    if (!ev->account_id || !ev->mesh_name) {
        snprintf(err, errlen, "data.%s: is required", ev->account_id ? "mesh_name" : "account_id");
        return -1;
    }
    make_ids(ev, id, subject);
    /* the worker must never publish what consumers would reject */
    if (check_utf8(ev, id, subject, err, errlen) < 0)
        return -1;
    mb_jcheck_init(&c, err, errlen);
    return check_inputs(&c, ev, id, subject, when);
}

json_t *mb_event_build_json(const mb_status_event *ev, char *err, size_t errlen)
{
    char when[WHEN_MAX], id[160], subject[136];
    json_t *env, *data;
    int rc = 0;

    if (prepare(ev, when, id, subject, err, errlen) < 0)
        return NULL;
    data = build_data(ev, when);
    env = json_object();
    if (!data || !env) {
        snprintf(err, errlen, "event: out of memory");
        json_decref(data);
        json_decref(env);
        return NULL;
    }
    rc |= put_str(env, "specversion", "1.0");
    rc |= put_str(env, "id", id);
    rc |= put_str(env, "source", ev->source ? ev->source : MB_EVENT_SOURCE);
    rc |= put_str(env, "type", MB_TYPE_MESH_STATUS);
    rc |= put_str(env, "time", when);
    rc |= put_str(env, "datacontenttype", "application/json");
    rc |= put_str(env, "subject", subject);
    rc |= json_object_set_new_nocheck(env, "data", data);
    rc |= put_str(env, "traceparent", ev->traceparent);
    if (rc) {
        snprintf(err, errlen, "event: out of memory");
        json_decref(env);
        return NULL;
    }
    return env;
}

_Static_assert(sizeof(((mb_event_parts *)0)->traceparent) == MB_TRACEPARENT_LEN + 1,
               "mb_event_parts.traceparent holds a traceparent");

/* ,"key": then the string s; nothing when s is NULL.  Sets *bad if s is not UTF-8 (prepare
 * has checked every string: this keeps a slip from writing half a string). */
static void part_str(mb_buf *b, const char *key, const char *s, int *bad)
{
    if (s == NULL)
        return;
    mb_buf_puts(b, key);
    if (mb_json_put_str(b, s, strlen(s)) < 0)
        *bad = 1;
}

static void part_int(mb_buf *b, const char *key, long long v)
{
    char num[MB_JSON_LL_MAX];

    mb_buf_puts(b, key);
    mb_buf_add(b, num, mb_json_fmt_ll(num, v));
}

/* The same members as build_data and mb_event_build_json, in their order, written out. */
int mb_event_build_parts(const mb_status_event *ev, mb_event_parts *out, char *err, size_t errlen)
{
    char when[WHEN_MAX], id[160], subject[136];
    mb_buf b = {0};
    int bad = 0;

    memset(out, 0, sizeof(*out));
    if (prepare(ev, when, id, subject, err, errlen) < 0)
        return -1;
    mb_buf_puts(&b, "\"specversion\":\"1.0\"");
    part_str(&b, ",\"source\":", ev->source ? ev->source : MB_EVENT_SOURCE, &bad);
    mb_buf_puts(&b, ",\"type\":\"" MB_TYPE_MESH_STATUS "\"");
    part_str(&b, ",\"time\":", when, &bad);
    mb_buf_puts(&b, ",\"datacontenttype\":\"application/json\"");
    part_str(&b, ",\"subject\":", subject, &bad);
    part_str(&b, ",\"traceparent\":", ev->traceparent, &bad);
    out->head_len = b.len;
    part_str(&b, "\"order_id\":", ev->order_id, &bad);
    part_str(&b, ",\"mesh_id\":", ev->mesh_id, &bad);
    part_str(&b, ",\"account_id\":", ev->account_id, &bad);
    part_str(&b, ",\"mesh_name\":", ev->mesh_name, &bad);
    part_str(&b, ",\"cluster_id\":", ev->cluster_id, &bad);
    part_str(&b, ",\"status\":", mb_mesh_status_name(ev->status), &bad);
    part_str(&b, ",\"step\":", ev->step, &bad);
    part_int(&b, ",\"step_index\":", ev->step_index);
    part_int(&b, ",\"step_total\":", ev->step_total);
    part_str(&b, ",\"message\":", ev->message ? ev->message : "", &bad);
    if (ev->error_code) {
        part_str(&b, ",\"error\":{\"code\":", ev->error_code, &bad);
        part_str(&b, ",\"message\":", ev->error_message ? ev->error_message : "", &bad);
        mb_buf_puts(&b, ev->error_retryable ? ",\"retryable\":true}" : ",\"retryable\":false}");
    }
    part_int(&b, ",\"attempt\":", ev->attempt);
    part_str(&b, ",\"occurred_at\":", when, &bad);
    if (b.oom || bad) {
        mb_buf_free(&b);
        snprintf(err, errlen, "event: %s", bad ? "a field is not UTF-8" : "out of memory");
        return -1;
    }
    out->data_len = b.len - out->head_len;
    out->text = mb_buf_take(&b);
    snprintf(out->traceparent, sizeof(out->traceparent), "%s",
             ev->traceparent ? ev->traceparent : "");
    return 0;
}

void mb_event_parts_free(mb_event_parts *p)
{
    if (p == NULL)
        return;
    free(p->text);
    memset(p, 0, sizeof(*p));
}

char *mb_event_build(const mb_status_event *ev, char *err, size_t errlen)
{
    json_t *env = mb_event_build_json(ev, err, errlen);
    if (!env)
        return NULL;
    char *s = mb_json_dumps(env); /* json_dumps(env, JSON_COMPACT)'s bytes */
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
