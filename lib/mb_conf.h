/* mb_conf.h: configuration from the environment, one table of keys per binary. */
#ifndef MB_CONF_H
#define MB_CONF_H

#include <stddef.h>
#include <stdio.h>

typedef enum mb_conf_type {
    MB_CONF_STR,
    MB_CONF_INT,    /* bounded by min..max */
    MB_CONF_BOOL,   /* 1/0, true/false, yes/no, on/off */
    MB_CONF_ENUM,   /* one of choices, "a|b|c" */
    MB_CONF_SECRET, /* NAME or NAME_FILE (file content, trailing newline cut); never printed */
} mb_conf_type;

/* One configuration key.  A table ends with an entry whose name is NULL. */
typedef struct mb_conf_key {
    const char *name; /* environment variable */
    mb_conf_type type;
    const char *def; /* default as text; NULL: unset gives NULL / 0 */
    long min, max;   /* MB_CONF_INT bounds */
    const char *choices;
    const char *help;
    int required; /* unset and no default fails the load */
} mb_conf_key;

typedef struct mb_conf mb_conf;

/* Reads every key of the table from the environment, checks types and bounds,
 * and refuses MESHBUY_* variables that no meshbuy binary knows (a typo must not
 * silently fall back to a default).  Returns 0 and a new conf (mb_conf_free),
 * or -1 with "KEY: reason" in err. */
int mb_conf_load(mb_conf **out, const mb_conf_key *keys, char *err, size_t errlen);

/* Values.  Strings are borrowed until mb_conf_free; an unset optional key
 * without default gives NULL (str) or 0.  Asking for a key not in the table
 * aborts: that is a programming error, not a user one. */
const char *mb_conf_str(const mb_conf *c, const char *name);
long mb_conf_int(const mb_conf *c, const char *name);
int mb_conf_bool(const mb_conf *c, const char *name);

/* Prints the table: name, type, default, bounds, help.  Secrets show no value. */
void mb_conf_help(FILE *f, const mb_conf_key *keys);

/* Prints the effective configuration, secrets masked (for --check). */
void mb_conf_dump(FILE *f, const mb_conf *c);

void mb_conf_free(mb_conf *c);

#endif
