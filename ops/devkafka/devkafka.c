/* devkafka.c: a Kafka-protocol dev broker (librdkafka's mock cluster) with fault injection.
 *
 * Serve:   devkafka [--brokers N] [--partitions N] [--topic NAME[:PARTITIONS]]...
 *                   [--bootstrap-file FILE] [--control SOCKET]
 * Control: devkafka ctl SOCKET COMMAND [ARG...]
 *
 * The mock cluster lives inside a producer handle created with test.mock.num.brokers; it binds
 * kernel-chosen ports on 127.0.0.1, so the bootstrap address is handed over in a file (written
 * atomically: tmp + rename) and on stdout.  Topics are made with rd_kafka_mock_topic_create
 * (the Admin API is not served by the mock broker, and auto-create gives 4 partitions).
 *
 * The control socket speaks one line per connection: the client sends a command, devkafka
 * answers "ok ..." or "error ..." and closes.  Commands are listed in CONTROL_HELP.
 *
 * Exit codes: 0 stopped by SIGTERM/SIGINT, 1 start-up failure, 2 usage; ctl: 0 ok, 1 the
 * command failed, 2 usage, 3 cannot reach devkafka. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "mb_kafka.h"
#include "mb_log.h"
#include "mb_version.h"

#define MOD        "devkafka"
#define MAX_TOPICS 64
#define MAX_LINE   512
#define MAX_ARGS   8
/* Partitions above this make every metadata response big for no gain in a dev broker. */
#define MAX_PARTITIONS 1024

static const char CONTROL_HELP[] =
    "control commands (devkafka ctl SOCKET ...):\n"
    "  ping                                  answers ok pong\n"
    "  info                                  bootstrap address and broker count\n"
    "  broker-down ID | broker-up ID         take broker ID (1..N) down / up\n"
    "  rtt ID MS                             add MS of round-trip time to broker ID\n"
    "  push-errors APIKEY COUNT ERR          next COUNT requests of APIKEY (any broker) fail\n"
    "  broker-push-errors ID APIKEY COUNT ERR [RTT_MS]  same, on one broker, with a delay\n"
    "  clear-errors APIKEY                   drop the cluster-wide error stack of APIKEY\n"
    "  topic-create NAME PARTITIONS          create a topic\n"
    "  topic-error NAME ERR                  every request on topic fails (NO_ERROR clears)\n"
    "  leader TOPIC PARTITION ID             move a partition's leader (-1: none)\n"
    "  coordinator group|transaction KEY ID  pin a group/transaction coordinator\n"
    "APIKEY: a number or Produce, Fetch, ListOffsets, Metadata, OffsetCommit, OffsetFetch,\n"
    "  FindCoordinator, JoinGroup, Heartbeat, LeaveGroup, SyncGroup, InitProducerId, ...\n"
    "ERR: a number or a librdkafka error name (NOT_LEADER_FOR_PARTITION, _TRANSPORT, ...)\n";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct topic_spec {
    const char *name;
    int partitions;
} topic_spec;

typedef struct options {
    int brokers;
    int partitions;
    const char *bootstrap_file;
    const char *control;
    topic_spec topics[MAX_TOPICS];
    int ntopics;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: devkafka [--brokers N] [--partitions N] [--topic NAME[:PARTITIONS]]...\n"
            "                [--bootstrap-file FILE] [--control SOCKET]\n"
            "       devkafka ctl SOCKET COMMAND [ARG...]\n"
            "\n"
            "Hosts librdkafka's mock Kafka cluster until SIGTERM/SIGINT.\n"
            "  --brokers N          brokers in the cluster (default 3)\n"
            "  --partitions N       partitions of every topic (default 6)\n"
            "  --topic NAME[:P]     another topic to create (repeatable)\n"
            "  --bootstrap-file F   write host:port,... to F once ready (atomic)\n"
            "  --control SOCKET     serve the control commands on a unix socket\n"
            "  -h, --help           this text; --version: print the version\n"
            "Topics always created: $MESHBUY_ORDERS_TOPIC (mesh.orders), $MESHBUY_STATUS_TOPIC\n"
            "(mesh.status), $MESHBUY_DLQ_TOPIC (mesh.orders.dlq).\n"
            "Consumer groups need session.timeout.ms > 3000 against this broker.\n\n%s",
            CONTROL_HELP);
}

/* Parses a whole decimal number within [min, max]. Returns 0, or -1. */
static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- names */

static const struct {
    const char *name;
    int16_t key;
} api_keys[] = {
    {"Produce", 0},          {"Fetch", 1},           {"ListOffsets", 2},
    {"Metadata", 3},         {"OffsetCommit", 8},    {"OffsetFetch", 9},
    {"FindCoordinator", 10}, {"JoinGroup", 11},      {"Heartbeat", 12},
    {"LeaveGroup", 13},      {"SyncGroup", 14},      {"DescribeGroups", 15},
    {"ListGroups", 16},      {"SaslHandshake", 17},  {"ApiVersions", 18},
    {"CreateTopics", 19},    {"InitProducerId", 22}, {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25}, {"EndTxn", 26},         {"TxnOffsetCommit", 28},
};

static int parse_api_key(const char *s, int16_t *out)
{
    long v;

    for (size_t i = 0; i < sizeof(api_keys) / sizeof(api_keys[0]); i++) {
        if (strcasecmp(s, api_keys[i].name) == 0) {
            *out = api_keys[i].key;
            return 0;
        }
    }
    if (parse_long(s, 0, 100, &v) != 0)
        return -1;
    *out = (int16_t)v;
    return 0;
}

/* Accepts -1, 6, NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR__TRANSPORT, _TRANSPORT. */
static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *descs;
    size_t n;
    long v;

    if (parse_long(s, -200, 1000, &v) == 0) {
        *out = (rd_kafka_resp_err_t)v;
        return 0;
    }
    if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
        s += 18;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name && strcasecmp(descs[i].name, s) == 0) {
            *out = descs[i].code;
            return 0;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------- commands */

typedef struct ctx {
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    int brokers;
} ctx;

/* Each command gets argv without the command name and writes its answer into out. */
typedef int (*cmd_fn)(ctx *c, int argc, char **argv, char *out, size_t outlen);

static int reply_err(rd_kafka_resp_err_t err, char *out, size_t outlen)
{
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(out, outlen, "ok");
        return 0;
    }
    snprintf(out, outlen, "error %s: %s", rd_kafka_err2name(err), rd_kafka_err2str(err));
    return -1;
}

static int arg_broker(ctx *c, const char *s, int32_t *id, char *out, size_t outlen)
{
    long v;

    if (parse_long(s, 1, c->brokers, &v) != 0) {
        snprintf(out, outlen, "error bad broker id \"%s\" (1..%d)", s, c->brokers);
        return -1;
    }
    *id = (int32_t)v;
    return 0;
}

static int arg_count(const char *s, long max, long *v, const char *what, char *out, size_t outlen)
{
    if (parse_long(s, 0, max, v) != 0) {
        snprintf(out, outlen, "error bad %s \"%s\" (0..%ld)", what, s, max);
        return -1;
    }
    return 0;
}

static int arg_api(const char *s, int16_t *k, char *out, size_t outlen)
{
    if (parse_api_key(s, k) != 0) {
        snprintf(out, outlen, "error unknown api key \"%s\"", s);
        return -1;
    }
    return 0;
}

static int arg_kerr(const char *s, rd_kafka_resp_err_t *e, char *out, size_t outlen)
{
    if (parse_err(s, e) != 0) {
        snprintf(out, outlen, "error unknown error code \"%s\"", s);
        return -1;
    }
    return 0;
}

static int cmd_ping(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    (void)c, (void)argc, (void)argv;
    snprintf(out, outlen, "ok pong");
    return 0;
}

static int cmd_info(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    (void)argc, (void)argv;
    snprintf(out, outlen, "ok bootstrap=%s brokers=%d", rd_kafka_mock_cluster_bootstraps(c->mc),
             c->brokers);
    return 0;
}

static int cmd_broker_down(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    int32_t id;

    (void)argc;
    if (arg_broker(c, argv[0], &id, out, outlen) != 0)
        return -1;
    return reply_err(rd_kafka_mock_broker_set_down(c->mc, id), out, outlen);
}

static int cmd_broker_up(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    int32_t id;

    (void)argc;
    if (arg_broker(c, argv[0], &id, out, outlen) != 0)
        return -1;
    return reply_err(rd_kafka_mock_broker_set_up(c->mc, id), out, outlen);
}

static int cmd_rtt(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    int32_t id;
    long ms;

    (void)argc;
    if (arg_broker(c, argv[0], &id, out, outlen) != 0 ||
        arg_count(argv[1], 600000, &ms, "rtt", out, outlen) != 0)
        return -1;
    return reply_err(rd_kafka_mock_broker_set_rtt(c->mc, id, (int)ms), out, outlen);
}

static int cmd_push_errors(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    rd_kafka_resp_err_t errs[1000];
    rd_kafka_resp_err_t e;
    int16_t key;
    long cnt;

    (void)argc;
    if (arg_api(argv[0], &key, out, outlen) != 0 ||
        arg_count(argv[1], 1000, &cnt, "count", out, outlen) != 0 ||
        arg_kerr(argv[2], &e, out, outlen) != 0)
        return -1;
    for (long i = 0; i < cnt; i++)
        errs[i] = e;
    rd_kafka_mock_push_request_errors_array(c->mc, key, (size_t)cnt, errs);
    snprintf(out, outlen, "ok");
    return 0;
}

static int cmd_broker_push_errors(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    rd_kafka_resp_err_t e, r = RD_KAFKA_RESP_ERR_NO_ERROR;
    int32_t id;
    int16_t key;
    long cnt, rtt = 0;

    if (arg_broker(c, argv[0], &id, out, outlen) != 0 || arg_api(argv[1], &key, out, outlen) != 0 ||
        arg_count(argv[2], 1000, &cnt, "count", out, outlen) != 0 ||
        arg_kerr(argv[3], &e, out, outlen) != 0)
        return -1;
    if (argc > 4 && arg_count(argv[4], 600000, &rtt, "rtt", out, outlen) != 0)
        return -1;
    /* The API is variadic in (err, rtt) pairs: push them one at a time. */
    for (long i = 0; i < cnt && r == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
        r = rd_kafka_mock_broker_push_request_error_rtts(c->mc, id, key, 1, e, (int)rtt);
    return reply_err(r, out, outlen);
}

static int cmd_clear_errors(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    int16_t key;

    (void)argc;
    if (arg_api(argv[0], &key, out, outlen) != 0)
        return -1;
    rd_kafka_mock_clear_request_errors(c->mc, key);
    snprintf(out, outlen, "ok");
    return 0;
}

static int cmd_topic_create(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    long parts;
    int rf = c->brokers < 3 ? c->brokers : 3;

    (void)argc;
    if (parse_long(argv[1], 1, MAX_PARTITIONS, &parts) != 0) {
        snprintf(out, outlen, "error bad partition count \"%s\"", argv[1]);
        return -1;
    }
    return reply_err(rd_kafka_mock_topic_create(c->mc, argv[0], (int)parts, rf), out, outlen);
}

static int cmd_topic_error(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    rd_kafka_resp_err_t e;

    (void)argc;
    if (arg_kerr(argv[1], &e, out, outlen) != 0)
        return -1;
    rd_kafka_mock_topic_set_error(c->mc, argv[0], e);
    snprintf(out, outlen, "ok");
    return 0;
}

static int cmd_leader(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    long part, id;

    (void)argc;
    if (parse_long(argv[1], 0, MAX_PARTITIONS, &part) != 0 ||
        parse_long(argv[2], -1, c->brokers, &id) != 0 || id == 0) {
        snprintf(out, outlen, "error usage: leader TOPIC PARTITION ID");
        return -1;
    }
    return reply_err(rd_kafka_mock_partition_set_leader(c->mc, argv[0], (int32_t)part, (int32_t)id),
                     out, outlen);
}

static int cmd_coordinator(ctx *c, int argc, char **argv, char *out, size_t outlen)
{
    int32_t id;

    (void)argc;
    if (strcmp(argv[0], "group") != 0 && strcmp(argv[0], "transaction") != 0) {
        snprintf(out, outlen, "error key type must be group or transaction");
        return -1;
    }
    if (arg_broker(c, argv[2], &id, out, outlen) != 0)
        return -1;
    return reply_err(rd_kafka_mock_coordinator_set(c->mc, argv[0], argv[1], id), out, outlen);
}

static const struct {
    const char *name;
    int min_args, max_args;
    cmd_fn fn;
} commands[] = {
    {"ping", 0, 0, cmd_ping},
    {"info", 0, 0, cmd_info},
    {"broker-down", 1, 1, cmd_broker_down},
    {"broker-up", 1, 1, cmd_broker_up},
    {"rtt", 2, 2, cmd_rtt},
    {"push-errors", 3, 3, cmd_push_errors},
    {"broker-push-errors", 4, 5, cmd_broker_push_errors},
    {"clear-errors", 1, 1, cmd_clear_errors},
    {"topic-create", 2, 2, cmd_topic_create},
    {"topic-error", 2, 2, cmd_topic_error},
    {"leader", 3, 3, cmd_leader},
    {"coordinator", 3, 3, cmd_coordinator},
};

/* Runs one command line (modified in place). Writes the one-line answer into out. */
static void run_command(ctx *c, char *line, char *out, size_t outlen)
{
    char *argv[MAX_ARGS + 1], *save = NULL, *tok;
    int argc = 0;

    for (tok = strtok_r(line, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (argc == MAX_ARGS + 1) {
            snprintf(out, outlen, "error too many arguments");
            return;
        }
        argv[argc++] = tok;
    }
    if (argc == 0) {
        snprintf(out, outlen, "error empty command");
        return;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[0], commands[i].name) != 0)
            continue;
        if (argc - 1 < commands[i].min_args || argc - 1 > commands[i].max_args) {
            snprintf(out, outlen, "error %s takes %d..%d arguments", argv[0], commands[i].min_args,
                     commands[i].max_args);
            return;
        }
        if (commands[i].fn(c, argc - 1, argv + 1, out, outlen) == 0)
            mb_info(MOD, "control: %s: %s", argv[0], out);
        else
            mb_warn(MOD, "control: %s: %s", argv[0], out);
        return;
    }
    snprintf(out, outlen, "error unknown command \"%s\" (see devkafka --help)", argv[0]);
}

/* ---------------------------------------------------------------- control socket */

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa->sun_path, path, strlen(path) + 1);
    return 0;
}

static int control_listen(const char *path)
{
    struct sockaddr_un sa;
    int fd;

    if (unix_addr(path, &sa) != 0)
        return -1;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    unlink(path); /* a stale socket from a killed run */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* Serves one connection: one line in, one line out.  A slow client gets 2 s, then is cut off,
 * so a stuck test cannot wedge the broker's control plane. */
static void control_serve_one(ctx *c, int lfd)
{
    struct timeval tv = {.tv_sec = 2};
    char line[MAX_LINE], out[MAX_LINE];
    size_t len = 0;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

    if (fd < 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (len < sizeof(line) - 1) {
        ssize_t n = read(fd, line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memchr(line, '\n', len))
            break;
    }
    line[len] = '\0';
    run_command(c, line, out, sizeof(out) - 1);
    len = strlen(out);
    out[len++] = '\n';
    if (write(fd, out, len) < 0)
        mb_warn(MOD, "control: reply lost: %s", strerror(errno));
    close(fd);
}

/* devkafka ctl SOCKET CMD ARGS...: sends one command, prints the answer. */
static int control_client(int argc, char **argv)
{
    struct sockaddr_un sa;
    char line[MAX_LINE], buf[MAX_LINE];
    size_t len = 0;
    ssize_t n;
    int fd;

    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int w = snprintf(line + len, sizeof(line) - len, "%s%s", i > 1 ? " " : "", argv[i]);
        if (w < 0 || (size_t)w >= sizeof(line) - len - 1) {
            fprintf(stderr, "devkafka ctl: command too long\n");
            return 2;
        }
        len += (size_t)w;
    }
    line[len++] = '\n';
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || unix_addr(argv[0], &sa) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "devkafka ctl: %s: %s\n", argv[0], strerror(errno));
        if (fd >= 0)
            close(fd);
        return 3;
    }
    if (write(fd, line, len) != (ssize_t)len) {
        fprintf(stderr, "devkafka ctl: %s: write: %s\n", argv[0], strerror(errno));
        close(fd);
        return 3;
    }
    len = 0;
    while (len < sizeof(buf) - 1) {
        n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    fputs(buf, stdout);
    if (len == 0) {
        fprintf(stderr, "devkafka ctl: %s: no answer\n", argv[0]);
        return 3;
    }
    return strncmp(buf, "ok", 2) == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- serve */

static int write_atomic(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    FILE *f;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());

    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    if (fprintf(f, "%s\n", text) < 0 || fclose(f) != 0) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

static int add_topic(options *o, const char *name, int partitions)
{
    for (int i = 0; i < o->ntopics; i++) {
        if (strcmp(o->topics[i].name, name) == 0)
            return 0;
    }
    if (o->ntopics == MAX_TOPICS)
        return -1;
    o->topics[o->ntopics].name = name;
    o->topics[o->ntopics].partitions = partitions; /* 0: the --partitions default */
    o->ntopics++;
    return 0;
}

/* "NAME" or "NAME:PARTITIONS".  The string is modified in place (argv is ours). */
static int parse_topic_arg(options *o, char *arg)
{
    char *colon = strrchr(arg, ':');
    long p = 0;

    if (colon) {
        *colon = '\0';
        if (parse_long(colon + 1, 1, MAX_PARTITIONS, &p) != 0)
            return -1;
    }
    if (*arg == '\0')
        return -1;
    return add_topic(o, arg, (int)p);
}

/* Returns 0, or 2 for a usage error (message printed). */
static int parse_options(options *o, int argc, char **argv)
{
    const char *a = argv[0];
    long v;

    for (int i = 1; i < argc; i++) {
        a = argv[i];
        char *val = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (val == NULL)
            goto bad;
        if (strcmp(a, "--brokers") == 0 && parse_long(val, 1, 32, &v) == 0)
            o->brokers = (int)v;
        else if (strcmp(a, "--partitions") == 0 && parse_long(val, 1, MAX_PARTITIONS, &v) == 0)
            o->partitions = (int)v;
        else if (strcmp(a, "--bootstrap-file") == 0)
            o->bootstrap_file = val;
        else if (strcmp(a, "--control") == 0 || strcmp(a, "--control-socket") == 0)
            o->control = val;
        else if (strcmp(a, "--topic") == 0 && parse_topic_arg(o, val) == 0)
            ;
        else
            goto bad;
        i++;
    }
    return 0;
bad:
    fprintf(stderr, "devkafka: bad or incomplete argument: %s (see devkafka --help)\n", a);
    return 2;
}

static rd_kafka_t *cluster_new(int brokers, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char n[16];
    rd_kafka_t *rk;

    snprintf(n, sizeof(n), "%d", brokers);
    mb_kafka_conf_set_logger(conf);
    if (rd_kafka_conf_set(conf, "test.mock.num.brokers", n, err, errlen) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "devkafka", err, errlen) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen);
    if (rk == NULL)
        rd_kafka_conf_destroy(conf);
    return rk;
}

static int create_topics(ctx *c, const options *o)
{
    int rf = o->brokers < 3 ? o->brokers : 3;

    for (int i = 0; i < o->ntopics; i++) {
        int p = o->topics[i].partitions ? o->topics[i].partitions : o->partitions;
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(c->mc, o->topics[i].name, p, rf);

        if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            mb_error(MOD, "create topic %s: %s", o->topics[i].name, rd_kafka_err2str(e));
            return -1;
        }
        mb_info(MOD, "topic %s: %d partitions, replication %d", o->topics[i].name, p, rf);
    }
    return 0;
}

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() must return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void serve(ctx *c, int lfd)
{
    while (!stop_requested) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        int n = poll(&p, lfd >= 0 ? 1 : 0, 500);

        if (n > 0 && (p.revents & POLLIN))
            control_serve_one(c, lfd);
    }
}

int main(int argc, char **argv)
{
    options o = {.brokers = 3, .partitions = 6};
    ctx c = {0};
    char err[512];
    const char *boot;
    int lfd = -1, rc = 1;

    if (mb_version_flag(argc, argv, "devkafka"))
        return 0;
    mb_log_init("devkafka");
    if (argc > 1 && strcmp(argv[1], "ctl") == 0)
        return control_client(argc - 2, argv + 2);
    add_topic(&o, mb_kafka_topic(MB_TOPIC_ORDERS), 0);
    add_topic(&o, mb_kafka_topic(MB_TOPIC_STATUS), 0);
    add_topic(&o, mb_kafka_topic(MB_TOPIC_DLQ), 0);
    if (parse_options(&o, argc, argv) != 0)
        return 2;
    install_signals();

    c.brokers = o.brokers;
    c.rk = cluster_new(o.brokers, err, sizeof(err));
    if (c.rk == NULL) {
        mb_error(MOD, "mock cluster: %s", err);
        return 1;
    }
    c.mc = rd_kafka_handle_mock_cluster(c.rk);
    if (c.mc == NULL) {
        mb_error(MOD, "mock cluster: librdkafka built without mock support");
        goto out;
    }
    if (create_topics(&c, &o) != 0)
        goto out;
    if (o.control) {
        lfd = control_listen(o.control);
        if (lfd < 0) {
            mb_error(MOD, "control socket %s: %s", o.control, strerror(errno));
            goto out;
        }
    }
    boot = rd_kafka_mock_cluster_bootstraps(c.mc);
    /* The file is the readiness signal: topics and control socket exist before it does. */
    if (o.bootstrap_file && write_atomic(o.bootstrap_file, boot) != 0) {
        mb_error(MOD, "bootstrap file %s: %s", o.bootstrap_file, strerror(errno));
        goto out;
    }
    printf("%s\n", boot);
    fflush(stdout);
    mb_info(MOD, "ready: %d brokers at %s", o.brokers, boot);

    serve(&c, lfd);
    mb_info(MOD, "stopping");
    rc = 0;
    if (o.bootstrap_file)
        unlink(o.bootstrap_file);
out:
    if (lfd >= 0) {
        close(lfd);
        unlink(o.control);
    }
    rd_kafka_destroy(c.rk); /* destroys the mock cluster with it */
    return rc;
}
