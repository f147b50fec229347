/* mb_kafka.c: librdkafka configuration from the environment, topic names, flush helper. */
#include "mb_kafka.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_log.h"

extern char **environ;

#define ENV_PREFIX  "KAFKA_"
#define FILE_SUFFIX "_FILE"
/* Certificates bundles are the largest legitimate values. */
#define MAX_FILE_VALUE (1024 * 1024)

static const struct {
    const char *env;
    const char *def;
} topics[] = {
    [MB_TOPIC_ORDERS] = {"MESHBUY_ORDERS_TOPIC", "mesh.orders"},
    [MB_TOPIC_STATUS] = {"MESHBUY_STATUS_TOPIC", "mesh.status"},
    [MB_TOPIC_DLQ] = {"MESHBUY_DLQ_TOPIC", "mesh.orders.dlq"},
};

const char *mb_kafka_topic(mb_kafka_topic_id id)
{
    const char *v;

    if ((int)id < 0 || (size_t)id >= sizeof(topics) / sizeof(topics[0]))
        return NULL;
    v = getenv(topics[id].env);
    if (v == NULL || *v == '\0')
        return topics[id].def;
    return v;
}

int mb_kafka_key_is_secret(const char *key)
{
    return strstr(key, "password") != NULL || strstr(key, "secret") != NULL ||
           strncmp(key, "ssl.key", 7) == 0 || strcmp(key, "ssl_key") == 0 ||
           strcmp(key, "sasl.oauthbearer.config") == 0;
}

/* librdkafka calls this from its own threads; mb_log_emit writes each line with one
 * write(2) from stack buffers, so that is safe. syslog levels: 0..3 error, 4 warning,
 * 5..6 notice/info, 7 debug. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    mb_log_level lvl = MB_LOG_DEBUG;

    if (level <= 3)
        lvl = MB_LOG_ERROR;
    else if (level == 4)
        lvl = MB_LOG_WARN;
    else if (level <= 6)
        lvl = MB_LOG_INFO;
    mb_log(lvl, "kafka", NULL, "%s: %s: %s", rk ? rd_kafka_name(rk) : "-", fac, buf);
}

void mb_kafka_conf_set_logger(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_log_cb(conf, log_cb);
}

/* One KAFKA_* variable turned into a librdkafka setting. */
typedef struct kv {
    char env[128];   /* the variable as written (KAFKA_SASL_PASSWORD_FILE) */
    char key[128];   /* sasl.password */
    const char *val; /* borrowed from environ; for _FILE the path */
    int from_file;
} kv;

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const kv *)a)->env, ((const kv *)b)->env);
}

/* KAFKA_SSL_CA_LOCATION -> ssl.ca.location; KAFKA_BROKERS -> bootstrap.servers.
 * name is the part after the prefix, len its length. Returns -1 if it does not fit. */
static int env_to_key(const char *name, size_t len, char *key, size_t cap)
{
    if (len == 7 && strncmp(name, "BROKERS", 7) == 0) {
        snprintf(key, cap, "%s", "bootstrap.servers");
        return 0;
    }
    if (len == 0 || len >= cap)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (c == '_')
            c = '.';
        else if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        key[i] = c;
    }
    key[len] = '\0';
    return 0;
}

/* Reads a small file into a new string (free), one trailing newline (\n or \r\n) cut.
 * NULL with errno-based text in err. */
static char *read_value_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = malloc(MAX_FILE_VALUE + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto err;
    }
    n = fread(buf, 1, MAX_FILE_VALUE + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "cannot read %s", path);
        goto err;
    }
    if (n > MAX_FILE_VALUE) {
        snprintf(err, errlen, "%s is larger than %d bytes", path, MAX_FILE_VALUE);
        goto err;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    fclose(f);
    return buf;
err:
    free(buf);
    fclose(f);
    return NULL;
}

/* 1 if s[0..len) is "TCP", "UDP" or "SCTP". */
static int is_proto(const char *s, size_t len)
{
    return (len == 3 && (strncmp(s, "TCP", 3) == 0 || strncmp(s, "UDP", 3) == 0)) ||
           (len == 4 && strncmp(s, "SCTP", 4) == 0);
}

/* "PORT_<digits>_<PROTO>" optionally followed by "_PROTO", "_PORT" or "_ADDR", ending at end. */
static int is_port_proto(const char *s, const char *end)
{
    const char *p = s + 5, *q;

    if (end - s < 5 || strncmp(s, "PORT_", 5) != 0 || p >= end || *p < '0' || *p > '9')
        return 0;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (p >= end || *p != '_')
        return 0;
    q = ++p;
    while (q < end && *q != '_')
        q++;
    if (!is_proto(p, (size_t)(q - p)))
        return 0;
    if (q == end)
        return 1;
    return (end - q == 6 && (strncmp(q, "_PROTO", 6) == 0)) ||
           (end - q == 5 && (strncmp(q, "_PORT", 5) == 0 || strncmp(q, "_ADDR", 5) == 0));
}

int mb_kafka_is_service_link(const char *name, const char *value)
{
    const char *end, *p;

    if (strncmp(name, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
        return 0;
    end = strchr(name, '=');
    if (end == NULL)
        end = name + strlen(name);
    /* A Service "kafka-x" prefixes its variables with KAFKA_X_: look at every '_' boundary
     * (the name itself starts one: KAFKA_ ...). */
    for (p = name + strlen(ENV_PREFIX); p <= end; p++) {
        size_t rest = (size_t)(end - p);
        if (p != name + strlen(ENV_PREFIX) && p[-1] != '_')
            continue;
        if (rest == 12 && strncmp(p, "SERVICE_HOST", 12) == 0)
            return 1;
        if (rest >= 12 && strncmp(p, "SERVICE_PORT", 12) == 0 && (rest == 12 || p[12] == '_'))
            return 1;
        /* KAFKA_PORT=tcp://10.0.0.1:9092 */
        if (rest == 4 && strncmp(p, "PORT", 4) == 0 && value &&
            (strncmp(value, "tcp://", 6) == 0 || strncmp(value, "udp://", 6) == 0 ||
             strncmp(value, "sctp://", 7) == 0))
            return 1;
        if (is_port_proto(p, end))
            return 1;
    }
    return 0;
}

/* Says once per process that service-link variables are skipped (each conf built would
 * otherwise repeat it). */
static void note_service_link(const char *name, const char *eq)
{
    static int said;

    if (said)
        return;
    said = 1;
    mb_info("kafka",
            "%.*s and other Kubernetes service-link variables are not librdkafka "
            "settings: ignored",
            (int)(eq - name), name);
}

/* Collects the KAFKA_* variables, sorted. Returns the count, or -1 with err set. */
static int collect(kv **out, char *err, size_t errlen)
{
    size_t n = 0, cap = 0;
    kv *v = NULL;

    for (char **e = environ; e && *e; e++) {
        const char *name, *eq;
        size_t len;
        kv *x;

        if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
            continue;
        eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        if (mb_kafka_is_service_link(*e, eq + 1)) {
            note_service_link(*e, eq);
            continue;
        }
        if (n == cap) {
            kv *nv;
            cap = cap ? cap * 2 : 16;
            nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL) {
                snprintf(err, errlen, "KAFKA_*: out of memory");
                free(v);
                return -1;
            }
            v = nv;
        }
        x = &v[n];
        memset(x, 0, sizeof(*x));
        name = *e + strlen(ENV_PREFIX);
        len = (size_t)(eq - name);
        if ((size_t)(eq - *e) >= sizeof(x->env)) {
            snprintf(err, errlen, "%.*s: name too long", (int)(eq - *e), *e);
            free(v);
            return -1;
        }
        memcpy(x->env, *e, (size_t)(eq - *e));
        x->val = eq + 1;
        if (len > strlen(FILE_SUFFIX) &&
            strncmp(name + len - strlen(FILE_SUFFIX), FILE_SUFFIX, strlen(FILE_SUFFIX)) == 0) {
            x->from_file = 1;
            len -= strlen(FILE_SUFFIX);
        }
        if (env_to_key(name, len, x->key, sizeof(x->key)) != 0) {
            snprintf(err, errlen, "%s: not a configuration property name", x->env);
            free(v);
            return -1;
        }
        n++;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), kv_cmp);
    *out = v;
    return (int)n;
}

/* Refuses KAFKA_X together with KAFKA_X_FILE: which one wins would be a guess. */
static int check_duplicates(const kv *v, int n, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            if (strcmp(v[i].key, v[j].key) == 0) {
                snprintf(err, errlen, "%s: both %s and %s set", v[i].env, v[i].env, v[j].env);
                return -1;
            }
        }
    }
    return 0;
}

static int apply(rd_kafka_conf_t *conf, const kv *x, char *err, size_t errlen)
{
    char rderr[512];
    char *owned = NULL;
    const char *val = x->val;
    rd_kafka_conf_res_t res;

    if (x->from_file) {
        char ferr[384];
        owned = read_value_file(x->val, ferr, sizeof(ferr));
        if (owned == NULL) {
            snprintf(err, errlen, "%s: %s", x->env, ferr);
            return -1;
        }
        val = owned;
    }
    res = rd_kafka_conf_set(conf, x->key, val, rderr, sizeof(rderr));
    if (res == RD_KAFKA_CONF_UNKNOWN) {
        /* A few properties spell words with '_' (log_level): KAFKA_LOG_LEVEL finds them. */
        char alt[sizeof(x->key)];
        snprintf(alt, sizeof(alt), "%s", x->key);
        for (char *p = alt; *p; p++)
            *p = *p == '.' ? '_' : *p;
        res = rd_kafka_conf_set(conf, alt, val, rderr, sizeof(rderr));
    }
    free(owned);
    if (res == RD_KAFKA_CONF_OK)
        return 0;
    if (res == RD_KAFKA_CONF_UNKNOWN) {
        snprintf(err, errlen, "%s: unknown librdkafka property \"%s\"", x->env, x->key);
        return -1;
    }
    /* librdkafka's text may quote the value: keep it only where the value is no secret. */
    if (x->from_file || mb_kafka_key_is_secret(x->key))
        snprintf(err, errlen, "%s: invalid value for \"%s\" (value not shown)", x->env, x->key);
    else
        snprintf(err, errlen, "%s: %s", x->env, rderr);
    return -1;
}

rd_kafka_conf_t *mb_kafka_conf_new(const char *client_id, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char rderr[256];
    kv *v = NULL;
    int n;

    if (client_id && *client_id &&
        rd_kafka_conf_set(conf, "client.id", client_id, rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "client.id: %s", rderr);
        goto err;
    }
    mb_kafka_conf_set_logger(conf);
    n = collect(&v, err, errlen);
    if (n < 0)
        goto err;
    if (check_duplicates(v, n, err, errlen) != 0)
        goto err;
    for (int i = 0; i < n; i++) {
        if (apply(conf, &v[i], err, errlen) != 0)
            goto err;
    }
    free(v);
    return conf;
err:
    free(v);
    rd_kafka_conf_destroy(conf);
    return NULL;
}

static int env_set(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0';
}

rd_kafka_conf_t *mb_kafka_producer_conf_new(const char *client_id, long default_timeout_ms,
                                            long max_timeout_ms, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = mb_kafka_conf_new(client_id, err, errlen);
    char val[32], rderr[256];
    size_t len = sizeof(val);
    long timeout;

    if (conf == NULL)
        return NULL;
    if (!env_set("KAFKA_MESSAGE_TIMEOUT_MS") && !env_set("KAFKA_MESSAGE_TIMEOUT_MS_FILE") &&
        !env_set("KAFKA_DELIVERY_TIMEOUT_MS") && !env_set("KAFKA_DELIVERY_TIMEOUT_MS_FILE")) {
        snprintf(val, sizeof(val), "%ld", default_timeout_ms);
        if (rd_kafka_conf_set(conf, "message.timeout.ms", val, rderr, sizeof(rderr)) !=
            RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "message.timeout.ms: %s", rderr);
            goto err;
        }
    }
    if (rd_kafka_conf_set(conf, "enable.idempotence", "true", rderr, sizeof(rderr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "acks", "all", rderr, sizeof(rderr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.gapless.guarantee", "true", rderr, sizeof(rderr)) !=
            RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "producer: %s", rderr);
        goto err;
    }
    len = sizeof(val);
    if (rd_kafka_conf_get(conf, "message.timeout.ms", val, &len) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "message.timeout.ms: cannot read it back");
        goto err;
    }
    timeout = strtol(val, NULL, 10);
    if (timeout <= 0 || timeout >= max_timeout_ms) {
        snprintf(err, errlen,
                 "KAFKA_MESSAGE_TIMEOUT_MS: message.timeout.ms %s must be between 1 and %ld "
                 "(below the relay lease, less a margin): a status event must fail before "
                 "its shard can pass to another worker",
                 val, max_timeout_ms - 1);
        goto err;
    }
    return conf;
err:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int mb_kafka_err_is_permanent(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE: /* local check or the broker's */
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC: /* the cluster says it does not exist */
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION: /* invalid topic name */
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION: return 1;
    default: return 0;
    }
}

void mb_kafka_know_topic(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);

    /* Our handle only: librdkafka keeps the topic and its metadata for rk's life. */
    if (rkt)
        rd_kafka_topic_destroy(rkt);
}

int mb_kafka_flush(rd_kafka_t *rk, int timeout_ms)
{
    int left;

    rd_kafka_flush(rk, timeout_ms);
    left = rd_kafka_outq_len(rk);
    if (left > 0)
        mb_warn("kafka", "%s: %d messages still queued after %d ms flush", rd_kafka_name(rk), left,
                timeout_ms);
    return left;
}
