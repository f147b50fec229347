/* test_redis_url.c: REDIS_URL parsing, password sources, and connecting with AUTH/SELECT. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "mb_redis.h"

static void clear_env(void)
{
    unsetenv("REDIS_PASSWORD");
    unsetenv("REDIS_PASSWORD_FILE");
}

static void test_tcp_full(void **state)
{
    mb_redis_url u;
    char err[256];
    (void)state;
    clear_env();
    assert_int_equal(mb_redis_url_parse("redis://:s3cr%40t@10.0.0.1:6380/4", &u, err, sizeof(err)),
                     0);
    assert_false(u.is_unix);
    assert_string_equal(u.host, "10.0.0.1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 4);
    assert_string_equal(u.password, "s3cr@t");
    assert_string_equal(u.user, "");
}

static void test_tcp_defaults(void **state)
{
    mb_redis_url u;
    char err[256];
    (void)state;
    clear_env();
    assert_int_equal(mb_redis_url_parse("redis://localhost", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.password, "");
    assert_int_equal(mb_redis_url_parse("redis://h:1/", &u, err, sizeof(err)), 0);
    assert_int_equal(u.port, 1);
    assert_int_equal(mb_redis_url_parse("redis://app:pw@h:7000/2", &u, err, sizeof(err)), 0);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "pw");
    assert_int_equal(mb_redis_url_parse("redis://[::1]:7001", &u, err, sizeof(err)), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 7001);
}

static void test_unix(void **state)
{
    mb_redis_url u;
    char err[256];
    (void)state;
    clear_env();
    assert_int_equal(mb_redis_url_parse("unix:///tmp/x/redis.sock", &u, err, sizeof(err)), 0);
    assert_true(u.is_unix);
    assert_string_equal(u.path, "/tmp/x/redis.sock");
    assert_int_equal(u.db, 0);
    assert_int_equal(mb_redis_url_parse("unix:///r.sock?db=5", &u, err, sizeof(err)), 0);
    assert_string_equal(u.path, "/r.sock");
    assert_int_equal(u.db, 5);
}

static void test_bad(void **state)
{
    static const char *const bad[] = {
        "",
        "http://h:1",
        "redis://",
        "redis://h:0",
        "redis://h:65536",
        "redis://h:x",
        "redis://h:1/abc",
        "unix://relative.sock",
        "unix://",
        "unix:///r.sock?db=x",
        "unix:///r.sock?timeout=3",
        "redis://:%zz@h",
        "redis://[::1",
        "rediss://h:1",
        NULL,
    };
    mb_redis_url u;
    char err[256];
    (void)state;
    clear_env();
    for (int i = 0; bad[i]; i++) {
        err[0] = '\0';
        if (mb_redis_url_parse(bad[i], &u, err, sizeof(err)) != -1)
            fail_msg("accepted bad url %s", bad[i]);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(mb_redis_url_parse(NULL, &u, err, sizeof(err)), -1);
}

static void test_env_password(void **state)
{
    mb_redis_url u;
    char err[256];
    char path[] = "/tmp/mbpwXXXXXX";
    int fd;
    (void)state;
    clear_env();
    setenv("REDIS_PASSWORD", "envpw", 1);
    assert_int_equal(mb_redis_url_parse("unix:///r.sock", &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "envpw");
    /* The URL's own password wins. */
    assert_int_equal(mb_redis_url_parse("redis://:urlpw@h", &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "urlpw");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "filepw\n", 7), 7);
    close(fd);
    setenv("REDIS_PASSWORD_FILE", path, 1);
    /* Both set: refused, and the message does not show the secret. */
    assert_int_equal(mb_redis_url_parse("redis://h", &u, err, sizeof(err)), -1);
    assert_null(strstr(err, "envpw"));
    unsetenv("REDIS_PASSWORD");
    assert_int_equal(mb_redis_url_parse("redis://h", &u, err, sizeof(err)), 0);
    assert_string_equal(u.password, "filepw");
    setenv("REDIS_PASSWORD_FILE", "/nonexistent/pw", 1);
    assert_int_equal(mb_redis_url_parse("redis://h", &u, err, sizeof(err)), -1);
    unlink(path);
    clear_env();
}

static void test_redact(void **state)
{
    mb_redis_url u;
    char err[256], buf[512];
    (void)state;
    clear_env();
    assert_int_equal(mb_redis_url_parse("redis://:topsecret@h:1/2", &u, err, sizeof(err)), 0);
    mb_redis_url_redact(&u, buf, sizeof(buf));
    assert_null(strstr(buf, "topsecret"));
    assert_string_equal(buf, "redis://:***@h:1/2");
    assert_int_equal(mb_redis_url_parse("unix:///s.sock?db=3", &u, err, sizeof(err)), 0);
    assert_string_equal(mb_redis_url_redact(&u, buf, sizeof(buf)), "unix:///s.sock?db=3");
}

/* A private redis-server with a password, on a unix socket in a temp dir. */
static pid_t start_redis(const char *dir, const char *sock)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
               "--appendonly", "no", "--dir", dir, "--requirepass", "pw0", "--loglevel", "warning",
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        struct stat st;
        struct timespec ts = {0, 25 * 1000 * 1000};
        if (stat(sock, &st) == 0)
            return pid;
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void test_connect(void **state)
{
    char dir[] = "/tmp/mbredisXXXXXX";
    char sock[256], url[300], err[256];
    mb_redis_url u;
    mb_error e;
    redisContext *c;
    redisReply *r;
    pid_t pid;
    (void)state;
    clear_env();
    assert_non_null(mkdtemp(dir));
    snprintf(sock, sizeof(sock), "%s/r.sock", dir);
    pid = start_redis(dir, sock);
    assert_true(pid > 0);

    snprintf(url, sizeof(url), "unix://%s?db=3", sock);
    setenv("REDIS_PASSWORD", "pw0", 1);
    assert_int_equal(mb_redis_url_parse(url, &u, err, sizeof(err)), 0);
    mb_error_clear(&e);
    c = mb_redis_connect(&u, 1000, &e);
    assert_non_null(c);
    r = redisCommand(c, "CLIENT INFO");
    assert_non_null(r);
    assert_non_null(strstr(r->str, "db=3"));
    freeReplyObject(r);
    redisFree(c);

    /* A wrong password is fatal: retrying cannot help. */
    setenv("REDIS_PASSWORD", "wrong", 1);
    assert_int_equal(mb_redis_url_parse(url, &u, err, sizeof(err)), 0);
    mb_error_clear(&e);
    assert_null(mb_redis_connect(&u, 1000, &e));
    assert_int_equal(e.status, MB_FATAL);
    assert_null(strstr(e.msg, "wrong"));
    clear_env();

    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    /* No server: transient. */
    mb_error_clear(&e);
    assert_null(mb_redis_connect(&u, 200, &e));
    assert_int_equal(e.status, MB_AGAIN);
    unlink(sock);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_full),     cmocka_unit_test(test_tcp_defaults),
        cmocka_unit_test(test_unix),         cmocka_unit_test(test_bad),
        cmocka_unit_test(test_env_password), cmocka_unit_test(test_redact),
        cmocka_unit_test(test_connect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
