/* mc_out.c: meshctl's output formats. */
#include "mc_out.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "mb_json.h"
#include "mc.h"

/* In mc_fmt order. */
const char *const mc_out_formats[] = {"table", "wide", "json", "yaml", "name", NULL};

int mc_out_opt(mc_out *o, int opt, const char *arg)
{
    const char *const *names = mc_out_formats;

    if (opt == MC_OUT_OPT_JSON) {
        o->fmt = MC_FMT_JSON;
        return 1;
    }
    if (opt == MC_OUT_OPT_NOHEAD) {
        o->no_headers = 1;
        return 1;
    }
    if (opt != 'o')
        return 0;
    for (size_t i = 0; names[i]; i++) {
        if (strcmp(arg, names[i]) == 0) {
            o->fmt = (mc_fmt)i;
            return 1;
        }
    }
    mc_fail(MC_EXIT_USAGE, "-o %s: want table, wide, json, yaml or name", arg);
    return -1;
}

static void indent(FILE *f, int n)
{
    for (int i = 0; i < n; i++)
        fputc(' ', f);
}

static int scalar(const json_t *v)
{
    return !json_is_object(v) && !json_is_array(v);
}

static int empty(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v) == 0) ||
           (json_is_array(v) && json_array_size(v) == 0);
}

/* A scalar or an empty collection, on the current line.  JSON's double-quoted strings are
 * YAML's too. */
static void yaml_inline(const json_t *v, FILE *f)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

    fputs(s ? s : "null", f);
    free(s);
}

static void yaml_node(const json_t *v, FILE *f, int depth);

static void yaml_key(const char *k, FILE *f)
{
    json_t *s = json_string(k);

    yaml_inline(s, f);
    json_decref(s);
}

static void yaml_node(const json_t *v, FILE *f, int depth)
{
    const char *k;
    json_t *x;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, x)
        {
            indent(f, depth);
            yaml_key(k, f);
            fputc(':', f);
            if (scalar(x) || empty(x)) {
                fputc(' ', f);
                yaml_inline(x, f);
                fputc('\n', f);
            } else {
                fputc('\n', f);
                yaml_node(x, f, depth + 2);
            }
        }
        return;
    }
    json_array_foreach(v, i, x)
    {
        indent(f, depth);
        fputs("-", f);
        if (scalar(x) || empty(x)) {
            fputc(' ', f);
            yaml_inline(x, f);
            fputc('\n', f);
        } else {
            fputc('\n', f);
            yaml_node(x, f, depth + 2);
        }
    }
}

void mc_out_yaml(const json_t *v, FILE *f)
{
    if (scalar(v) || empty(v)) {
        yaml_inline(v, f);
        fputc('\n', f);
        return;
    }
    yaml_node(v, f, 0);
}

void mc_out_doc(const mc_out *o, const json_t *v, FILE *f)
{
    if (o->fmt == MC_FMT_YAML) {
        mc_out_yaml(v, f);
        return;
    }
    json_dumpf(v, f, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fputc('\n', f);
}

/* ---- tables */

struct mc_table {
    size_t ncols;
    json_t *rows; /* arrays of strings; a note is a string */
};

static json_t *cells_of(const char *const *cells, size_t n)
{
    json_t *row = json_array();

    for (size_t i = 0; row && i < n; i++)
        json_array_append_new(row, json_string(cells[i] ? cells[i] : ""));
    return row;
}

mc_table *mc_table_new(const char *const *headers, size_t ncols)
{
    mc_table *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return NULL;
    t->ncols = ncols;
    t->rows = json_array();
    json_array_append_new(t->rows, cells_of(headers, ncols));
    return t;
}

void mc_table_row(mc_table *t, const char *const *cells)
{
    if (t)
        json_array_append_new(t->rows, cells_of(cells, t->ncols));
}

void mc_table_note(mc_table *t, const char *line)
{
    if (t)
        json_array_append_new(t->rows, json_string(line));
}

void mc_table_print(const mc_table *t, FILE *f, int no_headers)
{
    size_t *w, i, c;
    json_t *row;

    if (t == NULL)
        return;
    w = calloc(t->ncols ? t->ncols : 1, sizeof(*w));
    if (w == NULL)
        return;
    json_array_foreach(t->rows, i, row)
    {
        for (c = 0; json_is_array(row) && c < t->ncols; c++) {
            size_t n = strlen(json_string_value(json_array_get(row, c)));
            if (n > w[c])
                w[c] = n;
        }
    }
    json_array_foreach(t->rows, i, row)
    {
        if (i == 0 && no_headers)
            continue;
        if (json_is_string(row)) {
            fprintf(f, "  %s\n", json_string_value(row));
            continue;
        }
        for (c = 0; c < t->ncols; c++) {
            const char *s = json_string_value(json_array_get(row, c));
            if (c + 1 == t->ncols)
                fprintf(f, "%s\n", s);
            else
                fprintf(f, "%-*s  ", (int)w[c], s);
        }
    }
    free(w);
}

void mc_table_free(mc_table *t)
{
    if (t == NULL)
        return;
    json_decref(t->rows);
    free(t);
}

json_t *mc_json_time(long long ms)
{
    char buf[40];

    if (ms <= 0)
        return json_null();
    return json_string(mb_json_time_ms(ms, buf, sizeof(buf)));
}

json_t *mc_json_str(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}
