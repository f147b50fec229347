/* cs_audit.h: cloudsim's request ring and mutation log, for tests. */
#ifndef CS_AUDIT_H
#define CS_AUDIT_H

#include <jansson.h>
#include <stddef.h>

typedef struct cs_audit cs_audit;

/* Kinds of mutating calls that tests count. */
typedef enum cs_mut_kind {
    CS_MUT_NODE_LABEL,      /* node_label_patch */
    CS_MUT_NAMESPACE_LABEL, /* namespace_label_patch */
    CS_MUT_RELEASE_CREATE,  /* release_create */
    CS_MUT_RELEASE_DELETE,  /* release_delete */
    CS_MUT_SG_RULE_CREATE,  /* sg_rule_create */
    CS_MUT_SG_RULE_DELETE,  /* sg_rule_delete */
    CS_MUT_WORKLOAD_PATCH,  /* workload_patch */
    CS_MUT_NKINDS
} cs_mut_kind;

/* New audit (cs_audit_free) keeping the last req_cap requests and up to
 * mut_cap mutation records (counters are always exact). */
cs_audit *cs_audit_new(size_t req_cap, size_t mut_cap);
void cs_audit_free(cs_audit *a);
void cs_audit_clear(cs_audit *a);

/* Records a request as it arrives, with its traceparent header (NULL when
 * absent) so tests can follow a trace, and its User-Agent (NULL when absent;
 * a worker names itself there) so tests can tell callers apart; returns its
 * sequence number (from 1). */
unsigned long long cs_audit_request(cs_audit *a, long long now_ms, const char *method,
                                    const char *uri, const char *traceparent,
                                    const char *user_agent);

/* Completes a request record (if still in the ring).  sig_ok: 1, 0, or -1
 * when no signature was checked.  fault: static text or NULL. */
void cs_audit_finish(cs_audit *a, unsigned long long seq, long long now_ms, int status, int sig_ok,
                     const char *fault);

/* Notes the reply's Content-Type (a static string) when it is not plain
 * application/json, e.g. a PartialObjectMetadataList; shown as
 * "content_type" in the request log. */
void cs_audit_media(cs_audit *a, unsigned long long seq, const char *media);

/* Records one successful mutating call.  changed: whether state changed.  The
 * User-Agent of request req_seq is kept with it (if still in the ring). */
void cs_audit_mutation(cs_audit *a, long long now_ms, cs_mut_kind kind, const char *cluster,
                       const char *target, int changed, unsigned long long req_seq);

/* {"total":N,"requests":[...]} for requests with seq > since, at most limit.  New. */
json_t *cs_audit_requests_json(const cs_audit *a, unsigned long long since, size_t limit);

/* {"counts":{kind:N,...},"total":N,"mutations":[...]} (kind NULL = all).  New. */
json_t *cs_audit_mutations_json(const cs_audit *a, const char *kind);

#endif
