/* fuzz_http1.c: libFuzzer target for the HTTP/1.1 response parser, URL split and
 * HTTP-dates.  A response read whole and the same bytes fed in pieces (sizes
 * taken from the input) must end alike: same result, status, body and
 * Retry-After; a body framed by Content-Length is exactly that long; the body
 * never outgrows what was fed.  URLs and dates must only be refused or split
 * within their text. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mb_http1.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct run {
    int rc;
    mb_h1_resp r;
    char *buf;
    size_t len;
} run;

/* Feeds text in pieces whose sizes cycle through steps (all at once when
 * nsteps is 0), then the close when the parser still wants more. */
static run feed(const uint8_t *text, size_t n, const uint8_t *steps, size_t nsteps)
{
    run o = {MB_H1_MORE, {0}, malloc(n + 1), 0};
    size_t given = 0, k = 0;

    if (o.buf == NULL)
        abort();
    mb_h1_resp_init(&o.r);
    while (given < n && o.rc == MB_H1_MORE) {
        size_t step = nsteps ? (size_t)steps[k++ % nsteps] % 17 + 1 : n;
        if (step > n - given)
            step = n - given;
        memcpy(o.buf + o.len, text + given, step);
        o.len += step;
        given += step;
        o.rc = mb_h1_parse(&o.r, o.buf, &o.len, 0);
        if (o.r.head_done && o.r.out > o.len)
            abort();
    }
    if (o.rc == MB_H1_MORE)
        o.rc = mb_h1_parse(&o.r, o.buf, &o.len, 1);
    return o;
}

static void check_url_and_date(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    mb_h1_url u;
    const char *why;
    time_t t;

    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    if (mb_h1_url_split(s, &u, &why) == 0) {
        size_t n = strlen(s);
        if (u.host < s || u.host + u.host_len > s + n || u.host_len == 0)
            abort();
        if (u.query && (u.query < s || u.query + u.query_len > s + n))
            abort();
        if (u.port < 1 || u.port > 65535)
            abort();
    } else if (why == NULL) {
        abort();
    }
    (void)mb_h1_date(s, &t);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t nsteps = size > 0 ? data[0] % 8 : 0;
    const uint8_t *steps = data + (size > 0);
    const uint8_t *text;
    size_t n;
    run a, b;

    if (size < 1 + nsteps)
        return 0;
    text = steps + nsteps;
    n = size - 1 - nsteps;
    check_url_and_date(text, n);
    a = feed(text, n, NULL, 0);
    b = feed(text, n, steps, nsteps);
    if (a.rc != b.rc || (a.rc == MB_H1_ERROR) != (a.r.err != NULL))
        abort();
    if (a.rc == MB_H1_DONE) {
        if (a.r.status != b.r.status || a.r.out != b.r.out || memcmp(a.buf, b.buf, a.r.out) != 0 ||
            strcmp(a.r.retry_after, b.r.retry_after) != 0)
            abort();
        if (a.r.status < 200 || a.r.status > 999)
            abort();
        if (a.r.length >= 0 && (unsigned long long)a.r.length != a.r.out)
            abort();
        /* pieces stop at the end of the response; whole, later bytes clear keep_alive */
        if (a.len <= a.r.pos && a.r.keep_alive != b.r.keep_alive)
            abort();
    }
    free(a.buf);
    free(b.buf);
    return 0;
}
