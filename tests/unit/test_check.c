/* test_check.c: the check driver (mb_check) on fake steps, with a real cloud client on a
 * private loop pointed at a closed port: a step without a read-only face is planned as
 * unknown, a face that tries a write is stopped before the wire (ReadOnly), a read that
 * cannot connect leaves the step not observed, a face that asks to save is refused, and
 * what a face writes into its ck or the state never reaches the caller's document. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/event.h>

#include "mb_check.h"
#include "mb_cloud.h"
#include "mb_http.h"
#include "mb_order.h"

#define CLOSED "http://127.0.0.1:1" /* nothing listens: a connect fails at once */

typedef struct fixture {
    struct event_base *base;
    mb_http *http;
    mb_cloud *cloud;
    mb_check_env env;
    mb_order order;
    mb_cloud_target t;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    mb_http_opts ho = {.timeout_ms = 2000, .connect_timeout_ms = 1000};
    mb_cloud_opts co = {CLOSED "/cce",      CLOSED "/vpc",     CLOSED "/k8s/{cluster_id}",
                        .retry_base_ms = 1, .retry_max_ms = 5, .call_budget_ms = 3000};
    char err[200];

    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->http = mb_http_new(f->base, &ho, err, sizeof(err));
    assert_non_null(f->http);
    f->cloud = mb_cloud_new(f->http, &co, err, sizeof(err));
    assert_non_null(f->cloud);
    f->env = (mb_check_env){f->base, f->cloud, NULL, 5000};
    f->t = (mb_cloud_target){"proj-a", "r1", "c-good", NULL};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    mb_cloud_free(f->cloud);
    mb_http_free(f->http);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* ---- fake steps */

enum { READ, JUDGE };

static mb_step_rc noop_run(mb_sjob *j)
{
    (void)j;
    return MB_STEP_DONE;
}

/* Tries to label a node: the driver's guard must refuse it. */
static mb_step_rc writer_check(mb_sjob *j)
{
    if (j->pc == READ) {
        mb_step_call(j, mb_cloud_k8s_label_patch(j->cloud, &j->target, MB_K8S_NODE, "node-1",
                                                 "istio", "master", mb_step_done, mb_step_io(j)));
        j->pc = JUDGE;
        return MB_STEP_WAIT;
    }
    if (j->err.status != MB_OK)
        return MB_STEP_ERROR;
    mb_step_would(j, "labelled node-1 (must not happen)");
    return MB_STEP_DONE;
}

typedef struct reader_scratch {
    mb_k8s_meta meta;
} reader_scratch;

static void reader_clear(void *p)
{
    mb_k8s_meta_clear(&((reader_scratch *)p)->meta);
}

/* Reads a namespace; scribbles on its ck and the state to prove they are copies. */
static mb_step_rc reader_check(mb_sjob *j)
{
    reader_scratch *s = j->scratch;

    json_object_set_new(j->ck, "scribbled", json_true());
    json_object_set_new(j->state, "scribbled", json_true());
    if (j->pc == READ) {
        mb_step_call(j, mb_cloud_k8s_get(j->cloud, &j->target, MB_K8S_NAMESPACE, "shop", &s->meta,
                                         mb_step_done, mb_step_io(j)));
        j->pc = JUDGE;
        return MB_STEP_WAIT;
    }
    if (j->err.status != MB_OK)
        return MB_STEP_ERROR;
    return MB_STEP_DONE;
}

/* Reads nothing: reports from the state what run() would do. */
static mb_step_rc pure_check(mb_sjob *j)
{
    json_t *ck = mb_step_ck_of(j, "pure");

    if (json_is_true(json_object_get(ck, "done_before")))
        mb_step_seen(j, "in place already");
    else
        mb_step_would(j, "would create %s", j->order->mesh_name);
    mb_step_would_fail(j, "Nope", "and fail with %d", 42);
    return MB_STEP_DONE;
}

static mb_step_rc saver_check(mb_sjob *j)
{
    (void)j;
    return MB_STEP_SAVE;
}

static const mb_step no_face = {.name = "no_face", .run = noop_run};
static const mb_step writer = {.name = "writer", .run = noop_run, .check = writer_check};
static const mb_step reader = {.name = "reader",
                               .run = noop_run,
                               .check = reader_check,
                               .clear = reader_clear,
                               .scratch_size = sizeof(reader_scratch)};
static const mb_step pure = {.name = "pure", .run = noop_run, .check = pure_check};
static const mb_step saver = {.name = "saver", .run = noop_run, .check = saver_check};

static const char *str_at(const json_t *plan, const char *key, size_t i)
{
    return json_string_value(json_array_get(json_object_get(plan, key), i));
}

static const char *err_code(const json_t *plan)
{
    return json_string_value(json_object_get(json_object_get(plan, "error"), "code"));
}

/* ---- tests */

static void test_no_face_is_unknown(void **state)
{
    fixture *f = *state;
    json_t *doc = json_object();
    json_t *plan = mb_check_step(&f->env, &no_face, doc, &f->order, &f->t);

    assert_non_null(plan);
    assert_true(json_is_false(json_object_get(plan, "observed")));
    assert_non_null(strstr(str_at(plan, "changes", 0), "unknown: step no_face has no read-only"));
    json_decref(plan);
    json_decref(doc);
}

static void test_write_refused(void **state)
{
    fixture *f = *state;
    json_t *doc = json_object();
    json_t *plan = mb_check_step(&f->env, &writer, doc, &f->order, &f->t);

    assert_true(json_is_false(json_object_get(plan, "observed")));
    assert_string_equal(err_code(plan), "ReadOnly");
    assert_int_equal(json_array_size(json_object_get(plan, "changes")), 0);
    assert_int_equal(mb_cloud_inflight(f->cloud), 0);
    json_decref(plan);
    json_decref(doc);
}

static void test_read_fails_not_observed_and_copies(void **state)
{
    fixture *f = *state;
    json_t *doc = json_pack("{s:{s:{s:{s:i}}}}", "steps", "reader", "ck", "n", 1);
    char *before = json_dumps(doc, JSON_SORT_KEYS);
    json_t *plan = mb_check_step(&f->env, &reader, doc, &f->order, &f->t);
    char *after = json_dumps(doc, JSON_SORT_KEYS);

    assert_true(json_is_false(json_object_get(plan, "observed")));
    assert_non_null(err_code(plan));
    assert_string_not_equal(err_code(plan), "ReadOnly");
    assert_string_equal(before, after); /* neither ck nor state reached the caller */
    free(before);
    free(after);
    json_decref(plan);
    json_decref(doc);
}

static void test_pure_face_reports(void **state)
{
    fixture *f = *state;
    json_t *doc = json_pack("{s:{s:{s:{s:b}}}}", "steps", "pure", "ck", "done_before", 1);
    static char name[] = "mesh-a";
    json_t *plan;

    f->order.mesh_name = name;
    plan = mb_check_step(&f->env, &pure, doc, &f->order, &f->t);
    assert_true(json_is_true(json_object_get(plan, "observed")));
    assert_string_equal(str_at(plan, "in_place", 0), "in place already");
    assert_int_equal(json_array_size(json_object_get(plan, "changes")), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(plan, "fails"), "code")),
                        "Nope");
    json_decref(plan);
    json_object_clear(doc);
    plan = mb_check_step(&f->env, &pure, doc, &f->order, &f->t);
    assert_string_equal(str_at(plan, "changes", 0), "would create mesh-a");
    json_decref(plan);
    json_decref(doc);
}

static void test_save_refused(void **state)
{
    fixture *f = *state;
    json_t *plan = mb_check_step(&f->env, &saver, NULL, &f->order, &f->t);

    assert_true(json_is_false(json_object_get(plan, "observed")));
    assert_string_equal(err_code(plan), "Internal");
    json_decref(plan);
}

/* A step's failure often quotes the error it replaces: the quote must survive. */
static void test_fail_quotes_the_error(void **state)
{
    mb_sjob j;

    (void)state;
    memset(&j, 0, sizeof(j));
    mb_error_set(&j.err, MB_PERM, "NotFound", "GET /clusters/c1: 404 Not Found");
    assert_int_equal(
        mb_step_fail(&j, "ClusterNotFound", "cluster %s not found (%s)", "c1", j.err.msg),
        MB_STEP_ERROR);
    assert_string_equal(j.err.code, "ClusterNotFound");
    assert_string_equal(j.err.msg, "cluster c1 not found (GET /clusters/c1: 404 Not Found)");
    assert_int_equal(j.err.status, MB_PERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_face_is_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_fails_not_observed_and_copies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pure_face_reports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_refused, setup, teardown),
        cmocka_unit_test(test_fail_quotes_the_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
