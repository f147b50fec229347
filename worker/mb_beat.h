/* mb_beat.h: the worker's heartbeat: a small record of itself in Redis (id, host, pid,
 * version, start, last beat, admin address), refreshed every few seconds through the Redis
 * thread, so `meshctl workers` lists live workers and tells the ones that stopped beating. */
#ifndef MB_BEAT_H
#define MB_BEAT_H

#include "mb_store.h"

struct mb_rq;

typedef struct mb_beat mb_beat;

/* The beat period: one script (a handful of Redis commands) this often, idle or not. */
#define MB_BEAT_EVERY_MS 5000

/* A heartbeat for the worker whose description is info (strings copied; every_ms and ttl_ms
 * as given, 0: MB_BEAT_EVERY_MS and 2 x lease_ms + every_ms).  Beats go through rq
 * (borrowed; must outlive the beat's requests).  New (mb_beat_free) or NULL (no memory). */
mb_beat *mb_beat_new(struct mb_rq *rq, const mb_worker_info *info);

/* Submits a beat when one is due (now_ms monotonic) and none is out.  Loop thread. */
void mb_beat_tick(mb_beat *b, long long now_ms);

/* 1 once a beat found every live worker on this build's job record layout
 * (MB_STORE_LAYOUT); 0 before the first beat and while an older worker is alive. */
int mb_beat_peers_current(const mb_beat *b);

/* A clean exit: removes the record through st (synchronous, borrowed), so the worker is not
 * listed as one that stopped beating.  Call after the Redis queue stopped. */
void mb_beat_gone(mb_beat *b, mb_store *st);

/* Frees.  The Redis queue must have stopped (every done ran).  Accepts NULL. */
void mb_beat_free(mb_beat *b);

#endif
