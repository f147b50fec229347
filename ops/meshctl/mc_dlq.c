/* mc_dlq.c: meshctl dlq list|show|redrive: the messages the workers rejected, and sending
 * one (or a corrected order) back to the orders topic, recorded in the store. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "mb_order.h"
#include "mc.h"
#include "mc_out.h"
#include "mc_kafka.h"

#define DLQ_SCAN_MAX       10000 /* the record stream's cap */
#define FETCH_TIMEOUT_MS   10000
#define PUBLISH_TIMEOUT_MS 30000

static void dlq_usage(FILE *f)
{
    fprintf(f,
            "usage: meshctl dlq list [--limit N] [-o FMT]\n"
            "       meshctl dlq show ID [-o FMT]\n"
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
            "            (--force sends the original bytes even though they do not parse).  A\n"
            "            correction that changes the order id, account or project of the\n"
            "            rejected message is refused (it would be another order; --force).  The\n"
            "            rejected record of the same order id is removed so the order is not\n"
            "            taken for a duplicate.  Recorded: `dlq list` shows who redrove it when,\n"
            "            and the job's history says so.\n" MC_OUT_USAGE
            "JSON/YAML: records with id, at_ms and at (RFC 3339), class, key, order_id, topic,\n"
            "partition, offset, size (numbers), reason, redriven (null, or who/when/where);\n"
            "-o name: one record id a line.\n");
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
    json_array_foreach(all, i, v)
    {
        if (strcmp(json_string_value(json_object_get(v, "id")), id) == 0) {
            hit = json_incref(v);
            break;
        }
    }
    json_decref(all);
    if (hit == NULL)
        *rc = mc_fail(MC_EXIT_NOTFOUND, "no DLQ record %s (list them with: meshctl dlq list)", id);
    return hit;
}

static const char *rec_str(const json_t *r, const char *k)
{
    const char *v = json_string_value(json_object_get(r, k));
    return v ? v : "";
}

/* A DLQ or redrive record as every command prints it: partition, offset and size as
 * numbers, at_ms with "at" in RFC 3339 beside it, edited as a boolean, "" as null; nested
 * objects (redriven) the same way.  New. */
static json_t *rec_json(const json_t *r)
{
    json_t *o = json_object(), *v;
    const char *k;

    json_object_foreach((json_t *)r, k, v)
    {
        const char *s = json_string_value(v);
        if (json_is_object(v)) {
            json_object_set_new(o, k, rec_json(v));
        } else if (s == NULL) {
            json_object_set(o, k, v);
        } else if (strcmp(k, "partition") == 0 || strcmp(k, "offset") == 0 ||
                   strcmp(k, "size") == 0) {
            json_object_set_new(o, k, *s ? json_integer(strtoll(s, NULL, 10)) : json_null());
        } else if (strcmp(k, "at") == 0) {
            long long ms = strtoll(s, NULL, 10);
            json_object_set_new(o, "at_ms", ms > 0 ? json_integer(ms) : json_null());
            json_object_set_new(o, "at", mc_json_time(ms));
        } else if (strcmp(k, "edited") == 0) {
            json_object_set_new(o, k, json_boolean(strcmp(s, "1") == 0));
        } else {
            json_object_set_new(o, k, mc_json_str(s));
        }
    }
    return o;
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
    json_array_foreach(all, i, v)
    {
        if (json_object_get(map, rec_str(v, "dlq_id")) == NULL)
            json_object_set(map, rec_str(v, "dlq_id"), v);
    }
    json_decref(all);
    return map;
}

static int dlq_list(mc_ctx *c, long limit, const mc_out *out)
{
    static const char *const cols[] = {"ID", "AT", "CLASS", "KEY", "ORDER", "POSITION", "REASON"};
    json_t *recs = NULL, *done, *r, *docs;
    mc_table *t;
    mb_error e;
    size_t i;

    mb_error_clear(&e);
    if (mb_store_dlq_list(c->store, (size_t)limit, &recs, &e) != MB_OK)
        return mc_store_fail("reading DLQ records", &e);
    done = redrives_by_id(c);
    docs = json_array();
    json_array_foreach(recs, i, r)
    {
        json_t *d = json_object_get(done, rec_str(r, "id"));
        json_t *doc = rec_json(r);
        json_object_set_new(doc, "redriven", d ? rec_json(d) : json_null());
        json_array_append_new(docs, doc);
    }
    json_decref(done);
    json_decref(recs);
    if (out->fmt == MC_FMT_JSON || out->fmt == MC_FMT_YAML) {
        mc_out_doc(out, docs, stdout);
        json_decref(docs);
        return MC_EXIT_OK;
    }
    t = mc_table_new(cols, 7);
    json_array_foreach(docs, i, r)
    {
        json_t *d = json_object_get(r, "redriven");
        char pos[200], note[400];
        const char *cells[7];
        if (out->fmt == MC_FMT_NAME) {
            printf("%s\n", rec_str(r, "id"));
            continue;
        }
        snprintf(pos, sizeof(pos), "%s[%lld]@%lld", rec_str(r, "topic"),
                 (long long)json_integer_value(json_object_get(r, "partition")),
                 (long long)json_integer_value(json_object_get(r, "offset")));
        cells[0] = rec_str(r, "id");
        cells[1] = json_is_string(json_object_get(r, "at")) ? rec_str(r, "at") : "-";
        cells[2] = *rec_str(r, "class") ? rec_str(r, "class") : "-";
        cells[3] = *rec_str(r, "key") ? rec_str(r, "key") : "-";
        cells[4] = *rec_str(r, "order_id") ? rec_str(r, "order_id") : "-";
        cells[5] = pos;
        cells[6] = rec_str(r, "reason");
        mc_table_row(t, cells);
        if (json_is_object(d)) {
            snprintf(
                note, sizeof(note), "redriven by %s at %s%s -> %s[%lld]@%lld", rec_str(d, "by"),
                rec_str(d, "at"), json_is_true(json_object_get(d, "edited")) ? " (corrected)" : "",
                rec_str(d, "topic"), (long long)json_integer_value(json_object_get(d, "partition")),
                (long long)json_integer_value(json_object_get(d, "offset")));
            mc_table_note(t, note);
        }
    }
    if (out->fmt != MC_FMT_NAME) {
        if (json_array_size(docs) == 0 && !out->no_headers)
            printf("(the DLQ is empty)\n");
        else
            mc_table_print(t, stdout, out->no_headers);
    }
    mc_table_free(t);
    json_decref(docs);
    return MC_EXIT_OK;
}

static int fetch_original(mc_ctx *c, const json_t *rec, mc_kafka_msg *m)
{
    char err[600];

    if (mc_kafka_fetch(c, rec_str(rec, "topic"), (int)strtol(rec_str(rec, "partition"), NULL, 10),
                       strtoll(rec_str(rec, "offset"), NULL, 10), FETCH_TIMEOUT_MS, m, err,
                       sizeof(err)) != 0)
        return mc_fail(MC_EXIT_CONFIG,
                       "cannot read the message back: %s (to send a corrected "
                       "order anyway: --edit FILE)",
                       err);
    return MC_EXIT_OK;
}

static int dlq_show(mc_ctx *c, const char *id, const mc_out *out)
{
    int rc = MC_EXIT_OK;
    json_t *rec = find_record(c, id, &rc), *doc;
    mc_kafka_msg m = {0};
    char why[600] = "";
    json_t *v;
    const char *k;

    if (rec == NULL)
        return rc;
    if (out->fmt == MC_FMT_NAME) {
        printf("%s\n", id);
        json_decref(rec);
        return MC_EXIT_OK;
    }
    doc = rec_json(rec);
    if (mc_kafka_fetch(c, rec_str(rec, "topic"), (int)strtol(rec_str(rec, "partition"), NULL, 10),
                       strtoll(rec_str(rec, "offset"), NULL, 10), FETCH_TIMEOUT_MS, &m, why,
                       sizeof(why)) == 0) {
        json_object_set_new(doc, "message", json_stringn(m.value, m.len));
        json_object_set(doc, "headers", m.headers);
        json_object_set_new(doc, "message_unavailable", json_null());
    } else {
        json_object_set_new(doc, "message", json_null());
        json_object_set_new(doc, "headers", json_null());
        json_object_set_new(doc, "message_unavailable", json_string(why));
    }
    if (out->fmt == MC_FMT_JSON || out->fmt == MC_FMT_YAML) {
        mc_out_doc(out, doc, stdout);
    } else {
        json_object_foreach(doc, k, v)
        {
            char *s;
            if (strcmp(k, "message") == 0 || strcmp(k, "headers") == 0 || json_is_null(v))
                continue;
            s = json_is_string(v) ? NULL : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            printf("%-20s %s\n", k, s ? s : json_string_value(v));
            free(s);
        }
        if (m.value)
            printf("message (%zu bytes):\n%.*s\n", m.len, (int)m.len, m.value);
    }
    mc_kafka_msg_clear(&m);
    json_decref(doc);
    json_decref(rec);
    return rc;
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

/* One identity field: what the rejected message said (NULL or "" = unknown) against the
 * correction.  Appends a line to why when they differ. */
static void compare_field(const char *what, const char *was, const char *now, char *why, size_t len)
{
    size_t used = strlen(why);

    if (was == NULL || *was == '\0' || (now && strcmp(was, now) == 0) || used >= len)
        return;
    snprintf(why + used, len - used, "%s%s %s -> %s", used ? ", " : "", what, was,
             now ? now : "(none)");
}

/* A correction fixes an order; it must not make another one: the order id, account and
 * project billing sent stay.  0, or -1 with the changes in why.  The original's project is
 * read from its bytes (best effort: they did not pass the schema, but may be JSON). */
static int identity_kept(mc_ctx *c, const json_t *rec, const mb_order *o, char *why, size_t len)
{
    const char *key = rec_str(rec, "key"), *slash = strchr(key, '/');
    char account[200] = "";
    mc_kafka_msg m = {0};
    json_t *orig = NULL;

    why[0] = '\0';
    if (slash)
        snprintf(account, sizeof(account), "%.*s", (int)(slash - key), key);
    if (mc_kafka_fetch(c, rec_str(rec, "topic"), (int)strtol(rec_str(rec, "partition"), NULL, 10),
                       strtoll(rec_str(rec, "offset"), NULL, 10), FETCH_TIMEOUT_MS, &m, why,
                       len) == 0)
        orig = json_loadb(m.value, m.len, 0, NULL);
    why[0] = '\0';
    compare_field("order id", rec_str(rec, "order_id"), o->order_id, why, len);
    compare_field("account", account, o->account_id, why, len);
    compare_field("project",
                  json_string_value(json_object_get(json_object_get(orig, "data"), "project_id")),
                  o->project_id, why, len);
    json_decref(orig);
    mc_kafka_msg_clear(&m);
    return why[0] ? -1 : 0;
}

static int dlq_redrive(mc_ctx *c, const char *id, const char *edit, int force)
{
    int rc = MC_EXIT_OK, partition = -1, forgotten = 0;
    long long offset = -1;
    json_t *rec = find_record(c, id, &rc);
    mc_kafka_msg m = {0};
    char *value = NULL, why[600], key[200], line[400], t[32];
    const char *hdrs[10];
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
    if (o && edit && !force && identity_kept(c, rec, o, why, sizeof(why)) != 0) {
        rc = mc_fail(MC_EXIT_FAILED,
                     "redrive refused, nothing sent: the correction changes %s; "
                     "a redrive corrects the order billing sent, it does not make another one "
                     "(billing would not recognise its status events); --force sends it anyway",
                     why);
        goto out;
    }
    if (o)
        mb_order_key(o, key, sizeof(key));
    else
        snprintf(key, sizeof(key), "%s", m.key ? m.key : rec_str(rec, "key"));
    snprintf(line, sizeof(line), "%s DLQ record %s redriven%s by %s",
             mc_fmt_time(mc_now_ms(), t, sizeof(t)), id, edit ? " (corrected order)" : "", c->who);
    if (o) {
        mb_error_clear(&e);
        if (mb_store_forget_rejected(c->store, o->order_id, line, &forgotten, &e) != MB_OK) {
            rc = e.status == MB_PERM ? mc_fail(MC_EXIT_FAILED,
                                               "redrive refused, nothing sent: %s (the order "
                                               "was accepted since; see meshctl show %s)",
                                               e.msg, o->order_id)
                                     : mc_store_fail("redrive", &e);
            goto out;
        }
    }
    /* what is sent is a structured-mode CloudEvent (it passed mb_order_parse): say so, or
     * intake's Kafka binding takes it for no CloudEvent at all */
    hdrs[nh * 2] = "content-type";
    hdrs[nh * 2 + 1] = "application/cloudevents+json";
    nh++;
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
    if (mc_kafka_publish(c, mb_conf_str(c->conf, "MESHBUY_ORDERS_TOPIC"), key, value, len, hdrs, nh,
                         PUBLISH_TIMEOUT_MS, &partition, &offset, why, sizeof(why)) != 0) {
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
    printf("redriven %s as order %s (key %s) to %s [%d] @%lld; follow with: meshctl watch %s\n", id,
           o ? o->order_id : "?", key, rd.topic, partition, offset, o ? o->order_id : "--all");
out:
    mb_order_free(o);
    free(value);
    mc_kafka_msg_clear(&m);
    json_decref(rec);
    return rc;
}

/* dlq's options, for every sub-command (getopt_long; also the completion's). */
const struct option mc_dlq_opts[] = {
    {"limit", required_argument, NULL, 'l'}, MC_OUT_OPTIONS,
    {"edit", required_argument, NULL, 'e'},  {"force", no_argument, NULL, 'F'},
    {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
};

int mc_cmd_dlq(mc_ctx *c, int argc, char **argv)
{
    long limit = 50;
    mc_out out = {MC_FMT_TABLE, 0};
    int force = 0, opt, taken;
    const char *edit = NULL, *sub;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "ho:", mc_dlq_opts, NULL)) != -1) {
        taken = mc_out_opt(&out, opt, optarg);
        if (taken < 0)
            return MC_EXIT_USAGE;
        if (taken)
            continue;
        switch (opt) {
        case 'l':
            if (mc_parse_long(optarg, 1, DLQ_SCAN_MAX, &limit) != 0)
                return mc_fail(MC_EXIT_USAGE, "--limit %s: want 1..%d", optarg, DLQ_SCAN_MAX);
            break;
        case 'e': edit = optarg; break;
        case 'F': force = 1; break;
        case 'h': dlq_usage(stdout); return MC_EXIT_OK;
        default: dlq_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return mc_fail(MC_EXIT_USAGE, "dlq: want list, show ID or redrive ID (see meshctl dlq "
                                      "--help)");
    sub = argv[optind];
    if (strcmp(sub, "list") == 0 && optind + 1 == argc)
        return mc_store(c) ? dlq_list(c, limit, &out) : MC_EXIT_CONFIG;
    if (strcmp(sub, "show") == 0 && optind + 2 == argc)
        return mc_store(c) ? dlq_show(c, argv[optind + 1], &out) : MC_EXIT_CONFIG;
    if (strcmp(sub, "redrive") == 0 && optind + 2 == argc)
        return mc_store(c) ? dlq_redrive(c, argv[optind + 1], edit, force) : MC_EXIT_CONFIG;
    return mc_fail(MC_EXIT_USAGE, "dlq: want list, show ID or redrive ID (see meshctl dlq "
                                  "--help)");
}
