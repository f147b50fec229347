/* fuzz_sign.c: libFuzzer target for the SDK-HMAC-SHA256 canonical request, which cloudsim
 * builds from what a client sent (path, query, the SignedHeaders list).  The input is split
 * at its first two newlines into path, query and signed header names.  Beyond "does not
 * crash": the query's parameters in reverse order sign alike; a canonical request names
 * every signed header once, in order; and the client's Authorization for the headers it
 * sends carries the signature a verifier computes from the same request, names in any
 * order and case. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mb_sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The '&'-separated parts of q in reverse order (new). */
static char *reversed(const char *q)
{
    size_t n = strlen(q), used = 0;
    char *out = malloc(n + 1);

    if (out == NULL)
        abort();
    for (size_t end = n; end > 0;) {
        size_t start = end;
        while (start > 0 && q[start - 1] != '&')
            start--;
        memcpy(out + used, q + start, end - start);
        used += end - start;
        if (start > 0)
            out[used++] = '&';
        end = start > 0 ? start - 1 : 0;
    }
    out[used] = '\0';
    return out;
}

/* The signed header names line of a canonical request: the line before the last. */
static const char *names_line(const char *canon, size_t *len)
{
    const char *last = strrchr(canon, '\n'), *p = last;

    if (last == NULL || last == canon)
        abort();
    while (p > canon && p[-1] != '\n')
        p--;
    *len = (size_t)(last - p);
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const mb_hdr hdrs[] = {{"Content-Type", "application/json"},
                                  {"Host", "cce.example.com"},
                                  {"X-Sdk-Date", "20261206T010203Z"},
                                  {"x-project-id", " p "}};
    char *in = malloc(size + 1), *path, *query, *names, *c1, *c2, *rq;
    char auth[512], sig[MB_SIGN_HEX_LEN + 1];
    size_t nlen;

    if (in == NULL)
        abort();
    memcpy(in, data, size);
    in[size] = '\0';
    path = in;
    query = strchr(path, '\n');
    query = query ? (*query = '\0', query + 1) : path + strlen(path);
    names = strchr(query, '\n');
    names = names ? (*names = '\0', names + 1) : query + strlen(query);

    c1 = mb_sign_canonical("GET", path, query, hdrs, 4, names, NULL, 0);
    rq = reversed(query);
    c2 = mb_sign_canonical("GET", path, rq, hdrs, 4, names, NULL, 0);
    if ((c1 == NULL) != (c2 == NULL) || (c1 && strcmp(c1, c2) != 0))
        abort();
    if (c1) {
        /* sorted, lowercase, each once: what the client signed, whatever order it named */
        const char *l = names_line(c1, &nlen);
        for (size_t i = 0; i < nlen; i++)
            if (l[i] >= 'A' && l[i] <= 'Z')
                abort();
    }

    /* the client's own signature, checked as cloudsim checks it */
    if (mb_sign_authorization("AK", "SK", "GET", path, query, hdrs, 4, NULL, 0, auth,
                              sizeof(auth)) != 0)
        abort();
    char *v = mb_sign_canonical("GET", path, query, hdrs, 4,
                                "x-sdk-date;HOST;content-type;X-Project-Id", NULL, 0);
    if (v == NULL)
        abort();
    mb_sign_signature("SK", "20261206T010203Z", v, sig);
    if (strstr(auth, sig) == NULL)
        abort();
    free(v);
    free(c1);
    free(c2);
    free(rq);
    free(in);
    return 0;
}
