/* mb_sign.c: SDK-HMAC-SHA256 signing, shared by the cloud client and cloudsim's verifier. */
#include "mb_sign.h"

#include "mb_buf.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* OpenSSL 3's one-shot SHA256() and HMAC() look the algorithm up in the provider
 * store on every call, which cost more than the hashing itself (a signature took
 * ~36k instructions, most of them lookups).  So SHA-256 is fetched once per process
 * and HMAC (RFC 2104) is built on it: two digests over the padded key.  cloudsim
 * signs from several threads, hence pthread_once.  The fetched digest lives as long
 * as the process. */
enum { SHA256_LEN = MB_SIGN_MAC_LEN, SHA256_BLOCK = 64 };

/* The n strings of parts, one after the other, into out (NUL-terminated): 0, or -1 (out
 * then "") when they do not fit.  Every request is signed: through snprintf the
 * string-to-sign and the Authorization value cost 2,900 instructions a request. */
static int join(char *out, size_t outlen, const char *const *parts, size_t n)
{
    size_t used = 0;

    if (outlen == 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        if (l >= outlen - used) {
            out[0] = '\0';
            return -1;
        }
        memcpy(out + used, parts[i], l);
        used += l;
    }
    out[used] = '\0';
    return 0;
}

static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* The fetched SHA-256, or NULL if the provider has none (then nothing can be signed). */
static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md;
}

/* md = SHA-256(a || b); 0, or -1 when OpenSSL fails. */
static int digest2(EVP_MD_CTX *ctx, const void *a, size_t alen, const void *b, size_t blen,
                   unsigned char md[SHA256_LEN])
{
    const EVP_MD *h = sha256();

    if (h == NULL || !EVP_DigestInit_ex2(ctx, h, NULL) || !EVP_DigestUpdate(ctx, a, alen) ||
        !EVP_DigestUpdate(ctx, b, blen) || !EVP_DigestFinal_ex(ctx, md, NULL))
        return -1;
    return 0;
}

/* HMAC-SHA256 of msg under key, on ctx; 0, or -1 when OpenSSL fails. */
static int hmac(EVP_MD_CTX *ctx, const void *key, size_t keylen, const void *msg, size_t len,
                unsigned char mac[SHA256_LEN])
{
    unsigned char k[SHA256_BLOCK] = {0}, ipad[SHA256_BLOCK], opad[SHA256_BLOCK];
    unsigned char inner[SHA256_LEN];

    if (keylen > SHA256_BLOCK) {
        if (digest2(ctx, key, keylen, "", 0, k) < 0)
            return -1;
    } else {
        memcpy(k, key, keylen);
    }
    for (size_t i = 0; i < SHA256_BLOCK; i++) {
        ipad[i] = k[i] ^ 0x36;
        opad[i] = k[i] ^ 0x5c;
    }
    if (digest2(ctx, ipad, sizeof(ipad), msg, len, inner) < 0 ||
        digest2(ctx, opad, sizeof(opad), inner, sizeof(inner), mac) < 0)
        return -1;
    return 0;
}

static void sha256_raw(const void *data, size_t len, unsigned char md[SHA256_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL || digest2(ctx, data, len, "", 0, md) < 0)
        memset(md, 0, SHA256_LEN); /* an all-zero hash never verifies: a refusal, not a guess */
    EVP_MD_CTX_free(ctx);
}

void mb_sign_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
                         unsigned char mac[MB_SIGN_MAC_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL || hmac(ctx, key, keylen, msg, len, mac) < 0)
        memset(mac, 0, SHA256_LEN);
    EVP_MD_CTX_free(ctx);
}

void mb_sign_sha256_hex(const void *data, size_t len, char out[MB_SIGN_HEX_LEN + 1])
{
    unsigned char md[SHA256_LEN];

    sha256_raw(data, len, md);
    hex_encode(md, sizeof(md), out);
}

/* Appends the RFC 3986 encoding of the decoded form of s[0..n).  Decoding
 * first makes "x y" and "x%20y" sign alike, as the SDKs do; plus_is_space
 * follows form decoding for query strings (Go's url.ParseQuery). */
static void put_encoded(mb_buf *b, const char *s, size_t n, int plus_is_space)
{
    for (size_t i = 0; i < n;) {
        size_t run = mb_pct_plain(s + i, n - i);
        if (run > 0) { /* written as they are, whole */
            mb_buf_add(b, s + i, run);
            i += run;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && i + 2 < n && mb_hexval(s[i + 1]) >= 0 && mb_hexval(s[i + 2]) >= 0) {
            c = (unsigned char)(mb_hexval(s[i + 1]) * 16 + mb_hexval(s[i + 2]));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        mb_buf_pct_byte(b, c);
        i++;
    }
}

static void canonical_uri(mb_buf *b, const char *path)
{
    const char *p = path && *path ? path : "/";

    while (*p) {
        if (*p == '/') {
            mb_buf_add(b, "/", 1);
            p++;
            continue;
        }
        size_t n = strcspn(p, "/");
        put_encoded(b, p, n, 0);
        p += n;
    }
    if (b->len == 0 || b->p[b->len - 1] != '/')
        mb_buf_add(b, "/", 1);
}

/* A query parameter, encoded: name and value in the query's one scratch buffer. */
typedef struct qparam {
    size_t name_at, value_at;
    const char *name, *value;
} qparam;

enum { QPARAMS_LOCAL = 16 }; /* a request's parameters are a few; more are allocated */

static int qparam_cmp(const void *a, const void *b)
{
    const qparam *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* The query's parameters encoded, sorted by name then value, joined by '&'.  Every request
 * is signed, so they are encoded into one buffer (NUL after each) rather than two strings
 * each. */
static int canonical_query(mb_buf *b, const char *query)
{
    qparam local[QPARAMS_LOCAL], *qs = local;
    mb_buf enc = {0};
    size_t nq = 0, cap = 1;
    int rc = -1;

    if (query == NULL || *query == '\0')
        return 0;
    for (const char *p = query; *p; p++)
        cap += *p == '&';
    if (cap > QPARAMS_LOCAL && (qs = malloc(cap * sizeof(*qs))) == NULL)
        return -1;
    for (const char *p = query; *p;) {
        size_t n = strcspn(p, "&");
        if (n > 0) {
            const char *eq = memchr(p, '=', n);
            size_t nl = eq ? (size_t)(eq - p) : n;
            qs[nq].name_at = enc.len;
            put_encoded(&enc, p, nl, 1);
            mb_buf_add(&enc, "", 1);
            qs[nq].value_at = enc.len;
            if (eq)
                put_encoded(&enc, eq + 1, n - nl - 1, 1);
            mb_buf_add(&enc, "", 1);
            nq++;
        }
        p += n;
        if (*p == '&')
            p++;
    }
    if (enc.oom)
        goto out;
    for (size_t i = 0; i < nq; i++) {
        qs[i].name = enc.p + qs[i].name_at;
        qs[i].value = enc.p + qs[i].value_at;
    }
    if (nq > 1)
        qsort(qs, nq, sizeof(*qs), qparam_cmp);
    for (size_t i = 0; i < nq; i++) {
        if (i)
            mb_buf_add(b, "&", 1);
        mb_buf_puts(b, qs[i].name);
        mb_buf_add(b, "=", 1);
        mb_buf_puts(b, qs[i].value);
    }
    rc = 0;
out:
    mb_buf_free(&enc);
    if (qs != local)
        free(qs);
    return rc;
}

static const char *find_header(const mb_hdr *hdrs, size_t n, const char *name, size_t nlen)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(hdrs[i].name) == nlen && strncasecmp(hdrs[i].name, name, nlen) == 0)
            return hdrs[i].value;
    }
    return NULL;
}

static void put_trimmed(mb_buf *b, const char *v)
{
    size_t n = strlen(v);

    while (n && isspace((unsigned char)*v)) {
        v++;
        n--;
    }
    while (n && isspace((unsigned char)v[n - 1]))
        n--;
    mb_buf_add(b, v, n);
}

/* Signed header names: at most NAMES_N, NAMES_MAX - 1 characters in all. */
enum { NAMES_MAX = 1024, NAMES_N = 64 };

/* The signed header names, lowercased and sorted, joined by ';' into out: 0, or -1 when
 * there are more than NAMES_N or they do not fit (a name left out would sign something
 * else than was asked). */
static int sort_names(const char *signed_headers, char out[NAMES_MAX])
{
    char copy[NAMES_MAX], *names[NAMES_N];
    size_t len = strlen(signed_headers), n = 0, used = 0;

    if (len >= NAMES_MAX)
        return -1;
    for (size_t i = 0; i <= len; i++)
        copy[i] = (char)tolower((unsigned char)signed_headers[i]);
    for (char *t = copy;;) {
        size_t l = strcspn(t, ";");
        if (l > 0) {
            if (n == NAMES_N)
                return -1;
            names[n++] = t;
        }
        if (t[l] == '\0')
            break;
        t[l] = '\0';
        t += l + 1;
    }
    for (size_t i = 1; i < n; i++) { /* insertion sort: a handful of names */
        char *x = names[i];
        size_t j = i;
        for (; j > 0 && strcmp(names[j - 1], x) > 0; j--)
            names[j] = names[j - 1];
        names[j] = x;
    }
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (i)
            out[used++] = ';';
        memcpy(out + used, names[i], l);
        used += l;
    }
    out[used] = '\0';
    return 0;
}

/* The canonical request into b, names already sorted: 0, or -1 (a signed header missing,
 * out of memory). */
static int canonical(mb_buf *b, const char *method, const char *path, const char *query,
                     const mb_hdr *hdrs, size_t nhdrs, const char *names, const void *body,
                     size_t body_len)
{
    char hash[MB_SIGN_HEX_LEN + 1];
    const char *unsigned_payload;

    mb_buf_puts(b, method);
    mb_buf_add(b, "\n", 1);
    canonical_uri(b, path);
    mb_buf_add(b, "\n", 1);
    if (canonical_query(b, query) < 0)
        return -1;
    mb_buf_add(b, "\n", 1);
    for (const char *p = names; *p;) {
        size_t n = strcspn(p, ";");
        const char *v = find_header(hdrs, nhdrs, p, n);
        if (v == NULL)
            return -1;
        mb_buf_add(b, p, n);
        mb_buf_add(b, ":", 1);
        put_trimmed(b, v);
        mb_buf_add(b, "\n", 1);
        p += n;
        if (*p == ';')
            p++;
    }
    mb_buf_add(b, "\n", 1);
    mb_buf_puts(b, names);
    mb_buf_add(b, "\n", 1);
    unsigned_payload = find_header(hdrs, nhdrs, "x-sdk-content-sha256", 20);
    if (unsigned_payload && strcmp(unsigned_payload, "UNSIGNED-PAYLOAD") == 0) {
        mb_buf_puts(b, "UNSIGNED-PAYLOAD");
    } else if (body == NULL || body_len == 0) {
        /* every GET and DELETE: SHA-256 of nothing, a constant */
        mb_buf_puts(b, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    } else {
        mb_sign_sha256_hex(body, body_len, hash);
        mb_buf_puts(b, hash);
    }
    return b->oom ? -1 : 0;
}

char *mb_sign_canonical(const char *method, const char *path, const char *query, const mb_hdr *hdrs,
                        size_t nhdrs, const char *signed_headers, const void *body, size_t body_len)
{
    char names[NAMES_MAX];
    mb_buf b = {0};

    if (sort_names(signed_headers, names) < 0 ||
        canonical(&b, method, path, query, hdrs, nhdrs, names, body, body_len) < 0) {
        mb_buf_free(&b);
        return NULL;
    }
    return mb_buf_take(&b);
}

/* hex(HMAC-SHA256(sk, string to sign)) for the canonical request canon (len bytes), its
 * hash and the HMAC on one digest context; all zeros, which never verify, when OpenSSL
 * fails. */
static void sign(const char *sk, const char *sdk_date, const char *canon, size_t len,
                 char out[MB_SIGN_HEX_LEN + 1])
{
    char hash[MB_SIGN_HEX_LEN + 1], sts[160];
    unsigned char md[SHA256_LEN], mac[SHA256_LEN];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (ctx == NULL || digest2(ctx, canon, len, "", 0, md) < 0)
        memset(md, 0, sizeof(md));
    hex_encode(md, sizeof(md), hash);
    /* an over-long date: sign nothing rather than a cut string */
    join(sts, sizeof(sts), (const char *[]){MB_SIGN_ALGORITHM "\n", sdk_date, "\n", hash}, 4);
    if (ctx == NULL || hmac(ctx, sk, strlen(sk), sts, strlen(sts), mac) < 0)
        memset(mac, 0, sizeof(mac));
    hex_encode(mac, sizeof(mac), out);
    EVP_MD_CTX_free(ctx);
}

void mb_sign_signature(const char *sk, const char *sdk_date, const char *canonical,
                       char out[MB_SIGN_HEX_LEN + 1])
{
    sign(sk, sdk_date, canonical, strlen(canonical), out);
}

int mb_sign_authorization(const char *ak, const char *sk, const char *method, const char *path,
                          const char *query, const mb_hdr *hdrs, size_t nhdrs, const void *body,
                          size_t body_len, char *out, size_t outlen)
{
    char all[NAMES_MAX], names[NAMES_MAX], sig[MB_SIGN_HEX_LEN + 1];
    const char *date = find_header(hdrs, nhdrs, "x-sdk-date", 10);
    mb_buf canon = {0};
    size_t used = 0;
    int rc = -1;

    if (date == NULL)
        return -1;
    for (size_t i = 0; i < nhdrs; i++) {
        size_t l = strlen(hdrs[i].name);
        if (used + (i > 0) + l >= sizeof(all))
            return -1;
        if (i)
            all[used++] = ';';
        memcpy(all + used, hdrs[i].name, l);
        used += l;
    }
    all[used] = '\0';
    if (sort_names(all, names) == 0 &&
        canonical(&canon, method, path, query, hdrs, nhdrs, names, body, body_len) == 0) {
        sign(sk, date, canon.p, canon.len, sig);
        rc = join(out, outlen,
                  (const char *[]){MB_SIGN_ALGORITHM " Access=", ak, ", SignedHeaders=", names,
                                   ", Signature=", sig},
                  6);
    }
    mb_buf_free(&canon);
    return rc;
}

/* Copies the value of "key=" from an Authorization parameter list. */
static int auth_param(const char *v, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);

    for (const char *p = v; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            size_t vl = n - klen - 1;
            while (vl && p[klen + vl] == ' ')
                vl--;
            if (vl == 0 || vl >= outlen)
                return -1;
            memcpy(out, p + klen + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        p += n;
    }
    return -1;
}

int mb_sign_parse_authorization(const char *value, char *ak, size_t aklen, char *signed_headers,
                                size_t shlen, char sig[MB_SIGN_HEX_LEN + 1])
{
    size_t alg = strlen(MB_SIGN_ALGORITHM);

    if (value == NULL || strncmp(value, MB_SIGN_ALGORITHM, alg) != 0 || value[alg] != ' ')
        return -1;
    value += alg + 1;
    if (auth_param(value, "Access", ak, aklen) < 0 ||
        auth_param(value, "SignedHeaders", signed_headers, shlen) < 0 ||
        auth_param(value, "Signature", sig, MB_SIGN_HEX_LEN + 1) < 0)
        return -1;
    return strlen(sig) == MB_SIGN_HEX_LEN ? 0 : -1;
}

void mb_sign_date(time_t t, char out[MB_SIGN_DATE_LEN + 1])
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, MB_SIGN_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

int mb_sign_date_parse(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *end;

    if (s == NULL || strlen(s) != MB_SIGN_DATE_LEN)
        return -1;
    end = strptime(s, "%Y%m%dT%H%M%SZ", &tm);
    if (end == NULL || *end != '\0')
        return -1;
    *out = timegm(&tm);
    return 0;
}
