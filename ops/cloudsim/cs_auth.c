/* cs_auth.c: recomputes the canonical request from what arrived and compares signatures. */
#include "cs_auth.h"

#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IAM_PREFIX "Incorrect IAM authentication information: "
#define MAX_SKEW_S (15 * 60)

const char *cs_auth_header(const mb_hdr *hdrs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(hdrs[i].name, name) == 0)
            return hdrs[i].value;
    }
    return NULL;
}

static char *msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *msgf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* 1 if the ';'-separated list names x-sdk-date. */
static int signs_date(const char *list)
{
    const char *p = list;

    while (*p) {
        size_t n = strcspn(p, ";");
        if (n == 10 && strncasecmp(p, "x-sdk-date", 10) == 0)
            return 1;
        p += n;
        if (*p == ';')
            p++;
    }
    return 0;
}

static char *sig_mismatch(char *canonical)
{
    for (char *p = canonical; *p; p++) {
        if (*p == '\n')
            *p = '|';
    }
    return msgf(IAM_PREFIX "verify aksk signature fail,canonicalRequest:%s", canonical);
}

int cs_auth_verify(const cs_model *m, const cs_auth_req *r, const cs_cred **cred, char **msg)
{
    char ak[256], signed_hdrs[1024], sig[MB_SIGN_HEX_LEN + 1], want[MB_SIGN_HEX_LEN + 1];
    const char *auth = cs_auth_header(r->hdrs, r->nhdrs, "Authorization");
    time_t t;

    *cred = NULL;
    if (auth == NULL) {
        *msg = msgf(IAM_PREFIX "Authorization not found");
        return -1;
    }
    if (mb_sign_parse_authorization(auth, ak, sizeof(ak), signed_hdrs, sizeof(signed_hdrs), sig) <
        0) {
        *msg = msgf(IAM_PREFIX "Authorization is not of the form "
                               "'SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...'");
        return -1;
    }
    const cs_cred *c = cs_map_get(m->creds, ak);
    if (c == NULL) {
        *msg = msgf(IAM_PREFIX "ak %s not exist", ak);
        return -1;
    }
    if (!signs_date(signed_hdrs)) {
        *msg = msgf(IAM_PREFIX "x-sdk-date is not in SignedHeaders");
        return -1;
    }
    const char *date = cs_auth_header(r->hdrs, r->nhdrs, "X-Sdk-Date");
    if (date == NULL || mb_sign_date_parse(date, &t) < 0) {
        *msg = msgf(IAM_PREFIX "X-Sdk-Date missing or not YYYYMMDDTHHMMSSZ");
        return -1;
    }
    if (t > r->now + MAX_SKEW_S || t < r->now - MAX_SKEW_S) {
        char now[MB_SIGN_DATE_LEN + 1];
        mb_sign_date(r->now, now);
        *msg = msgf(IAM_PREFIX "the request has expired: X-Sdk-Date %s is more than 15 minutes "
                               "from the server time %s",
                    date, now);
        return -1;
    }
    char *canonical = mb_sign_canonical(r->method, r->path, r->query, r->hdrs, r->nhdrs,
                                        signed_hdrs, r->body, r->body_len);
    if (canonical == NULL) {
        *msg = msgf(IAM_PREFIX "a header listed in SignedHeaders (%s) was not sent", signed_hdrs);
        return -1;
    }
    mb_sign_signature(c->sk, date, canonical, want);
    if (CRYPTO_memcmp(want, sig, MB_SIGN_HEX_LEN) != 0 || strlen(sig) != MB_SIGN_HEX_LEN) {
        *msg = sig_mismatch(canonical);
        free(canonical);
        return -1;
    }
    free(canonical);
    *cred = c;
    return 0;
}

int cs_auth_project_ok(const cs_cred *cred, const char *project)
{
    size_t i;
    json_t *p;

    if (cred == NULL || json_array_size(cred->projects) == 0)
        return 1;
    json_array_foreach(cred->projects, i, p)
    {
        if (json_is_string(p) && strcmp(json_string_value(p), project) == 0)
            return 1;
    }
    return 0;
}
