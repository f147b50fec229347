/* test_event.c: status events: build, deterministic id, schema rules on build, parse, fixtures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_event.h"

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
        cmocka_unit_test(status_names),
        cmocka_unit_test(fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
