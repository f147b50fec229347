/* mb_buf.h: a growable string buffer and the byte-level text helpers several modules share. */
#ifndef MB_BUF_H
#define MB_BUF_H

#include <stddef.h>

/* Appends never truncate: an allocation failure sets oom and later appends
 * do nothing, so a builder checks once at the end.  Zero-initialise it. */
typedef struct mb_buf {
    char *p; /* NUL-terminated once anything was added */
    size_t len, cap;
    int oom;
} mb_buf;

void mb_buf_add(mb_buf *b, const void *s, size_t n);
void mb_buf_puts(mb_buf *b, const char *s);

/* One byte as RFC 3986 would write it: unreserved (A-Z a-z 0-9 - _ . ~) as
 * is, anything else %XX with upper-case hex. */
void mb_buf_pct_byte(mb_buf *b, unsigned char c);

/* Every byte of s[0..n) as mb_buf_pct_byte writes it; runs of unreserved bytes are added
 * whole (every signed request percent-encodes its path and query). */
void mb_buf_pct_encode(mb_buf *b, const char *s, size_t n);

/* How many of the first bytes of s[0..n) are unreserved (written as they are). */
size_t mb_pct_plain(const char *s, size_t n);

/* The text built so far (new: free(); "" when nothing was added), or NULL if
 * an append failed.  The buffer is reset either way. */
char *mb_buf_take(mb_buf *b);

/* Releases the text.  The buffer can be reused. */
void mb_buf_free(mb_buf *b);

/* The value of a hex digit, or -1. */
int mb_hexval(int c);

/* A NUL-terminated copy of n bytes that need not be terminated themselves
 * (a Kafka payload or key: strndup would scan past them for a NUL).
 * New: free(); NULL on out of memory. */
char *mb_memdup_str(const void *p, size_t n);

#endif
