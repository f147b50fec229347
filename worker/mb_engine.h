/* mb_engine.h: the saga's moving parts (HTTP client, cloud client, catalog, engine) plugged into the loop. */
#ifndef MB_ENGINE_H
#define MB_ENGINE_H

#include <stddef.h>

#include "mb_conf.h"
#include "mb_loop.h"

typedef struct mb_engine mb_engine;

/* Checks the settings the saga needs (the cloud endpoints and credentials,
 * unless MESHBUY_RUN_SAGAS is false).  0, or -1 with "KEY: reason" in err. */
int mb_engine_check_conf(const mb_conf *conf, char *err, size_t errlen);

/* Builds the cloud side from the worker's configuration (borrowed; must
 * outlive the engine) and registers the saga with the loop.  Returns a new
 * engine (mb_engine_free, after the loop has stopped), or NULL with the
 * reason in err. */
mb_engine *mb_engine_new(mb_loop *loop, const mb_conf *conf, char *err, size_t errlen);

/* Cancels cloud calls still in flight (their jobs resume elsewhere when their
 * leases expire), then frees.  Accepts NULL. */
void mb_engine_free(mb_engine *e);

#endif
