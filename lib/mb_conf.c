/* mb_conf.c: environment configuration against a table of keys. */
#include "mb_conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

/* Every MESHBUY_* name some meshbuy binary reads.  A variable outside this
 * list and outside the binary's own table is a typo: refusing it at start is
 * kinder than running on a default nobody asked for. */
static const char *const known_names[] = {
    "MESHBUY_ORDERS_TOPIC",
    "MESHBUY_STATUS_TOPIC",
    "MESHBUY_DLQ_TOPIC",
    "MESHBUY_CCE_URL",
    "MESHBUY_VPC_URL",
    "MESHBUY_K8S_URL",
    "MESHBUY_AK",
    "MESHBUY_SK",
    "MESHBUY_SK_FILE",
    "MESHBUY_CA_FILE",
    "MESHBUY_GROUP",
    "MESHBUY_SHARDS",
    "MESHBUY_HTTP_PORT",
    "MESHBUY_HTTP_ADDR",
    "MESHBUY_WORKER_ID",
    "MESHBUY_LEASE_MS",
    "MESHBUY_LEASE_MARGIN_MS",
    "MESHBUY_ON_FAILURE",
    "MESHBUY_MAX_INFLIGHT",
    "MESHBUY_LOG_LEVEL",
    "MESHBUY_DRAIN_MS",
    "MESHBUY_CATALOG",
    "MESHBUY_STACK_DIR",
    "MESHBUY_STEP_DEADLINE_MS",
    "MESHBUY_TICK_MS",
    "MESHBUY_HTTP_TIMEOUT_MS",
    "MESHBUY_CONNECT_TIMEOUT_MS",
    "MESHBUY_POLL_MS",
    "MESHBUY_POLL_IN_MEMORY_MS",
    "MESHBUY_POLL_LEARN",
    "MESHBUY_BACKOFF_BASE_MS",
    "MESHBUY_BACKOFF_MAX_MS",
    "MESHBUY_COMPENSATE_DEADLINE_MS",
    "MESHBUY_SOURCE",
    "MESHBUY_HTTP_MAX_ACTIVE",
    "MESHBUY_HTTP_MAX_CONNECTIONS",
    "MESHBUY_RUN_SAGAS",
    "MESHBUY_RETENTION_S",
    "MESHBUY_RETENTION_ORDER_IDS_S",
    NULL,
};

typedef struct conf_val {
    const mb_conf_key *key;
    char *str; /* NULL when unset and no default */
    long num;
} conf_val;

struct mb_conf {
    size_t n;
    conf_val *vals;
};

static const char *type_name(mb_conf_type t)
{
    switch (t) {
    case MB_CONF_STR: return "string";
    case MB_CONF_INT: return "integer";
    case MB_CONF_BOOL: return "bool";
    case MB_CONF_ENUM: return "enum";
    case MB_CONF_SECRET: return "secret";
    }
    return "?";
}

static int parse_bool(const char *s, long *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int in_choices(const char *choices, const char *s)
{
    size_t n = strlen(s);

    for (const char *p = choices; *p;) {
        size_t len = strcspn(p, "|");
        if (len == n && strncmp(p, s, n) == 0)
            return 1;
        p += len;
        if (*p == '|')
            p++;
    }
    return 0;
}

/* Reads a secret file, cutting one trailing newline.  New string or NULL. */
static char *read_secret_file(const char *path, char *err, size_t errlen, const char *name)
{
    FILE *f = fopen(path, "r");
    char buf[4096];
    size_t n;

    if (f == NULL) {
        snprintf(err, errlen, "%s_FILE: cannot open %s: %s", name, path, strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return strdup(buf);
}

static int load_one(conf_val *v, char *err, size_t errlen)
{
    const mb_conf_key *k = v->key;
    const char *raw = getenv(k->name);
    char file_var[128];

    if (k->type == MB_CONF_SECRET && (raw == NULL || *raw == '\0')) {
        snprintf(file_var, sizeof(file_var), "%s_FILE", k->name);
        const char *path = getenv(file_var);
        if (path && *path) {
            v->str = read_secret_file(path, err, errlen, k->name);
            return v->str ? 0 : -1;
        }
    }
    if (raw == NULL || *raw == '\0')
        raw = k->def;
    if (raw == NULL) {
        if (!k->required)
            return 0;
        snprintf(err, errlen, "%s: required but not set (%s)", k->name, k->help ? k->help : "");
        return -1;
    }
    v->str = strdup(raw);
    if (v->str == NULL) {
        snprintf(err, errlen, "%s: out of memory", k->name);
        return -1;
    }
    switch (k->type) {
    case MB_CONF_INT: {
        char *end;
        errno = 0;
        v->num = strtol(raw, &end, 10);
        if (errno || end == raw || *end != '\0') {
            snprintf(err, errlen, "%s: '%s' is not an integer", k->name, raw);
            return -1;
        }
        if (v->num < k->min || v->num > k->max) {
            snprintf(err, errlen, "%s: %ld is out of range %ld..%ld", k->name, v->num, k->min,
                     k->max);
            return -1;
        }
        break;
    }
    case MB_CONF_BOOL:
        if (parse_bool(raw, &v->num) < 0) {
            snprintf(err, errlen, "%s: '%s' is not a boolean (true/false)", k->name, raw);
            return -1;
        }
        break;
    case MB_CONF_ENUM:
        if (!in_choices(k->choices, raw)) {
            snprintf(err, errlen, "%s: '%s' is not one of %s", k->name, raw, k->choices);
            return -1;
        }
        break;
    default: break;
    }
    return 0;
}

static int known(const mb_conf_key *keys, const char *name, size_t len)
{
    for (const mb_conf_key *k = keys; k->name; k++) {
        if (strlen(k->name) == len && strncmp(k->name, name, len) == 0)
            return 1;
        if (k->type == MB_CONF_SECRET && len == strlen(k->name) + 5 &&
            strncmp(k->name, name, strlen(k->name)) == 0 &&
            strncmp(name + len - 5, "_FILE", 5) == 0)
            return 1;
    }
    for (size_t i = 0; known_names[i]; i++) {
        if (strlen(known_names[i]) == len && strncmp(known_names[i], name, len) == 0)
            return 1;
    }
    return 0;
}

static int check_unknown(const mb_conf_key *keys, char *err, size_t errlen)
{
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "MESHBUY_", 8) != 0)
            continue;
        size_t len = strcspn(*e, "=");
        if (!known(keys, *e, len)) {
            snprintf(err, errlen, "%.*s: unknown setting (see --help for the list)", (int)len, *e);
            return -1;
        }
    }
    return 0;
}

int mb_conf_load(mb_conf **out, const mb_conf_key *keys, char *err, size_t errlen)
{
    mb_conf *c = calloc(1, sizeof(*c));
    size_t n = 0;

    *out = NULL;
    if (c == NULL)
        goto oom;
    while (keys[n].name)
        n++;
    c->vals = calloc(n ? n : 1, sizeof(*c->vals));
    if (c->vals == NULL)
        goto oom;
    c->n = n;
    if (check_unknown(keys, err, errlen) < 0)
        goto err;
    for (size_t i = 0; i < n; i++) {
        c->vals[i].key = &keys[i];
        if (load_one(&c->vals[i], err, errlen) < 0)
            goto err;
    }
    *out = c;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
err:
    mb_conf_free(c);
    return -1;
}

static const conf_val *find(const mb_conf *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->vals[i].key->name, name) == 0)
            return &c->vals[i];
    }
    fprintf(stderr, "mb_conf: key %s is not in the table\n", name);
    abort();
}

const char *mb_conf_str(const mb_conf *c, const char *name)
{
    return find(c, name)->str;
}

long mb_conf_int(const mb_conf *c, const char *name)
{
    return find(c, name)->num;
}

int mb_conf_bool(const mb_conf *c, const char *name)
{
    return find(c, name)->num != 0;
}

void mb_conf_help(FILE *f, const mb_conf_key *keys)
{
    fprintf(f, "Environment:\n");
    for (const mb_conf_key *k = keys; k->name; k++) {
        char extra[160] = "";
        if (k->type == MB_CONF_INT)
            snprintf(extra, sizeof(extra), " [%ld..%ld]", k->min, k->max);
        else if (k->type == MB_CONF_ENUM)
            snprintf(extra, sizeof(extra), " [%s]", k->choices);
        else if (k->type == MB_CONF_SECRET)
            snprintf(extra, sizeof(extra), " (or %s_FILE)", k->name);
        fprintf(f, "  %-28s %s%s", k->name, type_name(k->type), extra);
        if (k->type != MB_CONF_SECRET && k->def)
            fprintf(f, ", default '%s'", k->def);
        else if (k->required)
            fprintf(f, ", required");
        fprintf(f, "\n      %s\n", k->help ? k->help : "");
    }
}

void mb_conf_dump(FILE *f, const mb_conf *c)
{
    for (size_t i = 0; i < c->n; i++) {
        const conf_val *v = &c->vals[i];
        const char *shown = v->str ? v->str : "(unset)";
        if (v->key->type == MB_CONF_SECRET && v->str)
            shown = "(set)";
        fprintf(f, "%s=%s\n", v->key->name, shown);
    }
}

void mb_conf_free(mb_conf *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++) {
        if (c->vals[i].str && c->vals[i].key->type == MB_CONF_SECRET)
            memset(c->vals[i].str, 0, strlen(c->vals[i].str));
        free(c->vals[i].str);
    }
    free(c->vals);
    free(c);
}
