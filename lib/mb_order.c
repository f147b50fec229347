/* mb_order.c: strict parsing and building of mesh.orders messages (see mb_order.h).
 *
 * The rules here mirror schemas/order-buy.schema.json, order-cancel.schema.json and
 * order-delete.schema.json one for one: tests/component/test_fixtures.sh holds both to the same verdict on
 * every fixture.  Change one, change the other. */
#include "mb_order.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mb_sign.h"

#define PATH_MAX_LEN 128

static const char *const ENVELOPE_KEYS[] = {
    "specversion", "id",      "source",      "type",       "time", "datacontenttype",
    "dataschema",  "subject", "traceparent", "tracestate", "data", NULL,
};
static const char *const BUY_KEYS[] = {
    "order_id", "account_id", "project_id", "region", "mesh", NULL,
};
static const char *const MESH_KEYS[] = {
    "name", "edition", "istio_version", "cluster_id", "control_plane_nodes", "sidecar", NULL,
};
static const char *const SIDECAR_KEYS[] = {"namespaces", "restart_existing", NULL};
static const char *const CANCEL_KEYS[] = {"order_id", "account_id", "mesh_name", "reason", NULL};
static const char *const DELETE_KEYS[] = {
    "order_id", "account_id", "project_id", "region", "mesh", "sidecar", NULL,
};
static const char *const DELETE_MESH_KEYS[] = {"name", NULL};
static const char *const DELETE_SIDECAR_KEYS[] = {"restart_existing", NULL};
static const char *const ISTIO_MINORS[] = {"1.8", "1.13", "1.15", "1.18", NULL};

/* ---------------------------------------------------------------- rules */

static const char *rule_id_like(const char *s, const char *punct)
{
    size_t n = strlen(s);
    if (n == 0)
        return "must not be empty";
    if (n > MB_ORDER_ID_MAX)
        return "must be at most 64 characters";
    if (!mb_json_charset(s, punct))
        return strchr(punct, ':') ? "may contain only letters, digits and . _ : -"
                                  : "may contain only letters, digits and . _ -";
    return NULL;
}

const char *mb_order_check_order_id(const char *s)
{
    return rule_id_like(s, "._:-");
}

const char *mb_order_check_id(const char *s)
{
    return rule_id_like(s, "._-");
}

static int is_lower_alnum(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static int all_lower_alnum_dash(const char *s)
{
    for (; *s; s++) {
        if (!is_lower_alnum(*s) && *s != '-')
            return 0;
    }
    return 1;
}

const char *mb_order_check_mesh_name(const char *s)
{
    size_t n = strlen(s);
    if (!all_lower_alnum_dash(s))
        return "may contain only lowercase letters, digits and '-'";
    if (n < 4)
        return "must be at least 4 characters";
    if (n > MB_MESH_NAME_MAX)
        return "must be at most 64 characters";
    if (s[0] < 'a' || s[0] > 'z')
        return "must start with a lowercase letter";
    if (!is_lower_alnum(s[n - 1]))
        return "must end with a letter or digit";
    return NULL;
}

const char *mb_order_check_namespace(const char *s)
{
    size_t n = strlen(s);
    if (n == 0)
        return "must not be empty";
    if (n > 63)
        return "must be at most 63 characters";
    if (!all_lower_alnum_dash(s))
        return "may contain only lowercase letters, digits and '-' (a DNS-1123 label)";
    if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return "must start and end with a lowercase letter or digit (a DNS-1123 label)";
    if (strcmp(s, "kube-system") == 0 || strcmp(s, "kube-public") == 0)
        return "sidecar injection is never allowed in kube-system or kube-public";
    return NULL;
}

static const char *rule_region(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return "must be 1 to 32 characters";
    if (!all_lower_alnum_dash(s))
        return "may contain only lowercase letters, digits and '-'";
    if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
        return "must start and end with a lowercase letter or digit";
    return NULL;
}

/* 1..max bytes in lo..0x7e (printable ASCII; lo 0x21 excludes space). */
static const char *rule_ascii(const char *s, size_t max, char lo)
{
    size_t n = strlen(s);
    if (n == 0)
        return "must not be empty";
    if (n > max)
        return max == 256 ? "must be at most 256 characters" : "must be at most 512 characters";
    for (; *s; s++) {
        if (*s < lo || *s > 0x7e)
            return lo == 0x21 ? "may contain only printable ASCII without spaces"
                              : "may contain only printable ASCII";
    }
    return NULL;
}

const char *mb_order_check_printable256(const char *s)
{
    return rule_ascii(s, 256, 0x21);
}

static const char *rule_tracestate(const char *s)
{
    return rule_ascii(s, 512, 0x20);
}

static int hex_run(const char *s, size_t n)
{
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return -1;
        if (ch != '0')
            nonzero = 1;
    }
    return nonzero;
}

int mb_order_traceparent_valid(const char *s)
{
    if (strlen(s) != MB_TRACEPARENT_LEN)
        return 0;
    if (strncmp(s, "00-", 3) != 0 || s[35] != '-' || s[52] != '-')
        return 0;
    return hex_run(s + 3, 32) == 1 && hex_run(s + 36, 16) == 1 && hex_run(s + 53, 2) >= 0;
}

const char *mb_order_check_traceparent(const char *s)
{
    if (!mb_order_traceparent_valid(s))
        return "must be a W3C traceparent 00-<32 hex>-<16 hex>-<2 hex>, ids not all zero";
    return NULL;
}

const char *mb_order_check_time(const char *s)
{
    if (strlen(s) > 64 || !mb_json_rfc3339(s))
        return "must be an RFC 3339 date-time like 2024-05-01T12:00:00Z";
    return NULL;
}

/* --------------------------------------------------------- field access */

static void join(char *out, const char *path, const char *key)
{
    snprintf(out, PATH_MAX_LEN, "%s.%s", path, key);
}

static int get_const(mb_jcheck *c, const json_t *obj, const char *path, const char *key,
                     const char *want)
{
    const char *s;
    if (mb_jcheck_str(c, obj, path, key, 1, NULL, &s) < 0)
        return -1;
    if (strcmp(s, want) != 0) {
        char p[PATH_MAX_LEN];
        join(p, path, key);
        return mb_jcheck_fail(c, p, "must be \"%s\"", want);
    }
    return 0;
}

static const json_t *get_obj(mb_jcheck *c, const json_t *obj, const char *path, const char *key,
                             int required)
{
    char p[PATH_MAX_LEN];
    join(p, path, key);
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            mb_jcheck_fail(c, p, "is required");
        return NULL;
    }
    if (!json_is_object(v)) {
        mb_jcheck_fail(c, p, "must be an object");
        return NULL;
    }
    return v;
}

static int dup_str(mb_jcheck *c, char **dst, const char *src)
{
    if (!src)
        return 0;
    *dst = strdup(src);
    if (!*dst)
        return mb_jcheck_fail(c, "order", "out of memory");
    return 0;
}

/* A unique array of strings, each checked by rule, min..max items: copied
 * into a new NULL-terminated array in *out (count in *n). */
static int get_str_array(mb_jcheck *c, const json_t *obj, const char *path, const char *key,
                         size_t min, size_t max, mb_jrule rule, char ***out, size_t *n)
{
    char p[PATH_MAX_LEN];
    join(p, path, key);
    const json_t *arr = json_object_get(obj, key);
    if (!json_is_array(arr))
        return mb_jcheck_fail(c, p, "must be an array");
    size_t len = json_array_size(arr);
    if (len < min)
        return mb_jcheck_fail(c, p, "must have at least %zu item(s)", min);
    if (len > max)
        return mb_jcheck_fail(c, p, "must have at most %zu items", max);
    for (size_t i = 0; i < len; i++) {
        char ip[PATH_MAX_LEN + 32];
        snprintf(ip, sizeof ip, "%s[%zu]", p, i);
        const json_t *v = json_array_get(arr, i);
        if (!json_is_string(v))
            return mb_jcheck_fail(c, ip, "must be a string");
        const char *why = rule(json_string_value(v));
        if (why)
            return mb_jcheck_fail(c, ip, "%s", why);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(json_string_value(json_array_get(arr, j)), json_string_value(v)) == 0)
                return mb_jcheck_fail(c, ip, "duplicate of item %zu", j);
        }
    }
    char **vec = calloc(len + 1, sizeof *vec);
    if (!vec)
        return mb_jcheck_fail(c, p, "out of memory");
    *out = vec;
    *n = len;
    for (size_t i = 0; i < len; i++) {
        if (dup_str(c, &vec[i], json_string_value(json_array_get(arr, i))) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------- envelope */

/* ^application/json[ \t]*(;[\x20-\x7e]*)?$: JSON data, with media type parameters
 * ("; charset=utf-8") allowed. */
static const char *rule_json_content_type(const char *s)
{
    static const char why[] = "must be application/json, parameters allowed "
                              "(application/json; charset=utf-8)";
    if (strlen(s) > 256)
        return "must be at most 256 characters";
    if (strncmp(s, "application/json", 16) != 0)
        return why;
    for (s += 16; *s == ' ' || *s == '\t'; s++)
        ;
    if (*s == '\0')
        return NULL;
    if (*s != ';')
        return why;
    for (; *s; s++) {
        if (*s < 0x20 || *s > 0x7e)
            return why;
    }
    return NULL;
}

static const char *rule_uri(const char *s)
{
    return rule_ascii(s, 512, 0x21);
}

/* CloudEvents attribute names: lower-case letters and digits, at most 20. */
int mb_order_attr_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MB_ORDER_ATTR_NAME_MAX)
        return 0;
    for (; *s; s++) {
        if (!is_lower_alnum(*s))
            return 0;
    }
    return 1;
}

static int is_known_attr(const char *name)
{
    for (size_t i = 0; ENVELOPE_KEYS[i]; i++) {
        if (strcmp(name, ENVELOPE_KEYS[i]) == 0)
            return 1;
    }
    return 0;
}

/* Extension attributes (partitionkey, ...): any valid name, a string of at most
 * 512 characters, a number or a boolean.  Their meaning is the producer's. */
static int check_extensions(mb_jcheck *c, const json_t *env)
{
    const char *name;
    json_t *v;
    json_object_foreach((json_t *)env, name, v)
    {
        char p[PATH_MAX_LEN];
        if (is_known_attr(name))
            continue;
        snprintf(p, sizeof p, "event.%.60s", name);
        if (!mb_order_attr_name_valid(name))
            return mb_jcheck_fail(c, p,
                                  "unknown attribute; an extension attribute name has 1 to 20 "
                                  "lower-case letters and digits");
        if (json_is_string(v) ? mb_json_utf8_len(json_string_value(v)) > 512
                              : !json_is_number(v) && !json_is_boolean(v))
            return mb_jcheck_fail(c, p,
                                  "an extension attribute must be a string of at most 512 "
                                  "characters, a number or a boolean");
    }
    return 0;
}

int mb_order_check_envelope(mb_jcheck *c, const json_t *env)
{
    const char *s;
    if (!json_is_object(env))
        return mb_jcheck_fail(c, "event", "must be a JSON object");
    if (get_const(c, env, "event", "specversion", "1.0") < 0 ||
        mb_jcheck_str(c, env, "event", "id", 1, mb_order_check_printable256, &s) < 0 ||
        mb_jcheck_str(c, env, "event", "source", 1, mb_order_check_printable256, &s) < 0 ||
        mb_jcheck_str(c, env, "event", "time", 0, mb_order_check_time, &s) < 0 ||
        mb_jcheck_str(c, env, "event", "datacontenttype", 0, rule_json_content_type, &s) < 0 ||
        mb_jcheck_str(c, env, "event", "dataschema", 0, rule_uri, &s) < 0 ||
        mb_jcheck_str(c, env, "event", "subject", 0, mb_order_check_printable256, &s) < 0 ||
        mb_jcheck_str(c, env, "event", "traceparent", 0, mb_order_check_traceparent, &s) < 0 ||
        mb_jcheck_str(c, env, "event", "tracestate", 0, rule_tracestate, &s) < 0)
        return -1;
    return check_extensions(c, env);
}

static int copy_envelope(mb_jcheck *c, const json_t *env, mb_order *o)
{
    const char *s;
    int rc = 0;
    rc |= dup_str(c, &o->event_id, json_string_value(json_object_get(env, "id")));
    rc |= dup_str(c, &o->source, json_string_value(json_object_get(env, "source")));
    rc |= dup_str(c, &o->time, json_string_value(json_object_get(env, "time")));
    s = json_string_value(json_object_get(env, "subject"));
    rc |= dup_str(c, &o->subject, s);
    s = json_string_value(json_object_get(env, "traceparent"));
    rc |= dup_str(c, &o->traceparent, s);
    s = json_string_value(json_object_get(env, "tracestate"));
    rc |= dup_str(c, &o->tracestate, s);
    return rc ? -1 : 0;
}

/* ----------------------------------------------------------------- data */

static const char *rule_istio_minor(const char *s)
{
    for (size_t i = 0; ISTIO_MINORS[i]; i++) {
        if (strcmp(s, ISTIO_MINORS[i]) == 0)
            return NULL;
    }
    return "must be one of 1.8, 1.13, 1.15, 1.18";
}

static int parse_sidecar(mb_jcheck *c, const json_t *mesh, mb_order *o)
{
    const json_t *sc = get_obj(c, mesh, "data.mesh", "sidecar", 0);
    if (!sc)
        return c->failed ? -1 : 0;
    if (mb_jcheck_keys(c, "data.mesh.sidecar", sc, SIDECAR_KEYS) < 0)
        return -1;
    if (json_object_get(sc, "namespaces") &&
        get_str_array(c, sc, "data.mesh.sidecar", "namespaces", 0, MB_ORDER_MAX_NAMESPACES,
                      mb_order_check_namespace, &o->namespaces, &o->n_namespaces) < 0)
        return -1;
    const json_t *r = json_object_get(sc, "restart_existing");
    if (r && !json_is_boolean(r))
        return mb_jcheck_fail(c, "data.mesh.sidecar.restart_existing", "must be a boolean");
    o->restart_existing = r ? json_is_true(r) : 0;
    return 0;
}

static int parse_mesh(mb_jcheck *c, const json_t *data, mb_order *o)
{
    const char *name, *edition, *ver, *cluster;
    const json_t *mesh = get_obj(c, data, "data", "mesh", 1);
    if (!mesh)
        return -1;
    if (mb_jcheck_keys(c, "data.mesh", mesh, MESH_KEYS) < 0 ||
        mb_jcheck_str(c, mesh, "data.mesh", "name", 1, mb_order_check_mesh_name, &name) < 0 ||
        get_const(c, mesh, "data.mesh", "edition", "basic") < 0 ||
        mb_jcheck_str(c, mesh, "data.mesh", "edition", 1, NULL, &edition) < 0 ||
        mb_jcheck_str(c, mesh, "data.mesh", "istio_version", 1, rule_istio_minor, &ver) < 0 ||
        mb_jcheck_str(c, mesh, "data.mesh", "cluster_id", 1, mb_order_check_id, &cluster) < 0)
        return -1;
    if (!json_object_get(mesh, "control_plane_nodes"))
        return mb_jcheck_fail(c, "data.mesh.control_plane_nodes", "is required");
    if (get_str_array(c, mesh, "data.mesh", "control_plane_nodes", 1, MB_ORDER_MAX_NODES,
                      mb_order_check_id, &o->nodes, &o->n_nodes) < 0)
        return -1;
    if (parse_sidecar(c, mesh, o) < 0)
        return -1;
    if (dup_str(c, &o->mesh_name, name) < 0 || dup_str(c, &o->edition, edition) < 0 ||
        dup_str(c, &o->istio_version, ver) < 0 || dup_str(c, &o->cluster_id, cluster) < 0)
        return -1;
    return 0;
}

static int parse_buy(mb_jcheck *c, const json_t *data, mb_order *o)
{
    const char *oid, *acc, *proj, *region;
    if (mb_jcheck_keys(c, "data", data, BUY_KEYS) < 0 ||
        mb_jcheck_str(c, data, "data", "order_id", 1, mb_order_check_order_id, &oid) < 0 ||
        mb_jcheck_str(c, data, "data", "account_id", 1, mb_order_check_id, &acc) < 0 ||
        mb_jcheck_str(c, data, "data", "project_id", 1, mb_order_check_id, &proj) < 0 ||
        mb_jcheck_str(c, data, "data", "region", 1, rule_region, &region) < 0 ||
        parse_mesh(c, data, o) < 0)
        return -1;
    if (dup_str(c, &o->order_id, oid) < 0 || dup_str(c, &o->account_id, acc) < 0 ||
        dup_str(c, &o->project_id, proj) < 0 || dup_str(c, &o->region, region) < 0)
        return -1;
    return 0;
}

static const char *rule_reason(const char *s)
{
    return mb_json_utf8_len(s) > 512 ? "must be at most 512 characters" : NULL;
}

static int parse_cancel(mb_jcheck *c, const json_t *data, mb_order *o)
{
    const char *oid, *acc, *name, *reason;
    if (mb_jcheck_keys(c, "data", data, CANCEL_KEYS) < 0 ||
        mb_jcheck_str(c, data, "data", "order_id", 1, mb_order_check_order_id, &oid) < 0 ||
        mb_jcheck_str(c, data, "data", "account_id", 1, mb_order_check_id, &acc) < 0 ||
        mb_jcheck_str(c, data, "data", "mesh_name", 1, mb_order_check_mesh_name, &name) < 0 ||
        mb_jcheck_str(c, data, "data", "reason", 0, rule_reason, &reason) < 0)
        return -1;
    if (dup_str(c, &o->order_id, oid) < 0 || dup_str(c, &o->account_id, acc) < 0 ||
        dup_str(c, &o->mesh_name, name) < 0 || dup_str(c, &o->reason, reason) < 0)
        return -1;
    return 0;
}

/* The delete order: which mesh (data.mesh.name), in which project and region, and whether
 * the workloads that got the sidecar are restarted to drop it (data.sidecar). */
static int parse_delete_sidecar(mb_jcheck *c, const json_t *data, mb_order *o)
{
    const json_t *sc = get_obj(c, data, "data", "sidecar", 0);
    if (!sc)
        return c->failed ? -1 : 0;
    if (mb_jcheck_keys(c, "data.sidecar", sc, DELETE_SIDECAR_KEYS) < 0)
        return -1;
    const json_t *r = json_object_get(sc, "restart_existing");
    if (r && !json_is_boolean(r))
        return mb_jcheck_fail(c, "data.sidecar.restart_existing", "must be a boolean");
    o->restart_existing = r ? json_is_true(r) : 0;
    return 0;
}

static int parse_delete(mb_jcheck *c, const json_t *data, mb_order *o)
{
    const char *oid, *acc, *proj, *region, *name;
    const json_t *mesh;
    if (mb_jcheck_keys(c, "data", data, DELETE_KEYS) < 0 ||
        mb_jcheck_str(c, data, "data", "order_id", 1, mb_order_check_order_id, &oid) < 0 ||
        mb_jcheck_str(c, data, "data", "account_id", 1, mb_order_check_id, &acc) < 0 ||
        mb_jcheck_str(c, data, "data", "project_id", 1, mb_order_check_id, &proj) < 0 ||
        mb_jcheck_str(c, data, "data", "region", 1, rule_region, &region) < 0)
        return -1;
    mesh = get_obj(c, data, "data", "mesh", 1);
    if (!mesh || mb_jcheck_keys(c, "data.mesh", mesh, DELETE_MESH_KEYS) < 0 ||
        mb_jcheck_str(c, mesh, "data.mesh", "name", 1, mb_order_check_mesh_name, &name) < 0 ||
        parse_delete_sidecar(c, data, o) < 0)
        return -1;
    if (dup_str(c, &o->order_id, oid) < 0 || dup_str(c, &o->account_id, acc) < 0 ||
        dup_str(c, &o->project_id, proj) < 0 || dup_str(c, &o->region, region) < 0 ||
        dup_str(c, &o->mesh_name, name) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------- partial identity */

static void take_if(char *dst, size_t len, const json_t *v, mb_jrule rule)
{
    if (!json_is_string(v) || rule(json_string_value(v)))
        return;
    snprintf(dst, len, "%s", json_string_value(v));
}

static mb_order_kind kind_of(const char *type)
{
    if (!type)
        return MB_ORDER_UNKNOWN;
    if (strcmp(type, MB_TYPE_ORDER_BUY) == 0)
        return MB_ORDER_BUY;
    if (strcmp(type, MB_TYPE_ORDER_CANCEL) == 0)
        return MB_ORDER_CANCEL;
    if (strcmp(type, MB_TYPE_ORDER_DELETE) == 0)
        return MB_ORDER_DELETE;
    return MB_ORDER_UNKNOWN;
}

/* Reads whatever identity the message carries, each field judged on its own,
 * so that a rejected order can still be reported under its key. */
static void salvage(const json_t *env, mb_order_err *err)
{
    if (!json_is_object(env))
        return;
    err->kind = kind_of(json_string_value(json_object_get(env, "type")));
    take_if(err->traceparent, sizeof err->traceparent, json_object_get(env, "traceparent"),
            mb_order_check_traceparent);
    const json_t *data = json_object_get(env, "data");
    if (!json_is_object(data))
        return;
    take_if(err->order_id, sizeof err->order_id, json_object_get(data, "order_id"),
            mb_order_check_order_id);
    take_if(err->account_id, sizeof err->account_id, json_object_get(data, "account_id"),
            mb_order_check_id);
    take_if(err->mesh_name, sizeof err->mesh_name, json_object_get(data, "mesh_name"),
            mb_order_check_mesh_name);
    const json_t *mesh = json_object_get(data, "mesh");
    if (!json_is_object(mesh))
        return;
    take_if(err->mesh_name, sizeof err->mesh_name, json_object_get(mesh, "name"),
            mb_order_check_mesh_name);
    take_if(err->cluster_id, sizeof err->cluster_id, json_object_get(mesh, "cluster_id"),
            mb_order_check_id);
}

/* -------------------------------------------------------------- entry points */

int mb_order_from_json(const json_t *env, mb_order **out, mb_order_err *err)
{
    mb_order_err scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof *err);
    *out = NULL;
    mb_jcheck c;
    mb_jcheck_init(&c, err->reason, sizeof err->reason);
    mb_order *o = calloc(1, sizeof *o);
    if (!o) {
        mb_jcheck_fail(&c, "order", "out of memory");
        goto err;
    }
    if (mb_order_check_envelope(&c, env) < 0)
        goto err;
    const char *type;
    if (mb_jcheck_str(&c, env, "event", "type", 1, NULL, &type) < 0)
        goto err;
    o->kind = kind_of(type);
    if (o->kind == MB_ORDER_UNKNOWN) {
        mb_jcheck_fail(&c, "event.type", "must be \"%s\", \"%s\" or \"%s\"", MB_TYPE_ORDER_BUY,
                       MB_TYPE_ORDER_CANCEL, MB_TYPE_ORDER_DELETE);
        goto err;
    }
    const json_t *data = get_obj(&c, env, "event", "data", 1);
    if (!data)
        goto err;
    if (o->kind == MB_ORDER_BUY      ? parse_buy(&c, data, o) < 0
        : o->kind == MB_ORDER_DELETE ? parse_delete(&c, data, o) < 0
                                     : parse_cancel(&c, data, o) < 0)
        goto err;
    if (copy_envelope(&c, env, o) < 0)
        goto err;
    *out = o;
    return 0;
err:
    salvage(env, err);
    mb_order_free(o);
    return -1;
}

int mb_order_parse(const void *buf, size_t len, mb_order **out, mb_order_err *err)
{
    mb_order_err scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof *err);
    *out = NULL;
    if (len > MB_ORDER_MAX_BYTES) {
        snprintf(err->reason, sizeof err->reason, "message: %zu bytes, more than the %d allowed",
                 len, MB_ORDER_MAX_BYTES);
        return -1;
    }
    if (len == 0 || !buf) {
        snprintf(err->reason, sizeof err->reason, "message: empty");
        return -1;
    }
    json_error_t jerr;
    json_t *env = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!env) {
        snprintf(err->reason, sizeof err->reason, "message: not JSON: %s at line %d column %d",
                 jerr.text, jerr.line, jerr.column);
        return -1;
    }
    int rc = mb_order_from_json(env, out, err);
    json_decref(env);
    return rc;
}

void mb_order_free(mb_order *o)
{
    if (!o)
        return;
    char **strs[] = {&o->event_id,      &o->source,     &o->time,     &o->subject,
                     &o->traceparent,   &o->tracestate, &o->order_id, &o->account_id,
                     &o->mesh_name,     &o->project_id, &o->region,   &o->edition,
                     &o->istio_version, &o->cluster_id, &o->reason};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(*strs[i]);
    for (size_t i = 0; o->nodes && o->nodes[i]; i++)
        free(o->nodes[i]);
    free(o->nodes);
    for (size_t i = 0; o->namespaces && o->namespaces[i]; i++)
        free(o->namespaces[i]);
    free(o->namespaces);
    free(o);
}

const char *mb_order_kind_name(mb_order_kind k)
{
    switch (k) {
    case MB_ORDER_BUY: return "buy";
    case MB_ORDER_CANCEL: return "cancel";
    case MB_ORDER_DELETE: return "delete";
    default: return "unknown";
    }
}

char *mb_order_key(const mb_order *o, char *buf, size_t len)
{
    return mb_order_key_of(o->account_id, o->mesh_name, buf, len);
}

char *mb_order_key_of(const char *account_id, const char *mesh_name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", account_id, mesh_name);
    return buf;
}

char *mb_order_mesh_id(const char *key, const char *order_id, char *buf, size_t len)
{
    char seed[256], hash[MB_SIGN_HEX_LEN + 1];
    int n = snprintf(seed, sizeof seed, "%s#%s", key, order_id);

    if (n < 0 || (size_t)n >= sizeof seed)
        n = n < 0 ? 0 : (int)sizeof seed - 1; /* keys and ids are bounded well below */
    mb_sign_sha256_hex(seed, (size_t)n, hash);
    snprintf(buf, len, "mesh-%.16s", hash);
    return buf;
}

/* ------------------------------------------------------------- to JSON */

static json_t *str_array(char **v, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
        if (json_array_append_new(arr, json_string(v[i])) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *mb_order_data_json(const mb_order *o)
{
    if (o->kind == MB_ORDER_CANCEL) {
        json_t *d = json_pack("{s:s, s:s, s:s}", "order_id", o->order_id, "account_id",
                              o->account_id, "mesh_name", o->mesh_name);
        if (d && o->reason && json_object_set_new(d, "reason", json_string(o->reason)) < 0) {
            json_decref(d);
            return NULL;
        }
        return d;
    }
    if (o->kind == MB_ORDER_DELETE)
        return json_pack("{s:s, s:s, s:s, s:s, s:{s:s}, s:{s:b}}", "order_id", o->order_id,
                         "account_id", o->account_id, "project_id", o->project_id, "region",
                         o->region, "mesh", "name", o->mesh_name, "sidecar", "restart_existing",
                         o->restart_existing ? 1 : 0);
    /* "o" steals the arrays, and json_pack frees them if packing fails */
    return json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:o, s:{s:o, s:b}}}", "order_id",
                     o->order_id, "account_id", o->account_id, "project_id", o->project_id,
                     "region", o->region, "mesh", "name", o->mesh_name, "edition", o->edition,
                     "istio_version", o->istio_version, "cluster_id", o->cluster_id,
                     "control_plane_nodes", str_array(o->nodes, o->n_nodes), "sidecar",
                     "namespaces", str_array(o->namespaces, o->n_namespaces), "restart_existing",
                     o->restart_existing ? 1 : 0);
}

static int set_opt(json_t *obj, const char *key, const char *val)
{
    if (!val)
        return 0;
    return json_object_set_new(obj, key, json_string(val));
}

json_t *mb_order_to_json(const mb_order *o)
{
    const char *type = o->kind == MB_ORDER_CANCEL   ? MB_TYPE_ORDER_CANCEL
                       : o->kind == MB_ORDER_DELETE ? MB_TYPE_ORDER_DELETE
                                                    : MB_TYPE_ORDER_BUY;
    json_t *env = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id",
                            o->event_id, "source", o->source, "type", type, "datacontenttype",
                            "application/json", "data", mb_order_data_json(o));
    if (!env)
        return NULL;
    if (set_opt(env, "time", o->time) < 0 || set_opt(env, "subject", o->subject) < 0 ||
        set_opt(env, "traceparent", o->traceparent) < 0 ||
        set_opt(env, "tracestate", o->tracestate) < 0) {
        json_decref(env);
        return NULL;
    }
    return env;
}

/* ------------------------------------------------------------- building */

static const char HEX[] = "0123456789abcdef";

static int random_hex(char *out, size_t nhex)
{
    unsigned char raw[32];
    if (nhex > 2 * sizeof raw || mb_json_random(raw, (nhex + 1) / 2) < 0)
        return -1;
    for (size_t i = 0; i < nhex; i++)
        out[i] = HEX[(raw[i / 2] >> ((i % 2) ? 0 : 4)) & 0xF];
    out[nhex] = '\0';
    return 0;
}

int mb_order_new_id(const char *prefix, char *buf, size_t len)
{
    size_t pl = prefix ? strlen(prefix) : 0;
    if (len < pl + 33)
        return -1;
    memcpy(buf, prefix ? prefix : "", pl);
    return random_hex(buf + pl, 32);
}

int mb_order_new_traceparent(char *buf, size_t len)
{
    char trace[33], span[17];
    if (len < MB_TRACEPARENT_LEN + 1)
        return -1;
    /* all-zero ids are invalid; 2^-128 odds, but loop rather than hope */
    do {
        if (random_hex(trace, 32) < 0 || random_hex(span, 16) < 0)
            return -1;
    } while (hex_run(trace, 32) != 1 || hex_run(span, 16) != 1);
    snprintf(buf, len, "00-%s-%s-01", trace, span);
    return 0;
}

/* How many bytes of s to keep for at most max, not cutting a UTF-8 character in two (jansson
 * refuses a string that ends in half of one). */
static int utf8_keep(const char *s, size_t max)
{
    size_t n = strnlen(s, max);

    if (n == max)
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* s[n], the first byte left out, continues a character begun before it */
    return (int)n;
}

json_t *mb_order_envelope(mb_order_kind kind, json_t *data, const char *source,
                          const char *traceparent)
{
    char id[40], now[32], subject[160];
    const char *type = kind == MB_ORDER_BUY      ? MB_TYPE_ORDER_BUY
                       : kind == MB_ORDER_CANCEL ? MB_TYPE_ORDER_CANCEL
                       : kind == MB_ORDER_DELETE ? MB_TYPE_ORDER_DELETE
                                                 : NULL;
    if (!type || !data || mb_order_new_id("ce-", id, sizeof id) < 0) {
        json_decref(data);
        return NULL;
    }
    mb_json_time_ms(mb_json_now_ms(), now, sizeof now);
    json_t *env = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "specversion", "1.0", "id", id,
                            "source", source ? source : "meshbuy-cli", "type", type, "time", now,
                            "datacontenttype", "application/json", "data", data);
    if (!env)
        return NULL; /* json_pack released data */
    const char *acc = json_string_value(json_object_get(data, "account_id"));
    const json_t *mesh = json_object_get(data, "mesh");
    const char *name = json_string_value(json_object_get(data, "mesh_name"));
    if (json_is_object(mesh))
        name = json_string_value(json_object_get(mesh, "name"));
    int rc = 0;
    if (acc && name) {
        snprintf(subject, sizeof subject, "%.*s/%.*s", utf8_keep(acc, 64), acc, utf8_keep(name, 64),
                 name);
        rc |= set_opt(env, "subject", subject);
    }
    rc |= set_opt(env, "traceparent", traceparent);
    if (rc) {
        json_decref(env);
        return NULL;
    }
    return env;
}

/* ------------------------------------------------- the Kafka protocol binding */

#define CE_PREFIX "ce_"

static int ascii_prefix_ci(const void *v, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return v && len >= n && strncasecmp(v, prefix, n) == 0;
}

/* The last header called name (case-insensitive), or NULL. */
static const mb_order_header *find_header(const mb_order_header *h, size_t n, const char *name)
{
    const mb_order_header *found = NULL;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name && strcasecmp(h[i].name, name) == 0)
            found = &h[i];
    }
    return found;
}

static int fail_msg(mb_order_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail_msg(mb_order_err *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof err->reason, fmt, ap);
    va_end(ap);
    return -1;
}

/* A header value as a NUL-terminated, printable string for a reason. */
static void header_text(const mb_order_header *h, char *buf, size_t len)
{
    size_t n = h->value && h->len < len ? h->len : (h->value ? len - 1 : 0);
    for (size_t i = 0; i < n; i++) {
        char ch = ((const char *)h->value)[i];
        buf[i] = ch >= 0x20 && ch <= 0x7e ? ch : '?';
    }
    buf[n] = '\0';
}

/* "application/cloudevents+json" with nothing or parameters after it. */
/* The value as the envelope, NUL-terminated (new, free()). */
static int copy_value(const void *value, size_t len, char **out, size_t *out_len, mb_order_err *err)
{
    *out = malloc(len + 1);
    if (!*out)
        return fail_msg(err, "message: out of memory");
    if (len)
        memcpy(*out, value, len);
    (*out)[len] = '\0';
    *out_len = len;
    return 0;
}

/* Whether a header-less value is a JSON object with a "specversion" member. */
static int looks_structured(const void *value, size_t len)
{
    json_t *v = json_loadb(value, len, 0, NULL);
    int yes = json_is_object(v) && json_object_get(v, "specversion") != NULL;

    json_decref(v);
    return yes;
}

static int structured_json(const mb_order_header *ct)
{
    static const char mt[] = "application/cloudevents+json";
    size_t n = sizeof mt - 1;
    if (!ascii_prefix_ci(ct->value, ct->len, mt))
        return 0;
    if (ct->len == n)
        return 1;
    char next = ((const char *)ct->value)[n];
    return next == ';' || next == ' ' || next == '\t';
}

/* The ce_ headers of a binary-mode message into env (borrowed). */
static int binary_attrs(const mb_order_header *h, size_t n, json_t *env, mb_order_err *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name;
        if (!name || strncmp(name, CE_PREFIX, 3) != 0)
            continue;
        const char *attr = name + 3;
        if (!mb_order_attr_name_valid(attr))
            return fail_msg(err,
                            "header %.40s: a ce_ header names an attribute of 1 to 20 "
                            "lower-case letters and digits",
                            name);
        if (strcmp(attr, "data") == 0 || strcmp(attr, "datacontenttype") == 0)
            return fail_msg(err, "header %s: in binary content mode %s", name,
                            strcmp(attr, "data") == 0 ? "data is the message value"
                                                      : "the content-type header carries it");
        if (json_object_get(env, attr))
            return fail_msg(err, "header %s: given more than once", name);
        json_t *v = h[i].value ? json_stringn(h[i].value, h[i].len) : NULL;
        if (!v || json_object_set_new(env, attr, v) < 0)
            return fail_msg(err, "header %s: %s", name,
                            h[i].value ? "not UTF-8 text" : "has no value");
    }
    return 0;
}

static int binary_mode(const mb_order_header *h, size_t n, const mb_order_header *ct,
                       const void *value, size_t len, char **out, mb_order_err *err)
{
    char ctext[128];
    json_error_t jerr;
    json_t *env = json_object();
    if (!env)
        return fail_msg(err, "message: out of memory");
    if (binary_attrs(h, n, env, err) < 0)
        goto fail;
    if (ct) {
        header_text(ct, ctext, sizeof ctext);
        const char *why = rule_json_content_type(ctext);
        if (why || ct->len >= sizeof ctext) {
            fail_msg(err, "header content-type \"%s\": the data of an order %s", ctext,
                     "must be application/json (parameters allowed)");
            goto fail;
        }
        json_object_set_new(env, "datacontenttype", json_string(ctext));
    }
    if (len == 0 || !value) {
        fail_msg(err, "message: empty value (binary content mode: the value is data)");
        goto fail;
    }
    json_t *data = json_loadb(value, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!data) {
        snprintf(err->reason, sizeof err->reason, "message: data not JSON: %s at line %d column %d",
                 jerr.text, jerr.line, jerr.column);
        goto fail;
    }
    json_object_set_new(env, "data", data);
    *out = mb_json_dumps(env);
    json_decref(env);
    if (!*out)
        return fail_msg(err, "message: out of memory");
    return 0;
fail:
    json_decref(env);
    return -1;
}

int mb_order_canonical(const mb_order_header *hdrs, size_t n, const void *value, size_t len,
                       char **out, size_t *out_len, mb_order_err *err)
{
    mb_order_err scratch;
    if (!err)
        err = &scratch;
    memset(err, 0, sizeof *err);
    *out = NULL;
    *out_len = 0;
    if (n > MB_ORDER_MAX_HEADERS) {
        snprintf(err->reason, sizeof err->reason, "message: %zu headers, more than the %d allowed",
                 n, MB_ORDER_MAX_HEADERS);
        return -1;
    }
    if (len > MB_ORDER_MAX_BYTES) {
        snprintf(err->reason, sizeof err->reason, "message: %zu bytes, more than the %d allowed",
                 len, MB_ORDER_MAX_BYTES);
        return -1;
    }
    const mb_order_header *ct = find_header(hdrs, n, "content-type");
    if (ct && ascii_prefix_ci(ct->value, ct->len, "application/cloudevents")) {
        char ctext[128];
        header_text(ct, ctext, sizeof ctext);
        if (!structured_json(ct))
            return fail_msg(err, "header content-type \"%s\": %s", ctext,
                            "structured content mode is understood only as "
                            "application/cloudevents+json (no batches)");
        return copy_value(value, len, out, out_len, err);
    }
    if (!find_header(hdrs, n, CE_PREFIX "specversion")) {
        /* Neither mode's marker.  Plain producers (kcat, scripts, meshbuy before the
         * binding) send the whole event as JSON with no header: an object carrying
         * specversion is read as structured mode; the strict parser still judges it. */
        if (looks_structured(value, len))
            return copy_value(value, len, out, out_len, err);
        return fail_msg(err, "not a CloudEvent: neither a content-type header "
                             "application/cloudevents+json (structured content mode) nor a "
                             "ce_specversion header (binary content mode), and the value is "
                             "not an event with specversion");
    }
    if (binary_mode(hdrs, n, ct, value, len, out, err) < 0)
        return -1;
    *out_len = strlen(*out);
    return 0;
}

int mb_order_parse_message(const mb_order_header *hdrs, size_t n, const void *value, size_t len,
                           char **canon, size_t *canon_len, mb_order **out, mb_order_err *err)
{
    *out = NULL;
    if (mb_order_canonical(hdrs, n, value, len, canon, canon_len, err) < 0)
        return -1;
    if (mb_order_parse(*canon, *canon_len, out, err) < 0) {
        free(*canon);
        *canon = NULL;
        *canon_len = 0;
        return -1;
    }
    return 0;
}

static int kafka_json_headers(const json_t *hs, mb_order_header *h, size_t *n, mb_order_err *err)
{
    const char *name;
    json_t *v;
    *n = 0;
    if (hs && !json_is_object(hs))
        return fail_msg(err, "message file: \"headers\" must be an object");
    json_object_foreach((json_t *)hs, name, v)
    {
        if (*n >= MB_ORDER_MAX_HEADERS)
            return fail_msg(err, "message file: more than %d headers", MB_ORDER_MAX_HEADERS);
        if (!json_is_string(v))
            return fail_msg(err, "message file: header %.60s must be a string", name);
        h[*n] = (mb_order_header){name, json_string_value(v), json_string_length(v)};
        (*n)++;
    }
    return 0;
}

/* json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)'s bytes through mb_json's writer (new:
 * free()), or NULL. */
static char *dumps_any(const json_t *v)
{
    mb_buf b = {0};

    if (mb_json_dump(&b, v) < 0) {
        mb_buf_free(&b);
        return NULL;
    }
    return mb_buf_take(&b);
}

int mb_order_parse_kafka_json(const void *buf, size_t len, char **canon, mb_order **out,
                              mb_order_err *err)
{
    mb_order_header h[MB_ORDER_MAX_HEADERS];
    size_t n = 0, vlen = 0, clen;
    char *owned = NULL, *c = NULL;
    const char *value = NULL;
    json_error_t jerr;
    int rc = -1;

    *out = NULL;
    if (canon)
        *canon = NULL;
    memset(err, 0, sizeof *err);
    json_t *msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(msg)) {
        fail_msg(err, "message file: not a JSON object {\"headers\", \"value\"}");
        goto out;
    }
    if (kafka_json_headers(json_object_get(msg, "headers"), h, &n, err) < 0)
        goto out;
    const json_t *v = json_object_get(msg, "value");
    if (json_is_string(v)) {
        value = json_string_value(v);
        vlen = json_string_length(v);
    } else if (v) {
        owned = dumps_any(v);
        value = owned;
        vlen = owned ? strlen(owned) : 0;
    }
    rc = mb_order_parse_message(h, n, value, vlen, &c, &clen, out, err);
    if (canon)
        *canon = c;
    else
        free(c);
out:
    free(owned);
    json_decref(msg);
    return rc;
}

void mb_order_binary_free(mb_order_binary *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->names[i]);
        free(b->values[i]);
    }
    free(b->value);
    memset(b, 0, sizeof *b);
}

static int binary_add(mb_order_binary *b, const char *prefix, const char *name, const json_t *v)
{
    char nm[64];
    if (b->n >= MB_ORDER_MAX_HEADERS)
        return -1;
    snprintf(nm, sizeof nm, "%s%s", prefix, name);
    b->names[b->n] = strdup(nm);
    b->values[b->n] = json_is_string(v) ? strdup(json_string_value(v)) : dumps_any(v);
    b->n++;
    return b->names[b->n - 1] && b->values[b->n - 1] ? 0 : -1;
}

int mb_order_to_binary(const json_t *env, mb_order_binary *b)
{
    const char *name;
    json_t *v;
    memset(b, 0, sizeof *b);
    const json_t *data = json_object_get(env, "data");
    if (!json_is_object(env) || !data)
        return -1;
    json_object_foreach((json_t *)env, name, v)
    {
        int rc = 0;
        if (strcmp(name, "datacontenttype") == 0)
            rc = binary_add(b, "", "content-type", v);
        else if (strcmp(name, "data") != 0)
            rc = binary_add(b, CE_PREFIX, name, v);
        if (rc < 0) {
            mb_order_binary_free(b);
            return -1;
        }
    }
    b->value = dumps_any(data);
    if (!b->value) {
        mb_order_binary_free(b);
        return -1;
    }
    b->value_len = strlen(b->value);
    return 0;
}
