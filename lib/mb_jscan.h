/* mb_jscan.h: a few values read out of a JSON text without building a tree.
 *
 * A cloud reply is read for a handful of fields (a node's name, a release's status), and
 * json_loadb spends most of its time on the rest: an allocation for every key, string and
 * number of the reply.  mb_jscan checks the whole text as json_loadb(text, len, 0) does and
 * keeps only where the asked-for values are; the caller decodes those it needs. */
#ifndef MB_JSCAN_H
#define MB_JSCAN_H

#include <stddef.h>

#include <jansson.h>

typedef enum mb_jtype {
    MB_JNONE = 0, /* the path is not in the text */
    MB_JOBJECT,
    MB_JARRAY,
    MB_JSTRING,
    MB_JINTEGER, /* no fraction, no exponent, fits in long long (json_is_integer) */
    MB_JREAL,
    MB_JTRUE,
    MB_JFALSE,
    MB_JNULL
} mb_jtype;

/* A value where it stands in the text (borrowed from it). */
typedef struct mb_jval {
    mb_jtype type;
    const char *text; /* as written: a string with its quotes, an object or array whole */
    size_t len;
    size_t n; /* elements of an array; 0 for any other value */
} mb_jval;

/* Most paths one mb_jscan call reads, and most keys in one path. */
#define MB_JSCAN_MAX_PATHS 16
#define MB_JSCAN_MAX_KEYS  8

/* Reads the text (len bytes, need not be NUL-terminated), which must be one JSON object, and
 * fills vals[i] with the value at paths[i]: object keys joined by dots ("metadata.uid"; a key
 * holding a dot cannot be asked for), MB_JNONE when absent.  A repeated key counts once, the
 * last one, as in jansson.  Returns 0, or -1 when json_loadb(text, len, 0) would fail or give
 * something else than an object, or a path is empty or too long (then vals say nothing).
 * One difference from json_loadb, on the strict side: a NUL byte is always refused, where
 * jansson 2.14 skips one that follows a number, true, false or null. */
int mb_jscan(const char *text, size_t len, const char *const *paths, size_t npaths, mb_jval *vals);

/* Calls fn with each element of an array from mb_jscan, in order; stops at the first
 * nonzero return and gives it back.  0 when every element was seen; -1 if a is no array. */
typedef int mb_jscan_fn(void *arg, size_t i, const mb_jval *elem);
int mb_jscan_each(const mb_jval *a, mb_jscan_fn *fn, void *arg);

/* A string value decoded (escapes resolved; never holds a NUL): a new string, or NULL when v
 * is not a string.  Out of memory: NULL and *oom set. */
char *mb_jval_strdup(const mb_jval *v, int *oom);

/* A string value decoded into out (room for outlen bytes, NUL included): 0, or -1 with out
 * "" when v is not a string or does not fit. */
int mb_jval_str(const mb_jval *v, char *out, size_t outlen);

/* Whether v is a string equal to s once decoded. */
int mb_jval_streq(const mb_jval *v, const char *s);

/* An integer value: 1 and *out, or 0 when v is not one (a real, as json_is_integer). */
int mb_jval_int(const mb_jval *v, long long *out);

/* The tree json_loadb(text, len, 0, NULL) builds (an object or an array), in a quarter of its
 * instructions: strings without escapes are copied whole, not a byte at a time through a
 * stream.  NULL where json_loadb fails, and out of memory; a NUL byte is refused as by
 * mb_jscan. */
json_t *mb_jscan_tree(const char *text, size_t len);

#endif
