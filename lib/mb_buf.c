/* mb_buf.c: growable string buffer, percent-encoding, hex digits. */
#include "mb_buf.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void mb_buf_add(mb_buf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void mb_buf_puts(mb_buf *b, const char *s)
{
    mb_buf_add(b, s, strlen(s));
}

/* RFC 3986's unreserved set, ASCII only whatever the locale says isalnum is, as a bit per
 * byte: every signed request's path and query go through it a byte at a time. */
static const uint64_t unreserved_bits[4] = {
    0x03ff600000000000, /* '-' '.' '0'-'9' */
    0x47fffffe87fffffe, /* 'A'-'Z' '_' 'a'-'z' '~' */
};

static int unreserved(unsigned char c)
{
    return (int)((unreserved_bits[c >> 6] >> (c & 63)) & 1);
}

size_t mb_pct_plain(const char *s, size_t n)
{
    size_t i = 0;

    while (i < n && unreserved((unsigned char)s[i]))
        i++;
    return i;
}

void mb_buf_pct_byte(mb_buf *b, unsigned char c)
{
    static const char hex[] = "0123456789ABCDEF";

    if (unreserved(c)) {
        mb_buf_add(b, &c, 1);
    } else {
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        mb_buf_add(b, esc, 3);
    }
}

void mb_buf_pct_encode(mb_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t run = mb_pct_plain(s + i, n - i);
        if (run > 0) {
            mb_buf_add(b, s + i, run);
            i += run;
        } else {
            mb_buf_pct_byte(b, (unsigned char)s[i++]);
        }
    }
}

char *mb_buf_take(mb_buf *b)
{
    char *p;

    if (!b->oom && b->p == NULL)
        mb_buf_add(b, "", 0);
    if (b->oom) {
        mb_buf_free(b);
        return NULL;
    }
    p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void mb_buf_free(mb_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}

int mb_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

char *mb_memdup_str(const void *p, size_t n)
{
    char *s = malloc(n + 1);

    if (s == NULL)
        return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}
