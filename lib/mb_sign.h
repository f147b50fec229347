/* mb_sign.h: AK/SK request signing, SDK-HMAC-SHA256 (docs/reference.md, "AK/SK signing"). */
#ifndef MB_SIGN_H
#define MB_SIGN_H

#include <stddef.h>
#include <time.h>

#define MB_SIGN_ALGORITHM "SDK-HMAC-SHA256"
#define MB_SIGN_DATE_LEN  16 /* YYYYMMDDTHHMMSSZ */
#define MB_SIGN_HEX_LEN   64

/* A header as sent on the wire.  Names compare case-insensitively. */
typedef struct mb_hdr {
    const char *name;
    const char *value;
} mb_hdr;

/* The canonical request (section 6), or NULL on bad input (a signed header
 * missing from hdrs, out of memory).  New: free() it.
 * path:  the request path as sent, percent-encoded or not ("/v1/x y" and
 *        "/v1/x%20y" sign alike); query: the raw query without '?', or NULL;
 * signed_headers: names joined by ';', in any order, at most 64 of them in 1,023
 *        characters (more is refused: NULL).
 * A header x-sdk-content-sha256: UNSIGNED-PAYLOAD replaces the body hash. */
char *mb_sign_canonical(const char *method, const char *path, const char *query, const mb_hdr *hdrs,
                        size_t nhdrs, const char *signed_headers, const void *body,
                        size_t body_len);

/* hex(HMAC-SHA256(sk, "SDK-HMAC-SHA256\n" date "\n" hex(sha256(canonical)))). */
void mb_sign_signature(const char *sk, const char *sdk_date, const char *canonical,
                       char out[MB_SIGN_HEX_LEN + 1]);

/* Client side: signs every header in hdrs (one of them must be X-Sdk-Date)
 * and writes the Authorization value into out.  Returns 0, or -1 if out is
 * too small or the input is bad. */
int mb_sign_authorization(const char *ak, const char *sk, const char *method, const char *path,
                          const char *query, const mb_hdr *hdrs, size_t nhdrs, const void *body,
                          size_t body_len, char *out, size_t outlen);

/* Server side: splits an Authorization value.  Returns 0, or -1 if it is not
 * of the SDK-HMAC-SHA256 form. */
int mb_sign_parse_authorization(const char *value, char *ak, size_t aklen, char *signed_headers,
                                size_t shlen, char sig[MB_SIGN_HEX_LEN + 1]);

/* X-Sdk-Date text for t (UTC). */
void mb_sign_date(time_t t, char out[MB_SIGN_DATE_LEN + 1]);

/* Parses X-Sdk-Date.  Returns 0, or -1 if s is not YYYYMMDDTHHMMSSZ. */
int mb_sign_date_parse(const char *s, time_t *out);

/* HMAC-SHA256 (RFC 2104) of msg under key into mac (all zero if OpenSSL fails). */
#define MB_SIGN_MAC_LEN 32
void mb_sign_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
                         unsigned char mac[MB_SIGN_MAC_LEN]);

/* hex(sha256(data)) into out. */
void mb_sign_sha256_hex(const void *data, size_t len, char out[MB_SIGN_HEX_LEN + 1]);

#endif
