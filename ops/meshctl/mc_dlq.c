/* mc_dlq.c: meshctl dlq list|show|redrive: the messages the workers rejected, and sending
 * one (or a corrected order) back to the orders topic, recorded in the store. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "mb_order.h"
#include "mc.h"
#include "mc_kafka.h"

#define DLQ_SCAN_MAX 10000 /* the record stream's cap */
#define FETCH_TIMEOUT_MS 10000
#define PUBLISH_TIMEOUT_MS 30000

static void dlq_usage(FILE *f)
{
    fprintf(f,
        "usage: meshctl dlq list [--limit N] [--json]\n"
        "       meshctl dlq show ID [--json]\n"
        "       meshctl dlq redrive ID [--edit FILE] [--force]\n"
        "\n"
        "The workers send every message they cannot accept to the DLQ topic and record why.\n"
        "  list      newest first: record id, time, error class, key, order id, where the\n"
        "            message was read (topic [partition] @offset), reason, and whether it\n"
        "            was redriven (default --limit 50)\n"
        "  show      one record and the message bytes, read back from the topic position\n"
        "            (needs KAFKA_BROKERS)\n"
        "  redrive   publishes the message again to the orders topic (key <account>/<mesh>),\n"
        "            or with --edit FILE a corrected order instead: a full CloudEvent, or\n"
        "            only its data object (then wrapped in a new envelope).  The order is\n"
        "            checked with the workers' parser first: an invalid one is never sent\n"
        "            (--force sends the original bytes even though they do not parse).  The\n"
        "            rejected record of the same order id is removed so the order is not\n"
        "            taken for a duplicate.  Recorded: `dlq list` shows who redrove it when,\n"
        "            and the job's history says so.\n");
}

/* The record with id, from the newest DLQ_SCAN_MAX.  New reference or NULL. */
static json_t *find_record(mc_ctx *c, const char *id, int *rc)
{
    json_t *all = NULL, *v, *hit = NULL;
    mb_error e;
    size_t i;

    mb_error_clear(&e);
    if (mb_store_dlq_list(c->store, DLQ_SCAN_MAX, &all, &e) != MB_OK) {
        *rc = mc_store_fail("reading DLQ records", &e);
        return NULL;
    }
    json_array_foreach(all, i, v) {
        if (strcmp(json_string_value(json_object_get(v, "id")), id) == 0) {
            hit = json_incref(v);
            break;
        }
    }
    json_decref(all);
    if (hit == NULL)
        *rc = mc_fail(MC_EXIT_NOTFOUND, "no DLQ record %s (list them with: meshctl dlq list)",
                      id);
    return hit;
}

static const char *rec_str(const json_t *r, const char *k)
{
    const char *v = json_string_value(json_object_get(r, k));
    return v ? v : "";
}

/* dlq_id -> newest redrive record. */
static json_t *redrives_by_id(mc_ctx *c)
{
    json_t *all = NULL, *map = json_object(), *v;
    mb_error e;
    size_t i;

    mb_error_clear(&e);
    if (mb_store_dlq_redrives(c->store, DLQ_SCAN_MAX, &all, &e) != MB_OK)
        return map;
    json_array_foreach(all, i, v) {
        if (json_object_get(map, rec_str(v, "dlq_id")) == NULL)
            json_object_set(map, rec_str(v, "dlq_id"), v);
    }
    json_decref(all);
    return map;
}

static int dlq_list(mc_ctx *c, long limit, int json)
{
    json_t *recs = NULL, *done, *r;
    mb_error e;
    size_t i;

    mb_error_clear(&e);
    if (mb_store_dlq_list(c->store, (size_t)limit, &recs, &e) != MB_OK)
        return mc_store_fail("reading DLQ records", &e);
    done = redrives_by_id(c);
    json_array_foreach(recs, i, r) {
        json_t *d = json_object_get(done, rec_str(r, "id"));
        if (d)
            json_object_set(r, "redriven", d);
    }
    if (json) {
        json_dumpf(recs, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        printf("%-17s %-24s %-10s %-30s %-20s %s\n", "ID", "AT", "CLASS", "KEY", "POSITION",
               "REASON");
        json_array_foreach(recs, i, r) {
            char t[32], pos[200];
            json_t *d = json_object_get(r, "redriven");
            snprintf(pos, sizeof(pos), "%s[%s]@%s", rec_str(r, "topic"),
                     rec_str(r, "partition"), rec_str(r, "offset"));
            printf("%-17s %-24s %-10s %-30s %-20s %s\n", rec_str(r, "id"),
                   mc_fmt_time(strtoll(rec_str(r, "at"), NULL, 10), t, sizeof(t)),
                   rec_str(r, "class"), *rec_str(r, "key") ? rec_str(r, "key") : "-", pos,
                   rec_str(r, "reason"));
            if (d)
                printf("%-17s   redriven by %s at %s%s -> %s[%s]@%s\n", "", rec_str(d, "by"),
                       mc_fmt_time(strtoll(rec_str(d, "at"), NULL, 10), t, sizeof(t)),
                       strcmp(rec_str(d, "edited"), "1") == 0 ? " (corrected)" : "",
                       rec_str(d, "topic"), rec_str(d, "partition"), rec_str(d, "offset"));
        }
        if (json_array_size(recs) == 0)
            printf("(the DLQ is empty)\n");
    }
    json_decref(done);
    json_decref(recs);
    return MC_EXIT_OK;
}

static int fetch_original(mc_ctx *c, const json_t *rec, mc_kafka_msg *m)
{
    char err[600];

    if (mc_kafka_fetch(c, rec_str(rec, "topic"), (int)strtol(rec_str(rec, "partition"), NULL, 10),
                       strtoll(rec_str(rec, "offset"), NULL, 10), FETCH_TIMEOUT_MS, m, err,
                       sizeof(err)) != 0)
        return mc_fail(MC_EXIT_CONFIG, "cannot read the message back: %s (to send a corrected "
                       "order anyway: --edit FILE)", err);
    return MC_EXIT_OK;
}

static int dlq_show(mc_ctx *c, const char *id, int json)
{
    int rc = MC_EXIT_OK;
    json_t *rec = find_record(c, id, &rc);
    mc_kafka_msg m = {0};
    char why[600] = "";
    json_t *v;
    const char *k;

    if (rec == NULL)
        return rc;
    if (mc_kafka_fetch(c, rec_str(rec, "topic"), (int)strtol(rec_str(rec, "partition"), NULL, 10),
                       strtoll(rec_str(rec, "offset"), NULL, 10), FETCH_TIMEOUT_MS, &m, why,
                       sizeof(why)) == 0) {
        json_object_set_new(rec, "message", json_stringn(m.value, m.len));
        json_object_set(rec, "headers", m.headers);
    } else {
        json_object_set_new(rec, "message_unavailable", json_string(why));
    }
    if (json) {
        json_dumpf(rec, stdout, JSON_INDENT(2));
        fputc('\n', stdout);
    } else {
        json_object_foreach(rec, k, v) {
            if (json_is_string(v) && strcmp(k, "message") != 0)
                printf("%-12s %s\n", k, json_string_value(v));
        }
        if (m.value)
            printf("message (%zu bytes):\n%.*s\n", m.len, (int)m.len, m.value);
    }
    mc_kafka_msg_clear(&m);
    json_decref(rec);
    return MC_EXIT_OK;
}

/* Reads FILE (or - for stdin), at most MB_ORDER_MAX_BYTES.  New buffer or NULL. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *buf;

    if (f == NULL)
        return NULL;
    buf = malloc(MB_ORDER_MAX_BYTES + 2);
    if (buf)
        *len = fread(buf, 1, MB_ORDER_MAX_BYTES + 1, f);
    if (f != stdin)
        fclose(f);
    if (buf)
        buf[*len] = '\0';
    return buf;
}

/* The corrected order from FILE as message bytes (mc_edit_order).  New string, or NULL
 * with why. */
static char *corrected_order(const char *path, size_t *len, char *why, size_t whylen)
{
    size_t n = 0;
    char *buf = read_file(path, &n);

    if (buf == NULL) {
        snprintf(why, whylen, "--edit %s: cannot read the file", path);
        return NULL;
    }
    return mc_edit_order(buf, n, len, why, whylen);
}

static int dlq_redrive(mc_ctx *c, const char *id, const char *edit, int force)
{
    int rc = MC_EXIT_OK, partition = -1, forgotten = 0;
    long long offset = -1;
    json_t *rec = find_record(c, id, &rc);
    mc_kafka_msg m = {0};
    char *value = NULL, why[600], key[200], line[400], t[32];
    const char *hdrs[8];
    size_t len = 0, nh = 0;
    mb_order *o = NULL;
    mb_order_err oe;
    mb_dlq_redrive rd;
    mb_error e;

    if (rec == NULL)
        return rc;
    if (edit) {
        value = corrected_order(edit, &len, why, sizeof(why));
        if (value == NULL) {
            json_decref(rec);
            return mc_fail(MC_EXIT_FAILED, "%s", why);
        }
    } else {
        rc = fetch_original(c, rec, &m);
        if (rc != MC_EXIT_OK) {
            json_decref(rec);
            return rc;
        }
        value = m.value;
        len = m.len;
        m.value = NULL;
    }
    if (mb_order_parse(value, len, &o, &oe) != 0 && (edit || !force)) {
        rc = mc_fail(MC_EXIT_FAILED, "redrive refused, nothing sent: the %s does not parse: %s%s",
                     edit ? "corrected order" : "original message", oe.reason,
                     edit ? "" : " (fix it with --edit FILE; --force sends it anyway)");
        goto out;
    }
    if (o)
        mb_order_key(o, key, sizeof(key));
    else
        snprintf(key, sizeof(key), "%s", m.key ? m.key : rec_str(rec, "key"));
    snprintf(line, sizeof(line), "%s DLQ record %s redriven%s by %s",
             mc_fmt_time(mc_now_ms(), t, sizeof(t)), id, edit ? " (corrected order)" : "",
             c->who);
    if (o) {
        mb_error_clear(&e);
        if (mb_store_forget_rejected(c->store, o->order_id, line, &forgotten, &e) != MB_OK) {
            rc = e.status == MB_PERM
                     ? mc_fail(MC_EXIT_FAILED, "redrive refused, nothing sent: %s (the order "
                               "was accepted since; see meshctl show %s)", e.msg, o->order_id)
                     : mc_store_fail("redrive", &e);
            goto out;
        }
    }
    if (o && o->traceparent) {
        hdrs[nh * 2] = "traceparent";
        hdrs[nh * 2 + 1] = o->traceparent;
        nh++;
    }
    hdrs[nh * 2] = "meshbuy-redrive-of";
    hdrs[nh * 2 + 1] = id;
    nh++;
    hdrs[nh * 2] = "meshbuy-redriven-by";
    hdrs[nh * 2 + 1] = c->who;
    nh++;
    if (mc_kafka_publish(c, mb_conf_str(c->conf, "MESHBUY_ORDERS_TOPIC"), key, value, len, hdrs,
                         nh, PUBLISH_TIMEOUT_MS, &partition, &offset, why, sizeof(why)) != 0) {
        rc = mc_fail(MC_EXIT_CONFIG, "redrive: %s", why);
        goto out;
    }
    memset(&rd, 0, sizeof(rd));
    rd.dlq_id = id;
    rd.by = c->who;
    rd.topic = mb_conf_str(c->conf, "MESHBUY_ORDERS_TOPIC");
    rd.partition = partition;
    rd.offset = offset;
    rd.key = key;
    rd.order_id = o ? o->order_id : "";
    rd.edited = edit != NULL;
    rd.now_ms = mc_now_ms();
    mb_error_clear(&e);
    if (mb_store_dlq_redrive_record(c->store, &rd, &e) != MB_OK)
        fprintf(stderr, "meshctl: warning: published, but the redrive was not recorded: %s\n",
                e.msg);
    printf("redriven %s as order %s (key %s) to %s [%d] @%lld; follow with: meshctl watch %s\n",
           id, o ? o->order_id : "?", key, rd.topic, partition, offset,
           o ? o->order_id : "--all");
out:
    mb_order_free(o);
    free(value);
    mc_kafka_msg_clear(&m);
    json_decref(rec);
    return rc;
}

int mc_cmd_dlq(mc_ctx *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'}, {"json", no_argument, NULL, 'j'},
        {"edit", required_argument, NULL, 'e'},  {"force", no_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    long limit = 50;
    int json = 0, force = 0, opt;
    const char *edit = NULL, *sub;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (mc_parse_long(optarg, 1, DLQ_SCAN_MAX, &limit) != 0)
                return mc_fail(MC_EXIT_USAGE, "--limit %s: want 1..%d", optarg, DLQ_SCAN_MAX);
            break;
        case 'j':
            json = 1;
            break;
        case 'e':
            edit = optarg;
            break;
        case 'F':
            force = 1;
            break;
        case 'h':
            dlq_usage(stdout);
            return MC_EXIT_OK;
        default:
            dlq_usage(stderr);
            return MC_EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return mc_fail(MC_EXIT_USAGE, "dlq: want list, show ID or redrive ID (see meshctl dlq "
                       "--help)");
    sub = argv[optind];
    if (strcmp(sub, "list") == 0 && optind + 1 == argc)
        return mc_store(c) ? dlq_list(c, limit, json) : MC_EXIT_CONFIG;
    if (strcmp(sub, "show") == 0 && optind + 2 == argc)
        return mc_store(c) ? dlq_show(c, argv[optind + 1], json) : MC_EXIT_CONFIG;
    if (strcmp(sub, "redrive") == 0 && optind + 2 == argc)
        return mc_store(c) ? dlq_redrive(c, argv[optind + 1], edit, force) : MC_EXIT_CONFIG;
    return mc_fail(MC_EXIT_USAGE, "dlq: want list, show ID or redrive ID (see meshctl dlq "
                   "--help)");
}
