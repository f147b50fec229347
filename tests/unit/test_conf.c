/* test_conf.c: the configuration table: types, bounds, secrets, typos. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mb_conf.h"

static const mb_conf_key keys[] = {
    {"MESHBUY_TICK_MS", MB_CONF_INT, "20", 1, 1000, NULL, "tick period"},
    {"MESHBUY_ON_FAILURE", MB_CONF_ENUM, "compensate", 0, 0, "compensate|park", "on failure"},
    {"MESHBUY_SK", MB_CONF_SECRET, NULL, 0, 0, NULL, "secret key"},
    {"MESHBUY_CA_FILE", MB_CONF_STR, NULL, 0, 0, NULL, "CA file"},
    {"MESHBUY_TEST_FLAG", MB_CONF_BOOL, "off", 0, 0, NULL, "a flag"},
    {"REDIS_URL", MB_CONF_STR, NULL, 0, 0, NULL, "redis", 1},
    {NULL},
};

static void clear_env(void)
{
    unsetenv("MESHBUY_TICK_MS");
    unsetenv("MESHBUY_ON_FAILURE");
    unsetenv("MESHBUY_SK");
    unsetenv("MESHBUY_SK_FILE");
    unsetenv("MESHBUY_TEST_FLAG");
    unsetenv("MESHBUY_TYPO");
    setenv("REDIS_URL", "unix:///tmp/x.sock", 1);
}

static void defaults_and_types(void **state)
{
    (void)state;
    mb_conf *c;
    char err[256];

    clear_env();
    setenv("MESHBUY_TEST_FLAG", "yes", 1);
    assert_int_equal(mb_conf_load(&c, keys, err, sizeof(err)), 0);
    assert_int_equal(mb_conf_int(c, "MESHBUY_TICK_MS"), 20);
    assert_string_equal(mb_conf_str(c, "MESHBUY_ON_FAILURE"), "compensate");
    assert_null(mb_conf_str(c, "MESHBUY_SK"));
    assert_null(mb_conf_str(c, "MESHBUY_CA_FILE"));
    assert_true(mb_conf_bool(c, "MESHBUY_TEST_FLAG"));
    mb_conf_free(c);
}

static void bad_values(void **state)
{
    (void)state;
    mb_conf *c;
    char err[256];

    clear_env();
    setenv("MESHBUY_TICK_MS", "5000", 1);
    assert_int_equal(mb_conf_load(&c, keys, err, sizeof(err)), -1);
    assert_null(c);
    assert_non_null(strstr(err, "MESHBUY_TICK_MS: 5000 is out of range"));
    setenv("MESHBUY_TICK_MS", "12x", 1);
    assert_int_equal(mb_conf_load(&c, keys, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not an integer"));
    clear_env();
    setenv("MESHBUY_ON_FAILURE", "explode", 1);
    assert_int_equal(mb_conf_load(&c, keys, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "MESHBUY_ON_FAILURE: 'explode' is not one of compensate|park"));
    clear_env();
    unsetenv("REDIS_URL");
    assert_int_equal(mb_conf_load(&c, keys, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "REDIS_URL: required"));
}

static void typo_refused(void **state)
{
    (void)state;
    mb_conf *c;
    char err[256];

    clear_env();
    setenv("MESHBUY_TYPO", "1", 1);
    assert_int_equal(mb_conf_load(&c, keys, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "MESHBUY_TYPO: unknown setting"));
    unsetenv("MESHBUY_TYPO");
}

static void secret_from_file(void **state)
{
    (void)state;
    mb_conf *c;
    char err[256], path[] = "/tmp/mb-test-conf-XXXXXX";
    int fd = mkstemp(path);
    FILE *f;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret\n", 7), 7);
    close(fd);
    clear_env();
    setenv("MESHBUY_SK_FILE", path, 1);
    assert_int_equal(mb_conf_load(&c, keys, err, sizeof(err)), 0);
    assert_string_equal(mb_conf_str(c, "MESHBUY_SK"), "s3cret");

    /* --check output never shows the secret. */
    char *dump = NULL;
    size_t len = 0;
    f = open_memstream(&dump, &len);
    mb_conf_dump(f, c);
    fclose(f);
    assert_null(strstr(dump, "s3cret"));
    assert_non_null(strstr(dump, "MESHBUY_SK=(set)"));
    free(dump);
    mb_conf_free(c);
    unlink(path);

    setenv("MESHBUY_SK_FILE", "/nonexistent/sk", 1);
    assert_int_equal(mb_conf_load(&c, keys, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "MESHBUY_SK_FILE: cannot open /nonexistent/sk"));
    unsetenv("MESHBUY_SK_FILE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_and_types),
        cmocka_unit_test(bad_values),
        cmocka_unit_test(typo_refused),
        cmocka_unit_test(secret_from_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
