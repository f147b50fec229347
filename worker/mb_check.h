/* mb_check.h: runs steps' read-only faces (mb_step.check) without the engine, on a
 * libevent loop: what a replay would change, for meshctl replay --dry-run and tests. */
#ifndef MB_CHECK_H
#define MB_CHECK_H

#include <jansson.h>

#include "mb_step.h"

struct event_base;
struct mb_catalog;

typedef struct mb_check_env {
    struct event_base *base;          /* the loop the cloud client runs on (borrowed) */
    mb_cloud *cloud;                  /* borrowed */
    const struct mb_catalog *catalog; /* borrowed; NULL: steps that need it say so */
    long timeout_ms;                  /* bound on one step's check, its reads included */
} mb_check_env;

/* Runs st's check face to its end on env's loop, for a job whose saga state is state
 * and whose order is order (both borrowed, left unchanged: the face sees copies), with
 * the cloud target t (borrowed; its guard is replaced by one that refuses every write).
 * Returns a new object:
 *   {"step": name, "observed": bool, "changes": [...], "in_place": [...],
 *    "fails": {"code","message"} | null, "error": {"code","message"} | null}
 * observed is false when the face could not read what it needed (error says why) or when
 * the step has no check face (then "changes" says its effects are unknown).  NULL only
 * when out of memory. */
json_t *mb_check_step(const mb_check_env *env, const mb_step *st, const json_t *state,
                      const mb_order *order, const mb_cloud_target *t);

#endif
