/* mb_catalog.h: the Istio catalog (builds, charts, cluster matrix) of istio-catalog.json. */
#ifndef MB_CATALOG_H
#define MB_CATALOG_H

#include <stddef.h>

typedef struct mb_catalog mb_catalog;

/* One Istio minor the product sells.  Borrowed from the catalog until mb_catalog_free. */
typedef struct mb_istio_release {
    const char *minor;                   /* "1.18" (as in orders) */
    const char *build;                   /* "1.18.7-r1" */
    const char *chart_id;                /* CCE chart id of the istio-master release */
    const char *chart_version;           /* CCE chart version */
    const char *const *cluster_versions; /* "v1.25", ... */
    size_t n_cluster_versions;
} mb_istio_release;

/* Loads and strictly checks the catalog (per schemas/istio-catalog.schema.json).
 * path NULL searches, first found wins: $MESHBUY_CATALOG, ./schemas/istio-catalog.json,
 * then beside the running binary (/proc/self/exe): <exe dir>/../schemas/ (bin/) and
 * <exe dir>/../../../schemas/ (build/<tree>/bin/).  Returns a new catalog
 * (mb_catalog_free), or NULL with "<path>: reason" in err. */
mb_catalog *mb_catalog_load(const char *path, char *err, size_t errlen);

/* The file it was loaded from.  Borrowed until mb_catalog_free. */
const char *mb_catalog_path(const mb_catalog *cat);

/* The release of an Istio minor ("1.18"), or NULL if the catalog has none.  Borrowed. */
const mb_istio_release *mb_catalog_lookup(const mb_catalog *cat, const char *minor);

/* Number of releases, and the i-th (0-based, file order), for listings.  Borrowed. */
size_t mb_catalog_count(const mb_catalog *cat);
const mb_istio_release *mb_catalog_at(const mb_catalog *cat, size_t i);

/* 1 if Istio `minor` supports a cluster of that version, else 0 (also for an
 * unknown minor or an unreadable version).  Versions are compared by
 * major.minor: "v1.25", "1.25", "v1.25.3-r0", "v1.25.3" all mean v1.25. */
int mb_catalog_supports(const mb_catalog *cat, const char *minor, const char *cluster_version);

/* Reduces a cluster version to "v<major>.<minor>" in buf (needs 16 bytes).
 * 0, or -1 if version does not start with [v]<digits>.<digits>. */
int mb_catalog_cluster_minor(const char *version, char *buf, size_t len);

void mb_catalog_free(mb_catalog *cat);

#endif
