/* test_buf.c: the growable buffer, percent-encoding and the small byte helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mb_buf.h"

static void grows_and_takes(void **state)
{
    (void)state;
    mb_buf b = {0};
    char *s;

    for (int i = 0; i < 1000; i++)
        mb_buf_puts(&b, "abc");
    assert_int_equal(b.len, 3000);
    s = mb_buf_take(&b);
    assert_int_equal(strlen(s), 3000);
    assert_null(b.p);
    free(s);
    s = mb_buf_take(&b); /* nothing added: "" not NULL */
    assert_string_equal(s, "");
    free(s);
}

static void percent_encoding(void **state)
{
    (void)state;
    mb_buf b = {0};
    const char in[] = "a-Z_0.9~ /:%\xe4\xb8\x80";
    char *s;

    mb_buf_pct_encode(&b, in, strlen(in));
    s = mb_buf_take(&b);
    assert_string_equal(s, "a-Z_0.9~%20%2F%3A%25%E4%B8%80");
    free(s);
    assert_int_equal(mb_pct_plain(in, strlen(in)), 8); /* up to the space */
    assert_int_equal(mb_pct_plain(in, 3), 3);
    assert_int_equal(mb_pct_plain("\xe4x", 2), 0); /* bytes above ASCII are never plain */
    assert_int_equal(mb_pct_plain("", 0), 0);
    /* every byte, against RFC 3986's unreserved set written out */
    for (int c = 0; c < 256; c++) {
        char one = (char)c;
        int want = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '~';
        assert_int_equal(mb_pct_plain(&one, 1), want);
    }
}

static void hex_and_memdup(void **state)
{
    (void)state;
    const char raw[4] = {'k', 'e', 'y', 'X'}; /* no terminator within the 3 bytes */
    char *s = mb_memdup_str(raw, 3);

    assert_string_equal(s, "key");
    free(s);
    assert_int_equal(mb_hexval('0'), 0);
    assert_int_equal(mb_hexval('a'), 10);
    assert_int_equal(mb_hexval('F'), 15);
    assert_int_equal(mb_hexval('g'), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grows_and_takes),
        cmocka_unit_test(percent_encoding),
        cmocka_unit_test(hex_and_memdup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
