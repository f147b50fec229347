/* mc_kafka.h: the Kafka side of meshctl: read status events back, fetch one message at a
 * position, publish one message, tail a topic from its end. */
#ifndef MC_KAFKA_H
#define MC_KAFKA_H

#include <stddef.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "mc.h"

/* Every status event of order_id (key is its mesh key) on the status topic, oldest first,
 * read from the beginning of every partition to the end it had when called, within
 * timeout_ms.  New JSON array of the events (json_decref), or NULL with why. */
json_t *mc_kafka_status_events(mc_ctx *c, const char *key, const char *order_id, int timeout_ms,
                               char *why, size_t whylen);

/* One fetched message: everything owned by the struct (mc_kafka_msg_clear). */
typedef struct mc_kafka_msg {
    char *value;
    size_t len;
    char *key;       /* NULL when the message had none */
    json_t *headers; /* {name: value} of the string headers */
} mc_kafka_msg;
void mc_kafka_msg_clear(mc_kafka_msg *m);

/* Reads the message at topic/partition/offset (assign + seek, no consumer group).
 * 0, or -1 with the reason in err (gone: retention or a wrong position). */
int mc_kafka_fetch(mc_ctx *c, const char *topic, int partition, long long offset, int timeout_ms,
                   mc_kafka_msg *out, char *err, size_t errlen);

/* Publishes one message (idempotent producer, acks=all) and waits for its delivery report.
 * headers: n pairs name, value (borrowed).  *partition and *offset get where it landed.
 * 0, or -1 with the reason in err. */
int mc_kafka_publish(mc_ctx *c, const char *topic, const char *key, const void *value, size_t len,
                     const char *const *headers, size_t n_headers, int timeout_ms, int *partition,
                     long long *offset, char *err, size_t errlen);

/* A consumer assigned to every partition of topic at its current end (no group join:
 * nothing published after this returns is missed).  New (rd_kafka_consumer_close +
 * rd_kafka_destroy), or NULL with err. */
rd_kafka_t *mc_kafka_tail(mc_ctx *c, const char *topic, char *err, size_t errlen);

#endif
