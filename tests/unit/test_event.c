/* test_event.c: status events: build, deterministic id, schema rules on build, parse, fixtures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mb_event.h"
#include "mb_json.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static mb_status_event base(void)
{
    mb_status_event ev = {
        .order_id = "ord-1",
        .mesh_id = "m-1",
        .account_id = "acc1",
        .mesh_name = "shop-mesh",
        .cluster_id = "c-1",
        .status = MB_MESH_INSTALLING,
        .step = "install_release",
        .step_index = 5,
        .step_total = 9,
        .message = "installing",
        .attempt = 2,
        .seq = 7,
        .occurred_ms = 1714564803250LL, /* 2024-05-01T12:00:03.250Z */
        .traceparent = TP,
    };
    return ev;
}

static void build_installing(void **state)
{
    (void)state;
    char err[256];
    mb_status_event ev = base();
    char *s = mb_event_build(&ev, err, sizeof err);
    assert_non_null(s);
    json_t *env = mb_event_parse(s, strlen(s), err, sizeof err);
    assert_non_null(env);
    assert_string_equal(json_string_value(json_object_get(env, "id")), "acc1/shop-mesh#7");
    assert_string_equal(json_string_value(json_object_get(env, "subject")), "acc1/shop-mesh");
    assert_string_equal(json_string_value(json_object_get(env, "source")), "/meshbuy/worker");
    assert_string_equal(json_string_value(json_object_get(env, "type")), MB_TYPE_MESH_STATUS);
    assert_string_equal(json_string_value(json_object_get(env, "traceparent")), TP);
    assert_string_equal(json_string_value(json_object_get(env, "time")),
                        "2024-05-01T12:00:03.250Z");
    json_t *d = json_object_get(env, "data");
    assert_string_equal(json_string_value(json_object_get(d, "occurred_at")),
                        "2024-05-01T12:00:03.250Z");
    assert_string_equal(json_string_value(json_object_get(d, "status")), "Installing");
    assert_null(json_object_get(d, "error"));
    mb_status_event v;
    assert_int_equal(mb_event_view(env, &v), 0);
    assert_int_equal(v.status, MB_MESH_INSTALLING);
    assert_int_equal(v.seq, 7);
    assert_int_equal(v.attempt, 2);
    assert_int_equal(v.step_index, 5);
    assert_string_equal(v.mesh_id, "m-1");
    assert_null(v.error_code);
    json_decref(env);

    /* same inputs, same bytes: a re-relayed duplicate is recognisable */
    char *again = mb_event_build(&ev, err, sizeof err);
    assert_string_equal(s, again);
    free(again);
    free(s);
}

static void build_failed_partial(void **state)
{
    (void)state;
    char err[256];
    mb_status_event ev = base();
    ev.status = MB_MESH_FAILED;
    ev.mesh_id = NULL; /* every event has one: refused without */
    assert_null(mb_event_build_json(&ev, err, sizeof err));
    assert_string_equal(err, "data.mesh_id: is required");
    ev.mesh_id = "mesh-3f74f33e4ba493f0";
    ev.cluster_id = NULL;
    ev.step = "validate";
    ev.error_code = "InvalidOrder";
    ev.error_message = "data.mesh.name: must end with a letter or digit";
    ev.traceparent = NULL;
    ev.occurred_ms = 0; /* now */
    json_t *env = mb_event_build_json(&ev, err, sizeof err);
    assert_non_null(env);
    json_t *d = json_object_get(env, "data");
    assert_string_equal(json_string_value(json_object_get(d, "mesh_id")), "mesh-3f74f33e4ba493f0");
    assert_null(json_object_get(d, "cluster_id"));
    assert_null(json_object_get(env, "traceparent"));
    json_t *e = json_object_get(d, "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "InvalidOrder");
    assert_true(json_is_false(json_object_get(e, "retryable")));
    mb_status_event v;
    assert_int_equal(mb_event_view(env, &v), 0);
    assert_string_equal(v.error_code, "InvalidOrder");
    assert_int_equal(v.status, MB_MESH_FAILED);
    json_decref(env);
}

/* What consumers would reject is never built. */
static void build_refuses_bad_fields(void **state)
{
    (void)state;
    char err[256];
    mb_status_event ev = base();
    ev.status = MB_MESH_FAILED; /* without an error */
    assert_null(mb_event_build(&ev, err, sizeof err));
    assert_string_equal(err, "data.error: is required when status is Failed");

    ev = base();
    ev.error_code = "X"; /* error on Installing */
    assert_null(mb_event_build(&ev, err, sizeof err));
    assert_string_equal(err, "data.error: is allowed only when status is Failed or RollingBack");

    ev = base();
    ev.seq = 0;
    assert_null(mb_event_build(&ev, err, sizeof err));
    assert_string_equal(err, "data.seq: must be between 1 and 9007199254740991");

    ev = base();
    ev.mesh_name = "Bad_Name";
    assert_null(mb_event_build(&ev, err, sizeof err));
    assert_non_null(strstr(err, "data.mesh_name"));

    ev = base();
    ev.traceparent = "00-xyz";
    assert_null(mb_event_build(&ev, err, sizeof err));
    assert_non_null(strstr(err, "event.traceparent"));

    ev = base();
    ev.step = NULL;
    assert_null(mb_event_build(&ev, err, sizeof err));
    assert_string_equal(err, "data.step: is required");

    ev = base();
    ev.message = "\xff\xfe"; /* not UTF-8 */
    assert_null(mb_event_build(&ev, err, sizeof err));

    ev = base();
    ev.account_id = NULL;
    assert_null(mb_event_build(&ev, err, sizeof err));
    assert_string_equal(err, "data.account_id: is required");

    ev = base();
    ev.status = MB_MESH_ROLLING_BACK; /* error optional here */
    assert_non_null(ev.step);
    char *s = mb_event_build(&ev, err, sizeof err);
    assert_non_null(s);
    free(s);
}

/* ---- the builder as it was: json_pack, then mb_event_check over what it built.  The
 * builder now checks its inputs instead; it must agree with this on every input: the same
 * verdict, the same first error, the same bytes. */

static void old_time(long long epoch_ms, char *buf, size_t len)
{
    time_t secs = (time_t)(epoch_ms / 1000);
    int ms = (int)(epoch_ms % 1000);
    struct tm tm;
    if (epoch_ms < 0 || !gmtime_r(&secs, &tm)) {
        snprintf(buf, len, "1970-01-01T00:00:00.000Z");
        return;
    }
    int n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    if (n < 0 || (size_t)n >= len) /* cut: as the old code left it, minus the compiler's doubt */
        buf[len - 1] = '\0';
}

static int old_set_str(json_t *obj, const char *key, const char *val)
{
    if (!val)
        return 0;
    json_t *s = json_string(val);
    if (!s)
        return -1;
    return json_object_set_new(obj, key, s);
}

static json_t *old_build(const mb_status_event *ev, char *err, size_t errlen)
{
    char when[32], id[256], subject[160];
    old_time(ev->occurred_ms, when, sizeof when);
    if (!ev->account_id || !ev->mesh_name) {
        snprintf(err, errlen, "data.%s: is required", ev->account_id ? "mesh_name" : "account_id");
        return NULL;
    }
    snprintf(id, sizeof id, "%.64s/%.64s#%lld", ev->account_id, ev->mesh_name, ev->seq);
    snprintf(subject, sizeof subject, "%.64s/%.64s", ev->account_id, ev->mesh_name);
    json_t *d = json_object();
    int rc = 0;
    rc |= old_set_str(d, "order_id", ev->order_id);
    rc |= old_set_str(d, "mesh_id", ev->mesh_id);
    rc |= old_set_str(d, "account_id", ev->account_id);
    rc |= old_set_str(d, "mesh_name", ev->mesh_name);
    rc |= old_set_str(d, "cluster_id", ev->cluster_id);
    rc |= old_set_str(d, "status", mb_mesh_status_name(ev->status));
    rc |= old_set_str(d, "step", ev->step);
    rc |= json_object_set_new(d, "step_index", json_integer(ev->step_index));
    rc |= json_object_set_new(d, "step_total", json_integer(ev->step_total));
    rc |= old_set_str(d, "message", ev->message ? ev->message : "");
    if (ev->error_code) {
        json_t *e = json_pack("{s:s, s:s, s:b}", "code", ev->error_code, "message",
                              ev->error_message ? ev->error_message : "", "retryable",
                              ev->error_retryable ? 1 : 0);
        rc |= e ? json_object_set_new(d, "error", e) : -1;
    }
    rc |= json_object_set_new(d, "attempt", json_integer(ev->attempt));
    rc |= json_object_set_new(d, "seq", json_integer(ev->seq));
    rc |= old_set_str(d, "occurred_at", when);
    if (rc) {
        json_decref(d);
        snprintf(err, errlen, "event: a string is not valid UTF-8, or out of memory");
        return NULL;
    }
    json_t *env = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id",
                            id, "source", ev->source ? ev->source : MB_EVENT_SOURCE, "type",
                            MB_TYPE_MESH_STATUS, "time", when, "datacontenttype",
                            "application/json", "subject", subject, "data", d);
    if (!env || old_set_str(env, "traceparent", ev->traceparent) < 0) {
        snprintf(err, errlen, "event: out of memory");
        json_decref(env);
        return NULL;
    }
    if (mb_event_check(env, err, errlen) < 0) {
        json_decref(env);
        return NULL;
    }
    return env;
}

/* Builds ev both ways and holds them to the same outcome.  Returns 1 if it built. */
/* mb_event_build_parts against the object: the same verdict, and the members the store's
 * emit() takes (the envelope's but id and data, data's but seq) in the same bytes. */
static void parts_as_object(const mb_status_event *ev, const json_t *a, const char *err_a)
{
    static const char *const head_skip[] = {"id", "data", NULL}, *const data_skip[] = {"seq", NULL};
    char err[256] = "";
    mb_event_parts p;
    mb_buf head = {0}, data = {0};
    const char *tp;

    if (mb_event_build_parts(ev, &p, err, sizeof err) < 0) {
        if (a != NULL)
            fail_msg("parts refused what the object took: %s", err);
        assert_string_equal(err, err_a);
        assert_null(p.text);
        return;
    }
    if (a == NULL)
        fail_msg("parts built what the object refused: %s", err_a);
    assert_int_equal(mb_json_dump_members(&head, a, head_skip), 0);
    assert_int_equal(mb_json_dump_members(&data, json_object_get(a, "data"), data_skip), 0);
    assert_int_equal(p.head_len, head.len);
    assert_int_equal(p.data_len, data.len);
    assert_memory_equal(p.text, head.p, head.len);
    assert_memory_equal(p.text + p.head_len, data.p, data.len);
    tp = json_string_value(json_object_get(a, "traceparent"));
    assert_string_equal(p.traceparent, tp ? tp : "");
    mb_buf_free(&head);
    mb_buf_free(&data);
    mb_event_parts_free(&p);
}

static int same_as_old(const mb_status_event *ev)
{
    char err_new[256] = "", err_old[256] = "";
    json_t *a = mb_event_build_json(ev, err_new, sizeof err_new);
    json_t *b = old_build(ev, err_old, sizeof err_old);
    if ((a == NULL) != (b == NULL))
        fail_msg("verdicts differ: new %s, old %s", a ? "built" : err_new, b ? "built" : err_old);
    parts_as_object(ev, a, err_new);
    if (a == NULL) {
        assert_string_equal(err_new, err_old);
        return 0;
    }
    char *sa = json_dumps(a, JSON_COMPACT), *sb = json_dumps(b, JSON_COMPACT);
    assert_non_null(sa);
    assert_string_equal(sa, sb);
    free(sa);
    free(sb);
    json_decref(a);
    json_decref(b);
    return 1;
}

#define LONG65  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define CUT64   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9"
#define TP_ZERO "00-00000000000000000000000000000000-00f067aa0ba902b7-01"

/* Values to try per string field: valid, edge and broken ones (NULL = absent). */
static const char *const STR_VALUES[] = {
    NULL,
    "",
    "a",
    "ok-1",
    "abcd",
    "Bad_Name",
    "x y",
    "\x01",
    "\xff",
    "caf\xc3\xa9",
    "\xed\xa0\x80",
    LONG65,
    CUT64,
    "a:b",
    "a.b-c_d",
    TP,
    TP_ZERO,
    "00-xyz",
    "/meshbuy/w",
    "2024-05-01T12:00:00Z",
    "snake_case1",
    "1abc",
};
#define N_STR (sizeof STR_VALUES / sizeof STR_VALUES[0])

static const long long INT_VALUES[] = {
    0,
    1,
    2,
    63,
    64,
    65,
    -1,
    2147483647LL,
    2147483648LL,
    9007199254740991LL,
    9007199254740992LL,
    -9223372036854775807LL - 1,
};
#define N_INT (sizeof INT_VALUES / sizeof INT_VALUES[0])

enum {
    F_ORDER,
    F_MESH_ID,
    F_ACCOUNT,
    F_MESH_NAME,
    F_CLUSTER,
    F_STEP,
    F_MESSAGE,
    F_CODE,
    F_EMSG,
    F_TP,
    F_SOURCE,
    N_STR_FIELDS
};

static void set_field(mb_status_event *ev, int f, const char *v)
{
    switch (f) {
    case F_ORDER: ev->order_id = v; break;
    case F_MESH_ID: ev->mesh_id = v; break;
    case F_ACCOUNT: ev->account_id = v; break;
    case F_MESH_NAME: ev->mesh_name = v; break;
    case F_CLUSTER: ev->cluster_id = v; break;
    case F_STEP: ev->step = v; break;
    case F_MESSAGE: ev->message = v; break;
    case F_CODE: ev->error_code = v; break;
    case F_EMSG: ev->error_message = v; break;
    case F_TP: ev->traceparent = v; break;
    default: ev->source = v; break;
    }
}

enum { I_STEP_INDEX, I_STEP_TOTAL, I_ATTEMPT, I_SEQ, I_OCCURRED, I_STATUS, N_INT_FIELDS };

static void set_int_field(mb_status_event *ev, int f, long long v)
{
    switch (f) {
    case I_STEP_INDEX: ev->step_index = (int)v; break;
    case I_STEP_TOTAL: ev->step_total = (int)v; break;
    case I_ATTEMPT: ev->attempt = (long)v; break;
    case I_SEQ: ev->seq = v; break;
    case I_OCCURRED: ev->occurred_ms = v ? v : 1; break; /* 0 is "now": not comparable */
    default: ev->status = (mb_mesh_status)(v < 0 ? 99 : v % 9); break;
    }
}

static void build_agrees_with_check(void **state)
{
    (void)state;
    mb_status_event bases[3];
    bases[0] = base();
    bases[1] = base();
    bases[1].status = MB_MESH_FAILED;
    bases[1].error_code = "InvalidOrder";
    bases[1].error_message = "no";
    bases[1].cluster_id = NULL;
    bases[2] = bases[1];
    bases[2].status = MB_MESH_ROLLING_BACK;
    bases[2].error_retryable = 1;
    bases[2].source = "/elsewhere";
    int built = 0, refused = 0;
    for (size_t b = 0; b < 3; b++) {
        assert_int_equal(same_as_old(&bases[b]), 1);
        /* every string field alone, then with every value of every later field */
        for (int f = 0; f < N_STR_FIELDS; f++) {
            for (size_t i = 0; i < N_STR; i++) {
                mb_status_event ev = bases[b];
                set_field(&ev, f, STR_VALUES[i]);
                if (same_as_old(&ev))
                    built++;
                else
                    refused++;
                for (int g = f + 1; g < N_STR_FIELDS; g++) {
                    for (size_t j = 0; j < N_STR; j += 3) {
                        mb_status_event ev2 = ev;
                        set_field(&ev2, g, STR_VALUES[j]);
                        same_as_old(&ev2) ? built++ : refused++;
                    }
                }
            }
        }
        for (int f = 0; f < N_INT_FIELDS; f++) {
            for (size_t i = 0; i < N_INT; i++) {
                mb_status_event ev = bases[b];
                set_int_field(&ev, f, INT_VALUES[i]);
                same_as_old(&ev) ? built++ : refused++;
                for (int g = 0; g < N_STR_FIELDS; g++) {
                    mb_status_event ev2 = ev;
                    set_field(&ev2, g, STR_VALUES[7]);
                    same_as_old(&ev2) ? built++ : refused++;
                }
            }
        }
    }
    /* times: every year boundary the text crosses, and past the four-digit years */
    static const long long times[] = {1,
                                      999,
                                      86399999,
                                      951782400000LL,
                                      1714564803250LL,
                                      4102444800000LL,
                                      253402300799999LL,
                                      253402300800000LL,
                                      9223372036854775807LL};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        mb_status_event ev = base();
        ev.occurred_ms = times[i];
        same_as_old(&ev) ? built++ : refused++;
    }
    assert_true(built > 100);
    assert_true(refused > 1000);
}

/* mb_json_time_ms, by hand now, writes what gmtime_r and snprintf wrote. */
static void time_text(void **state)
{
    (void)state;
    char a[40], b[40];
    unsigned long long x = 88172645463325252ULL;
    for (int i = 0; i < 200000; i++) {
        long long ms;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ms = i < 1000 ? (long long)i * 86399999LL - 5 : (long long)(x % 300000000000000ULL);
        if (i == 1000)
            ms = 9223372036854775807LL;
        mb_json_time_ms(ms, a, sizeof a);
        old_time(ms, b, sizeof b);
        assert_string_equal(a, b);
    }
    /* truncated as snprintf truncates */
    mb_json_time_ms(1714564803250LL, a, 11);
    assert_string_equal(a, "2024-05-01");
    mb_json_time_ms(-1, a, 5);
    assert_string_equal(a, "1970");
}

static void status_names(void **state)
{
    (void)state;
    mb_mesh_status st;
    for (int i = MB_MESH_ACCEPTED; i <= MB_MESH_CANCELLED; i++) {
        assert_int_equal(mb_mesh_status_parse(mb_mesh_status_name((mb_mesh_status)i), &st), 0);
        assert_int_equal(st, i);
    }
    assert_string_equal(mb_mesh_status_name(MB_MESH_ROLLING_BACK), "RollingBack");
    assert_int_equal(mb_mesh_status_parse("running", &st), -1);
}

static void walk(const char *kind, int want_ok)
{
    const char *root = getenv("MB_ROOT");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/mesh-status/%s", root && *root ? root : ".", kind);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, ".json"))
            continue;
        char path[2048], err[256];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        static char buf[1 << 17];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        json_t *env = mb_event_parse(buf, len, err, sizeof err);
        if ((env != NULL) != want_ok)
            fail_msg("%s: expected %s (%s)", path, kind, env ? "parsed" : err);
        if (!env)
            assert_true(strlen(err) > 0);
        json_decref(env);
        n++;
    }
    closedir(d);
    assert_true(n >= 5);
}

static void fixtures(void **state)
{
    (void)state;
    walk("valid", 1);
    walk("invalid", 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(build_installing),
        cmocka_unit_test(build_failed_partial),
        cmocka_unit_test(build_refuses_bad_fields),
        cmocka_unit_test(build_agrees_with_check),
        cmocka_unit_test(time_text),
        cmocka_unit_test(status_names),
        cmocka_unit_test(fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
