/* test_kafka_conf.c: KAFKA_* environment to librdkafka conf, _FILE secrets, errors, topics,
 * Kubernetes service-link variables skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mb_kafka.h"

extern char **environ;

/* Removes every KAFKA_* and MESHBUY_*_TOPIC variable (a test may run inside a dev stack). */
static int clear_env(void **state)
{
    char name[256];
    int again = 1;

    (void)state;
    while (again) {
        again = 0;
        for (char **e = environ; e && *e; e++) {
            const char *eq = strchr(*e, '=');
            size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
            if (strncmp(*e, "KAFKA_", 6) != 0 || n >= sizeof(name))
                continue;
            memcpy(name, *e, n);
            name[n] = '\0';
            unsetenv(name); /* environ changed: rescan */
            again = 1;
            break;
        }
    }
    unsetenv("MESHBUY_ORDERS_TOPIC");
    unsetenv("MESHBUY_STATUS_TOPIC");
    unsetenv("MESHBUY_DLQ_TOPIC");
    return 0;
}

static void expect_prop(rd_kafka_conf_t *conf, const char *key, const char *want)
{
    char val[512];
    size_t len = sizeof(val);

    assert_int_equal(rd_kafka_conf_get(conf, key, val, &len), RD_KAFKA_CONF_OK);
    assert_string_equal(val, want);
}

/* Writes text to a new temp file; returns its path in buf. */
static void temp_file(char *buf, size_t cap, const char *text)
{
    int fd;

    snprintf(buf, cap, "/tmp/test_kafka_conf.XXXXXX");
    fd = mkstemp(buf);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

static void maps_names(void **state)
{
    char err[256] = "";
    rd_kafka_conf_t *conf;

    (void)state;
    setenv("KAFKA_BROKERS", "127.0.0.1:9092,127.0.0.1:9093", 1);
    setenv("KAFKA_SECURITY_PROTOCOL", "plaintext", 1);
    setenv("KAFKA_SOCKET_TIMEOUT_MS", "12345", 1);
    setenv("KAFKA_ENABLE_IDEMPOTENCE", "true", 1);
    conf = mb_kafka_conf_new("meshworker-1", err, sizeof(err));
    assert_non_null(conf);
    assert_string_equal(err, "");
    expect_prop(conf, "bootstrap.servers", "127.0.0.1:9092,127.0.0.1:9093");
    expect_prop(conf, "security.protocol", "plaintext");
    expect_prop(conf, "socket.timeout.ms", "12345");
    expect_prop(conf, "enable.idempotence", "true");
    expect_prop(conf, "client.id", "meshworker-1");
    rd_kafka_conf_destroy(conf);
}

static void underscore_names(void **state)
{
    char err[256];
    rd_kafka_conf_t *conf;

    (void)state;
    setenv("KAFKA_LOG_LEVEL", "3", 1);
    conf = mb_kafka_conf_new("t", err, sizeof(err));
    assert_non_null(conf);
    expect_prop(conf, "log_level", "3");
    rd_kafka_conf_destroy(conf);
}

static void client_id_env_overrides(void **state)
{
    char err[256];
    rd_kafka_conf_t *conf;

    (void)state;
    setenv("KAFKA_CLIENT_ID", "from-env", 1);
    conf = mb_kafka_conf_new("meshbuy", err, sizeof(err));
    assert_non_null(conf);
    expect_prop(conf, "client.id", "from-env");
    rd_kafka_conf_destroy(conf);
}

static void file_secret(void **state)
{
    char path[64], err[256];
    rd_kafka_conf_t *conf;

    (void)state;
    temp_file(path, sizeof(path), "s3cret-pw\n");
    setenv("KAFKA_SASL_PASSWORD_FILE", path, 1);
    setenv("KAFKA_SASL_USERNAME", "meshbuy", 1);
    conf = mb_kafka_conf_new("t", err, sizeof(err));
    unlink(path);
    assert_non_null(conf);
    expect_prop(conf, "sasl.password", "s3cret-pw"); /* trailing newline cut */
    expect_prop(conf, "sasl.username", "meshbuy");
    rd_kafka_conf_destroy(conf);
}

static void file_crlf_and_empty(void **state)
{
    char path[64], err[256];
    rd_kafka_conf_t *conf;

    (void)state;
    temp_file(path, sizeof(path), "line1\nline2\r\n");
    setenv("KAFKA_SSL_CA_PEM_FILE", path, 1);
    conf = mb_kafka_conf_new("t", err, sizeof(err));
    unlink(path);
    assert_non_null(conf);
    expect_prop(conf, "ssl.ca.pem", "line1\nline2"); /* inner newline kept, last CRLF cut */
    rd_kafka_conf_destroy(conf);
}

static void unknown_key(void **state)
{
    char err[256];

    (void)state;
    setenv("KAFKA_BROKERS", "127.0.0.1:1", 1);
    setenv("KAFKA_NO_SUCH_THING", "1", 1);
    assert_null(mb_kafka_conf_new("t", err, sizeof(err)));
    assert_string_equal(err, "KAFKA_NO_SUCH_THING: unknown librdkafka property \"no.such.thing\"");
}

static void bad_value(void **state)
{
    char err[256];

    (void)state;
    setenv("KAFKA_SOCKET_TIMEOUT_MS", "soon", 1);
    assert_null(mb_kafka_conf_new("t", err, sizeof(err)));
    assert_true(strncmp(err, "KAFKA_SOCKET_TIMEOUT_MS: ", 25) == 0);
    assert_non_null(strstr(err, "socket.timeout.ms"));
}

static void bad_value_from_file_not_shown(void **state)
{
    char path[64], err[256];

    (void)state;
    temp_file(path, sizeof(path), "topsecretvalue");
    setenv("KAFKA_SOCKET_TIMEOUT_MS_FILE", path, 1);
    assert_null(mb_kafka_conf_new("t", err, sizeof(err)));
    unlink(path);
    assert_null(strstr(err, "topsecretvalue"));
    assert_string_equal(err, "KAFKA_SOCKET_TIMEOUT_MS_FILE: invalid value for "
                             "\"socket.timeout.ms\" (value not shown)");
}

static void missing_file(void **state)
{
    char err[256];

    (void)state;
    setenv("KAFKA_SASL_PASSWORD_FILE", "/nonexistent/pw", 1);
    assert_null(mb_kafka_conf_new("t", err, sizeof(err)));
    assert_string_equal(err, "KAFKA_SASL_PASSWORD_FILE: cannot open /nonexistent/pw: "
                             "No such file or directory");
}

static void value_and_file_both_set(void **state)
{
    char err[256];

    (void)state;
    setenv("KAFKA_SASL_PASSWORD", "a", 1);
    setenv("KAFKA_SASL_PASSWORD_FILE", "/dev/null", 1);
    assert_null(mb_kafka_conf_new("t", err, sizeof(err)));
    assert_string_equal(err, "KAFKA_SASL_PASSWORD: both KAFKA_SASL_PASSWORD and "
                             "KAFKA_SASL_PASSWORD_FILE set");
    assert_null(strstr(err, "=a"));
}

static void error_is_first_in_sorted_order(void **state)
{
    char err[256];

    (void)state;
    setenv("KAFKA_ZZZ_BAD", "1", 1);
    setenv("KAFKA_AAA_BAD", "1", 1);
    assert_null(mb_kafka_conf_new("t", err, sizeof(err)));
    assert_true(strncmp(err, "KAFKA_AAA_BAD: ", 15) == 0);
}

/* What a Service named "kafka" (and one named "kafka-bootstrap") injects into a pod. */
static void service_links_ignored(void **state)
{
    char err[256] = "";
    rd_kafka_conf_t *conf;

    (void)state;
    setenv("KAFKA_BROKERS", "10.0.0.1:9092", 1);
    setenv("KAFKA_PORT", "tcp://10.0.0.1:9092", 1);
    setenv("KAFKA_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KAFKA_SERVICE_PORT", "9092", 1);
    setenv("KAFKA_SERVICE_PORT_BROKER", "9092", 1);
    setenv("KAFKA_PORT_9092_TCP", "tcp://10.0.0.1:9092", 1);
    setenv("KAFKA_PORT_9092_TCP_PROTO", "tcp", 1);
    setenv("KAFKA_PORT_9092_TCP_PORT", "9092", 1);
    setenv("KAFKA_PORT_9092_TCP_ADDR", "10.0.0.1", 1);
    setenv("KAFKA_BOOTSTRAP_SERVICE_HOST", "10.0.0.2", 1);
    setenv("KAFKA_BOOTSTRAP_PORT", "udp://10.0.0.2:9093", 1);
    setenv("KAFKA_BOOTSTRAP_PORT_9093_SCTP_ADDR", "10.0.0.2", 1);
    setenv("KAFKA_SOCKET_TIMEOUT_MS", "4321", 1); /* a real setting still passes */
    conf = mb_kafka_conf_new("t", err, sizeof(err));
    assert_string_equal(err, "");
    assert_non_null(conf);
    expect_prop(conf, "bootstrap.servers", "10.0.0.1:9092");
    expect_prop(conf, "socket.timeout.ms", "4321");
    rd_kafka_conf_destroy(conf);
}

static void service_link_shapes(void **state)
{
    (void)state;
    assert_true(mb_kafka_is_service_link("KAFKA_PORT=tcp://10.0.0.1:9092", "tcp://10.0.0.1:9092"));
    assert_true(mb_kafka_is_service_link("KAFKA_SERVICE_HOST", "10.0.0.1"));
    assert_true(mb_kafka_is_service_link("KAFKA_SERVICE_PORT_HTTPS", "443"));
    assert_true(mb_kafka_is_service_link("KAFKA_PORT_9092_UDP_ADDR", "10.0.0.1"));
    /* not the shape: real settings, or an operator's mistake librdkafka must report */
    assert_false(mb_kafka_is_service_link("KAFKA_PORT", "9092"));
    assert_false(mb_kafka_is_service_link("KAFKA_SASL_KERBEROS_SERVICE_NAME", "kafka"));
    assert_false(mb_kafka_is_service_link("KAFKA_SERVICE_HOSTS", "x"));
    assert_false(mb_kafka_is_service_link("KAFKA_PORT_9092_HTTP", "x"));
    assert_false(mb_kafka_is_service_link("KAFKA_PORT_X_TCP", "x"));
    assert_false(mb_kafka_is_service_link("KAFKA_PORT_9092_TCP_HOST", "x"));
    assert_false(mb_kafka_is_service_link("KAFKA_XSERVICE_HOST", "x"));
    assert_false(mb_kafka_is_service_link("OTHER_SERVICE_HOST", "x"));
}

/* KAFKA_PORT that is no service link is still refused by name, as before. */
static void port_without_link_value_refused(void **state)
{
    char err[256];

    (void)state;
    setenv("KAFKA_PORT", "9092", 1);
    assert_null(mb_kafka_conf_new("t", err, sizeof(err)));
    assert_string_equal(err, "KAFKA_PORT: unknown librdkafka property \"port\"");
}

static void permanent_errors(void **state)
{
    (void)state;
    assert_true(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
    assert_true(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    assert_true(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART));
    assert_true(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED));
    assert_false(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT));
    assert_false(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR__QUEUE_FULL));
    assert_false(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR__FATAL));
    assert_false(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR__PURGE_INFLIGHT));
    assert_false(mb_kafka_err_is_permanent(RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION));
}

static void producer_conf_defaults(void **state)
{
    char err[256] = "";
    rd_kafka_conf_t *conf;

    (void)state;
    setenv("KAFKA_ENABLE_GAPLESS_GUARANTEE", "false", 1); /* not the operator's to turn off */
    conf = mb_kafka_producer_conf_new("p", 6000, 8000, err, sizeof(err));
    assert_string_equal(err, "");
    assert_non_null(conf);
    expect_prop(conf, "enable.idempotence", "true");
    expect_prop(conf, "enable.gapless.guarantee", "true");
    expect_prop(conf, "acks", "-1");
    expect_prop(conf, "message.timeout.ms", "6000");
    rd_kafka_conf_destroy(conf);
}

static void producer_conf_timeout_checked(void **state)
{
    char err[256] = "";
    rd_kafka_conf_t *conf;

    (void)state;
    setenv("KAFKA_MESSAGE_TIMEOUT_MS", "7000", 1); /* the operator's, below the bound: kept */
    conf = mb_kafka_producer_conf_new("p", 6000, 8000, err, sizeof(err));
    assert_non_null(conf);
    expect_prop(conf, "message.timeout.ms", "7000");
    rd_kafka_conf_destroy(conf);
    setenv("KAFKA_MESSAGE_TIMEOUT_MS", "300000", 1);
    assert_null(mb_kafka_producer_conf_new("p", 6000, 8000, err, sizeof(err)));
    assert_true(strncmp(err, "KAFKA_MESSAGE_TIMEOUT_MS: message.timeout.ms 300000 must be", 59) ==
                0);
    unsetenv("KAFKA_MESSAGE_TIMEOUT_MS");
    setenv("KAFKA_DELIVERY_TIMEOUT_MS", "0", 1); /* 0 = never: refused too */
    assert_null(mb_kafka_producer_conf_new("p", 6000, 8000, err, sizeof(err)));
}

static void secret_names(void **state)
{
    (void)state;
    assert_true(mb_kafka_key_is_secret("sasl.password"));
    assert_true(mb_kafka_key_is_secret("ssl.key.password"));
    assert_true(mb_kafka_key_is_secret("ssl.key.pem"));
    assert_true(mb_kafka_key_is_secret("sasl.oauthbearer.client.secret"));
    assert_false(mb_kafka_key_is_secret("bootstrap.servers"));
    assert_false(mb_kafka_key_is_secret("sasl.username"));
}

static void topics(void **state)
{
    (void)state;
    assert_string_equal(mb_kafka_topic(MB_TOPIC_ORDERS), "mesh.orders");
    assert_string_equal(mb_kafka_topic(MB_TOPIC_STATUS), "mesh.status");
    assert_string_equal(mb_kafka_topic(MB_TOPIC_DLQ), "mesh.orders.dlq");
    setenv("MESHBUY_ORDERS_TOPIC", "t1.orders", 1);
    setenv("MESHBUY_DLQ_TOPIC", "", 1); /* empty means default */
    assert_string_equal(mb_kafka_topic(MB_TOPIC_ORDERS), "t1.orders");
    assert_string_equal(mb_kafka_topic(MB_TOPIC_DLQ), "mesh.orders.dlq");
    assert_null(mb_kafka_topic((mb_kafka_topic_id)7));
}

/* The flush helper against an in-process mock cluster: delivered means 0 left. */
static void flush_delivers(void **state)
{
    char err[256], payload[] = "v";
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    (void)state;
    setenv("KAFKA_TEST_MOCK_NUM_BROKERS", "1", 1);
    conf = mb_kafka_conf_new("t", err, sizeof(err));
    assert_non_null(conf);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    assert_int_equal(
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_VALUE(payload, 1), RD_KAFKA_V_END),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(mb_kafka_flush(rk, 10000), 0);
    rd_kafka_destroy(rk);
}

/* Nothing listens on port 1: the message stays queued and the helper says so. */
static void flush_reports_leftovers(void **state)
{
    char err[256], payload[] = "v";
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    (void)state;
    setenv("KAFKA_BROKERS", "127.0.0.1:1", 1);
    setenv("KAFKA_LOG_LEVEL", "0", 1); /* connection-refused noise */
    conf = mb_kafka_conf_new("t", err, sizeof(err));
    assert_non_null(conf);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    assert_int_equal(
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("t"), RD_KAFKA_V_VALUE(payload, 1), RD_KAFKA_V_END),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(mb_kafka_flush(rk, 200), 1);
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_destroy(rk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(maps_names, clear_env),
        cmocka_unit_test_setup(underscore_names, clear_env),
        cmocka_unit_test_setup(client_id_env_overrides, clear_env),
        cmocka_unit_test_setup(file_secret, clear_env),
        cmocka_unit_test_setup(file_crlf_and_empty, clear_env),
        cmocka_unit_test_setup(unknown_key, clear_env),
        cmocka_unit_test_setup(bad_value, clear_env),
        cmocka_unit_test_setup(bad_value_from_file_not_shown, clear_env),
        cmocka_unit_test_setup(missing_file, clear_env),
        cmocka_unit_test_setup(value_and_file_both_set, clear_env),
        cmocka_unit_test_setup(error_is_first_in_sorted_order, clear_env),
        cmocka_unit_test_setup(service_links_ignored, clear_env),
        cmocka_unit_test_setup(service_link_shapes, clear_env),
        cmocka_unit_test_setup(port_without_link_value_refused, clear_env),
        cmocka_unit_test_setup(permanent_errors, clear_env),
        cmocka_unit_test_setup(producer_conf_defaults, clear_env),
        cmocka_unit_test_setup(producer_conf_timeout_checked, clear_env),
        cmocka_unit_test_setup(secret_names, clear_env),
        cmocka_unit_test_setup(topics, clear_env),
        cmocka_unit_test_setup(flush_delivers, clear_env),
        cmocka_unit_test_setup(flush_reports_leftovers, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
