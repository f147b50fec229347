/* mb_order.h: the order contract: strict parsing of mesh.orders messages (buy, cancel, delete). */
#ifndef MB_ORDER_H
#define MB_ORDER_H

#include <jansson.h>
#include <stddef.h>

#include "mb_json.h"

/* A message larger than this is refused before any parsing. */
#define MB_ORDER_MAX_BYTES 65536
/* Bounds from schemas/order-*.schema.json, plus the terminating NUL. */
#define MB_ORDER_ID_MAX         64
#define MB_MESH_NAME_MAX        64
#define MB_TRACEPARENT_LEN      55
#define MB_ORDER_ATTR_NAME_MAX  20 /* CloudEvents attribute names: [a-z0-9]{1,20} */
#define MB_ORDER_MAX_NODES      16
#define MB_ORDER_MAX_NAMESPACES 64

#define MB_TYPE_ORDER_BUY    "com.meshbuy.order.buy.v1"
#define MB_TYPE_ORDER_CANCEL "com.meshbuy.order.cancel.v1"
#define MB_TYPE_ORDER_DELETE "com.meshbuy.order.delete.v1"

typedef enum mb_order_kind {
    MB_ORDER_UNKNOWN = 0,
    MB_ORDER_BUY = 1,
    MB_ORDER_CANCEL = 2,
    MB_ORDER_DELETE = 3,
} mb_order_kind;

/* A parsed, valid order.  Every string is owned by the order (freed by
 * mb_order_free); fields that do not apply to the kind, or optional
 * attributes that were absent, are NULL (arrays: NULL and 0). */
typedef struct mb_order {
    mb_order_kind kind;
    /* CloudEvents envelope */
    char *event_id;
    char *source;
    char *time;        /* optional, RFC 3339 as received */
    char *subject;     /* optional */
    char *traceparent; /* optional, W3C, validated */
    char *tracestate;  /* optional */
    /* data: every kind */
    char *order_id;
    char *account_id;
    char *mesh_name; /* buy, delete: data.mesh.name; cancel: data.mesh_name */
    /* data: buy and delete */
    char *project_id;
    char *region;
    /* data: buy only (a delete saga fills cluster_id, nodes and namespaces from the create
     * it undoes, mb_saga_def.resolve; to_json leaves them out of a delete) */
    char *edition;       /* "basic" */
    char *istio_version; /* "1.8", "1.13", "1.15" or "1.18" */
    char *cluster_id;
    char **nodes; /* control_plane_nodes, 1..16, unique */
    size_t n_nodes;
    char **namespaces; /* sidecar.namespaces, 0..64, unique (absent sidecar: none) */
    size_t n_namespaces;
    int restart_existing; /* sidecar.restart_existing (absent: 0); delete: data.sidecar */
    /* data: cancel only */
    char *reason; /* optional */
} mb_order;

/* Why a message was refused, and what could still be read from it so the
 * worker can report a Failed status for it.  Identity fields are "" unless
 * present AND valid by their own rule (safe to use in a Kafka key). */
typedef struct mb_order_err {
    char reason[320];   /* "data.mesh.name: must end with a letter or digit" */
    mb_order_kind kind; /* from a known type, else UNKNOWN */
    char order_id[MB_ORDER_ID_MAX + 1];
    char account_id[MB_ORDER_ID_MAX + 1];
    char mesh_name[MB_MESH_NAME_MAX + 1];
    char cluster_id[MB_ORDER_ID_MAX + 1];
    char traceparent[MB_TRACEPARENT_LEN + 1];
} mb_order_err;

/* Parses a Kafka message value (len bytes, need not be NUL-terminated) as a
 * CloudEvents structured order, strictly per schemas/order-{buy,cancel,delete}.schema.json,
 * plus: at most MB_ORDER_MAX_BYTES, no duplicate object keys, no NUL in strings.
 * Returns 0 and *out (new, mb_order_free), or -1 with *out NULL and err filled
 * (err may be NULL when the caller only needs the verdict). */
int mb_order_parse(const void *buf, size_t len, mb_order **out, mb_order_err *err);

/* The same checks on an already-decoded envelope (e.g. reloaded from Redis).
 * env is borrowed for the call. */
int mb_order_from_json(const json_t *env, mb_order **out, mb_order_err *err);

/* The whole envelope of o as JSON (new reference): feeding it to
 * mb_order_from_json gives back an equal order.  NULL only on out-of-memory. */
json_t *mb_order_to_json(const mb_order *o);

/* Only the order's data object (new reference), as in the envelope's "data". */
json_t *mb_order_data_json(const mb_order *o);

/* The Kafka key "<account_id>/<mesh_name>" into buf.  Returns buf. */
char *mb_order_key(const mb_order *o, char *buf, size_t len);

/* The same key from its two parts (an order that did not parse, read as far as it could be).
 * Returns buf. */
char *mb_order_key_of(const char *account_id, const char *mesh_name, char *buf, size_t len);

void mb_order_free(mb_order *o);

/* The mesh id of an order: "mesh-" + the first 16 hex digits of
 * SHA-256("<key>#<order_id>"), key being "<account_id>/<mesh_name>".  Stable,
 * so every part of the worker (intake's Accepted and Failed events, the saga)
 * reports the same id without asking the store.  buf needs MB_MESH_ID_LEN + 1
 * bytes.  Returns buf. */
#define MB_MESH_ID_LEN 21
char *mb_order_mesh_id(const char *key, const char *order_id, char *buf, size_t len);

/* "buy", "cancel", "delete", "unknown".  Static. */
const char *mb_order_kind_name(mb_order_kind k);

/* --- building orders (the producer) ----------------------------------------------- */

/* Wraps data (taken over, even on failure) in a fresh CloudEvents envelope of
 * the kind: new random id, time now, the given source ("meshbuy-cli" when
 * NULL), subject "<account_id>/<mesh_name>" when both are strings in data,
 * traceparent when not NULL (not checked here: parse the result).
 * Returns a new reference, or NULL on out-of-memory / bad kind. */
json_t *mb_order_envelope(mb_order_kind kind, json_t *data, const char *source,
                          const char *traceparent);

/* A fresh unique id: 32 lower-case hex chars from the kernel's CSPRNG, with
 * an optional prefix ("ord-").  buf needs strlen(prefix) + 33 bytes.
 * Returns 0, or -1 if the buffer is short or randomness failed. */
int mb_order_new_id(const char *prefix, char *buf, size_t len);

/* A fresh W3C traceparent "00-<32 hex>-<16 hex>-01" (sampled).  buf needs
 * MB_TRACEPARENT_LEN + 1 bytes.  0 or -1. */
int mb_order_new_traceparent(char *buf, size_t len);

/* 1 if s is a valid W3C traceparent as the schemas accept it, else 0. */
int mb_order_traceparent_valid(const char *s);

/* Rule checks, exposed for the producer's flags and for other modules.  Each
 * returns NULL when s is valid, else a static reason ("must end with a letter
 * or digit"). */
const char *mb_order_check_mesh_name(const char *s);
const char *mb_order_check_namespace(const char *s);
const char *mb_order_check_order_id(const char *s); /* ^[A-Za-z0-9._:-]{1,64}$ */
const char *mb_order_check_id(const char *s);       /* ^[A-Za-z0-9._-]{1,64}$: account, project,
                                                       cluster, node, mesh ids */

/* --- the CloudEvents Kafka protocol binding ------------------------------------------- */

/* At most this many headers on an order message (more: refused). */
#define MB_ORDER_MAX_HEADERS 64

/* One Kafka header, borrowed from the message: value NULL for a null header;
 * len bytes, not NUL-terminated. */
typedef struct mb_order_header {
    const char *name;
    const void *value;
    size_t len;
} mb_order_header;

/* Turns an order message (headers and value) into the structured envelope
 * mb_order_parse reads, so there is one parser whatever the content mode:
 *  - structured mode (content-type application/cloudevents+json, parameters
 *    allowed): the value itself;
 *  - binary mode (no such content-type, a ce_specversion header): an object of
 *    the ce_<name> headers (name [a-z0-9]{1,20}, UTF-8 values, each at most
 *    once), "datacontenttype" from a content-type header when there is one
 *    (only application/json and its parameters), and "data" = the value
 *    parsed as JSON;
 *  - neither: not a CloudEvent, refused.
 * Returns 0 and *out (new, NUL-terminated, free()) with its length in
 * *out_len, or -1 with the reason in err (identity fields stay ""). */
int mb_order_canonical(const mb_order_header *hdrs, size_t n, const void *value, size_t len,
                       char **out, size_t *out_len, mb_order_err *err);

/* mb_order_canonical then mb_order_parse: what intake does with a message.
 * On success *canon (new, free()) is the envelope to store and *out the
 * order; on failure both are NULL and err says why. */
int mb_order_parse_message(const mb_order_header *hdrs, size_t n, const void *value, size_t len,
                           char **canon, size_t *canon_len, mb_order **out, mb_order_err *err);

/* A Kafka message written down as JSON, as the fixtures and `meshbuy --validate
 * FILE.kafka.json` take it: {"headers": {"<name>": "<value>", ...}, "value": V}
 * where V is the value's text when it is a string, else V's compact JSON (so a
 * binary-mode order's data can be written as an object).  Parsed like intake
 * parses a message (mb_order_parse_message; canon may be NULL when not wanted).
 * 0, or -1 with err (a malformed file is an invalid message). */
int mb_order_parse_kafka_json(const void *buf, size_t len, char **canon, mb_order **out,
                              mb_order_err *err);

/* An envelope in binary content mode (what `meshbuy --binary` publishes):
 * one ce_<attribute> header per attribute but data and datacontenttype (a
 * non-string extension value is written as its JSON text), a content-type
 * header from datacontenttype when it is set, and data alone as the value.
 * Everything in it is new (mb_order_binary_free). */
typedef struct mb_order_binary {
    size_t n;
    char *names[MB_ORDER_MAX_HEADERS];
    char *values[MB_ORDER_MAX_HEADERS];
    char *value; /* compact JSON of data, NUL-terminated */
    size_t value_len;
} mb_order_binary;

/* env borrowed.  0, or -1 (not an object with data, too many attributes,
 * out of memory; *b is then empty). */
int mb_order_to_binary(const json_t *env, mb_order_binary *b);
void mb_order_binary_free(mb_order_binary *b);

/* --- shared with mb_event ------------------------------------------------------------ */
/* Checks the CloudEvents attributes every meshbuy event shares (all but "type"
 * and "data", which the caller checks): specversion, id, source (required);
 * time, datacontenttype (application/json, parameters allowed), dataschema,
 * subject, traceparent, tracestate (optional); any other attribute is an
 * extension: a name of [a-z0-9]{1,20}, a string (at most 512 characters), a
 * number or a boolean.  env is borrowed.  0 or -1 (first error recorded in c). */
int mb_order_check_envelope(mb_jcheck *c, const json_t *env);

/* The envelope's rules on one attribute, for a builder that checks its inputs rather than
 * what it built (mb_event): NULL when s is valid, else a static reason.
 * printable256: id, source, subject.  time: an RFC 3339 date-time. */
const char *mb_order_check_printable256(const char *s);
const char *mb_order_check_traceparent(const char *s);
const char *mb_order_check_time(const char *s);

/* 1 if s is a valid CloudEvents attribute name ([a-z0-9]{1,20}), else 0. */
int mb_order_attr_name_valid(const char *s);

#endif
