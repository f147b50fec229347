/* test_catalog.c: the Istio catalog: the shipped matrix, version forms, search path, bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mb_catalog.h"

static char shipped[1024];

static int setup(void **state)
{
    (void)state;
    const char *root = getenv("MB_ROOT");
    snprintf(shipped, sizeof shipped, "%s/schemas/istio-catalog.json", root && *root ? root : ".");
    return 0;
}

static mb_catalog *load_shipped(void)
{
    char err[256];
    mb_catalog *cat = mb_catalog_load(shipped, err, sizeof err);
    if (!cat)
        fail_msg("%s", err);
    return cat;
}

static void builds_and_charts(void **state)
{
    (void)state;
    mb_catalog *cat = load_shipped();
    static const char *const want[][2] = {
        {"1.8", "1.8.6-r1"},
        {"1.13", "1.13.9-r5"},
        {"1.15", "1.15.7-r1"},
        {"1.18", "1.18.7-r1"},
    };
    assert_int_equal(mb_catalog_count(cat), 4);
    for (size_t i = 0; i < 4; i++) {
        const mb_istio_release *r = mb_catalog_lookup(cat, want[i][0]);
        assert_non_null(r);
        assert_string_equal(r->build, want[i][1]);
        assert_string_equal(r->chart_version, want[i][1]);
        assert_true(strlen(r->chart_id) > 0);
        assert_ptr_equal(mb_catalog_at(cat, i), r);
    }
    assert_null(mb_catalog_lookup(cat, "1.19"));
    assert_null(mb_catalog_lookup(cat, NULL));
    assert_null(mb_catalog_at(cat, 4));
    assert_string_equal(mb_catalog_path(cat), shipped);
    mb_catalog_free(cat);
}

/* The product's version matrix (schemas/istio-catalog.json), exactly: every pair in, every other pair out. */
static void matrix_exact(void **state)
{
    (void)state;
    mb_catalog *cat = load_shipped();
    static const char *const minors[] = {"1.8", "1.13", "1.15", "1.18"};
    static const char *const ok[] = {
        "v1.15 v1.17 v1.19 v1.21 ",
        "v1.21 v1.23 ",
        "v1.21 v1.23 v1.25 v1.27 v1.28 ",
        "v1.25 v1.27 v1.28 v1.29 v1.30 ",
    };
    for (size_t i = 0; i < 4; i++) {
        for (int m = 10; m <= 35; m++) {
            char v[16], probe[24];
            snprintf(v, sizeof v, "v1.%d", m);
            snprintf(probe, sizeof probe, "%s ", v);
            int want = strstr(ok[i], probe) != NULL;
            if (mb_catalog_supports(cat, minors[i], v) != want)
                fail_msg("istio %s on cluster %s: expected %d", minors[i], v, want);
        }
    }
    mb_catalog_free(cat);
}

static void version_forms(void **state)
{
    (void)state;
    mb_catalog *cat = load_shipped();
    assert_true(mb_catalog_supports(cat, "1.18", "v1.25"));
    assert_true(mb_catalog_supports(cat, "1.18", "1.25"));
    assert_true(mb_catalog_supports(cat, "1.18", "v1.25.3-r0"));
    assert_true(mb_catalog_supports(cat, "1.18", "v1.25.3"));
    assert_true(mb_catalog_supports(cat, "1.8", "v1.15.11-r2"));
    assert_false(mb_catalog_supports(cat, "1.18", "v1.2"));
    assert_false(mb_catalog_supports(cat, "1.18", "v1.250"));
    assert_false(mb_catalog_supports(cat, "1.18", "v1.25x"));
    assert_false(mb_catalog_supports(cat, "1.18", ""));
    assert_false(mb_catalog_supports(cat, "1.18", NULL));
    assert_false(mb_catalog_supports(cat, "1.19", "v1.25"));
    char buf[16];
    assert_int_equal(mb_catalog_cluster_minor("v1.28.1-r0", buf, sizeof buf), 0);
    assert_string_equal(buf, "v1.28");
    assert_int_equal(mb_catalog_cluster_minor("latest", buf, sizeof buf), -1);
    mb_catalog_free(cat);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void bad_files(void **state)
{
    (void)state;
    static const struct {
        const char *text, *reason;
    } cases[] = {
        {"{", "end of file"},
        {"[]", "must be a JSON object"},
        {"{\"catalog_version\":2,\"istio\":[]}", "catalog.catalog_version"},
        {"{\"catalog_version\":1,\"istio\":[]}", "catalog.istio"},
        {"{\"catalog_version\":1,\"extra\":1,\"istio\":[]}", "unknown field 'extra'"},
        {"{\"catalog_version\":1,\"istio\":[{\"minor\":\"1.8\",\"build\":\"1.8.6\","
         "\"chart_id\":\"c\",\"chart_version\":\"1\",\"cluster_versions\":[\"v1.15\"]}]}",
         "istio[0].build"},
        {"{\"catalog_version\":1,\"istio\":[{\"minor\":\"1.8\",\"build\":\"1.8.6-r1\","
         "\"chart_id\":\"c\",\"chart_version\":\"1\",\"cluster_versions\":[\"1.15\"]}]}",
         "cluster_versions"},
        {"{\"catalog_version\":1,\"istio\":[{\"minor\":\"1.8\",\"build\":\"1.8.6-r1\","
         "\"chart_id\":\"c\",\"chart_version\":\"1\",\"cluster_versions\":[\"v1.15\",\"v1.15\"]}]}",
         "repeats"},
        {"{\"catalog_version\":1,\"istio\":[{\"minor\":\"1.8\",\"build\":\"1.8.6-r1\","
         "\"chart_id\":\"c\",\"chart_version\":\"1\",\"cluster_versions\":[\"v1.15\"]},"
         "{\"minor\":\"1.8\",\"build\":\"1.8.6-r1\",\"chart_id\":\"c\",\"chart_version\":\"1\","
         "\"cluster_versions\":[\"v1.15\"]}]}",
         "appears twice"},
    };
    char dir[] = "/tmp/mbcatXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/cat.json", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256];
        write_file(path, cases[i].text);
        mb_catalog *cat = mb_catalog_load(path, err, sizeof err);
        assert_null(cat);
        if (!strstr(err, cases[i].reason))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].reason);
    }
    char err[256];
    assert_null(mb_catalog_load("/nonexistent/cat.json", err, sizeof err));
    unlink(path);
    rmdir(dir);
}

/* NULL path: MESHBUY_CATALOG first, else ./schemas/istio-catalog.json. */
static void search_path(void **state)
{
    (void)state;
    char err[256];
    setenv("MESHBUY_CATALOG", shipped, 1);
    mb_catalog *cat = mb_catalog_load(NULL, err, sizeof err);
    assert_non_null(cat);
    assert_string_equal(mb_catalog_path(cat), shipped);
    mb_catalog_free(cat);
    setenv("MESHBUY_CATALOG", "/nonexistent/cat.json", 1);
    assert_null(mb_catalog_load(NULL, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/cat.json"));
    unsetenv("MESHBUY_CATALOG");
    const char *root = getenv("MB_ROOT");
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(root && *root ? root : "."), 0);
    cat = mb_catalog_load(NULL, err, sizeof err);
    assert_non_null(cat);
    assert_string_equal(mb_catalog_path(cat), "schemas/istio-catalog.json");
    mb_catalog_free(cat);
    /* elsewhere: found beside the binary (build/<tree>/tests/ -> ../../../schemas) */
    assert_int_equal(chdir("/"), 0);
    cat = mb_catalog_load(NULL, err, sizeof err);
    if (!cat)
        fail_msg("%s", err);
    assert_non_null(strstr(mb_catalog_path(cat), "/../../../schemas/istio-catalog.json"));
    mb_catalog_free(cat);
    assert_int_equal(chdir(cwd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(builds_and_charts), cmocka_unit_test(matrix_exact),
        cmocka_unit_test(version_forms),     cmocka_unit_test(bad_files),
        cmocka_unit_test(search_path),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
