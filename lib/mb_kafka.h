/* mb_kafka.h: librdkafka configuration from the environment, topic names, and small helpers. */
#ifndef MB_KAFKA_H
#define MB_KAFKA_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

typedef enum { MB_TOPIC_ORDERS, MB_TOPIC_STATUS, MB_TOPIC_DLQ } mb_kafka_topic_id;

/* New conf from the environment (caller frees with rd_kafka_conf_destroy, or hands it to
 * rd_kafka_new, which takes it over on success):
 *   KAFKA_BROKERS        -> bootstrap.servers
 *   KAFKA_<X>            -> <x> lowercased, '_' -> '.'   (KAFKA_SECURITY_PROTOCOL -> security.protocol;
 *                           a name librdkafka spells with '_' keeps them: KAFKA_LOG_LEVEL -> log_level)
 *   KAFKA_<X>_FILE       -> <x> with the file's content, one trailing newline cut (secrets:
 *                           KAFKA_SASL_PASSWORD_FILE -> sasl.password); setting both fails.
 * Kubernetes service-link variables (a Service named "kafka" or "kafka-x" injects KAFKA_PORT,
 * KAFKA_PORT_9092_TCP[_PROTO|_PORT|_ADDR], KAFKA_SERVICE_HOST, KAFKA_SERVICE_PORT[_NAME],
 * KAFKA_X_...) are skipped: see mb_kafka_is_service_link.
 * client.id is set to client_id first (KAFKA_CLIENT_ID overrides).  librdkafka's logs go to
 * mb_log, module "kafka".  Keys are applied in sorted order, so the first error is stable.
 * Returns NULL with "KAFKA_X: reason" in err on an unknown key, a bad value or an unreadable
 * file.  Values of secret keys never appear in err or in logs. */
rd_kafka_conf_t *mb_kafka_conf_new(const char *client_id, char *err, size_t errlen);

/* 1 if the environment entry name (a "NAME=value" entry or a bare NAME) with value (may be
 * NULL) has the shape of a Kubernetes service-link variable of a Service whose name starts
 * with "kafka": KAFKA[_X]_SERVICE_HOST, KAFKA[_X]_SERVICE_PORT[_NAME],
 * KAFKA[_X]_PORT=tcp://..., KAFKA[_X]_PORT_<n>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR].  No
 * librdkafka property maps to these names. */
int mb_kafka_is_service_link(const char *name, const char *value);

/* New conf for the worker's producer (caller frees, or rd_kafka_new takes it over): the
 * environment's settings as mb_kafka_conf_new, then enable.idempotence=true, acks=all and
 * enable.gapless.guarantee=true (not overridable: the relay's order rests on them), and
 * message.timeout.ms = default_timeout_ms unless KAFKA_MESSAGE_TIMEOUT_MS or
 * KAFKA_DELIVERY_TIMEOUT_MS (or their _FILE) set it.  A message.timeout.ms of 0 (never) or
 * >= max_timeout_ms is refused (NULL, "KAFKA_MESSAGE_TIMEOUT_MS: ..." in err): every
 * message must have its delivery report before a lease of max_timeout_ms can pass to
 * another worker. */
rd_kafka_conf_t *mb_kafka_producer_conf_new(const char *client_id, long default_timeout_ms,
                                            long max_timeout_ms, char *err, size_t errlen);

/* Topic name from MESHBUY_ORDERS_TOPIC / MESHBUY_STATUS_TOPIC / MESHBUY_DLQ_TOPIC, or the
 * default (mesh.orders, mesh.status, mesh.orders.dlq) when unset or empty.  Borrowed: a static
 * string or the environment's, valid until that variable changes. */
const char *mb_kafka_topic(mb_kafka_topic_id id);

/* Names a topic to a producer before its first message.  librdkafka looks up the leaders of
 * a topic first met in a produce call only at its once-a-second topic scan (its issue 3202),
 * so a connected producer's first message to a new topic waited up to a second; a topic
 * named here is looked up at once and stays known to rk. */
void mb_kafka_know_topic(rd_kafka_t *rk, const char *topic);

/* Routes librdkafka's log lines of a conf to mb_log (module "kafka"); mb_kafka_conf_new does
 * this already.  For programs that build their own conf (devkafka). */
void mb_kafka_conf_set_logger(rd_kafka_conf_t *conf);

/* 1 if a librdkafka property name holds a secret (passwords, keys, tokens): its value must
 * never be printed. */
int mb_kafka_key_is_secret(const char *key);

/* 1 if a produce error (from rd_kafka_producev or a delivery report) refuses this message
 * for good: sending the same bytes to the same topic again cannot succeed (too large, topic
 * unknown or invalid, not authorized, invalid record).  0 for the transient rest (timeouts,
 * full queue, leader moves, purges, a producer's fatal error: a new producer may succeed). */
int mb_kafka_err_is_permanent(rd_kafka_resp_err_t err);

/* Flushes rk for at most timeout_ms.  Returns the number of messages still queued or in
 * flight afterwards (0 = all delivered or failed with their delivery report); logs a
 * warning when some are left. */
int mb_kafka_flush(rd_kafka_t *rk, int timeout_ms);

#endif
