/* mb_jscan.c: JSON values found by path, the text checked as json_loadb checks it.
 *
 * One recursive descent over the text (RFC 8259: strings, escapes, UTF-8, numbers) with
 * jansson's own refusals on top: "\u0000", an integer outside long long, a real that
 * overflows, nesting past its depth limit.  Paths are followed by comparing each member's key
 * with the keys the paths still match at that depth; a subtree no path enters is only
 * checked.  Nothing is allocated, except for a real number longer than 63 characters, which
 * strtod needs NUL-terminated.  mb_jscan_tree walks the text with the same checks and builds
 * each value as it is read. */
#include "mb_jscan.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JS_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH: values nested deeper fail */
#define JS_KEY_MAX   64   /* key bytes compared with a path's; a longer key matches none */

typedef struct js_key {
    const char *k;
    size_t len;
} js_key;

typedef struct scan {
    const unsigned char *p, *end;
    int depth;
    mb_jval *vals;
    unsigned char nkeys[MB_JSCAN_MAX_PATHS];
    js_key keys[MB_JSCAN_MAX_PATHS][MB_JSCAN_MAX_KEYS];
} scan;

static void js_ws(scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int js_hex4(scan *s, unsigned *out)
{
    unsigned v = 0;
    if (s->end - s->p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int ch = s->p[i], d;
        if (ch >= '0' && ch <= '9')
            d = ch - '0';
        else if (ch >= 'a' && ch <= 'f')
            d = ch - 'a' + 10;
        else if (ch >= 'A' && ch <= 'F')
            d = ch - 'A' + 10;
        else
            return -1;
        v = v * 16 + (unsigned)d;
    }
    s->p += 4;
    *out = v;
    return 0;
}

/* Appends one byte to out (room for len, NUL included); *n counts every byte, so *n >= len
 * afterwards means it did not fit. */
static void js_put(char *out, size_t len, size_t *n, unsigned char ch)
{
    if (out != NULL && *n + 1 < len)
        out[*n] = (char)ch;
    (*n)++;
}

static void js_put_utf8(char *out, size_t len, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        js_put(out, len, n, (unsigned char)cp);
    } else if (cp < 0x800) {
        js_put(out, len, n, (unsigned char)(0xc0 | (cp >> 6)));
        js_put(out, len, n, (unsigned char)(0x80 | (cp & 0x3f)));
    } else if (cp < 0x10000) {
        js_put(out, len, n, (unsigned char)(0xe0 | (cp >> 12)));
        js_put(out, len, n, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
        js_put(out, len, n, (unsigned char)(0x80 | (cp & 0x3f)));
    } else {
        js_put(out, len, n, (unsigned char)(0xf0 | (cp >> 18)));
        js_put(out, len, n, (unsigned char)(0x80 | ((cp >> 12) & 0x3f)));
        js_put(out, len, n, (unsigned char)(0x80 | ((cp >> 6) & 0x3f)));
        js_put(out, len, n, (unsigned char)(0x80 | (cp & 0x3f)));
    }
}

/* A \u escape: four hex digits after the backslash and 'u', a surrogate pair joined.
 * jansson refuses U+0000 unless asked (JSON_ALLOW_NUL), so a decoded string has no NUL. */
static int js_escape_u(scan *s, char *out, size_t len, size_t *n)
{
    unsigned cp, lo;
    if (js_hex4(s, &cp) != 0 || cp == 0)
        return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return -1; /* a lone low surrogate */
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
            return -1;
        s->p += 2;
        if (js_hex4(s, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
            return -1;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    js_put_utf8(out, len, n, cp);
    return 0;
}

/* One UTF-8 sequence starting at a byte >= 0x80 (shortest form, no surrogates, at most
 * U+10FFFF). */
static int js_utf8(scan *s, char *out, size_t len, size_t *n)
{
    unsigned char c0 = *s->p;
    int more;
    unsigned cp, min;

    if (c0 >= 0xc2 && c0 <= 0xdf)
        more = 1, cp = c0 & 0x1f, min = 0x80;
    else if (c0 >= 0xe0 && c0 <= 0xef)
        more = 2, cp = c0 & 0x0f, min = 0x800;
    else if (c0 >= 0xf0 && c0 <= 0xf4)
        more = 3, cp = c0 & 0x07, min = 0x10000;
    else
        return -1;
    if (s->end - s->p <= more)
        return -1;
    for (int i = 1; i <= more; i++) {
        if ((s->p[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (s->p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    for (int i = 0; i <= more; i++)
        js_put(out, len, n, s->p[i]);
    s->p += more + 1;
    return 0;
}

/* Where a run of plain string bytes (printable ASCII but '"' and '\\') starting at p ends:
 * most of every name and value.  Eight bytes a step (SWAR): a byte is special when it is
 * below 0x20, has its high bit, or equals '"' or '\\'; borrows only run upwards from a
 * special byte, so the lowest one flagged is the first.  The bytes past the end read as 0,
 * which is special. */
static const unsigned char *js_plain_run(const unsigned char *p, const unsigned char *end)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;

    while (p < end) {
        uint64_t w = 0, quote, bslash, special;
        memcpy(&w, p, end - p >= 8 ? 8 : (size_t)(end - p));
        quote = w ^ (ones * '"');
        bslash = w ^ (ones * '\\');
        special = (((w - ones * 0x20) & ~w) | ((quote - ones) & ~quote) |
                   ((bslash - ones) & ~bslash) | w) &
                  highs;
        if (special != 0) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            return p + (__builtin_clzll(special) >> 3);
#else
            return p + (__builtin_ctzll(special) >> 3);
#endif
        }
        p += 8;
    }
    return end;
}

/* A string at s->p (the opening quote); decoded into out when not NULL.  *n: the decoded
 * length (may exceed len - 1: then out holds a prefix). */
static int js_string(scan *s, char *out, size_t len, size_t *n)
{
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    *n = 0;
    s->p++;
    while (s->p < s->end) {
        unsigned char ch = *s->p;
        if (ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\') {
            /* a run of plain ASCII: taken whole */
            const unsigned char *q = js_plain_run(s->p + 1, s->end);
            size_t run = (size_t)(q - s->p);
            if (out != NULL && *n + 1 < len)
                memcpy(out + *n, s->p, run < len - 1 - *n ? run : len - 1 - *n);
            *n += run;
            s->p = q;
            continue;
        }
        if (ch == '"') {
            s->p++;
            if (out != NULL && len > 0)
                out[*n < len ? *n : len - 1] = '\0';
            return 0;
        }
        if (ch < 0x20)
            return -1;
        if (ch >= 0x80) {
            if (js_utf8(s, out, len, n) != 0)
                return -1;
            continue;
        }
        s->p++; /* a backslash */
        if (s->p >= s->end)
            return -1;
        ch = *s->p++;
        if (ch == 'u') {
            if (js_escape_u(s, out, len, n) != 0)
                return -1;
            continue;
        }
        const char *e = ch ? strchr(esc_in, ch) : NULL;
        if (e == NULL)
            return -1;
        js_put(out, len, n, (unsigned char)esc_out[e - esc_in]);
    }
    return -1;
}

static int js_digits(scan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start ? 0 : -1;
}

/* The integer written at p (validated digits, an optional '-'): 0 and *out, or -1 outside
 * long long (jansson's "too big integer"). */
static int js_int_value(const unsigned char *p, const unsigned char *end, long long *out)
{
    int neg = *p == '-';
    unsigned long long v = 0, max = neg ? (unsigned long long)LLONG_MAX + 1 : LLONG_MAX;

    for (p += neg; p < end; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out =
        neg ? (v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v) : (long long)v;
    return 0;
}

/* The real written at p (len bytes) into *d: 1, or 0 when strtod takes it to infinity, which
 * jansson refuses ("real number overflow"), or out of memory. */
static int js_real_value(const unsigned char *p, size_t len, double *d)
{
    char small[64], *text = small;
    int fits;

    if (len >= sizeof(small) && (text = malloc(len + 1)) == NULL)
        return 0;
    memcpy(text, p, len);
    text[len] = '\0';
    errno = 0;
    *d = strtod(text, NULL);
    fits = !((*d == HUGE_VAL || *d == -HUGE_VAL) && errno == ERANGE);
    if (text != small)
        free(text);
    return fits;
}

/* A number at s->p: its type, and its value in *integer or *real. */
static int js_number(scan *s, mb_jtype *type, long long *integer, double *real)
{
    const unsigned char *start = s->p;
    int is_real = 0;

    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (js_digits(s) != 0)
        return -1;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        is_real = 1;
        if (js_digits(s) != 0)
            return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        is_real = 1;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (js_digits(s) != 0)
            return -1;
    }
    *type = is_real ? MB_JREAL : MB_JINTEGER;
    if (is_real)
        return js_real_value(start, (size_t)(s->p - start), real) ? 0 : -1;
    return js_int_value(start, s->p, integer);
}

static int js_word(scan *s, const char *w, size_t n)
{
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int js_value(scan *s, unsigned want, int kd, mb_jval *v);

/* Past an opening bracket: 1 when the container closes at once (closer consumed), else 0. */
static int js_open(scan *s, unsigned char closer)
{
    s->p++;
    js_ws(s);
    if (s->p < s->end && *s->p == closer) {
        s->p++;
        return 1;
    }
    return 0;
}

/* After an element or a member: 1 at the closer (consumed), 0 past a comma, -1 on anything
 * else. */
static int js_next(scan *s, unsigned char closer)
{
    js_ws(s);
    if (s->p >= s->end)
        return -1;
    if (*s->p == closer) {
        s->p++;
        return 1;
    }
    return *s->p++ == ',' ? 0 : -1;
}

static int js_array(scan *s, size_t *n)
{
    int rc;

    if (js_open(s, ']'))
        return 0;
    do {
        if (js_value(s, 0, 0, NULL) != 0)
            return -1;
        (*n)++;
    } while ((rc = js_next(s, ']')) == 0);
    return rc < 0 ? -1 : 0;
}

/* The paths of want whose key number kd is key (kn bytes decoded; kn >= JS_KEY_MAX: none). */
static unsigned js_match(const scan *s, unsigned want, int kd, const char *key, size_t kn)
{
    unsigned m = 0;

    for (unsigned bits = want; bits != 0; bits &= bits - 1) {
        int i = __builtin_ctz(bits);
        const js_key *k = &s->keys[i][kd];
        if (kn == k->len && memcmp(key, k->k, kn) == 0)
            m |= 1u << i;
    }
    return m;
}

/* An object whose members the paths of want (kd keys matched so far) may enter. */
static int js_object(scan *s, unsigned want, int kd)
{
    char key[JS_KEY_MAX];
    size_t kn;
    int rc;

    if (js_open(s, '}'))
        return 0;
    do {
        unsigned m = 0, deeper = 0, here = 0;
        mb_jval v;

        js_ws(s);
        if (s->p >= s->end || *s->p != '"' ||
            js_string(s, want ? key : NULL, want ? sizeof(key) : 0, &kn) != 0)
            return -1;
        if (want != 0 && kn < sizeof(key))
            m = js_match(s, want, kd, key, kn);
        for (unsigned bits = m; bits != 0; bits &= bits - 1) {
            int i = __builtin_ctz(bits);
            s->vals[i].type = MB_JNONE; /* a repeated key: the last one counts */
            if (s->nkeys[i] == kd + 1)
                here |= 1u << i;
            else
                deeper |= 1u << i;
        }
        js_ws(s);
        if (s->p >= s->end || *s->p++ != ':')
            return -1;
        js_ws(s);
        if (js_value(s, deeper, kd + 1, here ? &v : NULL) != 0)
            return -1;
        for (unsigned bits = here; bits != 0; bits &= bits - 1)
            s->vals[__builtin_ctz(bits)] = v;
    } while ((rc = js_next(s, '}')) == 0);
    return rc < 0 ? -1 : 0;
}

/* A value at s->p (whitespace skipped before it); its place in *v when v is not NULL. */
static int js_value(scan *s, unsigned want, int kd, mb_jval *v)
{
    const unsigned char *start;
    mb_jtype type = MB_JNONE;
    size_t n = 0, sn;
    long long i;
    double d;
    int rc;

    js_ws(s);
    if (s->p >= s->end || ++s->depth > JS_MAX_DEPTH)
        return -1;
    start = s->p;
    switch (*s->p) {
    case '{': type = MB_JOBJECT, rc = js_object(s, want, kd); break;
    case '[': type = MB_JARRAY, rc = js_array(s, &n); break;
    case '"': type = MB_JSTRING, rc = js_string(s, NULL, 0, &sn); break;
    case 't': type = MB_JTRUE, rc = js_word(s, "true", 4); break;
    case 'f': type = MB_JFALSE, rc = js_word(s, "false", 5); break;
    case 'n': type = MB_JNULL, rc = js_word(s, "null", 4); break;
    default:
        rc = *s->p == '-' || (*s->p >= '0' && *s->p <= '9') ? js_number(s, &type, &i, &d) : -1;
        break;
    }
    s->depth--;
    if (rc == 0 && v != NULL) {
        v->type = type;
        v->text = (const char *)start;
        v->len = (size_t)(s->p - start);
        v->n = n;
    }
    return rc;
}

/* Splits each path at its dots into s->keys. */
static int js_paths(scan *s, const char *const *paths, size_t npaths)
{
    if (npaths > MB_JSCAN_MAX_PATHS)
        return -1;
    for (size_t i = 0; i < npaths; i++) {
        const char *p = paths[i];
        int k = 0;
        if (p == NULL)
            return -1;
        for (;;) {
            size_t len = strcspn(p, ".");
            if (len == 0 || len >= JS_KEY_MAX || k == MB_JSCAN_MAX_KEYS)
                return -1;
            s->keys[i][k].k = p;
            s->keys[i][k++].len = len;
            if (p[len] == '\0')
                break;
            p += len + 1;
        }
        s->nkeys[i] = (unsigned char)k;
    }
    return 0;
}

int mb_jscan(const char *text, size_t len, const char *const *paths, size_t npaths, mb_jval *vals)
{
    scan s;
    mb_jval top;
    int ok;

    for (size_t i = 0; i < npaths; i++)
        vals[i].type = MB_JNONE;
    if (text == NULL || js_paths(&s, paths, npaths) != 0)
        return -1;
    s.p = (const unsigned char *)text;
    s.end = s.p + len;
    s.depth = 0;
    s.vals = vals;
    js_ws(&s);
    ok = s.p < s.end && *s.p == '{' &&
         js_value(&s, npaths ? (unsigned)((1ull << npaths) - 1) : 0, 0, &top) == 0;
    if (ok) {
        js_ws(&s);
        ok = s.p == s.end;
    }
    if (!ok) {
        for (size_t i = 0; i < npaths; i++)
            vals[i].type = MB_JNONE;
        return -1;
    }
    return 0;
}

int mb_jscan_each(const mb_jval *a, mb_jscan_fn *fn, void *arg)
{
    scan s;
    size_t i = 0;

    if (a == NULL || a->type != MB_JARRAY)
        return -1;
    s.p = (const unsigned char *)a->text + 1;
    s.end = (const unsigned char *)a->text + a->len;
    s.depth = 0;
    for (;;) {
        mb_jval v;
        int rc;

        js_ws(&s);
        if (s.p < s.end && *s.p == ']')
            return 0;
        if (js_value(&s, 0, 0, &v) != 0)
            return -1; /* not from mb_jscan */
        if ((rc = fn(arg, i++, &v)) != 0)
            return rc;
        js_ws(&s);
        if (s.p < s.end && *s.p == ',')
            s.p++;
    }
}

char *mb_jval_strdup(const mb_jval *v, int *oom)
{
    char *out;
    size_t n;
    scan s;

    if (v == NULL || v->type != MB_JSTRING)
        return NULL;
    /* decoding never lengthens: the quoted text has room for the string and its NUL */
    if ((out = malloc(v->len - 1)) == NULL) {
        *oom = 1;
        return NULL;
    }
    if (memchr(v->text + 1, '\\', v->len - 2) == NULL) {
        memcpy(out, v->text + 1, v->len - 2);
        out[v->len - 2] = '\0';
        return out;
    }
    s.p = (const unsigned char *)v->text;
    s.end = s.p + v->len;
    s.depth = 0;
    if (js_string(&s, out, v->len - 1, &n) != 0) { /* not from mb_jscan */
        free(out);
        return NULL;
    }
    return out;
}

int mb_jval_str(const mb_jval *v, char *out, size_t outlen)
{
    size_t n;
    scan s;

    if (outlen == 0)
        return -1;
    out[0] = '\0';
    if (v == NULL || v->type != MB_JSTRING)
        return -1;
    s.p = (const unsigned char *)v->text;
    s.end = s.p + v->len;
    s.depth = 0;
    if (js_string(&s, out, outlen, &n) != 0 || n >= outlen) {
        out[0] = '\0';
        return -1;
    }
    return 0;
}

int mb_jval_streq(const mb_jval *v, const char *str)
{
    int oom = 0, eq;
    char *d;

    if (v == NULL || v->type != MB_JSTRING || str == NULL)
        return 0;
    if (memchr(v->text + 1, '\\', v->len - 2) == NULL)
        return strlen(str) == v->len - 2 && memcmp(str, v->text + 1, v->len - 2) == 0;
    d = mb_jval_strdup(v, &oom);
    eq = d != NULL && strcmp(d, str) == 0;
    free(d);
    return eq;
}

int mb_jval_int(const mb_jval *v, long long *out)
{
    const unsigned char *p;

    if (v == NULL || v->type != MB_JINTEGER)
        return 0;
    p = (const unsigned char *)v->text;
    return js_int_value(p, p + v->len, out) == 0;
}

/* ---- a whole tree ----------------------------------------------------------------- */

static json_t *jt_value(scan *s);

/* The string token at s->p decoded: its bytes, and their length in *n.  Borrowed from the
 * text when it holds no escape (a decoded escape is always shorter than its text, so equal
 * lengths mean none); else decoded into buf (room for len) or, when longer, a new *heap. */
static const char *jt_string(scan *s, char *buf, size_t len, char **heap, size_t *n)
{
    const unsigned char *start = s->p;
    char *out;

    *heap = NULL;
    if (js_string(s, NULL, 0, n) != 0)
        return NULL;
    if (*n == (size_t)(s->p - start) - 2)
        return (const char *)start + 1;
    out = *n < len ? buf : (*heap = malloc(*n + 1));
    if (out == NULL)
        return NULL;
    s->p = start;
    js_string(s, out, *n + 1, n); /* checked above */
    return out;
}

static json_t *jt_string_value(scan *s)
{
    char buf[256], *heap;
    size_t n;
    const char *str = jt_string(s, buf, sizeof(buf), &heap, &n);
    json_t *v = str ? json_stringn_nocheck(str, n) : NULL;

    free(heap);
    return v;
}

static json_t *jt_number(scan *s)
{
    mb_jtype type;
    long long i;
    double d;

    if (js_number(s, &type, &i, &d) != 0)
        return NULL;
    return type == MB_JINTEGER ? json_integer(i) : json_real(d);
}

/* Fills c, an empty array or object, with the members read by member up to closer: c, or
 * NULL with c freed. */
static json_t *jt_members(scan *s, json_t *c, unsigned char closer,
                          int (*member)(scan *s, json_t *c))
{
    int rc;

    if (c == NULL || js_open(s, closer))
        return c;
    while ((rc = member(s, c)) == 0 && (rc = js_next(s, closer)) == 0)
        ;
    if (rc < 0) {
        json_decref(c);
        return NULL;
    }
    return c;
}

static int jt_element(scan *s, json_t *a)
{
    json_t *v = jt_value(s);

    return v != NULL && json_array_append_new(a, v) == 0 ? 0 : -1;
}

static int jt_member(scan *s, json_t *o)
{
    char buf[128], *heap = NULL;
    const char *key = NULL;
    json_t *v = NULL;
    size_t kn;
    int rc;

    js_ws(s);
    if (s->p < s->end && *s->p == '"')
        key = jt_string(s, buf, sizeof(buf), &heap, &kn);
    if (key != NULL) {
        js_ws(s);
        if (s->p < s->end && *s->p++ == ':')
            v = jt_value(s);
    }
    /* a repeated key replaces the value in its first place, as json_loadb */
    rc = v != NULL ? json_object_setn_new_nocheck(o, key, kn, v) : -1;
    free(heap);
    return rc;
}

static json_t *jt_value(scan *s)
{
    json_t *v;

    js_ws(s);
    if (s->p >= s->end || ++s->depth > JS_MAX_DEPTH)
        return NULL;
    switch (*s->p) {
    case '{': v = jt_members(s, json_object(), '}', jt_member); break;
    case '[': v = jt_members(s, json_array(), ']', jt_element); break;
    case '"': v = jt_string_value(s); break;
    case 't': v = js_word(s, "true", 4) == 0 ? json_true() : NULL; break;
    case 'f': v = js_word(s, "false", 5) == 0 ? json_false() : NULL; break;
    case 'n': v = js_word(s, "null", 4) == 0 ? json_null() : NULL; break;
    default: v = *s->p == '-' || (*s->p >= '0' && *s->p <= '9') ? jt_number(s) : NULL; break;
    }
    s->depth--;
    return v;
}

json_t *mb_jscan_tree(const char *text, size_t len)
{
    scan s;
    json_t *v;

    if (text == NULL)
        return NULL;
    s.p = (const unsigned char *)text;
    s.end = s.p + len;
    s.depth = 0;
    js_ws(&s);
    if (s.p >= s.end || (*s.p != '{' && *s.p != '['))
        return NULL;
    v = jt_value(&s);
    js_ws(&s);
    if (v != NULL && s.p != s.end) {
        json_decref(v);
        return NULL;
    }
    return v;
}
