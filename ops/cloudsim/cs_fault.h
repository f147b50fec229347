/* cs_fault.h: fault injection rules (latency, errors, throttling, hangs, mangled replies,
 * failing releases). */
#ifndef CS_FAULT_H
#define CS_FAULT_H

#include <jansson.h>
#include <stdint.h>

typedef struct cs_faults cs_faults;

/* What the rules decided for one request. */
typedef struct cs_fault_hit {
    long latency_ms;  /* added before the request is handled */
    int error_status; /* 0, or the status to answer instead */
    int throttle;     /* answer 429 with Retry-After */
    int retry_after;  /* seconds */
    int hang;         /* never answer; dropped when the client closes */
    int after;        /* apply error/throttle/hang/body after the handler ran */
    char *body;       /* NULL, or the text to answer with, status 200 (owned: free it) */
    long fault_id;    /* the rule that decided error/throttle/hang, 0 if none */
} cs_fault_hit;

/* New rule set (cs_faults_free); randomness from seed, so a run repeats. */
cs_faults *cs_faults_new(uint64_t seed);
void cs_faults_free(cs_faults *f);

/* Adds a rule from its JSON (borrowed), see README "Fault API".  Returns the
 * new rule's id (> 0), or -1 with the reason in err. */
long cs_faults_add(cs_faults *f, const json_t *spec, char *err, size_t errlen);

/* Removes one rule (1 if found), or every rule. */
int cs_faults_del(cs_faults *f, long id);
void cs_faults_clear(cs_faults *f);

/* Matches a request against the rules in order (out->body, when set, is the caller's). */
void cs_faults_eval(cs_faults *f, const char *method, const char *path, cs_fault_hit *out);

/* For a release being created in cluster_id: the final status it must reach
 * instead of DEPLOYED ("FAILED", "UNKNOWN"; static), or NULL. */
const char *cs_faults_release_fail(cs_faults *f, const char *cluster_id);

/* The rules with their counters.  New. */
json_t *cs_faults_json(const cs_faults *f);

/* Uniform in [0,1) from the seeded generator. */
double cs_faults_rand(cs_faults *f);

#endif
