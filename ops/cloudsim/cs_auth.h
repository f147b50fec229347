/* cs_auth.h: server-side verification of SDK-HMAC-SHA256 signed requests (docs/reference.md). */
#ifndef CS_AUTH_H
#define CS_AUTH_H

#include <stddef.h>
#include <time.h>

#include "cs_model.h"
#include "mb_sign.h"

/* A request as received.  Everything borrowed for the call. */
typedef struct cs_auth_req {
    const char *method;
    const char *path;  /* raw, as on the request line */
    const char *query; /* raw, without '?', or NULL */
    const mb_hdr *hdrs;
    size_t nhdrs;
    const void *body;
    size_t body_len;
    time_t now;
} cs_auth_req;

/* Verifies the Authorization header against the model's credentials.
 * Returns 0 and the credential (borrowed from m), or -1 and a new message
 * (free()) in the APIGW.0301 wording: "Incorrect IAM authentication
 * information: ..." (with the canonical request, newlines as '|', when the
 * signature does not match). */
int cs_auth_verify(const cs_model *m, const cs_auth_req *r, const cs_cred **cred, char **msg);

/* 1 if the credential may act on project (an empty list allows all). */
int cs_auth_project_ok(const cs_cred *cred, const char *project);

/* Value of header name (case-insensitive) in hdrs, borrowed, or NULL. */
const char *cs_auth_header(const mb_hdr *hdrs, size_t n, const char *name);

#endif
