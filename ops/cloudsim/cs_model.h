/* cs_model.h: the simulated cloud's state, loaded from a scenario. */
#ifndef CS_MODEL_H
#define CS_MODEL_H

#include <jansson.h>

#include "cs_map.h"

/* The model is plain data shared by cloudsim's handlers, so its structs are
 * visible; only cs_model.c creates or frees them. */

typedef struct cs_cred {
    char *ak, *sk;
    json_t *projects; /* array of project ids; empty = every project */
} cs_cred;

typedef struct cs_chart {
    char *id, *name, *version;
} cs_chart;

typedef struct cs_node {
    char *uid, *name, *az, *phase, *flavor, *private_ip;
    json_t *obj; /* the Kubernetes Node object; labels live here */
} cs_node;

typedef struct cs_release {
    char *ns, *name, *chart_id, *chart_name, *chart_version, *description;
    json_t *values;
    long long created_ms, deleting_ms; /* deleting_ms: 0 unless being deleted */
    const char *final_status;          /* static: "DEPLOYED", "FAILED", "UNKNOWN" */
    int created_ns;                    /* the install created its namespace */
} cs_release;

typedef struct cs_cluster {
    char *id, *uid, *project_id, *name, *version, *git_version, *phase, *sg_id;
    cs_map *nodes;      /* uid -> cs_node (owned) */
    cs_map *node_names; /* Kubernetes node name -> cs_node (borrowed) */
    cs_map *namespaces; /* name -> Namespace json_t (owned) */
    cs_map *workloads;  /* "<plural>/<ns>/<name>" -> json_t (owned) */
    cs_map *releases;   /* "<ns>/<name>" -> cs_release (owned) */
    long pods;
    int release_fail; /* scenario: every release here ends FAILED */
    long long rv;     /* resourceVersion counter */
} cs_cluster;

typedef struct cs_sg {
    char *id, *project_id, *name;
    json_t *rules; /* array of security_group_rule objects (API shape) */
} cs_sg;

typedef struct cs_model {
    json_t *doc;      /* the scenario as loaded, for /admin/reset */
    cs_map *creds;    /* ak -> cs_cred */
    cs_map *charts;   /* id -> cs_chart; empty = any chart id accepted */
    cs_map *clusters; /* id -> cs_cluster */
    cs_map *sgs;      /* id -> cs_sg */
    cs_map *rules;    /* rule id -> cs_sg (borrowed) */
    json_t *sets;     /* cluster_sets, materialized on first use */
    long sg_rule_quota;
    int kubectl_read;
    long long install_ms, delete_ms; /* release timings */
    unsigned long long id_seq;       /* deterministic ids */
    long long pods_epoch;            /* bumped to expire continue tokens */
    char created[32];                /* creationTimestamp of scenario objects */
} cs_model;

/* Builds a model from a scenario document (borrowed; deep-copied).  Returns
 * a new model (cs_model_free) or NULL with the reason in err. */
cs_model *cs_model_new(const json_t *scenario, long long install_ms, long long delete_ms, char *err,
                       size_t errlen);
void cs_model_free(cs_model *m);

/* Lookups; a cluster or SG of a cluster_set is created on first lookup.
 * Borrowed until the model is freed or the object deleted.  NULL if absent. */
cs_cluster *cs_model_cluster(cs_model *m, const char *id);
cs_sg *cs_model_sg(cs_model *m, const char *id);

/* Builds the first count clusters of every cluster set now rather than on first use, as a
 * real cloud has its clusters before anyone orders a mesh on them.  Returns how many were
 * built, or -1 when one could not be (its set's template is invalid, or out of memory). */
long cs_model_warm(cs_model *m, long count);

/* Applies the passage of time to releases (install done, delete done and the
 * namespace it created removed).  Cheap: a cluster has few releases. */
void cs_cluster_settle(cs_model *m, cs_cluster *cl, long long now_ms);

/* Status text of a release now ("PENDING_INSTALL", "DEPLOYED", ...).  Static. */
const char *cs_release_status(const cs_model *m, const cs_release *r, long long now_ms);

/* The API shape of a release (CAM GET).  New reference. */
json_t *cs_release_json(const cs_model *m, const cs_cluster *cl, const cs_release *r,
                        long long now_ms);

/* Adds a Namespace object (no-op if present).  Returns it, borrowed. */
json_t *cs_cluster_add_namespace(cs_model *m, cs_cluster *cl, const char *name,
                                 const json_t *labels);

/* Next resourceVersion of the cluster, as text in buf. */
const char *cs_cluster_next_rv(cs_cluster *cl, char *buf, size_t len);

/* A new deterministic uuid-shaped id into buf (37 bytes). */
void cs_model_uuid(cs_model *m, char buf[37]);

/* The whole state (or one cluster when cluster_id is not NULL) as JSON.  New. */
json_t *cs_model_state(cs_model *m, const char *cluster_id, long long now_ms);

/* Validates a security_group_rule (API input shape) and returns it in API
 * output shape for sg, with defaults filled and a new id unless in has one.
 * New reference, or NULL with the reason in err. */
json_t *cs_sg_rule_build(cs_model *m, const cs_sg *sg, const json_t *in, long long now_ms,
                         char *err, size_t errlen);

/* RFC 3339 UTC text of epoch milliseconds, second precision ("...Z"). */
char *cs_time_text(long long ms, char *buf, size_t len);

#endif
