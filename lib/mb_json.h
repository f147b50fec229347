/* mb_json.h: small strict-validation helpers over jansson, shared by the contract parsers. */
#ifndef MB_JSON_H
#define MB_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "mb_buf.h"

/* Where a validation stands: the first error is kept (curl's Curl_failf), so
 * checks can run on and the most specific, earliest cause is reported. */
typedef struct mb_jcheck {
    char *err; /* borrowed: caller's buffer; "" until the first failure */
    size_t errlen;
    int failed;
} mb_jcheck;

/* Sets up c over err (borrowed for c's life) and clears err. */
void mb_jcheck_init(mb_jcheck *c, char *err, size_t errlen);

/* Records "<path>: <reason>" unless an error is already held.  Returns -1. */
int mb_jcheck_fail(mb_jcheck *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails on the first key of obj not in allowed (NULL-terminated).  0 or -1. */
int mb_jcheck_keys(mb_jcheck *c, const char *path, const json_t *obj, const char *const *allowed);

/* A rule on a string: NULL when s is valid, else a static reason. */
typedef const char *(*mb_jrule)(const char *s);

/* Reads obj[key] as a string checked by rule (may be NULL).  Absent: *out NULL,
 * and "<path>.<key>: is required" if required.  *out is borrowed from obj.
 * Returns 0 or -1. */
int mb_jcheck_str(mb_jcheck *c, const json_t *obj, const char *path, const char *key, int required,
                  mb_jrule rule, const char **out);

/* Reads obj[key] as a JSON Schema integer in min..max.  Absent: *out untouched,
 * and an error if required.  Returns 0 or -1. */
int mb_jcheck_int(mb_jcheck *c, const json_t *obj, const char *path, const char *key, int required,
                  long long min, long long max, long long *out);

/* Number of Unicode code points in a valid UTF-8 string (jansson guarantees
 * validity), which is how JSON Schema's minLength/maxLength count. */
size_t mb_json_utf8_len(const char *s);

/* 1 if len bytes at s are UTF-8 that jansson's json_string would take (no NUL, no
 * overlong form, no surrogate, nothing above U+10FFFF), else 0. */
int mb_json_utf8_valid(const char *s, size_t len);

/* A JSON Schema "integer": a JSON integer, or a real with no fraction that
 * fits in long long (draft 2020-12 treats 1.0 as an integer).  Returns 1 and
 * *out, or 0. */
int mb_json_integer(const json_t *v, long long *out);

/* 1 if every byte of s is an ASCII letter, digit, or one of punct. */
int mb_json_charset(const char *s, const char *punct);

/* 1 if s matches the RFC 3339 date-time form the schemas accept:
 * YYYY-MM-DDTHH:MM:SS[.frac(1..9)](Z|+HH:MM|-HH:MM), upper-case T and Z,
 * fields in range (seconds up to 60 for leap seconds). */
int mb_json_rfc3339(const char *s);

/* Writes now (UTC, millisecond precision, "2024-05-01T12:00:00.123Z") or the
 * given epoch milliseconds into buf.  buf needs 25 bytes.  Returns buf. */
char *mb_json_time_ms(long long epoch_ms, char *buf, size_t len);

/* Room mb_json_fmt_ll needs: "-9223372036854775808" and the terminator. */
#define MB_JSON_LL_MAX 21

/* Writes v as "%lld" would into buf (MB_JSON_LL_MAX bytes), NUL-terminated, without
 * printf's cost: the compact writer's integers, Redis arguments, timestamps.  Returns the
 * length. */
size_t mb_json_fmt_ll(char *buf, long long v);

/* Wall clock in epoch milliseconds. */
long long mb_json_now_ms(void);

/* Fills buf with n random bytes from /dev/urandom (getrandom).  0 or -1. */
int mb_json_random(void *buf, size_t n);

/* ---- compact writer
 * jansson's json_dumps costs a callback per token, snprintf per integer and strbuffer
 * reallocs; the worker dumps the whole state document at every checkpoint.  These write
 * the same bytes as json_dumps(v, JSON_COMPACT) for every tree jansson can hold: keys in
 * iteration order (insertion order), strings escaped as jansson escapes them, reals as
 * its "%.17g" plus ".0", and they refuse what it refuses: invalid UTF-8 in a string value,
 * a container that contains itself.  One quirk is kept on purpose: json_dumps ignores a
 * failing object key (invalid UTF-8, only possible through the *_nocheck setters) and
 * writes the part it had flushed; so do these, so that the two never differ. */

/* Appends v (any value, as with JSON_COMPACT | JSON_ENCODE_ANY) to b.  0, or -1 with b
 * back at its length on entry (or b->oom set when an allocation failed). */
int mb_json_dump(mb_buf *b, const json_t *v);

/* Appends the members of object obj as json_dumps would write them, without the braces,
 * leaving out members whose key is in skip (NULL-terminated; NULL for none): what the
 * dump of a copy of obj with those keys deleted would have inside its braces.
 * 0, or -1 as mb_json_dump (also when obj is not an object). */
int mb_json_dump_members(mb_buf *b, const json_t *obj, const char *const *skip);

/* Appends s (len bytes) as a quoted JSON string, escaped as json_dumps escapes it.  0, or
 * -1 on invalid UTF-8 (b then holds part of it: the caller drops what it was building). */
int mb_json_put_str(mb_buf *b, const char *s, size_t len);

/* json_dumps(v, JSON_COMPACT): new string (free()), or NULL when v is not an array or
 * object, cannot be written, or memory ran out. */
char *mb_json_dumps(const json_t *v);

#endif
