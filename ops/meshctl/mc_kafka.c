/* mc_kafka.c: the Kafka side of meshctl (see mc_kafka.h).  Consumers never join a group:
 * they assign partitions explicitly, so meshctl never moves a worker's partitions and
 * never commits offsets. */
#include "mc_kafka.h"

#include "mb_buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_event.h"
#include "mb_json.h"
#include "mb_kafka.h"

#define META_TIMEOUT_MS 5000
#define MAX_PARTITIONS  1024

void mc_kafka_msg_clear(mc_kafka_msg *m)
{
    if (m == NULL)
        return;
    free(m->value);
    free(m->key);
    json_decref(m->headers);
    memset(m, 0, sizeof(*m));
}

/* A consumer that will only ever be assigned partitions.  group.id is required by
 * librdkafka even then; a random one keeps us out of the workers' group. */
static rd_kafka_t *consumer_new(mc_ctx *c, char *err, size_t errlen)
{
    char e[512], group[64];
    unsigned char rnd[8];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;

    if (mb_conf_str(c->conf, "KAFKA_BROKERS")[0] == '\0') {
        snprintf(err, errlen, "KAFKA_BROKERS is not set");
        return NULL;
    }
    conf = mb_kafka_conf_new("meshctl", e, sizeof(e));
    if (conf == NULL) {
        snprintf(err, errlen, "%s", e);
        return NULL;
    }
    if (mb_json_random(rnd, sizeof(rnd)) != 0)
        memset(rnd, 7, sizeof(rnd));
    snprintf(group, sizeof(group), "meshctl-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    if (rd_kafka_conf_set(conf, "group.id", group, e, sizeof(e)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof(e)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", e, sizeof(e)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "consumer settings: %s", e);
        return NULL;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "Kafka consumer: %s", e);
        return NULL;
    }
    return rk;
}

static void consumer_free(rd_kafka_t *rk)
{
    if (rk == NULL)
        return;
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

/* Partition count of topic.  >0, or -1 with err. */
static int partitions_of(rd_kafka_t *rk, const char *topic, char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e;
    int n = -1;

    if (t == NULL) {
        snprintf(err, errlen, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    e = rd_kafka_metadata(rk, 0, t, &md, META_TIMEOUT_MS);
    rd_kafka_topic_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "metadata of %s: %s (is KAFKA_BROKERS right?)", topic,
                 rd_kafka_err2str(e));
        return -1;
    }
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        n = md->topics[0].partition_cnt;
    else
        snprintf(
            err, errlen, "topic %s: %s", topic,
            rd_kafka_err2str(md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
    rd_kafka_metadata_destroy(md);
    if (n > MAX_PARTITIONS)
        n = MAX_PARTITIONS;
    return n;
}

/* Assigns every partition of topic: from its start (from_end 0: only partitions holding
 * data, their ends in *ends) or from its end.  Returns how many partitions are to be read,
 * or -1 with err. */
static int assign_all(rd_kafka_t *rk, const char *topic, int from_end, int64_t *ends, char *err,
                      size_t errlen)
{
    int n = partitions_of(rk, topic, err, errlen);
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t e;
    int waiting = 0;

    if (n < 0)
        return -1;
    l = rd_kafka_topic_partition_list_new(n);
    for (int p = 0; p < n; p++) {
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, META_TIMEOUT_MS);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "offsets of %s [%d]: %s", topic, p, rd_kafka_err2str(e));
            rd_kafka_topic_partition_list_destroy(l);
            return -1;
        }
        if (ends)
            ends[p] = hi;
        if (!from_end && hi <= lo)
            continue;
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = from_end ? hi : lo;
        waiting++;
    }
    e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "assign %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    return waiting;
}

json_t *mc_kafka_status_events(mc_ctx *c, const char *key, const char *order_id, int timeout_ms,
                               char *why, size_t whylen)
{
    const char *topic = mb_conf_str(c->conf, "MESHBUY_STATUS_TOPIC");
    rd_kafka_t *rk = consumer_new(c, why, whylen);
    int64_t ends[MAX_PARTITIONS];
    long long deadline = mc_now_ms() + timeout_ms;
    json_t *out;
    int waiting;

    if (rk == NULL)
        return NULL;
    waiting = assign_all(rk, topic, 0, ends, why, whylen);
    if (waiting < 0) {
        consumer_free(rk);
        return NULL;
    }
    out = json_array();
    while (waiting > 0 && mc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        json_t *ev;
        char e[256];
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            waiting--;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->partition >= 0 && m->partition < MAX_PARTITIONS &&
            m->offset + 1 == ends[m->partition])
            waiting--;
        if (m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0) {
            const char *oid;
            ev = mb_event_parse(m->payload, m->len, e, sizeof(e));
            oid = json_string_value(json_object_get(json_object_get(ev, "data"), "order_id"));
            if (oid && strcmp(oid, order_id) == 0)
                json_array_append(out, ev);
            json_decref(ev);
        }
        rd_kafka_message_destroy(m);
    }
    if (waiting > 0) {
        snprintf(why, whylen, "status topic not read to its end within %d ms", timeout_ms);
        json_decref(out);
        out = NULL;
    }
    consumer_free(rk);
    return out;
}

static json_t *headers_json(const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    json_t *o = json_object();
    const char *name;
    const void *v;
    size_t n;

    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR || h == NULL)
        return o;
    for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR;
         i++)
        json_object_set_new(o, name, v ? json_stringn(v, n) : json_null());
    return o;
}

int mc_kafka_fetch(mc_ctx *c, const char *topic, int partition, long long offset, int timeout_ms,
                   mc_kafka_msg *out, char *err, size_t errlen)
{
    rd_kafka_t *rk = consumer_new(c, err, errlen);
    rd_kafka_topic_partition_list_t *l;
    long long deadline = mc_now_ms() + timeout_ms;
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (rk == NULL)
        return -1;
    l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    if (rd_kafka_assign(rk, l) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "assign %s [%d]", topic, partition);
        goto out;
    }
    snprintf(err, errlen, "%s [%d] @%lld: no message within %d ms", topic, partition, offset,
             timeout_ms);
    while (mc_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                snprintf(err, errlen, "%s [%d] @%lld: %s", topic, partition, offset,
                         rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                break;
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->offset != offset) {
            snprintf(err, errlen, "%s [%d] @%lld: gone (retention); the next message is @%lld",
                     topic, partition, offset, (long long)m->offset);
            rd_kafka_message_destroy(m);
            break;
        }
        out->value = malloc(m->len + 1);
        if (out->value) {
            memcpy(out->value, m->payload, m->len);
            out->value[m->len] = '\0';
            out->len = m->len;
            out->key = m->key ? mb_memdup_str(m->key, m->key_len) : NULL;
            out->headers = headers_json(m);
            rc = 0;
        }
        rd_kafka_message_destroy(m);
        break;
    }
out:
    rd_kafka_topic_partition_list_destroy(l);
    consumer_free(rk);
    return rc;
}

typedef struct delivery {
    int done;
    rd_kafka_resp_err_t err;
    int partition;
    long long offset;
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    delivery *d = m->_private;

    (void)rk;
    (void)opaque;
    if (d == NULL)
        return;
    d->done = 1;
    d->err = m->err;
    d->partition = m->partition;
    d->offset = m->offset;
}

int mc_kafka_publish(mc_ctx *c, const char *topic, const char *key, const void *value, size_t len,
                     const char *const *headers, size_t n_headers, int timeout_ms, int *partition,
                     long long *offset, char *err, size_t errlen)
{
    char e[512];
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    rd_kafka_headers_t *h;
    rd_kafka_resp_err_t pe;
    delivery d = {0, RD_KAFKA_RESP_ERR_NO_ERROR, -1, -1};
    long long deadline = mc_now_ms() + timeout_ms;

    if (mb_conf_str(c->conf, "KAFKA_BROKERS")[0] == '\0') {
        snprintf(err, errlen, "KAFKA_BROKERS is not set");
        return -1;
    }
    conf = mb_kafka_conf_new("meshctl", e, sizeof(e));
    if (conf == NULL) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", e, sizeof(e)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "producer settings: %s", e);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "Kafka producer: %s", e);
        return -1;
    }
    h = rd_kafka_headers_new(n_headers ? n_headers : 1);
    for (size_t i = 0; i < n_headers; i++)
        rd_kafka_header_add(h, headers[2 * i], -1, headers[2 * i + 1], -1);
    pe = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                           RD_KAFKA_V_VALUE((void *)value, len),
                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                           RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
    if (pe != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h);
        snprintf(err, errlen, "produce to %s: %s", topic, rd_kafka_err2str(pe));
        rd_kafka_destroy(rk);
        return -1;
    }
    while (!d.done && mc_now_ms() < deadline)
        rd_kafka_poll(rk, 100);
    if (!d.done)
        rd_kafka_flush(rk, 1000);
    rd_kafka_destroy(rk);
    if (!d.done) {
        snprintf(err, errlen,
                 "no delivery report from %s within %d ms (it may still arrive: "
                 "check before sending again)",
                 topic, timeout_ms);
        return -1;
    }
    if (d.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "delivery to %s failed: %s", topic, rd_kafka_err2str(d.err));
        return -1;
    }
    *partition = d.partition;
    *offset = d.offset;
    return 0;
}

rd_kafka_t *mc_kafka_tail(mc_ctx *c, const char *topic, char *err, size_t errlen)
{
    rd_kafka_t *rk = consumer_new(c, err, errlen);

    if (rk == NULL)
        return NULL;
    if (assign_all(rk, topic, 1, NULL, err, errlen) < 0) {
        consumer_free(rk);
        return NULL;
    }
    return rk;
}
