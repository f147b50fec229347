/* mc_out.h: meshctl's output formats (-o table|wide|json|yaml|name, --no-headers): tables
 * whose columns fit their data, and one JSON document printed as JSON or YAML. */
#ifndef MC_OUT_H
#define MC_OUT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

typedef enum mc_fmt { MC_FMT_TABLE, MC_FMT_WIDE, MC_FMT_JSON, MC_FMT_YAML, MC_FMT_NAME } mc_fmt;

/* The -o names, in mc_fmt order, NULL-terminated. */
extern const char *const mc_out_formats[];

typedef struct mc_out {
    mc_fmt fmt;
    int no_headers;
} mc_out;

/* The -o / --output option, --json (an alias of -o json) and --no-headers, for getopt_long
 * tables: MC_OUT_OPTIONS among the options, "o:" in the short ones, and mc_out_opt for
 * each of them.  MC_OUT_USAGE is the help line. */
#define MC_OUT_OPT_JSON   0x1001
#define MC_OUT_OPT_NOHEAD 0x1002
#define MC_OUT_OPTIONS                                                                      \
    {"output", required_argument, NULL, 'o'}, {"json", no_argument, NULL, MC_OUT_OPT_JSON}, \
    {                                                                                       \
        "no-headers", no_argument, NULL, MC_OUT_OPT_NOHEAD                                  \
    }
#define MC_OUT_USAGE                                                                        \
    "  -o, --output FMT   table (default), wide (more columns), json, yaml, or name (one\n" \
    "                     id a line: feeds xargs); --json = -o json; --no-headers\n"

/* Handles opt if it is one of the output options: 1 (taken), 0 (not ours), or -1 (bad
 * value: printed, exit MC_EXIT_USAGE). */
int mc_out_opt(mc_out *o, int opt, const char *arg);

/* Prints v as indented JSON or as YAML (o->fmt MC_FMT_YAML), newline-terminated. */
void mc_out_doc(const mc_out *o, const json_t *v, FILE *f);

/* Prints v as YAML (block style; strings double-quoted). */
void mc_out_yaml(const json_t *v, FILE *f);

/* A table: rows of string cells, columns as wide as their widest cell, two spaces
 * between, the last column unpadded.  A note is a line printed under the row before it. */
typedef struct mc_table mc_table;

mc_table *mc_table_new(const char *const *headers, size_t ncols); /* headers copied */
void mc_table_row(mc_table *t, const char *const *cells);         /* ncols cells, copied */
void mc_table_note(mc_table *t, const char *line);
void mc_table_print(const mc_table *t, FILE *f, int no_headers);
void mc_table_free(mc_table *t);

/* RFC 3339 UTC of epoch ms as a new JSON string, or null for 0 (absent). */
json_t *mc_json_time(long long ms);

/* A string as JSON: null when NULL or "". */
json_t *mc_json_str(const char *s);

#endif
