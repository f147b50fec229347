/* main.c: meshbuy, the producer CLI: validates an order and publishes it to mesh.orders. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "mb_conf.h"
#include "mb_event.h"
#include "mb_kafka.h"
#include "mb_log.h"
#include "mb_order.h"
#include "mb_version.h"

/* Exit codes (documented in --help; billing scripts branch on them). */
enum {
    EXIT_OK = 0,
    EXIT_DELIVERY = 1, /* not delivered, or no delivery report within --timeout */
    EXIT_INVALID = 2,  /* invalid order or usage: nothing was sent */
    EXIT_CONFIG = 3,   /* bad environment / Kafka configuration */
};

#define MAX_REPEAT 256 /* more --node/--namespace than any valid order has */

static const mb_conf_key CONF_KEYS[] = {
    {"KAFKA_BROKERS", MB_CONF_STR, "", 0, 0, NULL,
     "Kafka bootstrap servers (host:port,...); required to publish"},
    {"MESHBUY_ORDERS_TOPIC", MB_CONF_STR, "mesh.orders", 0, 0, NULL, "topic orders go to"},
    {"MESHBUY_SOURCE", MB_CONF_STR, "meshbuy-cli", 0, 0, NULL,
     "CloudEvents source of the orders built here (--source overrides)"},
    {"MESHBUY_LOG_LEVEL", MB_CONF_ENUM, "warn", 0, 0, "debug|info|warn|error|off",
     "log level of the JSON log lines on stderr"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

typedef struct cli {
    const char *account, *project, *region, *name, *istio, *cluster, *order_id;
    const char *traceparent, *file, *cancel, *reason, *validate, *validate_status, *source;
    const char *nodes[MAX_REPEAT];
    size_t n_nodes;
    const char *namespaces[MAX_REPEAT];
    size_t n_namespaces;
    int restart, dry_run, check, del, binary;
    int timeout_s;
} cli;

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: meshbuy --account A --project P --region R --name MESH --istio 1.18\n"
        "               --cluster C --node UID [--node UID...] [--namespace NS...] [--restart]\n"
        "               [--order-id ID] [--traceparent TP] [--source S] [--timeout SEC]\n"
        "       meshbuy --file FILE|-    publish an order read from JSON: a full CloudEvent,\n"
        "                                or only its data object (wrapped here)\n"
        "       meshbuy --cancel ORDER_ID --account A --name MESH [--reason TEXT]\n"
        "       meshbuy --delete --account A --name MESH --project P --region R [--restart]\n"
        "               [--order-id ID]      delete a mesh: undo what its purchase changed\n"
        "       meshbuy --validate FILE|- [FILE...]         check order messages byte for byte,\n"
        "                                                 send nothing (FILE.kafka.json: a\n"
        "                                                 message with headers, {\"headers\":\n"
        "                                                 {...}, \"value\": ...})\n"
        "       meshbuy --validate-status FILE|- [FILE...]  check mesh.status events\n"
        "         (several files: one line per file on stdout, \"FILE: valid: ...\" or\n"
        "         \"FILE: invalid: reason\"; exit 2 if any is invalid)\n"
        "       meshbuy --check    check the configuration and the Kafka settings, print them\n"
        "\n"
        "Publishes one order to the orders topic with key <account_id>/<mesh_name> and a\n"
        "traceparent header, idempotently (enable.idempotence=true, acks=all), and waits for\n"
        "its delivery report.  Prints the order id on stdout.  The order is validated with the\n"
        "worker's own parser first: an invalid order is never sent.\n"
        "\n"
        "options:\n"
        "  --order-id ID      billing's idempotency key (default: fresh ord-<32 hex>)\n"
        "  --traceparent TP   W3C traceparent of the order (default: a fresh one)\n"
        "  --restart          restart existing workloads of the --namespace namespaces (with\n"
        "                     --delete: of the namespaces the purchase labeled, so pods drop\n"
        "                     the sidecar)\n"
        "  --reason TEXT      free-text reason of a cancel\n"
        "  --source S         CloudEvents source (default $MESHBUY_SOURCE)\n"
        "  --timeout SEC      wait at most SEC seconds for delivery (default 30)\n"
        "  --binary           publish in the CloudEvents binary content mode (attributes in\n"
        "                     ce_ headers, data alone as the value); default: structured\n"
        "  --dry-run          validate and print key and message on stdout, send nothing\n"
        "  -h, --help         this text\n"
        "  --version          print the version and exit\n"
        "\n"
        "exit codes:\n"
        "  0  delivered (or valid, with --validate / --dry-run)\n"
        "  1  delivery failed or timed out (the order may or may not be on the topic:\n"
        "     publishing it again with the same --order-id is safe)\n"
        "  2  invalid order or usage; nothing was sent\n"
        "  3  configuration error (environment, Kafka settings)\n"
        "\n");
    mb_conf_help(f, CONF_KEYS);
    fprintf(f,
            "  KAFKA_<X>                    any librdkafka property <x> (lowercased, '_' -> '.'),\n"
            "      e.g. KAFKA_SECURITY_PROTOCOL=ssl; KAFKA_<X>_FILE reads the value from a file\n");
}

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "meshbuy: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see meshbuy --help)\n");
    return EXIT_INVALID;
}

/* ------------------------------------------------------------ arguments */

enum {
    OPT_ACCOUNT = 1000,
    OPT_PROJECT,
    OPT_REGION,
    OPT_NAME,
    OPT_ISTIO,
    OPT_CLUSTER,
    OPT_NODE,
    OPT_NAMESPACE,
    OPT_RESTART,
    OPT_ORDER_ID,
    OPT_TRACEPARENT,
    OPT_FILE,
    OPT_CANCEL,
    OPT_REASON,
    OPT_VALIDATE,
    OPT_VALIDATE_STATUS,
    OPT_TIMEOUT,
    OPT_SOURCE,
    OPT_DRY_RUN,
    OPT_CHECK,
    OPT_DELETE,
    OPT_BINARY,
};

/* same order as the enum above: OPTIONS[opt - OPT_ACCOUNT] names an option */
static const struct option OPTIONS[] = {
    {"account", required_argument, NULL, OPT_ACCOUNT},
    {"project", required_argument, NULL, OPT_PROJECT},
    {"region", required_argument, NULL, OPT_REGION},
    {"name", required_argument, NULL, OPT_NAME},
    {"istio", required_argument, NULL, OPT_ISTIO},
    {"cluster", required_argument, NULL, OPT_CLUSTER},
    {"node", required_argument, NULL, OPT_NODE},
    {"namespace", required_argument, NULL, OPT_NAMESPACE},
    {"restart", no_argument, NULL, OPT_RESTART},
    {"order-id", required_argument, NULL, OPT_ORDER_ID},
    {"traceparent", required_argument, NULL, OPT_TRACEPARENT},
    {"file", required_argument, NULL, OPT_FILE},
    {"cancel", required_argument, NULL, OPT_CANCEL},
    {"reason", required_argument, NULL, OPT_REASON},
    {"validate", required_argument, NULL, OPT_VALIDATE},
    {"validate-status", required_argument, NULL, OPT_VALIDATE_STATUS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"check", no_argument, NULL, OPT_CHECK},
    {"delete", no_argument, NULL, OPT_DELETE},
    {"binary", no_argument, NULL, OPT_BINARY},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int push(const char **vec, size_t *n, const char *v)
{
    if (*n >= MAX_REPEAT)
        return -1;
    vec[(*n)++] = v;
    return 0;
}

static int parse_timeout(const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 3600)
        return -1;
    *out = (int)v;
    return 0;
}

/* Returns -1 to go on, else an exit code. */
static int parse_args(int argc, char **argv, cli *c)
{
    memset(c, 0, sizeof *c);
    c->timeout_s = 30;
    for (;;) {
        opterr = 0; /* bad_usage's one line names the flag */
        int opt = getopt_long(argc, argv, "h", OPTIONS, NULL);
        if (opt == -1)
            break;
        const char **slot = NULL;
        switch (opt) {
        case OPT_ACCOUNT: slot = &c->account; break;
        case OPT_PROJECT: slot = &c->project; break;
        case OPT_REGION: slot = &c->region; break;
        case OPT_NAME: slot = &c->name; break;
        case OPT_ISTIO: slot = &c->istio; break;
        case OPT_CLUSTER: slot = &c->cluster; break;
        case OPT_ORDER_ID: slot = &c->order_id; break;
        case OPT_TRACEPARENT: slot = &c->traceparent; break;
        case OPT_FILE: slot = &c->file; break;
        case OPT_CANCEL: slot = &c->cancel; break;
        case OPT_REASON: slot = &c->reason; break;
        case OPT_VALIDATE: slot = &c->validate; break;
        case OPT_VALIDATE_STATUS: slot = &c->validate_status; break;
        case OPT_SOURCE: slot = &c->source; break;
        case OPT_NODE:
            if (push(c->nodes, &c->n_nodes, optarg) < 0)
                return bad_usage("too many --node (%s)", optarg);
            break;
        case OPT_NAMESPACE:
            if (push(c->namespaces, &c->n_namespaces, optarg) < 0)
                return bad_usage("too many --namespace (%s)", optarg);
            break;
        case OPT_RESTART: c->restart = 1; break;
        case OPT_DRY_RUN: c->dry_run = 1; break;
        case OPT_CHECK: c->check = 1; break;
        case OPT_DELETE: c->del = 1; break;
        case OPT_BINARY: c->binary = 1; break;
        case OPT_TIMEOUT:
            if (parse_timeout(optarg, &c->timeout_s) < 0)
                return bad_usage("--timeout: not a number of seconds in 1..3600: %s", optarg);
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return bad_usage("unknown option or missing value: %s", argv[optind - 1]);
        }
        if (slot) {
            if (*slot)
                return bad_usage("--%s given twice", OPTIONS[opt - OPT_ACCOUNT].name);
            *slot = optarg;
        }
    }
    /* only the validate modes take more files */
    if (optind < argc && !c->validate && !c->validate_status)
        return bad_usage("unexpected argument: %s", argv[optind]);
    int modes = !!c->file + !!c->cancel + !!c->del + !!c->validate + !!c->validate_status;
    if (modes > 1)
        return bad_usage("%s", "--file, --cancel, --delete, --validate and --validate-status "
                               "exclude each other");
    int flags = c->project || c->region || c->istio || c->cluster || c->n_nodes ||
                c->n_namespaces || c->restart || c->order_id;
    if ((c->file || c->validate || c->validate_status) && (flags || c->account || c->name))
        return bad_usage("%s", "order fields cannot be combined with --file or --validate");
    if (c->cancel && flags)
        return bad_usage("%s", "--cancel takes only --account, --name and --reason");
    if (c->del && (c->istio || c->cluster || c->n_nodes || c->n_namespaces))
        return bad_usage("%s", "--delete takes only --account, --name, --project, --region, "
                               "--restart and --order-id");
    if (c->reason && !c->cancel)
        return bad_usage("%s", "--reason goes with --cancel");
    return -1;
}

/* ----------------------------------------------------------- input */

/* Reads a file or stdin ("-"), at most MB_ORDER_MAX_BYTES + 1 bytes so an
 * oversized order is seen as such without reading it all.  New buffer (free). */
static char *read_input(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "meshbuy: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = MB_ORDER_MAX_BYTES + 1;
    char *buf = malloc(cap);
    if (buf) {
        *len = fread(buf, 1, cap, f);
        if (ferror(f)) {
            fprintf(stderr, "meshbuy: %s: read error\n", path);
            free(buf);
            buf = NULL;
        }
    }
    if (f != stdin)
        fclose(f);
    return buf;
}

static json_t *string_array(const char *const *v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        json_array_append_new(arr, json_string(v[i]));
    return arr;
}

/* The data object of a buy order from the flags.  New reference; NULL after
 * printing why (a missing flag, or a value that is not valid UTF-8). */
static json_t *buy_from_flags(const cli *c, const char *order_id)
{
    static const char *const req[] = {"account", "project", "region", "name", "istio", "cluster"};
    const char *vals[] = {c->account, c->project, c->region, c->name, c->istio, c->cluster};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        if (!vals[i]) {
            bad_usage("--%s is required", req[i]);
            return NULL;
        }
    }
    if (c->n_nodes == 0) {
        bad_usage("%s", "--node is required (one or more control-plane node UIDs)");
        return NULL;
    }
    json_t *mesh = json_pack("{s:s, s:s, s:s, s:s, s:o}", "name", c->name, "edition", "basic",
                             "istio_version", c->istio, "cluster_id", c->cluster,
                             "control_plane_nodes", string_array(c->nodes, c->n_nodes));
    if (mesh && (c->n_namespaces || c->restart)) {
        json_t *sc =
            json_pack("{s:o, s:b}", "namespaces", string_array(c->namespaces, c->n_namespaces),
                      "restart_existing", c->restart);
        if (!sc || json_object_set_new(mesh, "sidecar", sc) < 0) {
            json_decref(mesh);
            mesh = NULL;
        }
    }
    json_t *data =
        json_pack("{s:s, s:s, s:s, s:s, s:o}", "order_id", order_id, "account_id", c->account,
                  "project_id", c->project, "region", c->region, "mesh", mesh);
    if (!data)
        fprintf(stderr, "meshbuy: an argument is not valid UTF-8\n");
    return data;
}

static json_t *cancel_from_flags(const cli *c)
{
    if (!c->account || !c->name) {
        bad_usage("%s", "--cancel needs --account and --name");
        return NULL;
    }
    json_t *data = json_pack("{s:s, s:s, s:s}", "order_id", c->cancel, "account_id", c->account,
                             "mesh_name", c->name);
    if (data && c->reason && json_object_set_new(data, "reason", json_string(c->reason)) < 0) {
        json_decref(data);
        data = NULL;
    }
    if (!data)
        fprintf(stderr, "meshbuy: an argument is not valid UTF-8\n");
    return data;
}

/* The data object of a delete order from the flags.  New reference; NULL after printing
 * why. */
static json_t *delete_from_flags(const cli *c, const char *order_id)
{
    static const char *const req[] = {"account", "name", "project", "region"};
    const char *vals[] = {c->account, c->name, c->project, c->region};
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        if (!vals[i]) {
            bad_usage("--delete needs --%s", req[i]);
            return NULL;
        }
    }
    json_t *data =
        json_pack("{s:s, s:s, s:s, s:s, s:{s:s}, s:{s:b}}", "order_id", order_id, "account_id",
                  c->account, "project_id", c->project, "region", c->region, "mesh", "name",
                  c->name, "sidecar", "restart_existing", c->restart);
    if (!data)
        fprintf(stderr, "meshbuy: an argument is not valid UTF-8\n");
    return data;
}

/* An order from --file: a whole envelope (kept as given; a traceparent is
 * added when it has none) or only the data (wrapped).  New reference or NULL. */
static json_t *order_from_file(const cli *c, const char *source, const char *tp)
{
    size_t len;
    char *buf = read_input(c->file, &len);
    if (!buf)
        return NULL;
    if (len > MB_ORDER_MAX_BYTES) {
        fprintf(stderr, "meshbuy: invalid order: %s: more than %d bytes\n", c->file,
                MB_ORDER_MAX_BYTES);
        free(buf);
        return NULL;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!json_is_object(doc)) {
        fprintf(stderr, "meshbuy: invalid order: %s: %s\n", c->file,
                doc ? "not a JSON object" : jerr.text);
        json_decref(doc);
        return NULL;
    }
    if (json_object_get(doc, "specversion")) {
        if (!json_object_get(doc, "traceparent"))
            json_object_set_new(doc, "traceparent", json_string(tp));
        return doc;
    }
    /* data only: a cancel names its mesh at the top, a buy inside "mesh", a delete too but
     * with nothing else there (a buy's mesh says at least its edition and cluster) */
    const json_t *mesh = json_object_get(doc, "mesh");
    mb_order_kind kind =
        json_object_get(doc, "mesh_name") && !mesh ? MB_ORDER_CANCEL
        : json_is_object(mesh) && json_object_size(mesh) == 1 && json_object_get(mesh, "name")
            ? MB_ORDER_DELETE
            : MB_ORDER_BUY;
    return mb_order_envelope(kind, doc, source, tp);
}

/* ----------------------------------------------------------- validate */

/* Checks one file.  With a label (several files), the verdict goes to stdout
 * as "<label>: valid: ..." / "<label>: invalid: ..."; alone, as "valid: ..."
 * on stdout or "invalid: ..." on stderr.  Returns EXIT_OK or EXIT_INVALID. */
static int validate_file(const char *path, int status_event, const char *label)
{
    char reason[400] = "", what[200] = "";
    size_t len;
    char *buf = read_input(path, &len);
    if (!buf) {
        snprintf(reason, sizeof reason, "%s: cannot read", path);
    } else if (status_event) {
        json_t *ev = mb_event_parse(buf, len, reason, sizeof reason);
        if (ev)
            snprintf(what, sizeof what, "status event %s",
                     json_string_value(json_object_get(ev, "id")));
        json_decref(ev);
    } else {
        mb_order *o;
        mb_order_err err;
        size_t pl = strlen(path);
        int kafka = pl > 11 && strcmp(path + pl - 11, ".kafka.json") == 0;
        if ((kafka ? mb_order_parse_kafka_json(buf, len, NULL, &o, &err)
                   : mb_order_parse(buf, len, &o, &err)) == 0)
            snprintf(what, sizeof what, "%s order %s", mb_order_kind_name(o->kind), o->order_id);
        else
            snprintf(reason, sizeof reason, "%s", err.reason);
        mb_order_free(o);
    }
    free(buf);
    int ok = what[0] != '\0';
    if (label)
        printf("%s: %s: %s\n", label, ok ? "valid" : "invalid", ok ? what : reason);
    else if (ok)
        printf("valid: %s\n", what);
    else
        fprintf(stderr, "invalid: %s\n", reason);
    return ok ? EXIT_OK : EXIT_INVALID;
}

static int validate_files(const char *first, char **more, int n_more, int status_event)
{
    if (n_more == 0)
        return validate_file(first, status_event, NULL);
    int rc = validate_file(first, status_event, first);
    for (int i = 0; i < n_more; i++) {
        if (validate_file(more[i], status_event, more[i]) != EXIT_OK)
            rc = EXIT_INVALID;
    }
    return rc;
}

/* ----------------------------------------------------------- publish */

typedef struct delivery {
    int done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    delivery *d = m->_private;
    d->done = 1;
    d->err = m->err;
    d->partition = m->partition;
    d->offset = m->offset;
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "meshbuy: kafka %s: %s\n", k, err);
        return -1;
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The message's headers and value (into *b when binary): structured content mode, or
 * binary content mode (ce_ headers, data alone as the value).  New headers or NULL. */
static rd_kafka_headers_t *message_of(const char *value, const char *tp, int binary,
                                      mb_order_binary *b)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(MB_ORDER_MAX_HEADERS);
    memset(b, 0, sizeof *b);
    rd_kafka_header_add(h, "traceparent", -1, tp, -1);
    if (!binary) {
        rd_kafka_header_add(h, "content-type", -1, "application/cloudevents+json", -1);
        return h;
    }
    json_t *env = json_loads(value, 0, NULL);
    int rc = env ? mb_order_to_binary(env, b) : -1;
    json_decref(env);
    if (rc < 0) {
        rd_kafka_headers_destroy(h);
        return NULL;
    }
    for (size_t i = 0; i < b->n; i++)
        rd_kafka_header_add(h, b->names[i], -1, b->values[i], -1);
    return h;
}

static int publish(const char *topic, const char *key, const char *value, const char *tp,
                   int timeout_s, int binary)
{
    char err[512], ms[32];
    rd_kafka_conf_t *conf = mb_kafka_conf_new("meshbuy", err, sizeof err);
    if (!conf) {
        fprintf(stderr, "meshbuy: %s\n", err);
        return EXIT_CONFIG;
    }
    /* the broker's deadline is ours, so a message that times out gets its report */
    snprintf(ms, sizeof ms, "%d", timeout_s * 1000);
    if (set_conf(conf, "enable.idempotence", "true") < 0 || set_conf(conf, "acks", "all") < 0 ||
        set_conf(conf, "message.timeout.ms", ms) < 0) {
        rd_kafka_conf_destroy(conf);
        return EXIT_CONFIG;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "meshbuy: kafka: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return EXIT_CONFIG;
    }
    conf = NULL; /* owned by rk */
    delivery d = {0};
    mb_order_binary b;
    rd_kafka_headers_t *h = message_of(value, tp, binary, &b);
    if (!h) {
        fprintf(stderr, "meshbuy: out of memory\n");
        rd_kafka_destroy(rk);
        return EXIT_CONFIG;
    }
    if (binary)
        value = b.value;
    rd_kafka_resp_err_t perr = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
    mb_order_binary_free(&b); /* copied by the produce */
    int rc = EXIT_OK;
    if (perr) {
        rd_kafka_headers_destroy(h); /* taken over only by a successful produce */
        fprintf(stderr, "meshbuy: produce to %s: %s\n", topic, rd_kafka_err2str(perr));
        rc = EXIT_DELIVERY;
        goto out;
    }
    /* librdkafka reports by message.timeout.ms; the slack covers the report itself */
    double deadline = now_s() + timeout_s + 5;
    while (!d.done && now_s() < deadline)
        rd_kafka_poll(rk, 100);
    if (!d.done) {
        fprintf(stderr, "meshbuy: no delivery report within %d s\n", timeout_s);
        rc = EXIT_DELIVERY;
    } else if (d.err) {
        fprintf(stderr, "meshbuy: delivery to %s failed: %s\n", topic, rd_kafka_err2str(d.err));
        rc = EXIT_DELIVERY;
    } else {
        mb_info("meshbuy", "delivered to %s [%d] at offset %lld", topic, (int)d.partition,
                (long long)d.offset);
    }
out:
    /* never block on exit for what we could not deliver */
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
    return rc;
}

/* ----------------------------------------------------------- main */

static int run(const cli *c, const mb_conf *conf)
{
    char order_id[64], tp[MB_TRACEPARENT_LEN + 1];
    const char *source = c->source ? c->source : mb_conf_str(conf, "MESHBUY_SOURCE");
    if (c->traceparent) {
        if (!mb_order_traceparent_valid(c->traceparent))
            return bad_usage("--traceparent: not a W3C traceparent: %s", c->traceparent);
        snprintf(tp, sizeof tp, "%s", c->traceparent);
    } else if (mb_order_new_traceparent(tp, sizeof tp) < 0) {
        fprintf(stderr, "meshbuy: no randomness for a traceparent\n");
        return EXIT_CONFIG;
    }
    if (c->order_id)
        snprintf(order_id, sizeof order_id, "%.63s", c->order_id);
    else if (mb_order_new_id("ord-", order_id, sizeof order_id) < 0) {
        fprintf(stderr, "meshbuy: no randomness for an order id\n");
        return EXIT_CONFIG;
    }
    if (c->order_id && strlen(c->order_id) > 63)
        return bad_usage("--order-id: longer than 64 characters: %s", c->order_id);

    json_t *env;
    if (c->file)
        env = order_from_file(c, source, tp);
    else if (c->cancel)
        env = mb_order_envelope(MB_ORDER_CANCEL, cancel_from_flags(c), source, tp);
    else if (c->del)
        env = mb_order_envelope(MB_ORDER_DELETE, delete_from_flags(c, order_id), source, tp);
    else
        env = mb_order_envelope(MB_ORDER_BUY, buy_from_flags(c, order_id), source, tp);
    if (!env)
        return EXIT_INVALID;
    char *value = json_dumps(env, JSON_COMPACT);
    json_decref(env);
    if (!value) {
        fprintf(stderr, "meshbuy: out of memory\n");
        return EXIT_CONFIG;
    }
    /* the exact bytes that would be sent, through the worker's parser */
    mb_order *o = NULL;
    mb_order_err err;
    if (mb_order_parse(value, strlen(value), &o, &err) < 0) {
        fprintf(stderr, "meshbuy: invalid order: %s\n", err.reason);
        free(value);
        return EXIT_INVALID;
    }
    char key[160];
    mb_order_key(o, key, sizeof key);
    int rc = EXIT_OK;
    if (c->dry_run) {
        printf("%s\n%s\n", key, value);
    } else {
        const char *brokers = mb_conf_str(conf, "KAFKA_BROKERS");
        if (!brokers || !*brokers) {
            fprintf(stderr, "meshbuy: KAFKA_BROKERS: required to publish\n");
            rc = EXIT_CONFIG;
        } else {
            rc = publish(mb_kafka_topic(MB_TOPIC_ORDERS), key, value,
                         o->traceparent ? o->traceparent : tp, c->timeout_s, c->binary);
        }
        if (rc == EXIT_OK)
            printf("%s\n", o->order_id);
        if (rc == EXIT_DELIVERY)
            fprintf(stderr,
                    "meshbuy: order %s not confirmed; publishing it again with "
                    "--order-id %s is safe\n",
                    o->order_id, o->order_id);
    }
    mb_order_free(o);
    free(value);
    return rc;
}

int main(int argc, char **argv)
{
    cli c;
    if (mb_version_flag(argc, argv, "meshbuy"))
        return EXIT_OK;
    int rc = parse_args(argc, argv, &c);
    if (rc >= 0)
        return rc;
    if (c.validate || c.validate_status)
        return validate_files(c.validate ? c.validate : c.validate_status, argv + optind,
                              argc - optind, !c.validate);

    char err[512];
    mb_conf *conf = NULL;
    if (mb_conf_load(&conf, CONF_KEYS, err, sizeof err) < 0) {
        fprintf(stderr, "meshbuy: %s\n", err);
        return EXIT_CONFIG;
    }
    mb_log_init("meshbuy");
    mb_log_level_parse(mb_conf_str(conf, "MESHBUY_LOG_LEVEL"), &mb_log_min);
    if (c.check) {
        rd_kafka_conf_t *kc = mb_kafka_conf_new("meshbuy", err, sizeof err);
        if (!kc) {
            fprintf(stderr, "meshbuy: %s\n", err);
            mb_conf_free(conf);
            return EXIT_CONFIG;
        }
        rd_kafka_conf_destroy(kc);
        mb_conf_dump(stdout, conf);
        mb_conf_free(conf);
        return EXIT_OK;
    }
    rc = run(&c, conf);
    mb_conf_free(conf);
    return rc;
}
