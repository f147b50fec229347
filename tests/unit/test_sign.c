/* test_sign.c: SDK-HMAC-SHA256 against the published vectors and the canonical-form edge cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mb_sign.h"

static void vector_vpc_list(void **state)
{
    (void)state;
    mb_hdr h[] = {
        {"Content-Type", "application/json"},
        {"Host", "service.region.example.com"},
        {"X-Sdk-Date", "20191115T033655Z"},
    };
    char *c = mb_sign_canonical("GET", "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
                                "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0", h, 3,
                                "content-type;host;x-sdk-date", NULL, 0);
    char hash[65], sig[65], auth[512];

    assert_non_null(c);
    assert_string_equal(c, "GET\n/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/\n"
                           "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0\n"
                           "content-type:application/json\nhost:service.region.example.com\n"
                           "x-sdk-date:20191115T033655Z\n\ncontent-type;host;x-sdk-date\n"
                           "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    mb_sign_sha256_hex(c, strlen(c), hash);
    assert_string_equal(hash, "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a");
    mb_sign_signature("MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", "20191115T033655Z", c, sig);
    assert_string_equal(sig, "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe");
    free(c);

    assert_int_equal(mb_sign_authorization("QTWAOYTTINDUT2QVKYUC",
                                           "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", "GET",
                                           "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
                                           "marker=13551d6b-755d-4757-b956-536f674975c0&limit=2", h,
                                           3, NULL, 0, auth, sizeof(auth)),
                     0);
    assert_string_equal(
        auth, "SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, "
              "SignedHeaders=content-type;host;x-sdk-date, "
              "Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe");
}

static void vector_sdk_get(void **state)
{
    (void)state;
    mb_hdr h[] = {{"X-Sdk-Date", "20060102T150405Z"}};
    char auth[256];

    assert_int_equal(mb_sign_authorization("AccessKey", "SecretKey", "GET", "/path", "limit=1", h,
                                           1, NULL, 0, auth, sizeof(auth)),
                     0);
    assert_non_null(
        strstr(auth, "Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624"));
    assert_non_null(strstr(auth, "SignedHeaders=x-sdk-date,"));
}

static void vector_sdk_post_body(void **state)
{
    (void)state;
    mb_hdr h[] = {{"X-Sdk-Date", "20060102T150405Z"}};
    const char body[] = "{\"Name\":\"test\",\"Id\":1}\n";
    char auth[256];

    assert_int_equal(mb_sign_authorization("AccessKey", "SecretKey", "POST", "/path", "key=value",
                                           h, 1, body, strlen(body), auth, sizeof(auth)),
                     0);
    assert_non_null(
        strstr(auth, "Signature=cecc2af119b18ab70b4d094c0750f3b42c02f254903179a0fc2cc72fc9db4f59"));
}

static char *canon_query(const char *q)
{
    mb_hdr h[] = {{"x-sdk-date", "20060102T150405Z"}};
    char *c = mb_sign_canonical("GET", "/", q, h, 1, "x-sdk-date", NULL, 0);
    char *start, *end, *out;

    assert_non_null(c);
    start = strchr(strchr(c, '\n') + 1, '\n') + 1;
    end = strchr(start, '\n');
    out = strndup(start, (size_t)(end - start));
    free(c);
    return out;
}

static void query_edge_cases(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {NULL, ""},
        {"", ""},
        {"b=2&a=1", "a=1&b=2"},
        {"multi=3&multi=1&multi=2", "multi=1&multi=2&multi=3"},
        {"q=a b", "q=a%20b"},
        {"q=a+b", "q=a%20b"},
        {"q=a%20b", "q=a%20b"},
        {"path=/tmp/123", "path=%2Ftmp%2F123"},
        {"test=\xe4\xb8\x80 (&=?!#%.*)", "test=%E4%B8%80%20%28"},
        {"star=*&tilde=~", "star=%2A&tilde=~"},
        {"empty=&flag", "empty=&flag="},
        {"lower=%2f", "lower=%2F"},
        {"enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123&"
         "test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29",
         "enable=true&limit=1&multi=1&multi=2&multi=3&path=%2Ftmp%2F123&"
         "test=%E4%B8%80%20%28%26%3D%3F%21%23%25.%2A%29"},
    };

    /* more parameters than the signer keeps on its stack, in reverse order */
    char many[400] = "", want[400] = "", *got;
    for (int i = 40; i >= 10; i--)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%sp%d=%d", i < 40 ? "&" : "", i,
                 i);
    for (int i = 10; i <= 40; i++)
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%sp%d=%d", i > 10 ? "&" : "", i,
                 i);
    got = canon_query(many);
    assert_string_equal(got, want);
    free(got);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        got = canon_query(cases[i].in);
        if (strncmp(cases[i].in ? cases[i].in : "", "test=\xe4", 6) == 0) {
            /* '&' inside the raw value splits it, as on the wire. */
            assert_non_null(strstr(got, cases[i].want));
        } else {
            assert_string_equal(got, cases[i].want);
        }
        free(got);
    }
}

static void path_encoding(void **state)
{
    (void)state;
    mb_hdr h[] = {{"x-sdk-date", "20060102T150405Z"}};
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", "/"},
        {"/", "/"},
        {"/a/b", "/a/b/"},
        {"/a/b/", "/a/b/"},
        {"/x y/z", "/x%20y/z/"},
        {"/x%20y/z", "/x%20y/z/"},
        {"/k8s/c-1/api/v1/nodes/node.1~a", "/k8s/c-1/api/v1/nodes/node.1~a/"},
        {"/a:b@c", "/a%3Ab%40c/"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *c = mb_sign_canonical("GET", cases[i].in, NULL, h, 1, "x-sdk-date", NULL, 0);
        assert_non_null(c);
        char *line = strchr(c, '\n') + 1;
        *strchr(line, '\n') = '\0';
        assert_string_equal(line, cases[i].want);
        free(c);
    }
}

static void headers_and_body(void **state)
{
    (void)state;
    mb_hdr h[] = {{"X-Sdk-Date", " 20060102T150405Z "}, {"Host", "h:8080"}};
    char *c = mb_sign_canonical("POST", "/p", NULL, h, 2, "X-SDK-DATE;host", "abc", 3);

    assert_non_null(c);
    assert_non_null(strstr(c, "\nhost:h:8080\nx-sdk-date:20060102T150405Z\n\nhost;x-sdk-date\n"));
    assert_non_null(strstr(c, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    free(c);

    /* A signed header that was not sent cannot be signed. */
    assert_null(mb_sign_canonical("GET", "/", NULL, h, 2, "content-type;x-sdk-date", NULL, 0));

    /* Nor more names than the signer holds (64, 1,023 characters): refused whole, never
     * signed in part, every header sent. */
    mb_hdr many[66];
    char hn[65][16], names[1200] = "x-sdk-date", *big;
    many[0] = h[0];
    for (int i = 0; i < 65; i++) {
        snprintf(hn[i], sizeof(hn[i]), "x-n%d", i);
        many[i + 1] = (mb_hdr){hn[i], "v"};
        if (i < 63)
            snprintf(names + strlen(names), sizeof(names) - strlen(names), ";%s", hn[i]);
    }
    c = mb_sign_canonical("GET", "/", NULL, many, 66, names, NULL, 0); /* 64 names */
    assert_non_null(c);
    free(c);
    snprintf(names + strlen(names), sizeof(names) - strlen(names), ";x-n63");
    assert_null(mb_sign_canonical("GET", "/", NULL, many, 66, names, NULL, 0));
    big = calloc(1, 1100);
    assert_non_null(big);
    memset(big, 'a', 1024);
    many[1] = (mb_hdr){big, "v"};
    assert_null(mb_sign_canonical("GET", "/", NULL, many, 2, big, NULL, 0));
    big[1023] = '\0';
    c = mb_sign_canonical("GET", "/", NULL, many, 2, big, NULL, 0);
    assert_non_null(c);
    free(c);
    free(big);

    mb_hdr u[] = {{"x-sdk-date", "20060102T150405Z"}, {"X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD"}};
    c = mb_sign_canonical("PUT", "/", NULL, u, 2, "x-sdk-date", "abc", 3);
    assert_non_null(c);
    assert_non_null(strstr(c, "\nUNSIGNED-PAYLOAD"));
    free(c);
}

static void parse_authorization(void **state)
{
    (void)state;
    char ak[64], sh[128], sig[65];

    assert_int_equal(
        mb_sign_parse_authorization(
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, "
            "Signature=5a2ce64c865e0e6046321c6f3d5a77ba8413eeaf355c3166c03d58d02ac79624",
            ak, sizeof(ak), sh, sizeof(sh), sig),
        0);
    assert_string_equal(ak, "AK1");
    assert_string_equal(sh, "host;x-sdk-date");
    assert_int_equal(mb_sign_parse_authorization("Bearer x", ak, sizeof(ak), sh, sizeof(sh), sig),
                     -1);
    assert_int_equal(mb_sign_parse_authorization("SDK-HMAC-SHA256 Access=A, Signature=ab", ak,
                                                 sizeof(ak), sh, sizeof(sh), sig),
                     -1);
}

static void dates(void **state)
{
    (void)state;
    char d[17];
    time_t t;

    mb_sign_date(1136214245, d);
    assert_string_equal(d, "20060102T150405Z");
    assert_int_equal(mb_sign_date_parse(d, &t), 0);
    assert_int_equal(t, 1136214245);
    assert_int_equal(mb_sign_date_parse("2006-01-02T15:04:05Z", &t), -1);
    assert_int_equal(mb_sign_date_parse("20060102T150405", &t), -1);
}

/* RFC 4231 test cases 1, 2 and 6 (a key longer than the block is hashed first). */
static void hmac_rfc4231(void **state)
{
    static const struct {
        const char *key, *msg, *mac;
        size_t keylen;
    } c[] = {
        {"\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b",
         "Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 20},
        {"Jefe", "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 4},
        {NULL, "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 131},
    };
    unsigned char big[131], mac[MB_SIGN_MAC_LEN];
    char hex[2 * MB_SIGN_MAC_LEN + 1];

    (void)state;
    memset(big, 0xaa, sizeof(big));
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        mb_sign_hmac_sha256(c[i].key ? (const void *)c[i].key : big, c[i].keylen, c[i].msg,
                            strlen(c[i].msg), mac);
        for (size_t j = 0; j < sizeof(mac); j++) {
            hex[2 * j] = "0123456789abcdef"[mac[j] >> 4];
            hex[2 * j + 1] = "0123456789abcdef"[mac[j] & 15];
        }
        hex[sizeof(hex) - 1] = '\0';
        assert_string_equal(hex, c[i].mac);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vector_vpc_list),
        cmocka_unit_test(hmac_rfc4231),
        cmocka_unit_test(vector_sdk_get),
        cmocka_unit_test(vector_sdk_post_body),
        cmocka_unit_test(query_edge_cases),
        cmocka_unit_test(path_encoding),
        cmocka_unit_test(headers_and_body),
        cmocka_unit_test(parse_authorization),
        cmocka_unit_test(dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
