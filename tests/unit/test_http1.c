/* test_http1.c: the HTTP/1.1 wire format: URLs split, responses read whole
 * and a byte at a time alike, framing and refusals, HTTP-dates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mb_http1.h"

/* ------------------------------------------------------------------ */
/* URLs                                                               */
/* ------------------------------------------------------------------ */

typedef struct url_case {
    const char *url;
    int tls, port, port_given, ipv6;
    const char *host, *path, *query; /* query NULL = none */
} url_case;

static void splits_urls(void **state)
{
    static const url_case t[] = {
        {"http://127.0.0.1:8080/k8s/c-1/api/v1/nodes?limit=500", 0, 8080, 1, 0, "127.0.0.1",
         "/k8s/c-1/api/v1/nodes", "limit=500"},
        {"https://cce.eu-west-0.example.com/api/v3/projects/p/clusters/c", 1, 443, 0, 0,
         "cce.eu-west-0.example.com", "/api/v3/projects/p/clusters/c", NULL},
        {"HTTPS://Host.Example:443/x", 1, 443, 0, 0, "Host.Example", "/x", NULL},
        {"http://h:80", 0, 80, 0, 0, "h", "/", NULL},
        {"http://h:/a", 0, 80, 0, 0, "h", "/a", NULL},
        {"http://h?q=1#frag", 0, 80, 0, 0, "h", "/", "q=1"},
        {"http://h/a?#f", 0, 80, 0, 0, "h", "/a", ""},
        {"http://[::1]:9/p", 0, 9, 1, 1, "::1", "/p", NULL},
        {"https://[2001:db8::1]/", 1, 443, 0, 1, "2001:db8::1", "/", NULL},
        {"http://a_b-c.d~e/%2Fx?a=%20", 0, 80, 0, 0, "a_b-c.d~e", "/%2Fx", "a=%20"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        mb_h1_url u;
        const char *why = NULL;
        if (mb_h1_url_split(t[i].url, &u, &why) != 0)
            fail_msg("%s: refused: %s", t[i].url, why);
        assert_int_equal(u.tls, t[i].tls);
        assert_int_equal(u.port, t[i].port);
        assert_int_equal(u.port_given, t[i].port_given);
        assert_int_equal(u.ipv6, t[i].ipv6);
        assert_int_equal(u.host_len, strlen(t[i].host));
        assert_memory_equal(u.host, t[i].host, u.host_len);
        assert_int_equal(u.path_len, strlen(t[i].path));
        assert_memory_equal(u.path, t[i].path, u.path_len);
        if (t[i].query == NULL) {
            assert_null(u.query);
        } else {
            assert_non_null(u.query);
            assert_int_equal(u.query_len, strlen(t[i].query));
            assert_memory_equal(u.query, t[i].query, u.query_len);
        }
    }
}

static void refuses_urls(void **state)
{
    static const char *const bad[] = {
        "ftp://h/x",      "h/x",           "http:/h",           "http://",        "http:///x",
        "http://u:p@h/",  "http://h:0/",   "http://h:65536/",   "http://h:8a/",   "http://h x/",
        "http://h/a b",   "http://h/\x7f", "http://h/\xc3\xa9", "http://[::1/",   "http://[]/",
        "http://[::1]x/", "http://h%41/",  "http://h:1:2/",     "http://[g::1]/",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mb_h1_url u;
        const char *why = NULL;
        if (mb_h1_url_split(bad[i], &u, &why) == 0)
            fail_msg("taken: %s", bad[i]);
        assert_non_null(why);
    }
}

/* ------------------------------------------------------------------ */
/* Responses                                                          */
/* ------------------------------------------------------------------ */

typedef struct outcome {
    int rc;
    int status, keep_alive;
    long long length;
    char body[512];
    size_t body_len;
    char retry_after[64];
    const char *err;
    int closed_early;
} outcome;

/* Feeds text to a fresh parser in pieces of step bytes (0 = all at once),
 * then the close when eof. */
static outcome feed(const char *text, size_t len, size_t step, int eof)
{
    char *buf = malloc(len + 1);
    size_t have = 0, given = 0;
    mb_h1_resp r;
    outcome o = {0};

    assert_non_null(buf);
    mb_h1_resp_init(&r);
    o.rc = MB_H1_MORE;
    while (given < len && o.rc == MB_H1_MORE) {
        size_t n = step == 0 || step > len - given ? len - given : step;
        memcpy(buf + have, text + given, n);
        have += n;
        given += n;
        o.rc = mb_h1_parse(&r, buf, &have, 0);
    }
    if (o.rc == MB_H1_MORE && eof)
        o.rc = mb_h1_parse(&r, buf, &have, 1);
    o.status = r.status;
    o.keep_alive = r.keep_alive;
    o.length = r.length;
    o.err = r.err;
    o.closed_early = r.closed_early;
    snprintf(o.retry_after, sizeof(o.retry_after), "%s", r.retry_after);
    if (o.rc == MB_H1_DONE) {
        assert_true(r.out < sizeof(o.body));
        memcpy(o.body, buf, r.out);
        o.body_len = r.out;
    }
    free(buf);
    return o;
}

/* Whole and a byte at a time must read the same. */
static outcome read_both(const char *text, int eof)
{
    size_t len = strlen(text);
    outcome a = feed(text, len, 0, eof), b = feed(text, len, 1, eof);

    assert_int_equal(a.rc, b.rc);
    assert_int_equal(a.status, b.status);
    assert_int_equal(a.keep_alive, b.keep_alive);
    assert_int_equal(a.body_len, b.body_len);
    assert_memory_equal(a.body, b.body, a.body_len);
    assert_string_equal(a.retry_after, b.retry_after);
    return a;
}

static void expect_body(const outcome *o, const char *body)
{
    assert_int_equal(o->rc, MB_H1_DONE);
    assert_int_equal(o->body_len, strlen(body));
    assert_memory_equal(o->body, body, o->body_len);
}

static void reads_lengths_and_chunks(void **state)
{
    outcome o;
    (void)state;

    o = read_both("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                  "\r\n{\"ok\":true}",
                  0);
    expect_body(&o, "{\"ok\":true}");
    assert_int_equal(o.status, 200);
    assert_true(o.keep_alive);
    assert_int_equal(o.length, 11);

    /* chunks with extensions, a trailer, bare LF line ends */
    o = read_both("HTTP/1.1 201 Created\nTransfer-Encoding: chunked\n\n"
                  "5;name=value\r\nhello\r\n1\n \n0\r\nX-Trailer: 1\r\n\r\n",
                  0);
    expect_body(&o, "hello ");
    assert_int_equal(o.status, 201);
    assert_true(o.keep_alive);
    assert_int_equal(o.length, -1);

    /* upper-case hex, a chunk size with leading zeros and blanks before ';' */
    o = read_both("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
                  "0A \t;x\r\n0123456789\r\n00\r\n\r\n",
                  0);
    expect_body(&o, "0123456789");

    /* no length: the body runs to the close, and the connection is done */
    o = read_both("HTTP/1.0 200 ok\r\nContent-type: text/html\r\n\r\n<HTML>x</HTML>", 1);
    expect_body(&o, "<HTML>x</HTML>");
    assert_false(o.keep_alive);
    o = feed("HTTP/1.1 200 OK\r\n\r\nabc", 22, 0, 0);
    assert_int_equal(o.rc, MB_H1_MORE); /* not done until the close */

    /* 204 and 304 have no body whatever they say */
    o = read_both("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 0);
    expect_body(&o, "");
    o = read_both("HTTP/1.1 304 Not Modified\r\n\r\n", 0);
    expect_body(&o, "");
    o = read_both("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0);
    expect_body(&o, "");
    assert_true(o.keep_alive);
}

static void reads_interim_and_connection_headers(void **state)
{
    outcome o;
    (void)state;

    /* interim responses are skipped, their headers forgotten */
    o = read_both(
        "HTTP/1.1 100 Continue\r\nRetry-After: 9\r\n\r\n"
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After:  2 \r\nContent-Length: 2\r\n\r\n{}",
        0);
    expect_body(&o, "{}");
    assert_int_equal(o.status, 429);
    assert_string_equal(o.retry_after, "2");

    o = read_both("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx",
                  0);
    expect_body(&o, "x");
    assert_false(o.keep_alive);
    o = read_both("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx", 0);
    assert_true(o.keep_alive);
    o = read_both("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", 0);
    assert_false(o.keep_alive);
    /* the same length twice is one length */
    o = read_both("HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx", 0);
    expect_body(&o, "x");
    /* framed both ways: chunked wins, and the connection is not trusted after */
    o = read_both("HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "1\r\nx\r\n0\r\n\r\n",
                  0);
    expect_body(&o, "x");
    assert_false(o.keep_alive);
    /* bytes after the response, read with it: done, but the connection is out
     * of step (read later, they find the connection idle, which then closes) */
    o = feed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1", 47, 0, 0);
    expect_body(&o, "x");
    assert_false(o.keep_alive);
    /* no reason phrase */
    o = read_both("HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n", 0);
    expect_body(&o, "");
    assert_int_equal(o.status, 503);
}

static void refuses_malformed(void **state)
{
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 x\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
        "\r\nHTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: novalue\r\n\r\n",
        "HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        outcome o = read_both(bad[i], 0);
        if (o.rc != MB_H1_ERROR)
            fail_msg("taken (rc %d): %s", o.rc, bad[i]);
        assert_non_null(o.err);
        assert_false(o.closed_early);
    }
}

static void tells_a_close_too_early(void **state)
{
    static const char *const cut[] = {
        "",
        "HTTP/1.1 200 OK\r\nContent-Le",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        outcome o = read_both(cut[i], 1);
        if (o.rc != MB_H1_ERROR || !o.closed_early)
            fail_msg("not a close too early (rc %d): %s", o.rc, cut[i]);
    }
    assert_string_equal(read_both("", 1).err, "the connection closed without a reply");
}

static void bounds_the_head(void **state)
{
    size_t n = MB_H1_MAX_HEAD + 100;
    char *big = malloc(n + 1);
    outcome o;
    (void)state;

    assert_non_null(big);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(big + 20, 'a', n - 20);
    big[n] = '\0';
    o = feed(big, n, 4096, 0);
    assert_int_equal(o.rc, MB_H1_ERROR);
    assert_string_equal(o.err, "a response head larger than 64 kB");
    free(big);
}

/* A head of n bytes in all (X padded): "HTTP/1.1 200 OK\r\nX: aaa\r\nContent-Length: 2\r\n\r\nok". */
static char *head_of(size_t n)
{
    static const char pre[] = "HTTP/1.1 200 OK\r\nX: ", post[] = "\r\nContent-Length: 2\r\n\r\n";
    size_t pad = n - (sizeof(pre) - 1) - (sizeof(post) - 1);
    char *t = malloc(n + 3);

    assert_non_null(t);
    memcpy(t, pre, sizeof(pre) - 1);
    memset(t + sizeof(pre) - 1, 'a', pad);
    memcpy(t + n - (sizeof(post) - 1), post, sizeof(post) - 1);
    memcpy(t + n, "ok", 3);
    return t;
}

/* A chunked reply whose first chunk-size line has n bytes before its CRLF. */
static char *chunk_line_of(size_t n)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                      tail[] = "\r\nok\r\n0\r\n\r\n";
    size_t hl = sizeof(head) - 1;
    char *t = malloc(hl + n + sizeof(tail));

    assert_non_null(t);
    memcpy(t, head, hl);
    memcpy(t + hl, "2;x=", 4);
    memset(t + hl + 4, 'e', n - 4);
    memcpy(t + hl + n, tail, sizeof(tail));
    return t;
}

/* The limits hold the same for a reply read whole and one a byte at a time: how the network
 * cuts a reply must not decide whether it is read (a long chunk-size line was refused only
 * while it was still arriving; the fuzzer found it). */
static void limits_alike_whole_or_cut(void **state)
{
    char *t;
    outcome o;
    (void)state;

    t = chunk_line_of(1024);
    expect_body((o = read_both(t, 0), &o), "ok");
    free(t);
    t = chunk_line_of(1025);
    o = read_both(t, 0);
    assert_int_equal(o.rc, MB_H1_ERROR);
    assert_string_equal(o.err, "a chunk-size line too long");
    free(t);

    t = head_of(MB_H1_MAX_HEAD);
    expect_body((o = read_both(t, 0), &o), "ok");
    free(t);
    t = head_of(MB_H1_MAX_HEAD + 1);
    o = read_both(t, 0);
    assert_int_equal(o.rc, MB_H1_ERROR);
    assert_string_equal(o.err, "a response head larger than 64 kB");
    free(t);
}

/* ------------------------------------------------------------------ */
/* Dates                                                              */
/* ------------------------------------------------------------------ */

static void reads_dates(void **state)
{
    time_t t = 0;
    (void)state;

    assert_int_equal(mb_h1_date("Sun, 06 Nov 1994 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(mb_h1_date("Sunday, 06-Nov-94 08:49:37 GMT", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(mb_h1_date("Sun Nov  6 08:49:37 1994", &t), 0);
    assert_int_equal(t, 784111777);
    assert_int_equal(mb_h1_date("Sun Nov 16 08:49:37 1994 \r\n", &t), 0);
    assert_int_equal(t, 784111777 + 10 * 86400);
    assert_int_equal(mb_h1_date("Thu, 01 Jan 1970 00:00:00 GMT", &t), 0);
    assert_int_equal(t, 0);

    assert_int_equal(mb_h1_date("Sun, 06 Nov 1994 08:49:37 UTC", &t), -1);
    assert_int_equal(mb_h1_date("Sun, 6 Nov 1994 08:49:37 GMT", &t), -1);
    assert_int_equal(mb_h1_date("Sun, 31 Feb 1994 08:49:37 GMT", &t), -1);
    assert_int_equal(mb_h1_date("Sun, 06 Nov 1994 24:00:00 GMT", &t), -1);
    assert_int_equal(mb_h1_date("Sun, 06 Nov 1994 08:49:37 GMT x", &t), -1);
    assert_int_equal(mb_h1_date("Sun, 06 Nov 94 08:49:37 GMT", &t), -1);
    assert_int_equal(mb_h1_date("Xyz, 06 Nov 1994 08:49:37 GMT", &t), -1);
    assert_int_equal(mb_h1_date("Sun Nov 6 08:49:37", &t), -1);
    assert_int_equal(mb_h1_date("", &t), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(splits_urls),
        cmocka_unit_test(refuses_urls),
        cmocka_unit_test(reads_lengths_and_chunks),
        cmocka_unit_test(reads_interim_and_connection_headers),
        cmocka_unit_test(refuses_malformed),
        cmocka_unit_test(tells_a_close_too_early),
        cmocka_unit_test(bounds_the_head),
        cmocka_unit_test(limits_alike_whole_or_cut),
        cmocka_unit_test(reads_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
