/* mb_catalog.c: loads schemas/istio-catalog.json (see mb_catalog.h).
 *
 * The version matrix is data: this file only checks the catalog's shape
 * (mirroring schemas/istio-catalog.schema.json) and answers lookups. */
#include "mb_catalog.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mb_json.h"

#define CATALOG_REL  "schemas/istio-catalog.json"
#define MAX_RELEASES 32
#define MAX_VERSIONS 32

typedef struct release {
    mb_istio_release pub;
    const char *versions[MAX_VERSIONS + 1];
} release;

struct mb_catalog {
    json_t *doc; /* owns every string handed out */
    char *path;
    release rel[MAX_RELEASES];
    size_t n;
};

static const char *const TOP_KEYS[] = {"$schema", "catalog_version", "istio", NULL};
static const char *const REL_KEYS[] = {
    "minor", "build", "chart_id", "chart_version", "cluster_versions", NULL,
};

/* ------------------------------------------------------------- versions */

/* Reads "<digits>.<digits>" at s (at most 3 digits each).  Returns the
 * pointer past it, or NULL. */
static const char *major_minor(const char *s, int *maj, int *min)
{
    int *parts[2] = {maj, min};
    for (int k = 0; k < 2; k++) {
        int n = 0, v = 0;
        while (s[n] >= '0' && s[n] <= '9' && n < 4) {
            v = v * 10 + (s[n] - '0');
            n++;
        }
        if (n == 0 || n > 3)
            return NULL;
        *parts[k] = v;
        s += n;
        if (k == 0) {
            if (*s != '.')
                return NULL;
            s++;
        }
    }
    return s;
}

int mb_catalog_cluster_minor(const char *version, char *buf, size_t len)
{
    int maj, min;
    if (!version)
        return -1;
    if (*version == 'v')
        version++;
    const char *rest = major_minor(version, &maj, &min);
    /* after major.minor only a patch (".3") or a build suffix ("-r0", "+x") may follow */
    if (!rest || (*rest != '\0' && *rest != '.' && *rest != '-' && *rest != '+'))
        return -1;
    if (snprintf(buf, len, "v%d.%d", maj, min) >= (int)len)
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- rules */

static const char *rule_minor(const char *s)
{
    int a, b;
    const char *rest = major_minor(s, &a, &b);
    return rest && *rest == '\0' ? NULL : "must look like 1.18";
}

/* Reads 1..3 digits at s.  Returns the pointer past them, or NULL. */
static const char *digits3(const char *s)
{
    int n = 0;
    while (s[n] >= '0' && s[n] <= '9' && n < 4)
        n++;
    return n >= 1 && n <= 3 ? s + n : NULL;
}

static const char *rule_build(const char *s)
{
    int a, b;
    const char *p = major_minor(s, &a, &b);
    if (p && *p == '.')
        p = digits3(p + 1);
    else
        p = NULL;
    if (p && strncmp(p, "-r", 2) == 0)
        p = digits3(p + 2);
    else
        p = NULL;
    return p && *p == '\0' ? NULL : "must look like 1.18.7-r1";
}

static const char *rule_chart_id(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 64 && mb_json_charset(s, "._-") ? NULL
                                                          : "must match ^[A-Za-z0-9._-]{1,64}$";
}

static const char *rule_chart_version(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 64 && mb_json_charset(s, "._+-") ? NULL
                                                           : "must match ^[A-Za-z0-9._+-]{1,64}$";
}

static const char *rule_cluster_version(const char *s)
{
    int a, b;
    const char *rest = s[0] == 'v' ? major_minor(s + 1, &a, &b) : NULL;
    return rest && *rest == '\0' ? NULL : "must look like v1.25";
}

/* ----------------------------------------------------------------- load */

static int check_release(mb_jcheck *c, const json_t *r, size_t idx, release *out)
{
    char path[64];
    snprintf(path, sizeof path, "istio[%zu]", idx);
    if (!json_is_object(r))
        return mb_jcheck_fail(c, path, "must be an object");
    mb_istio_release *p = &out->pub;
    if (mb_jcheck_keys(c, path, r, REL_KEYS) < 0 ||
        mb_jcheck_str(c, r, path, "minor", 1, rule_minor, &p->minor) < 0 ||
        mb_jcheck_str(c, r, path, "build", 1, rule_build, &p->build) < 0 ||
        mb_jcheck_str(c, r, path, "chart_id", 1, rule_chart_id, &p->chart_id) < 0 ||
        mb_jcheck_str(c, r, path, "chart_version", 1, rule_chart_version, &p->chart_version) < 0)
        return -1;
    char vp[96];
    snprintf(vp, sizeof vp, "%s.cluster_versions", path);
    const json_t *vs = json_object_get(r, "cluster_versions");
    if (!vs)
        return mb_jcheck_fail(c, vp, "is required");
    if (!json_is_array(vs) || json_array_size(vs) < 1 || json_array_size(vs) > MAX_VERSIONS)
        return mb_jcheck_fail(c, vp, "must be an array of 1 to %d versions", MAX_VERSIONS);
    for (size_t i = 0; i < json_array_size(vs); i++) {
        const char *v = json_string_value(json_array_get(vs, i));
        if (!v || rule_cluster_version(v))
            return mb_jcheck_fail(c, vp, "item %zu must be a version like v1.25", i);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(out->versions[j], v) == 0)
                return mb_jcheck_fail(c, vp, "item %zu repeats %s", i, v);
        }
        out->versions[i] = v;
    }
    p->cluster_versions = out->versions;
    p->n_cluster_versions = json_array_size(vs);
    return 0;
}

static int check_doc(mb_jcheck *c, mb_catalog *cat)
{
    const json_t *doc = cat->doc;
    long long ver = 0;
    if (!json_is_object(doc))
        return mb_jcheck_fail(c, "catalog", "must be a JSON object");
    if (mb_jcheck_keys(c, "catalog", doc, TOP_KEYS) < 0 ||
        mb_jcheck_int(c, doc, "catalog", "catalog_version", 1, 1, 1, &ver) < 0)
        return -1;
    const json_t *js = json_object_get(doc, "$schema");
    if (js && !json_is_string(js))
        return mb_jcheck_fail(c, "catalog.$schema", "must be a string");
    const json_t *arr = json_object_get(doc, "istio");
    if (!json_is_array(arr) || json_array_size(arr) < 1 || json_array_size(arr) > MAX_RELEASES)
        return mb_jcheck_fail(c, "catalog.istio", "must be an array of 1 to %d releases",
                              MAX_RELEASES);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        if (check_release(c, json_array_get(arr, i), i, &cat->rel[i]) < 0)
            return -1;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cat->rel[j].pub.minor, cat->rel[i].pub.minor) == 0)
                return mb_jcheck_fail(c, "catalog.istio", "minor %s appears twice",
                                      cat->rel[i].pub.minor);
        }
        cat->n = i + 1;
    }
    return 0;
}

static int readable(const char *path)
{
    return access(path, R_OK) == 0;
}

/* Finds the catalog as mb_catalog.h describes.  Returns a new string or NULL. */
static char *find_catalog(void)
{
    const char *env = getenv("MESHBUY_CATALOG");
    if (env && *env)
        return strdup(env);
    if (readable(CATALOG_REL))
        return strdup(CATALOG_REL);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    static const char *const ups[] = {"/../", "/../../../"};
    for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
        char cand[PATH_MAX + 64];
        snprintf(cand, sizeof cand, "%s%s%s", exe, ups[i], CATALOG_REL);
        if (readable(cand))
            return strdup(cand);
    }
    return NULL;
}

mb_catalog *mb_catalog_load(const char *path, char *err, size_t errlen)
{
    mb_jcheck c;
    json_error_t jerr;
    char reason[256];
    mb_catalog *cat = calloc(1, sizeof *cat);
    if (!cat) {
        snprintf(err, errlen, "catalog: out of memory");
        return NULL;
    }
    cat->path = path ? strdup(path) : find_catalog();
    if (!cat->path) {
        snprintf(err, errlen, "%s: not found (set MESHBUY_CATALOG, or run from the repo root)",
                 CATALOG_REL);
        goto err;
    }
    cat->doc = json_load_file(cat->path, JSON_REJECT_DUPLICATES, &jerr);
    if (!cat->doc) {
        snprintf(err, errlen, "%s: %s (line %d)", cat->path, jerr.text, jerr.line);
        goto err;
    }
    mb_jcheck_init(&c, reason, sizeof reason);
    if (check_doc(&c, cat) < 0) {
        snprintf(err, errlen, "%s: %s", cat->path, reason);
        goto err;
    }
    return cat;
err:
    mb_catalog_free(cat);
    return NULL;
}

const char *mb_catalog_path(const mb_catalog *cat)
{
    return cat->path;
}

const mb_istio_release *mb_catalog_lookup(const mb_catalog *cat, const char *minor)
{
    if (!minor)
        return NULL;
    for (size_t i = 0; i < cat->n; i++) {
        if (strcmp(cat->rel[i].pub.minor, minor) == 0)
            return &cat->rel[i].pub;
    }
    return NULL;
}

size_t mb_catalog_count(const mb_catalog *cat)
{
    return cat->n;
}

const mb_istio_release *mb_catalog_at(const mb_catalog *cat, size_t i)
{
    return i < cat->n ? &cat->rel[i].pub : NULL;
}

int mb_catalog_supports(const mb_catalog *cat, const char *minor, const char *cluster_version)
{
    char want[16];
    const mb_istio_release *r = mb_catalog_lookup(cat, minor);
    if (!r || mb_catalog_cluster_minor(cluster_version, want, sizeof want) < 0)
        return 0;
    for (size_t i = 0; i < r->n_cluster_versions; i++) {
        char have[16];
        /* normalised both sides, so "v1.025" in the file would still match */
        if (mb_catalog_cluster_minor(r->cluster_versions[i], have, sizeof have) == 0 &&
            strcmp(have, want) == 0)
            return 1;
    }
    return 0;
}

void mb_catalog_free(mb_catalog *cat)
{
    if (!cat)
        return;
    json_decref(cat->doc);
    free(cat->path);
    free(cat);
}
