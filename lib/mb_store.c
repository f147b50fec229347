/* mb_store.c: the durable job store in Redis: jobs, leases with fencing, the status outbox.
 *
 * Key layout (the only place that knows it)
 * -----------------------------------------
 * A mesh key is "<account_id>/<mesh_name>".  Its shard is FNV-1a-32(mesh key) % shards
 * (MESHBUY_SHARDS, default 16; recorded in mb:meta:shards, a mismatch refuses to start so
 * a changed setting never orphans jobs).  Every key of a shard carries the hash tag {sN}:
 *
 *   mb:{sN}:job:<order_id>     hash: the job record (the only state; see mb_job)
 *       id key shard order state status step attempt fence claims ck cancel tp created
 *       updated next_run lease_owner lease_until error_code error_msg saga [raw cancel_at
 *       deleted_by]
 *       [step:<NN>:<name> ...]
 *       (state: the saga's checkpoint document.  Once a worker has checkpointed it, split:
 *       "state" holds its top-level members and each step record is a field step:<NN>:<name>,
 *       NN the step's place in its saga, so a checkpoint rewrites one record instead of the
 *       whole document; a whole-document write drops those fields; readers join them back.
 *       saga: the saga that runs the job; a record without it is a "create"; deleted_by:
 *       on a create, the delete order accepted for its mesh.  A delete job's state starts
 *       as {"target": snapshot of the create it undoes, or null}, taken by the accept
 *       script; a delete never holds the name)
 *   mb:{sN}:name:<mesh key>    string: the order id holding the mesh name
 *   mb:{sN}:seq:<mesh key>     counter: the last status event seq of the key
 *   mb:{sN}:hist:<order_id>    list: the job's history lines (last 200)
 *   mb:{sN}:due                zset: order id -> ms when it must run (or its lease ends)
 *   mb:{sN}:outbox             list: queued status events "<key>\n<traceparent>\n<json>"
 *   mb:{sN}:relay              string: relay lease token (SET NX PX), one relayer a shard
 *   mb:{sN}:status:<status>    zset: order id -> ms it took that status (the status index:
 *                              listings walk it, never the keyspace)
 *   mb:{sN}:statuses           set: the statuses indexed in the shard
 *   mb:{sN}:wake               counter: bumped by every script that queues an event or makes
 *                              a job due for any worker (idle workers read it, mb_store_stirs)
 *   mb:order:<order_id>        string: the shard of the order (order-id index)
 *   mb:dlq                     stream (capped ~10,000): what went to the DLQ topic and why
 *   mb:dlq:redrives            stream (capped ~10,000): DLQ records an SRE re-published
 *   mb:meta:shards             string: the shard count the data was written with
 *   mb:meta:indexed            string: set once every job written before the status index
 *                              was indexed (by the first listing)
 *   mb:{w}:worker:<worker id>  hash: a worker's heartbeat (id host pid version started seen
 *                              every ttl lease admin sagas layout), expiring ttl ms after its last
 *                              beat (mb_store_worker_beat)
 *   mb:{w}:workers             zset: worker id -> when it last beat (a day's worth): meshctl
 *                              workers reads it, and the records, never the keyspace
 *
 * Invariants
 * - Accept, reject, claim, checkpoint, renew, cancel are each one Lua script (SCRIPT LOAD
 *   on connect, EVALSHA, reload on NOSCRIPT): state change and the status event reporting
 *   it are queued atomically; the seq of an event is INCR'd inside that script, so seqs
 *   per key are gapless whatever order or worker writes them.
 * - A claim bumps the fence; a checkpoint or renew with an older fence is refused
 *   (StaleFence), so a worker that lost its lease cannot overwrite the new holder.
 * - A leased job's due score is its lease end: a crashed worker's job is due again by
 *   itself, no reaper needed.
 * - Every time a script writes or compares (lease ends, due scores, created/updated) is
 *   the Redis server's (TIME): callers pass durations (lease_ms, run_in_ms), never
 *   instants, so a worker's clock can neither shorten another's lease nor run a job early.
 *   A claim never hands a worker a job whose lease it still holds.
 * - The outbox is read and trimmed only by the holder of the shard's relay lease; a trim
 *   checks the token, so a relayer that lost the lease cannot drop unsent entries.
 *
 * Retention (mb_store_set_retention)
 * - A job that ends Failed, Cancelled or Deleted (and does not hold its mesh name), a
 *   conflicting order's Failed record, and a rejected order's record with its raw bytes
 *   get a TTL: record and history expire retain_ms after that.  Running (the mesh's own
 *   record: a delete snapshots it) and NeedsAttention (an SRE must act) never expire; a
 *   create's record expires once a delete freed its name.  A replay or requeue removes
 *   the TTL.
 * - The order-id index entry of a finished job outlives its record (tombstone_ms): the
 *   accept script answers "duplicate" from the index alone, so a redelivered old order
 *   starts nothing.  A rejected order's entry expires with its record (it started
 *   nothing; a redelivery is refused again).
 * - Name keys never expire (a name is freed only by the saga's compensation or a delete)
 *   and neither do seq counters (an event id "<key>#<seq>" must never be reused).
 * - Status index members whose record expired are dropped by later scripts (a bounded
 *   number at a time); listings skip records that are gone.
 *
 * Redis Cluster
 * - All keys a script touches are in one slot ({sN}) except mb:order:<id>, written by the
 *   accept/reject scripts.  That is fine on one node (and with Redis Sentinel).  For Cluster
 *   the index must become a separate best-effort SET after the script (it is only used to
 *   find a job by order id for cancel-by-id and meshctl; intake passes the mesh key, and
 *   duplicate detection then relies on the job key, which holds for redeliveries since a
 *   redelivered order has the same mesh key).  mb_store_stirs reads every shard's wake counter with
 *   one MGET: on Cluster it becomes one GET per shard (or per node).  The scripts derive job keys from ARGV
 *   prefixes within their own slot (claim, leases), which Cluster serves but does not check.
 */
#include "mb_store.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "mb_buf.h"
#include "mb_jscan.h"
#include "mb_json.h"
#include "mb_log.h"
#include "mb_redis.h"
#include "mb_store_lua.h"

/* Scripts, in load order. */
enum {
    S_ACCEPT,
    S_REJECT,
    S_CLAIM,
    S_CHECKPOINT,
    S_RENEW,
    S_CANCEL,
    S_REQUEUE,
    S_HANDBACK,
    S_RELAY_HOLD,
    S_RELAY_ACK,
    S_RELAY_RELEASE,
    S_REWRITE,
    S_FORGET,
    S_WORKER_BEAT,
    S_LEASES,
    S_COUNT
};

static const struct {
    const char *name;
    const char *body;
    int prelude; /* needs the shared helpers (clock_ms, TERMINAL, emit) */
} scripts[S_COUNT] = {
    [S_ACCEPT] = {"accept", lua_accept, 1},
    [S_REJECT] = {"reject", lua_reject, 1},
    [S_CLAIM] = {"claim", lua_claim, 1},
    [S_CHECKPOINT] = {"checkpoint", lua_checkpoint, 1},
    [S_RENEW] = {"renew", lua_renew, 1},
    [S_CANCEL] = {"cancel", lua_cancel, 1},
    [S_REQUEUE] = {"requeue", lua_requeue, 1},
    [S_HANDBACK] = {"handback", lua_handback, 1},
    [S_RELAY_HOLD] = {"relay_hold", lua_relay_hold, 0},
    [S_RELAY_ACK] = {"relay_ack", lua_relay_ack, 0},
    [S_RELAY_RELEASE] = {"relay_release", lua_relay_release, 0},
    [S_REWRITE] = {"rewrite", lua_rewrite, 1},
    [S_FORGET] = {"forget", lua_forget, 1},
    [S_WORKER_BEAT] = {"worker_beat", lua_worker_beat, 1},
    [S_LEASES] = {"leases", lua_leases, 0},
};

/* Marks "leave this field as it is" in checkpoint arguments. */
#define UNCHANGED      "\1"
#define RAW_KEEP_MAX   65536
#define INDEX_PREFIX   "mb:order:"
#define LIST_PAGE      200
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000

struct mb_store {
    mb_redis_url url;
    redisContext *c;
    int shards;
    int timeout_ms;
    char *worker_id;
    char sha[S_COUNT][41];
    unsigned long long commands;
    unsigned long long round_trips;
    unsigned long long reloads; /* scripts loaded again after NOSCRIPT */
    long long next_connect_ms;  /* no connection attempt before (monotonic ms) */
    long long backoff_ms;       /* the last pause between attempts; 0 after a success */
    long long last_ok_ms;       /* monotonic ms of the last complete exchange (0: none) */
    int ready;                  /* connected, scripts loaded, shards checked */
    int offline;                /* no new connection (shutting down) */
    long long next_due_in_ms;   /* the last claim: ms until the earliest due job (-1 = none) */
    long long retain_ms;        /* finished jobs expire after this (0 = never) */
    long long tombstone_ms;     /* their order-id index entries after this (0 = never) */
};

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ================================================================ arguments */

/* An argv under construction, kept as Redis will receive it: ARGS_HEAD bytes of room for
 * the command's prefix (append writes "*<argc>\r\n" and EVALSHA's own arguments there),
 * then every argument as RESP frames it, "$<len>\r\n<bytes>\r\n".  One growing buffer per
 * command rather than a copy per argument, and no formatting pass (hiredis's sprintf per
 * argument) when the command is sent. */
#define ARGS_HEAD 128 /* the longest prefix is 110 bytes */
#define ARGS_CAP0 1024
/* "$" and the longest length and CRLF: room kept before an argument of unknown length */
#define ARGS_HDR_MAX (1 + MB_JSON_LL_MAX - 1 + 2)

typedef struct args {
    mb_buf b; /* owned; b.len == 0 until the first argument */
    size_t n; /* arguments so far */
    int oom;  /* an argument could not be built */
} args;

static int args_failed(const args *a)
{
    return a->oom || a->b.oom;
}

/* Room for n more bytes at the end of a's text (len moves past them): where they go, or
 * NULL with the command failed. */
static char *args_room(args *a, size_t n)
{
    mb_buf *b = &a->b;
    char *p;

    if (args_failed(a))
        return NULL;
    if (b->len == 0)
        n += ARGS_HEAD;
    if (n > SIZE_MAX / 4 - b->len) {
        a->oom = 1;
        return NULL;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : ARGS_CAP0;
        char *np;
        while (cap < b->len + n + 1)
            cap *= 2;
        np = realloc(b->p, cap);
        if (np == NULL) {
            a->oom = 1;
            return NULL;
        }
        b->p = np;
        b->cap = cap;
    }
    if (b->len == 0) {
        b->len = ARGS_HEAD;
        n -= ARGS_HEAD;
    }
    p = b->p + b->len;
    b->len += n;
    b->p[b->len] = '\0';
    return p;
}

/* "$<len>\r\n" into p (ARGS_HDR_MAX bytes).  Returns its length. */
static size_t args_hdr(char *p, size_t len)
{
    size_t n;

    p[0] = '$';
    n = 1 + mb_json_fmt_ll(p + 1, (long long)len);
    p[n++] = '\r';
    p[n++] = '\n';
    return n;
}

/* Frames a new argument of len bytes: where its bytes go (the caller fills them), or NULL
 * with the command failed. */
static char *args_open(args *a, size_t len)
{
    char hd[ARGS_HDR_MAX + 1];
    size_t hl = args_hdr(hd, len);
    char *p = args_room(a, hl + len + 2);

    if (p == NULL)
        return NULL;
    memcpy(p, hd, hl);
    p[hl + len] = '\r';
    p[hl + len + 1] = '\n';
    a->n++;
    return p + hl;
}

static void args_add(args *a, const char *s, size_t len)
{
    char *p = args_open(a, len);

    if (p != NULL && len > 0)
        memcpy(p, s, len);
}

static void args_str(args *a, const char *s)
{
    args_add(a, s ? s : "", s ? strlen(s) : 0);
}

static void args_ll(args *a, long long v)
{
    char num[MB_JSON_LL_MAX];

    args_add(a, num, mb_json_fmt_ll(num, v));
}

/* An argument written straight into a->b by a writer that cannot say its length first
 * (the JSON writer): args_begin keeps room for the longest header and returns where the
 * argument starts (0: the command failed); the writer appends to &a->b; args_end frames
 * what it wrote, args_cancel drops it. */
static size_t args_begin(args *a)
{
    char *p = args_room(a, ARGS_HDR_MAX);

    return p ? (size_t)(p - a->b.p) : 0;
}

static void args_cancel(args *a, size_t at)
{
    if (at > 0 && !a->b.oom)
        a->b.len = at;
}

static void args_end(args *a, size_t at)
{
    char hd[ARGS_HDR_MAX + 1];
    size_t len, hl;
    char *p;

    if (at == 0 || args_failed(a))
        return;
    len = a->b.len - at - ARGS_HDR_MAX;
    hl = args_hdr(hd, len);
    /* the header is at most ARGS_HDR_MAX: slide the text back to close the gap */
    memcpy(a->b.p + at, hd, hl);
    memmove(a->b.p + at + hl, a->b.p + at + ARGS_HDR_MAX, len);
    a->b.len = at + hl + len;
    p = args_room(a, 2);
    if (p == NULL)
        return;
    p[0] = '\r';
    p[1] = '\n';
    a->n++;
}

/* "(<v>": v as an exclusive score bound. */
static void args_excl(args *a, long long v)
{
    char num[MB_JSON_LL_MAX + 1];

    num[0] = '(';
    args_add(a, num, 1 + mb_json_fmt_ll(num + 1, v));
}

static void args_free(args *a)
{
    mb_buf_free(&a->b);
    memset(a, 0, sizeof(*a));
}

/* ================================================================ keys */

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

int mb_store_shard_of(const mb_store *st, const char *mesh_key)
{
    return (int)(fnv1a(mesh_key) % (uint32_t)st->shards);
}

/* "mb:{s<shard>}:<what>", then ":<id>" unless id is NULL.  Ids were checked (id_ok). */
static void key_of(args *a, int shard, const char *what, const char *id)
{
    char num[MB_JSON_LL_MAX];
    size_t nl = mb_json_fmt_ll(num, shard);
    size_t wl = strlen(what), il = id ? strlen(id) : 0;
    char *p = args_open(a, 5 + nl + 2 + wl + (id ? 1 + il : 0));

    if (p == NULL)
        return;
    memcpy(p, "mb:{s", 5);
    p += 5;
    memcpy(p, num, nl);
    p += nl;
    memcpy(p, "}:", 2);
    p += 2;
    memcpy(p, what, wl);
    p += wl;
    if (id != NULL) {
        *p++ = ':';
        memcpy(p, id, il);
    }
}

static void key_shard(args *a, int shard, const char *what)
{
    key_of(a, shard, what, NULL);
}

/* "<prefix><id>" as one argument (the keys outside the shards). */
static void key_prefixed(args *a, const char *prefix, const char *id)
{
    size_t pl = strlen(prefix), il = strlen(id);
    char *p = args_open(a, pl + il);

    if (p == NULL)
        return;
    memcpy(p, prefix, pl);
    memcpy(p + pl, id, il);
}

static void key_index(args *a, const char *order_id)
{
    key_prefixed(a, INDEX_PREFIX, order_id);
}

/* Ids become parts of keys, of JSON strings built in Lua and of the outbox framing:
 * refuse anything that could break out of those. */
static int id_ok(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL || *s == '\0')
        return 0;
    for (; *s; s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\' || n >= max)
            return 0;
    }
    return 1;
}

static int tp_ok(const char *s)
{
    return s == NULL || *s == '\0' || id_ok(s, 256);
}

/* ================================================================ connection */

static void disconnect(mb_store *st)
{
    if (st->c)
        redisFree(st->c);
    st->c = NULL;
    st->ready = 0;
}

/* The next connection attempt waits a growing pause, counted from now: after the failure,
 * not before the attempt, or an attempt that itself took a whole timeout (a stalled server
 * accepts connections and never answers) would leave no pause at all.  So a Redis that does
 * not answer costs one timeout per pause, and calls in between fail fast. */
static void backoff(mb_store *st)
{
    st->backoff_ms = st->backoff_ms ? st->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (st->backoff_ms > BACKOFF_MAX_MS)
        st->backoff_ms = BACKOFF_MAX_MS;
    st->next_connect_ms = mono_ms() + st->backoff_ms;
}

/* Loss of the connection: drop it; the next call reconnects after the backoff. */
static mb_status conn_lost(mb_store *st, const char *what, mb_error *err)
{
    mb_error_set(err, MB_AGAIN, "RedisConnection", "redis %s: %s", what,
                 st->c && st->c->errstr[0] ? st->c->errstr : "connection lost");
    if (st->ready)
        mb_warn("store", "redis connection lost during %s", what);
    disconnect(st);
    backoff(st);
    return MB_AGAIN;
}

static mb_status load_scripts(mb_store *st, mb_error *err)
{
    for (int i = 0; i < S_COUNT; i++) {
        size_t plen = scripts[i].prelude ? strlen(lua_prelude) : 0;
        size_t blen = strlen(scripts[i].body);
        char *src = malloc(plen + blen + 1);
        redisReply *r;

        if (src == NULL) {
            mb_error_set(err, MB_FATAL, "OutOfMemory", "script %s", scripts[i].name);
            return MB_FATAL;
        }
        memcpy(src, lua_prelude, plen);
        memcpy(src + plen, scripts[i].body, blen + 1);
        r = redisCommand(st->c, "SCRIPT LOAD %b", src, plen + blen);
        free(src);
        st->commands++;
        st->round_trips++;
        if (r == NULL)
            return conn_lost(st, "SCRIPT LOAD", err);
        if (r->type != REDIS_REPLY_STRING || r->len != 40) {
            mb_error_set(err, MB_FATAL, "ScriptError", "SCRIPT LOAD %s: %s", scripts[i].name,
                         r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            return MB_FATAL;
        }
        memcpy(st->sha[i], r->str, 40);
        st->sha[i][40] = '\0';
        freeReplyObject(r);
    }
    return MB_OK;
}

/* The data was laid out for some shard count: using another would orphan jobs. */
static mb_status check_shards(mb_store *st, mb_error *err)
{
    redisReply *r = redisCommand(st->c, "SET mb:meta:shards %d NX GET", st->shards);

    st->commands++;
    st->round_trips++;
    if (r == NULL)
        return conn_lost(st, "SET mb:meta:shards", err);
    if (r->type == REDIS_REPLY_STRING && strtol(r->str, NULL, 10) != st->shards) {
        mb_error_set(err, MB_FATAL, "ShardMismatch",
                     "MESHBUY_SHARDS=%d but the data in Redis was written with %s shards",
                     st->shards, r->str);
        freeReplyObject(r);
        return MB_FATAL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        mb_error_set(err, MB_FATAL, "RedisError", "SET mb:meta:shards: %s", r->str);
        freeReplyObject(r);
        return MB_FATAL;
    }
    freeReplyObject(r);
    return MB_OK;
}

static mb_status ensure(mb_store *st, mb_error *err)
{
    mb_status s;
    long long now;

    if (st->ready)
        return MB_OK;
    if (st->offline) {
        mb_error_set(err, MB_AGAIN, "RedisConnection", "redis: shutting down");
        return MB_AGAIN;
    }
    now = mono_ms();
    if (now < st->next_connect_ms) {
        mb_error_set(err, MB_AGAIN, "RedisConnection", "redis unreachable (retry in %lld ms)",
                     st->next_connect_ms - now);
        return MB_AGAIN;
    }
    st->c = mb_redis_connect(&st->url, st->timeout_ms, err);
    if (st->c == NULL) {
        backoff(st);
        return err ? err->status : MB_AGAIN;
    }
    s = load_scripts(st, err);
    if (s == MB_OK)
        s = check_shards(st, err);
    if (s != MB_OK) {
        /* conn_lost has already dropped the connection and armed the backoff. */
        if (st->c != NULL) {
            disconnect(st);
            backoff(st);
        }
        return s;
    }
    st->ready = 1;
    st->backoff_ms = 0;
    st->last_ok_ms = mono_ms();
    mb_info("store", "redis connected, %d scripts loaded, %d shards", S_COUNT, st->shards);
    return MB_OK;
}

mb_store *mb_store_new(const char *url, int shards, int timeout_ms, const char *worker_id,
                       mb_error *err)
{
    mb_store *st = calloc(1, sizeof(*st));
    char e[256];

    if (st == NULL) {
        mb_error_set(err, MB_FATAL, "OutOfMemory", "store");
        return NULL;
    }
    if (shards < 1 || shards > MB_STORE_MAX_SHARDS) {
        mb_error_set(err, MB_FATAL, "BadConfig", "shards %d not in 1..%d", shards,
                     MB_STORE_MAX_SHARDS);
        goto err;
    }
    if (!id_ok(worker_id, 200)) {
        mb_error_set(err, MB_FATAL, "BadConfig", "worker id must be 1..200 printable chars");
        goto err;
    }
    if (mb_redis_url_parse(url, &st->url, e, sizeof(e)) < 0) {
        mb_error_set(err, MB_FATAL, "BadConfig", "%s", e);
        goto err;
    }
    st->worker_id = strdup(worker_id);
    st->next_due_in_ms = -1;
    if (st->worker_id == NULL)
        goto err;
    st->shards = shards;
    st->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
    return st;
err:
    mb_store_free(st);
    return NULL;
}

void mb_store_free(mb_store *st)
{
    if (st == NULL)
        return;
    disconnect(st);
    memset(&st->url, 0, sizeof(st->url)); /* the password */
    free(st->worker_id);
    free(st);
}

void mb_store_set_retention(mb_store *st, long long retain_ms, long long tombstone_ms)
{
    st->retain_ms = retain_ms > 0 ? retain_ms : 0;
    st->tombstone_ms = tombstone_ms > 0 ? tombstone_ms : 0;
}

int mb_store_connected(const mb_store *st)
{
    return st->ready;
}

long long mb_store_last_ok_ms(const mb_store *st)
{
    return st->last_ok_ms;
}

void mb_store_set_offline(mb_store *st, int offline)
{
    st->offline = offline != 0;
}

int mb_store_shards(const mb_store *st)
{
    return st->shards;
}

const char *mb_store_worker_id(const mb_store *st)
{
    return st->worker_id;
}

unsigned long long mb_store_commands(const mb_store *st)
{
    return st->commands;
}

unsigned long long mb_store_round_trips(const mb_store *st)
{
    return st->round_trips;
}

/* ================================================================ pipelines */

/* One command of a pipeline: plain (script < 0) or EVALSHA of a script. */
typedef struct cmd {
    int script;
    int nkeys;
    args a; /* keys then arguments (plain: the whole argv) */
} cmd;

static const char EVALSHA_HD[] = "$7\r\nEVALSHA\r\n$40\r\n";

/* Queues c on the connection: its prefix written into the room args keeps at the front of
 * its text, then the whole command in one piece, bytes as redisAppendCommandArgv would
 * format them. */
static int append(mb_store *st, cmd *c)
{
    char hd[ARGS_HEAD], num[MB_JSON_LL_MAX];
    size_t hl = 0, nl;
    char *start;

    if (c->a.b.len == 0 && args_room(&c->a, 0) == NULL)
        return REDIS_ERR;
    hd[hl++] = '*';
    hl += mb_json_fmt_ll(hd + hl, (long long)c->a.n + (c->script >= 0 ? 3 : 0));
    hd[hl++] = '\r';
    hd[hl++] = '\n';
    if (c->script >= 0) {
        memcpy(hd + hl, EVALSHA_HD, sizeof(EVALSHA_HD) - 1);
        hl += sizeof(EVALSHA_HD) - 1;
        memcpy(hd + hl, st->sha[c->script], 40);
        hl += 40;
        hd[hl++] = '\r';
        hd[hl++] = '\n';
        nl = mb_json_fmt_ll(num, c->nkeys);
        hl += args_hdr(hd + hl, nl);
        memcpy(hd + hl, num, nl);
        hl += nl;
        hd[hl++] = '\r';
        hd[hl++] = '\n';
    }
    start = c->a.b.p + ARGS_HEAD - hl;
    memcpy(start, hd, hl);
    st->commands++;
    return redisAppendFormattedCommand(st->c, start, c->a.b.len - (ARGS_HEAD - hl));
}

static int is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* Sends n commands in one round trip and reads the n replies into out (new, each freed by
 * the caller; NULL where the connection failed).  A NOSCRIPT reply (Redis restarted or
 * SCRIPT FLUSH) reloads the scripts and re-sends that command.  Returns MB_OK when every
 * reply arrived, MB_AGAIN on connection loss (out[i] is set for the replies read before),
 * MB_FATAL on a bad argument list. */
static mb_status pipeline(mb_store *st, cmd *cmds, size_t n, redisReply **out, mb_error *err)
{
    mb_status s;
    int again = 0;

    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    s = ensure(st, err);
    if (s != MB_OK)
        return s;
    for (size_t i = 0; i < n; i++) {
        if (args_failed(&cmds[i].a)) {
            mb_error_set(err, MB_FATAL, "OutOfMemory", "building redis command");
            return MB_FATAL;
        }
        if (append(st, &cmds[i]) != REDIS_OK)
            return conn_lost(st, "append", err);
    }
    st->round_trips++;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        /* Replies already read stay in out: those commands ran, and their callers must
         * know it (a checkpoint that ran must not be reported as failed). */
        if (redisGetReply(st->c, &r) != REDIS_OK)
            return conn_lost(st, "reply", err);
        out[i] = r;
        if (is_noscript(out[i]))
            again = 1;
    }
    st->last_ok_ms = mono_ms();
    if (!again)
        return MB_OK;
    mb_warn("store", "scripts missing in redis (restart or flush): reloading");
    st->reloads++;
    s = load_scripts(st, err);
    if (s != MB_OK)
        return s;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (!is_noscript(out[i]))
            continue;
        freeReplyObject(out[i]);
        out[i] = NULL;
        if (append(st, &cmds[i]) != REDIS_OK || redisGetReply(st->c, &r) != REDIS_OK)
            return conn_lost(st, "reply", err);
        st->round_trips++;
        out[i] = r;
    }
    return MB_OK;
}

static void free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i])
            freeReplyObject(r[i]);
}

static void free_cmds(cmd *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        args_free(&c[i].a);
}

/* n commands sent in one round trip, and their replies: made, sent and freed here, so a
 * read over every shard only builds its commands and reads the replies. */
typedef struct batch {
    cmd *c;
    redisReply **r;
    size_t n;
} batch;

/* n plain commands (script -1 until the caller sets one).  0, or -1: no memory (err set,
 * b empty: batch_free is still fine). */
static int batch_new(batch *b, size_t n, const char *what, mb_error *err)
{
    b->n = n;
    b->c = calloc(n ? n : 1, sizeof(*b->c));
    b->r = calloc(n ? n : 1, sizeof(*b->r));
    if (b->c == NULL || b->r == NULL) {
        free(b->c);
        free(b->r);
        memset(b, 0, sizeof(*b));
        mb_error_set(err, MB_FATAL, "NoMemory", "%s", what);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        b->c[i].script = -1;
    return 0;
}

static mb_status batch_send(mb_store *st, batch *b, mb_error *err)
{
    return b->n > 0 ? pipeline(st, b->c, b->n, b->r, err) : MB_OK;
}

static void batch_free(batch *b)
{
    free_replies(b->r, b->r ? b->n : 0);
    free(b->r);
    free_cmds(b->c, b->c ? b->n : 0);
    free(b->c);
}

/* A script's error reply as a status: our own refusals are permanent with a code, the
 * rest (syntax, OOM, wrong type) mean a bug or a broken server. */
static mb_status script_error(const redisReply *r, const char *what, const char *id, mb_error *err)
{
    const char *msg = r->str;

    if (strncmp(msg, "STALEFENCE ", 11) == 0) {
        mb_error_set(err, MB_PERM, "StaleFence", "%s: %s", what, msg + 11);
        return MB_PERM;
    }
    if (strncmp(msg, "NOSUCHJOB ", 10) == 0) {
        mb_error_set(err, MB_PERM, "NoSuchJob", "%s: %s", what, msg + 10);
        return MB_PERM;
    }
    if (strncmp(msg, "CHANGED ", 8) == 0) {
        mb_error_set(err, MB_PERM, "Changed", "%s: %s", what, msg + 8);
        return MB_PERM;
    }
    if (strncmp(msg, "LEASED ", 7) == 0) {
        mb_error_set(err, MB_PERM, "Leased", "%s: %s", what, msg + 7);
        return MB_PERM;
    }
    if (strncmp(msg, "NAMECONFLICT ", 13) == 0) {
        mb_error_set(err, MB_PERM, "NameConflict", "%s %s: %s", what, id, msg + 13);
        return MB_PERM;
    }
    if (strncmp(msg, "EXISTS ", 7) == 0) {
        mb_error_set(err, MB_PERM, "Exists", "%s: %s", what, msg + 7);
        return MB_PERM;
    }
    if (strncmp(msg, "LOADING", 7) == 0 || strncmp(msg, "BUSY", 4) == 0 ||
        strncmp(msg, "MASTERDOWN", 10) == 0 || strncmp(msg, "TRYAGAIN", 8) == 0) {
        mb_error_set(err, MB_AGAIN, "RedisBusy", "%s %s: %s", what, id, msg);
        return MB_AGAIN;
    }
    if (strncmp(msg, "OOM", 3) == 0 || strncmp(msg, "READONLY", 8) == 0) {
        mb_error_set(err, MB_AGAIN, "RedisUnavailable", "%s %s: %s", what, id, msg);
        return MB_AGAIN;
    }
    mb_error_set(err, MB_FATAL, "ScriptError", "%s %s: %s", what, id, msg);
    return MB_FATAL;
}

/* ================================================================ events */

/* A status event goes to the emit() helper as its top-level members (without "id" and
 * "data") and its data members (without "seq"), both without braces.  The members are
 * written straight from the event into the command (not from a copy with those keys
 * deleted, as once: two json_copy and two json_dumps per event were a tenth of the
 * worker's JSON cost), with the same bytes. */
static const char *const EV_HEAD_SKIP[] = {"id", "data", NULL};
static const char *const EV_DATA_SKIP[] = {"seq", NULL};

/* Adds obj's members but those in skip as one argument.  0 or -1. */
static int args_members(args *a, const json_t *obj, const char *const *skip)
{
    size_t at = args_begin(a);

    if (at == 0)
        return -1;
    if (mb_json_dump_members(&a->b, obj, skip) < 0) {
        args_cancel(a, at);
        return -1;
    }
    args_end(a, at);
    return args_failed(a) ? -1 : 0;
}

/* Adds the event's traceparent ("" when absent) if with_tp, then its head and data
 * members.  -1 when ev is not an object with an object "data", its traceparent is
 * malformed or a member cannot be written: the command is then not to be sent. */
static int args_event_parts(args *a, const json_t *ev, int with_tp)
{
    const json_t *d = json_object_get(ev, "data");
    const json_t *tp = json_object_get(ev, "traceparent");
    const char *tps;

    if (!json_is_object(ev) || !json_is_object(d))
        return -1;
    tps = json_is_string(tp) ? json_string_value(tp) : "";
    if (!tp_ok(tps))
        return -1;
    if (with_tp)
        args_str(a, tps);
    if (args_members(a, ev, EV_HEAD_SKIP) < 0 || args_members(a, d, EV_DATA_SKIP) < 0)
        return -1;
    return 0;
}

/* Adds head and data of ev, or fails the command. */
static int args_event(args *a, const json_t *ev)
{
    return args_event_parts(a, ev, 0);
}

static int args_event_tp(args *a, const json_t *ev)
{
    return args_event_parts(a, ev, 1);
}

/* ================================================================ jobs */

void mb_job_free(mb_job *j)
{
    if (j == NULL)
        return;
    free(j->order_id);
    free(j->key);
    json_decref(j->order);
    json_decref(j->state);
    free(j->status);
    free(j->step);
    free(j->traceparent);
    free(j->error_code);
    free(j->error_msg);
    free(j->lease_owner);
    free(j->saga);
    free(j);
}

void mb_job_free_array(mb_job **jobs, size_t n)
{
    if (jobs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        mb_job_free(jobs[i]);
    free(jobs);
}

static long long to_ll(const redisReply *v)
{
    return v->type == REDIS_REPLY_STRING ? strtoll(v->str, NULL, 10) : 0;
}

static int set_str(char **dst, const redisReply *v)
{
    free(*dst);
    *dst = strndup(v->str ? v->str : "", v->len);
    return *dst ? 0 : -1;
}

typedef struct field_val {
    const redisReply *f, *v;
} field_val;

static int field_cmp(const void *a, const void *b)
{
    const field_val *x = a, *y = b;

    return strcmp(x->f->str, y->f->str);
}

static int is_step_field(const redisReply *f)
{
    return f->str != NULL && strncmp(f->str, "step:", 5) == 0;
}

/* Joins the step:<NN>:<name> fields of a split record (key layout) back into state.steps,
 * in saga order.  A field that is not a JSON object is left out, as a garbled state is.
 * 0, or -1 out of memory. */
static int join_steps(json_t *state, const redisReply *r)
{
    field_val *fv;
    size_t n = 0;
    json_t *steps;
    int rc = 0;

    for (size_t i = 0; i + 1 < r->elements; i += 2)
        n += is_step_field(r->element[i]);
    if (n == 0)
        return 0;
    fv = malloc(n * sizeof(*fv));
    steps = json_object_get(state, "steps");
    if (!json_is_object(steps)) {
        steps = json_object();
        if (json_object_set_new(state, "steps", steps) < 0)
            steps = NULL;
    }
    if (fv == NULL || steps == NULL) {
        free(fv);
        return -1;
    }
    n = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (is_step_field(r->element[i]))
            fv[n++] = (field_val){r->element[i], r->element[i + 1]};
    qsort(fv, n, sizeof(*fv), field_cmp);
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *name = strchr(fv[i].f->str + 5, ':');
        json_t *rec;
        if (name == NULL || name[1] == '\0' || fv[i].v->type != REDIS_REPLY_STRING)
            continue;
        rec = mb_jscan_tree(fv[i].v->str, fv[i].v->len);
        if (json_is_object(rec))
            rc = json_object_set_new(steps, name + 1, rec);
        else
            json_decref(rec);
    }
    free(fv);
    return rc;
}

/* A job from an HGETALL reply (flat field/value array).  NULL on a malformed record. */
static mb_job *job_from_hash(const redisReply *r)
{
    mb_job *j;
    int bad = 0;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0 || r->elements % 2)
        return NULL;
    j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str;
        const redisReply *v = r->element[i + 1];
        if (f == NULL || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f, "id") == 0)
            bad |= set_str(&j->order_id, v);
        else if (strcmp(f, "key") == 0)
            bad |= set_str(&j->key, v);
        else if (strcmp(f, "shard") == 0)
            j->shard = (int)to_ll(v);
        else if (strcmp(f, "order") == 0)
            j->order = mb_jscan_tree(v->str, v->len);
        else if (strcmp(f, "state") == 0)
            j->state = mb_jscan_tree(v->str, v->len);
        else if (strcmp(f, "status") == 0)
            bad |= set_str(&j->status, v);
        else if (strcmp(f, "step") == 0)
            bad |= set_str(&j->step, v);
        else if (strcmp(f, "tp") == 0)
            bad |= set_str(&j->traceparent, v);
        else if (strcmp(f, "error_code") == 0)
            bad |= set_str(&j->error_code, v);
        else if (strcmp(f, "error_msg") == 0)
            bad |= set_str(&j->error_msg, v);
        else if (strcmp(f, "lease_owner") == 0)
            bad |= set_str(&j->lease_owner, v);
        else if (strcmp(f, "saga") == 0)
            bad |= set_str(&j->saga, v);
        else if (strcmp(f, "fence") == 0)
            j->fence = to_ll(v);
        else if (strcmp(f, "lease_until") == 0)
            j->lease_until_ms = to_ll(v);
        else if (strcmp(f, "created") == 0)
            j->created_ms = to_ll(v);
        else if (strcmp(f, "updated") == 0)
            j->updated_ms = to_ll(v);
        else if (strcmp(f, "next_run") == 0)
            j->next_run_ms = to_ll(v);
        else if (strcmp(f, "ck") == 0)
            j->checkpoints = to_ll(v);
        else if (strcmp(f, "claims") == 0)
            j->claims = to_ll(v);
        else if (strcmp(f, "attempt") == 0)
            j->attempt = (int)to_ll(v);
        else if (strcmp(f, "cancel") == 0)
            j->cancel_requested = to_ll(v) != 0;
    }
    /* Fields a record may lack default to empty, so callers never test for NULL. */
    static const redisReply empty = {.type = REDIS_REPLY_STRING, .str = (char *)"", .len = 0};
    char **strs[] = {&j->order_id,    &j->key,        &j->status,    &j->step,
                     &j->traceparent, &j->error_code, &j->error_msg, &j->lease_owner};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        if (*strs[i] == NULL)
            bad |= set_str(strs[i], &empty);
    if (j->saga == NULL || j->saga[0] == '\0') {
        static const redisReply create = {
            .type = REDIS_REPLY_STRING, .str = (char *)"create", .len = 6};
        bad |= set_str(&j->saga, &create);
    }
    if (j->state == NULL)
        j->state = json_object();
    if (j->state != NULL && join_steps(j->state, r) < 0)
        bad = 1;
    if (bad || j->order_id[0] == '\0' || j->state == NULL) {
        mb_job_free(j);
        return NULL;
    }
    return j;
}

/* ================================================================ accept / reject */

static int accept_cmd(mb_store *st, const mb_accept *q, cmd *c, mb_error *err)
{
    char key[200];
    int shard;

    memset(c, 0, sizeof(*c));
    c->script = S_ACCEPT;
    c->nkeys = 6;
    if (!id_ok(q->order_id, 64) || !id_ok(q->account_id, 64) || !id_ok(q->mesh_name, 64) ||
        !tp_ok(q->traceparent) || q->order_json == NULL) {
        mb_error_set(err, MB_PERM, "BadRequest",
                     "accept: bad order id, account, mesh name "
                     "or traceparent");
        return -1;
    }
    snprintf(key, sizeof(key), "%s/%s", q->account_id, q->mesh_name);
    shard = mb_store_shard_of(st, key);
    key_of(&c->a, shard, "job", q->order_id);
    key_of(&c->a, shard, "name", key);
    key_of(&c->a, shard, "seq", key);
    key_shard(&c->a, shard, "due");
    key_shard(&c->a, shard, "outbox");
    key_index(&c->a, q->order_id);
    args_str(&c->a, q->order_id);
    args_str(&c->a, key);
    args_ll(&c->a, shard);
    args_str(&c->a, q->order_json);
    args_str(&c->a, q->traceparent);
    if (args_event(&c->a, q->accepted_event) < 0 || args_event(&c->a, q->conflict_event) < 0) {
        mb_error_set(err, MB_PERM, "BadRequest",
                     "accept %s: status event is not an object "
                     "with a data object",
                     q->order_id);
        return -1;
    }
    args_str(&c->a, q->saga && q->saga[0] ? q->saga : "create");
    args_str(&c->a, q->mesh_id ? q->mesh_id : "");
    args_ll(&c->a, st->retain_ms);
    args_ll(&c->a, st->tombstone_ms);
    return 0;
}

static mb_status accept_reply(const redisReply *r, const char *id, mb_accept_result *res,
                              mb_error *err)
{
    const char *v;

    if (r->type == REDIS_REPLY_ERROR)
        return script_error(r, "accept", id, err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        mb_error_set(err, MB_FATAL, "ScriptError", "accept %s: unexpected reply", id);
        return MB_FATAL;
    }
    v = r->element[0]->str;
    memset(res, 0, sizeof(*res));
    if (strcmp(v, "accepted") == 0)
        res->verdict = MB_ACCEPT_NEW;
    else if (strcmp(v, "duplicate") == 0)
        res->verdict = MB_ACCEPT_DUPLICATE;
    else
        res->verdict = MB_ACCEPT_CONFLICT;
    if (r->element[1]->type == REDIS_REPLY_STRING)
        snprintf(res->other, sizeof(res->other), "%s", r->element[1]->str);
    res->seq = r->element[2]->integer;
    return MB_OK;
}

/* Runs n prepared commands and hands each reply to fn; commands that could not be built
 * (ok[i] == 0) already carry their error. */
typedef mb_status (*reply_fn)(void *ctx, size_t i, const redisReply *r, mb_error *err);

static mb_status run_batch(mb_store *st, cmd *cmds, const int *ok, size_t n, mb_status *sts,
                           mb_error *errs, reply_fn fn, void *ctx)
{
    redisReply **rep;
    cmd *send;
    size_t *map, m = 0;
    mb_status first = MB_OK, s;
    mb_error e;

    rep = calloc(n ? n : 1, sizeof(*rep));
    send = calloc(n ? n : 1, sizeof(*send));
    map = calloc(n ? n : 1, sizeof(*map));
    if (rep == NULL || send == NULL || map == NULL) {
        free(rep);
        free(send);
        free(map);
        return MB_FATAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!ok[i]) {
            if (first == MB_OK)
                first = sts[i];
            continue;
        }
        send[m] = cmds[i];
        map[m++] = i;
    }
    mb_error_clear(&e);
    s = m ? pipeline(st, send, m, rep, &e) : MB_OK;
    for (size_t k = 0; k < m; k++) {
        size_t i = map[k];
        mb_error *ei = errs ? &errs[i] : NULL;
        if (rep[k] == NULL) {
            sts[i] = s != MB_OK ? s : MB_AGAIN;
            if (ei)
                *ei = e;
        } else {
            sts[i] = fn(ctx, i, rep[k], ei);
        }
        if (first == MB_OK && sts[i] != MB_OK)
            first = sts[i];
    }
    free_replies(rep, m);
    free(rep);
    free(send);
    free(map);
    return first;
}

typedef struct accept_ctx {
    const mb_accept *reqs;
    mb_accept_result *res;
} accept_ctx;

static mb_status accept_fn(void *ctx, size_t i, const redisReply *r, mb_error *err)
{
    accept_ctx *a = ctx;
    return accept_reply(r, a->reqs[i].order_id, &a->res[i], err);
}

mb_status mb_store_accept(mb_store *st, const mb_accept *reqs, size_t n, mb_accept_result *res,
                          mb_status *sts, mb_error *errs)
{
    cmd *cmds = calloc(n ? n : 1, sizeof(*cmds));
    int *ok = calloc(n ? n : 1, sizeof(*ok));
    accept_ctx ctx = {reqs, res};
    mb_status s;

    if (cmds == NULL || ok == NULL) {
        free(cmds);
        free(ok);
        return MB_FATAL;
    }
    for (size_t i = 0; i < n; i++) {
        ok[i] = accept_cmd(st, &reqs[i], &cmds[i], errs ? &errs[i] : NULL) == 0;
        sts[i] = ok[i] ? MB_OK : MB_PERM;
    }
    s = run_batch(st, cmds, ok, n, sts, errs, accept_fn, &ctx);
    free_cmds(cmds, n);
    free(cmds);
    free(ok);
    return s;
}

mb_status mb_store_reject(mb_store *st, const mb_reject *q, int *queued, mb_error *err)
{
    char key[200];
    int shard;
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    *queued = 0;
    memset(&c, 0, sizeof(c));
    if (!id_ok(q->order_id, 64) || !id_ok(q->account_id, 64) || !id_ok(q->mesh_name, 64) ||
        !tp_ok(q->traceparent)) {
        mb_error_set(err, MB_PERM, "BadRequest", "reject: bad order id, account or mesh name");
        return MB_PERM;
    }
    snprintf(key, sizeof(key), "%s/%s", q->account_id, q->mesh_name);
    shard = mb_store_shard_of(st, key);
    c.script = S_REJECT;
    c.nkeys = 4;
    key_of(&c.a, shard, "job", q->order_id);
    key_of(&c.a, shard, "seq", key);
    key_shard(&c.a, shard, "outbox");
    key_index(&c.a, q->order_id);
    args_str(&c.a, q->order_id);
    args_str(&c.a, key);
    args_ll(&c.a, shard);
    args_add(&c.a, q->raw ? q->raw : "", q->raw_len < RAW_KEEP_MAX ? q->raw_len : RAW_KEEP_MAX);
    args_str(&c.a, q->traceparent);
    args_str(&c.a, q->reason);
    if (args_event(&c.a, q->failed_event) < 0) {
        args_free(&c.a);
        mb_error_set(err, MB_PERM, "BadRequest", "reject %s: bad status event", q->order_id);
        return MB_PERM;
    }
    args_ll(&c.a, st->retain_ms);
    s = pipeline(st, &c, 1, &r, err);
    if (s == MB_OK) {
        if (r->type == REDIS_REPLY_ERROR)
            s = script_error(r, "reject", q->order_id, err);
        else
            *queued = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    }
    if (r)
        freeReplyObject(r);
    args_free(&c.a);
    return s;
}

/* ================================================================ time */

mb_status mb_store_time_ms(mb_store *st, long long *now_ms, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "TIME");
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        mb_error_set(err, MB_FATAL, "ScriptError", "TIME: unexpected reply");
        s = MB_FATAL;
    } else {
        *now_ms = strtoll(r->element[0]->str, NULL, 10) * 1000 +
                  strtoll(r->element[1]->str, NULL, 10) / 1000;
    }
    freeReplyObject(r);
    return s;
}

/* ================================================================ claim */

#define C_TERMINAL_(s) #s,

int mb_store_status_terminal(const char *status)
{
    static const char *const terminal[] = {MB_STORE_TERMINAL(C_TERMINAL_) NULL};

    for (int i = 0; status && terminal[i]; i++) {
        if (strcmp(status, terminal[i]) == 0)
            return 1;
    }
    return 0;
}

mb_status mb_store_claim(mb_store *st, long long lease_ms, size_t max, const char *claim_id,
                         int resend, mb_job ***jobs, size_t *n, mb_error *err)
{
    size_t ns = (size_t)st->shards;
    size_t per = max / ns + (max % ns ? 1 : 0);
    batch b;
    mb_job **out = NULL;
    size_t total = 0, cap = 0;
    mb_status s;

    *jobs = NULL;
    *n = 0;
    if (batch_new(&b, ns, "claim", err) < 0)
        return MB_FATAL;
    if (per == 0)
        per = 1;
    for (size_t i = 0; i < ns; i++) {
        b.c[i].script = S_CLAIM;
        b.c[i].nkeys = 2;
        key_shard(&b.c[i].a, (int)i, "due");
        key_of(&b.c[i].a, (int)i, "claimed", st->worker_id);
        key_of(&b.c[i].a, (int)i, "job", "");
        args_ll(&b.c[i].a, lease_ms);
        args_ll(&b.c[i].a, (long long)per);
        args_str(&b.c[i].a, st->worker_id);
        args_str(&b.c[i].a, claim_id);
        args_str(&b.c[i].a, resend ? "1" : "0");
    }
    s = batch_send(st, &b, err);
    if (s == MB_OK)
        st->next_due_in_ms = -1;
    for (size_t i = 0; s == MB_OK && i < ns; i++) {
        const redisReply *nx;
        long long now;
        if (b.r[i]->type == REDIS_REPLY_ERROR) {
            s = script_error(b.r[i], "claim", "-", err);
            break;
        }
        if (b.r[i]->type != REDIS_REPLY_ARRAY || b.r[i]->elements < 2 ||
            b.r[i]->element[0]->type != REDIS_REPLY_STRING) {
            s = MB_FATAL;
            mb_error_set(err, MB_FATAL, "ScriptError", "claim: unexpected reply");
            break;
        }
        now = strtoll(b.r[i]->element[0]->str, NULL, 10);
        /* In how many ms the shard's earliest job is due ('' if none). */
        nx = b.r[i]->element[1];
        if (nx->type == REDIS_REPLY_STRING && nx->len > 0) {
            long long in = strtoll(nx->str, NULL, 10);
            if (st->next_due_in_ms < 0 || in < st->next_due_in_ms)
                st->next_due_in_ms = in;
        }
        for (size_t k = 2; k < b.r[i]->elements; k++) {
            mb_job *j = job_from_hash(b.r[i]->element[k]);
            if (j == NULL) {
                mb_warn("store", "claim: malformed job record in shard %zu skipped", i);
                continue;
            }
            j->lease_left_ms = j->lease_until_ms - now;
            if (total == cap) {
                size_t nc = cap ? cap * 2 : 16;
                mb_job **grown = realloc(out, nc * sizeof(*grown));
                if (grown == NULL) {
                    mb_job_free(j);
                    s = MB_FATAL;
                    mb_error_set(err, MB_FATAL, "OutOfMemory", "claim");
                    break;
                }
                out = grown;
                cap = nc;
            }
            out[total++] = j;
        }
    }
    batch_free(&b);
    /* Jobs leased but not returned (error part-way) simply expire and become due again. */
    if (s != MB_OK) {
        mb_job_free_array(out, total);
        return s;
    }
    *jobs = out;
    *n = total;
    return MB_OK;
}

/* ================================================================ checkpoint / renew */

static void args_opt(args *a, const char *s)
{
    args_str(a, s ? s : UNCHANGED);
}

/* Adds the compact JSON of v, an array or object, as json_dumps(v, JSON_COMPACT) writes it
 * (the Lua scripts store the text as is, so it must stay byte for byte what it was),
 * written straight into the command.  0, or -1 when v cannot be written. */
static int args_json(args *a, const json_t *v)
{
    size_t at;

    if (!json_is_object(v) && !json_is_array(v))
        return -1;
    at = args_begin(a);
    if (at == 0)
        return -1;
    if (mb_json_dump(&a->b, v) < 0) {
        args_cancel(a, at);
        return -1;
    }
    args_end(a, at);
    return args_failed(a) ? -1 : 0;
}

static const char *const STATE_SKIP[] = {"steps", NULL};

/* The state of a split checkpoint: its members but "steps", as one object. */
static int args_json_top(args *a, const json_t *v)
{
    size_t at;

    if (!json_is_object(v))
        return -1;
    at = args_begin(a);
    if (at == 0)
        return -1;
    mb_buf_add(&a->b, "{", 1);
    if (mb_json_dump_members(&a->b, v, STATE_SKIP) < 0) {
        args_cancel(a, at);
        return -1;
    }
    mb_buf_add(&a->b, "}", 1);
    args_end(a, at);
    return args_failed(a) ? -1 : 0;
}

/* "step:<NN>:<name>" (see the key layout) and the record, for each of the split
 * checkpoint's records; -1 when one cannot be written. */
static int args_records(args *a, const mb_checkpoint *k)
{
    char f[96];

    if (!k->split) {
        args_ll(a, -1);
        return 0;
    }
    args_ll(a, (long long)k->n_records);
    memcpy(f, "step:", 5); /* "step:NN:<name>", written by hand: a field a record a step */
    for (size_t i = 0; i < k->n_records; i++) {
        const mb_ck_record *r = &k->records[i];
        size_t n;
        if (r->index < 0 || r->index > 99 || r->name == NULL || r->name[0] == '\0' ||
            !json_is_object(r->rec))
            return -1;
        n = strlen(r->name);
        if (8 + n >= sizeof(f))
            return -1;
        f[5] = (char)('0' + r->index / 10);
        f[6] = (char)('0' + r->index % 10);
        f[7] = ':';
        memcpy(f + 8, r->name, n);
        args_add(a, f, 8 + n);
        if (args_json(a, r->rec) < 0)
            return -1;
    }
    return 0;
}

static int checkpoint_cmd(mb_store *st, const mb_checkpoint *k, cmd *c, mb_error *err)
{
    int shard;

    memset(c, 0, sizeof(*c));
    c->script = S_CHECKPOINT;
    c->nkeys = 6;
    if (!id_ok(k->order_id, 64) || !id_ok(k->key, 140)) {
        mb_error_set(err, MB_PERM, "BadRequest", "checkpoint: bad order id or key");
        return -1;
    }
    shard = mb_store_shard_of(st, k->key);
    key_of(&c->a, shard, "job", k->order_id);
    key_shard(&c->a, shard, "due");
    key_of(&c->a, shard, "seq", k->key);
    key_shard(&c->a, shard, "outbox");
    key_of(&c->a, shard, "name", k->key);
    key_of(&c->a, shard, "hist", k->order_id);
    args_str(&c->a, k->order_id);
    args_ll(&c->a, k->fence);
    args_str(&c->a, st->worker_id);
    args_ll(&c->a, k->lease_ms);
    args_ll(&c->a, k->run_in_ms < 0 ? -1 : k->run_in_ms);
    if (k->state == NULL && !k->split) {
        args_str(&c->a, UNCHANGED);
    } else if ((k->split ? args_json_top(&c->a, k->state) : args_json(&c->a, k->state)) < 0) {
        mb_error_set(err, MB_PERM, "BadRequest", "checkpoint %s: state not serializable",
                     k->order_id);
        return -1;
    }
    args_opt(&c->a, k->status);
    args_opt(&c->a, k->step);
    if (k->attempt >= 0)
        args_ll(&c->a, k->attempt);
    else
        args_str(&c->a, UNCHANGED);
    args_opt(&c->a, k->error_code);
    args_opt(&c->a, k->error_msg);
    args_str(&c->a, !k->release_name ? "" : k->release_name_of ? k->release_name_of : k->order_id);
    args_opt(&c->a, k->history);
    args_str(&c->a, k->key);
    args_ll(&c->a, k->ck);
    args_ll(&c->a, st->retain_ms);
    args_ll(&c->a, st->tombstone_ms);
    args_str(&c->a, INDEX_PREFIX);
    args_ll(&c->a, (long long)(k->n_events + k->n_parts));
    for (size_t i = 0; i < k->n_events; i++) {
        if (args_event_tp(&c->a, k->events[i]) < 0) {
            mb_error_set(err, MB_PERM, "BadRequest",
                         "checkpoint %s: event %zu is not an "
                         "object with a data object",
                         k->order_id, i);
            return -1;
        }
    }
    for (size_t i = 0; i < k->n_parts; i++) {
        const mb_event_parts *p = &k->parts[i];
        if (p->text == NULL || !tp_ok(p->traceparent)) {
            mb_error_set(err, MB_PERM, "BadRequest", "checkpoint %s: event %zu is not built",
                         k->order_id, k->n_events + i);
            return -1;
        }
        args_str(&c->a, p->traceparent);
        args_add(&c->a, p->text, p->head_len);
        args_add(&c->a, p->text + p->head_len, p->data_len);
    }
    if (args_records(&c->a, k) < 0) {
        mb_error_set(err, MB_PERM, "BadRequest",
                     "checkpoint %s: a step record is not an object with a step name and place",
                     k->order_id);
        return -1;
    }
    return 0;
}

typedef struct ck_ctx {
    const mb_checkpoint *cks;
    mb_checkpoint_result *res;
} ck_ctx;

static mb_status ck_fn(void *ctx, size_t i, const redisReply *r, mb_error *err)
{
    ck_ctx *c = ctx;

    if (r->type == REDIS_REPLY_ERROR)
        return script_error(r, "checkpoint", c->cks[i].order_id, err);
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        mb_error_set(err, MB_FATAL, "ScriptError", "checkpoint %s: unexpected reply",
                     c->cks[i].order_id);
        return MB_FATAL;
    }
    if (c->res) {
        c->res[i].last_seq = r->element[0]->integer;
        c->res[i].cancel_requested = r->element[1]->integer != 0;
        c->res[i].already_applied = r->element[2]->integer != 0;
    }
    return MB_OK;
}

mb_status mb_store_checkpoint(mb_store *st, const mb_checkpoint *cks, size_t n,
                              mb_checkpoint_result *res, mb_status *sts, mb_error *errs)
{
    cmd *cmds = calloc(n ? n : 1, sizeof(*cmds));
    int *ok = calloc(n ? n : 1, sizeof(*ok));
    mb_status *own = sts ? NULL : calloc(n ? n : 1, sizeof(*own));
    ck_ctx ctx = {cks, res};
    mb_status s;

    if (cmds == NULL || ok == NULL || (sts == NULL && own == NULL)) {
        free(cmds);
        free(ok);
        free(own);
        return MB_FATAL;
    }
    if (sts == NULL)
        sts = own;
    for (size_t i = 0; i < n; i++) {
        ok[i] = checkpoint_cmd(st, &cks[i], &cmds[i], errs ? &errs[i] : NULL) == 0;
        sts[i] = ok[i] ? MB_OK : MB_PERM;
    }
    s = run_batch(st, cmds, ok, n, sts, errs, ck_fn, &ctx);
    free_cmds(cmds, n);
    free(cmds);
    free(ok);
    free(own);
    return s;
}

typedef struct renew_ctx {
    const mb_lease_ref *refs;
    int *cancel;
} renew_ctx;

static mb_status renew_fn(void *ctx, size_t i, const redisReply *r, mb_error *err)
{
    renew_ctx *c = ctx;

    if (r->type == REDIS_REPLY_ERROR)
        return script_error(r, "renew", c->refs[i].order_id, err);
    if (c->cancel)
        c->cancel[i] = r->type == REDIS_REPLY_INTEGER && r->integer != 0;
    return MB_OK;
}

/* One lease script (renew, handback) per ref, in one round trip: KEYS job due, ARGV id
 * fence worker, then lease_ms when >= 0. */
static mb_status lease_batch(mb_store *st, int script, const char *what, const mb_lease_ref *refs,
                             size_t n, long long lease_ms, mb_status *sts, mb_error *errs,
                             reply_fn fn, void *ctx)
{
    cmd *cmds = calloc(n ? n : 1, sizeof(*cmds));
    int *ok = calloc(n ? n : 1, sizeof(*ok));
    mb_status s;

    if (cmds == NULL || ok == NULL) {
        free(cmds);
        free(ok);
        return MB_FATAL;
    }
    for (size_t i = 0; i < n; i++) {
        int shard;
        ok[i] = id_ok(refs[i].order_id, 64) && id_ok(refs[i].key, 140);
        sts[i] = ok[i] ? MB_OK : MB_PERM;
        if (!ok[i]) {
            if (errs)
                mb_error_set(&errs[i], MB_PERM, "BadRequest", "%s: bad order id or key", what);
            continue;
        }
        shard = mb_store_shard_of(st, refs[i].key);
        cmds[i].script = script;
        cmds[i].nkeys = 2;
        key_of(&cmds[i].a, shard, "job", refs[i].order_id);
        key_shard(&cmds[i].a, shard, "due");
        args_str(&cmds[i].a, refs[i].order_id);
        args_ll(&cmds[i].a, refs[i].fence);
        args_str(&cmds[i].a, st->worker_id);
        if (lease_ms >= 0)
            args_ll(&cmds[i].a, lease_ms);
    }
    s = run_batch(st, cmds, ok, n, sts, errs, fn, ctx);
    free_cmds(cmds, n);
    free(cmds);
    free(ok);
    return s;
}

mb_status mb_store_renew(mb_store *st, const mb_lease_ref *refs, size_t n, long long lease_ms,
                         mb_status *sts, int *cancel, mb_error *errs)
{
    renew_ctx ctx = {refs, cancel};

    return lease_batch(st, S_RENEW, "renew", refs, n, lease_ms, sts, errs, renew_fn, &ctx);
}

static mb_status handback_fn(void *ctx, size_t i, const redisReply *r, mb_error *err)
{
    int *back = ctx;

    if (r->type == REDIS_REPLY_ERROR)
        return script_error(r, "handback", "-", err);
    if (back)
        back[i] = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    return MB_OK;
}

mb_status mb_store_handback(mb_store *st, const mb_lease_ref *refs, size_t n, mb_status *sts,
                            int *back, mb_error *errs)
{
    return lease_batch(st, S_HANDBACK, "handback", refs, n, -1, sts, errs, handback_fn, back);
}

/* ================================================================ by order id */

/* The shard of order_id: from mesh_key when given, else from the order index.
 * *shard = -1 when unknown. */
static mb_status find_shard(mb_store *st, const char *order_id, const char *mesh_key, int *shard,
                            mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    *shard = -1;
    if (mesh_key && *mesh_key) {
        *shard = mb_store_shard_of(st, mesh_key);
        return MB_OK;
    }
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "GET");
    key_index(&c.a, order_id);
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    if (r->type == REDIS_REPLY_STRING) {
        long v = strtol(r->str, NULL, 10);
        if (v >= 0 && v < st->shards)
            *shard = (int)v;
    }
    freeReplyObject(r);
    return MB_OK;
}

static mb_status simple_script(mb_store *st, int script, int shard, const char *order_id,
                               redisReply **r, mb_error *err)
{
    cmd c;
    mb_status s;

    memset(&c, 0, sizeof(c));
    c.script = script;
    c.nkeys = 2;
    key_of(&c.a, shard, "job", order_id);
    key_shard(&c.a, shard, "due");
    args_str(&c.a, order_id);
    key_index(&c.a, order_id);
    s = pipeline(st, &c, 1, r, err);
    args_free(&c.a);
    if (s == MB_OK && (*r)->type == REDIS_REPLY_ERROR) {
        s = script_error(*r, scripts[script].name, order_id, err);
        freeReplyObject(*r);
        *r = NULL;
    }
    return s;
}

mb_status mb_store_cancel(mb_store *st, const char *order_id, const char *mesh_key, int *found,
                          char *status, size_t status_len, mb_error *err)
{
    redisReply *r = NULL;
    mb_status s;
    int shard;

    *found = 0;
    if (status && status_len)
        status[0] = '\0';
    if (!id_ok(order_id, 64)) {
        mb_error_set(err, MB_PERM, "BadRequest", "cancel: bad order id");
        return MB_PERM;
    }
    s = find_shard(st, order_id, mesh_key, &shard, err);
    if (s != MB_OK || shard < 0)
        return s;
    s = simple_script(st, S_CANCEL, shard, order_id, &r, err);
    if (s != MB_OK)
        return s;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        *found = r->element[0]->integer == 1;
        if (status && status_len && r->element[1]->type == REDIS_REPLY_STRING)
            snprintf(status, status_len, "%s", r->element[1]->str);
    }
    freeReplyObject(r);
    return MB_OK;
}

mb_status mb_store_requeue(mb_store *st, const char *order_id, mb_error *err)
{
    redisReply *r = NULL;
    mb_status s;
    int shard;

    if (!id_ok(order_id, 64)) {
        mb_error_set(err, MB_PERM, "BadRequest", "requeue: bad order id");
        return MB_PERM;
    }
    s = find_shard(st, order_id, NULL, &shard, err);
    if (s != MB_OK)
        return s;
    if (shard < 0) {
        mb_error_set(err, MB_PERM, "NoSuchJob", "requeue: no job for order %s", order_id);
        return MB_PERM;
    }
    s = simple_script(st, S_REQUEUE, shard, order_id, &r, err);
    if (s != MB_OK)
        return s;
    if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) {
        mb_error_set(err, MB_PERM, "NoSuchJob", "requeue: no job for order %s", order_id);
        s = MB_PERM;
    }
    freeReplyObject(r);
    return s;
}

static mb_status hgetall(mb_store *st, int shard, const char *order_id, mb_job **out, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    *out = NULL;
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "HGETALL");
    key_of(&c.a, shard, "job", order_id);
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0)
        *out = job_from_hash(r);
    freeReplyObject(r);
    return MB_OK;
}

mb_status mb_store_get(mb_store *st, const char *order_id, mb_job **out, mb_error *err)
{
    mb_status s;
    int shard;

    *out = NULL;
    if (!id_ok(order_id, 64)) {
        mb_error_set(err, MB_PERM, "BadRequest", "get: bad order id");
        return MB_PERM;
    }
    s = find_shard(st, order_id, NULL, &shard, err);
    if (s != MB_OK || shard < 0)
        return s;
    return hgetall(st, shard, order_id, out, err);
}

mb_status mb_store_history(mb_store *st, const mb_job *job, json_t **out, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    *out = NULL;
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "LRANGE");
    key_of(&c.a, job->shard, "hist", job->order_id);
    args_str(&c.a, "0");
    args_str(&c.a, "-1");
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    *out = json_array();
    for (size_t i = 0; *out && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        json_array_append_new(*out, json_stringn(r->element[i]->str, r->element[i]->len));
    freeReplyObject(r);
    return *out ? MB_OK : MB_FATAL;
}

mb_status mb_store_scan(mb_store *st, const char *status, int (*fn)(void *arg, const mb_job *job),
                        void *arg, mb_error *err)
{
    for (int shard = 0; shard < st->shards; shard++) {
        char cursor[32] = "0";
        do {
            cmd c;
            redisReply *r = NULL;
            mb_status s;

            memset(&c, 0, sizeof(c));
            c.script = -1;
            args_str(&c.a, "SCAN");
            args_str(&c.a, cursor);
            args_str(&c.a, "MATCH");
            key_of(&c.a, shard, "job", "*");
            args_str(&c.a, "COUNT");
            args_str(&c.a, "500");
            s = pipeline(st, &c, 1, &r, err);
            args_free(&c.a);
            if (s != MB_OK)
                return s;
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
                freeReplyObject(r);
                mb_error_set(err, MB_FATAL, "RedisError", "SCAN: unexpected reply");
                return MB_FATAL;
            }
            snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
            for (size_t i = 0; i < r->element[1]->elements; i++) {
                const char *k = r->element[1]->element[i]->str;
                const char *id = strstr(k, "}:job:");
                mb_job *j = NULL;
                int stop;
                if (id == NULL)
                    continue;
                s = hgetall(st, shard, id + 6, &j, err);
                if (s != MB_OK) {
                    freeReplyObject(r);
                    return s;
                }
                if (j == NULL || (status && strcmp(j->status, status) != 0)) {
                    mb_job_free(j);
                    continue;
                }
                stop = fn(arg, j);
                mb_job_free(j);
                if (stop) {
                    freeReplyObject(r);
                    return MB_OK;
                }
            }
            freeReplyObject(r);
        } while (strcmp(cursor, "0") != 0);
    }
    return MB_OK;
}

/* The statuses ever indexed in a shard (SMEMBERS): *r is a new reply, an array. */
static mb_status list_statuses(mb_store *st, int shard, redisReply **r, mb_error *err)
{
    cmd c;
    mb_status s;

    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "SMEMBERS");
    key_shard(&c.a, shard, "statuses");
    s = pipeline(st, &c, 1, r, err);
    args_free(&c.a);
    if (s == MB_OK && (*r)->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(*r);
        *r = NULL;
        mb_error_set(err, MB_FATAL, "RedisError", "SMEMBERS statuses: unexpected reply");
        return MB_FATAL;
    }
    return s;
}

/* One page of a status zset: its ids, then their records in one round trip.  fn sees the
 * records that still exist and still have that status.  *more = 0 after the last page,
 * *stop = 1 when fn asked to stop. */
static mb_status list_page(mb_store *st, int shard, const char *status, long start,
                           int (*fn)(void *arg, const mb_job *job), void *arg, int *more, int *stop,
                           mb_error *err)
{
    cmd c, *gets = NULL;
    redisReply *r = NULL, **recs = NULL;
    size_t n = 0;
    mb_status s;

    *more = 0;
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "ZRANGE");
    key_of(&c.a, shard, "status", status);
    args_ll(&c.a, start);
    args_ll(&c.a, start + LIST_PAGE - 1);
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    if (r->type == REDIS_REPLY_ARRAY)
        n = r->elements;
    gets = calloc(n ? n : 1, sizeof(*gets));
    recs = calloc(n ? n : 1, sizeof(*recs));
    if (gets == NULL || recs == NULL) {
        s = MB_FATAL;
        mb_error_set(err, MB_FATAL, "NoMemory", "listing jobs");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        gets[i].script = -1;
        args_str(&gets[i].a, "HGETALL");
        key_of(&gets[i].a, shard, "job", r->element[i]->str);
    }
    s = n ? pipeline(st, gets, n, recs, err) : MB_OK;
    for (size_t i = 0; s == MB_OK && !*stop && i < n; i++) {
        mb_job *j = NULL;
        if (recs[i]->type == REDIS_REPLY_ARRAY && recs[i]->elements > 0)
            j = job_from_hash(recs[i]);
        if (j && strcmp(j->status, status) == 0)
            *stop = fn(arg, j) != 0;
        mb_job_free(j);
    }
    *more = n == LIST_PAGE;
out:
    if (recs)
        free_replies(recs, n);
    free(recs);
    if (gets)
        free_cmds(gets, n);
    free(gets);
    freeReplyObject(r);
    return s;
}

static mb_status list_status(mb_store *st, int shard, const char *status,
                             int (*fn)(void *arg, const mb_job *job), void *arg, int *stop,
                             mb_error *err)
{
    int more = 1;

    for (long start = 0; more && !*stop; start += LIST_PAGE) {
        mb_status s = list_page(st, shard, status, start, fn, arg, &more, stop, err);
        if (s != MB_OK)
            return s;
    }
    return MB_OK;
}

/* Records written before the status index existed: the first listing walks the keyspace
 * once (mb_store_scan), indexes every record it meets and, when the walk completed, marks the
 * data indexed (mb:meta:indexed); later listings read the index only. */
typedef struct backfill {
    mb_store *st;
    const char *status;
    int (*fn)(void *arg, const mb_job *job);
    void *arg;
    int stopped;
} backfill;

static int backfill_one(void *ctx, const mb_job *j)
{
    backfill *b = ctx;
    cmd c[2];
    redisReply *r[2] = {NULL, NULL};
    mb_error e;

    memset(c, 0, sizeof(c));
    c[0].script = c[1].script = -1;
    args_str(&c[0].a, "ZADD");
    key_of(&c[0].a, j->shard, "status", j->status);
    args_ll(&c[0].a, j->updated_ms);
    args_str(&c[0].a, j->order_id);
    args_str(&c[1].a, "SADD");
    key_shard(&c[1].a, j->shard, "statuses");
    args_str(&c[1].a, j->status);
    mb_error_clear(&e);
    if (pipeline(b->st, c, 2, r, &e) != MB_OK)
        mb_debug("store", "indexing %s: %s", j->order_id, e.msg);
    free_replies(r, 2);
    free_cmds(c, 2);
    if (!b->stopped && (b->status == NULL || strcmp(b->status, j->status) == 0))
        b->stopped = b->fn(b->arg, j) != 0;
    return 0; /* the walk goes on to index everything */
}

static mb_status list_backfill(mb_store *st, const char *status,
                               int (*fn)(void *arg, const mb_job *job), void *arg, int *done,
                               mb_error *err)
{
    backfill b = {st, status, fn, arg, 0};
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    *done = 0;
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "GET");
    args_str(&c.a, "mb:meta:indexed");
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    *done = r->type == REDIS_REPLY_STRING;
    freeReplyObject(r);
    if (*done)
        return MB_OK;
    mb_info("store", "indexing jobs written before the status index (once)");
    s = mb_store_scan(st, NULL, backfill_one, &b, err);
    if (s != MB_OK)
        return s;
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "SET");
    args_str(&c.a, "mb:meta:indexed");
    args_str(&c.a, "1");
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (r)
        freeReplyObject(r);
    *done = 0; /* this listing was served by the walk */
    return s;
}

mb_status mb_store_list(mb_store *st, const char *status, int (*fn)(void *arg, const mb_job *job),
                        void *arg, mb_error *err)
{
    int stop = 0, indexed = 0;
    mb_status bs;

    if (status && !id_ok(status, 64)) {
        mb_error_set(err, MB_PERM, "BadRequest", "list: bad status");
        return MB_PERM;
    }
    bs = list_backfill(st, status, fn, arg, &indexed, err);
    if (bs != MB_OK || !indexed)
        return bs;
    for (int shard = 0; shard < st->shards && !stop; shard++) {
        redisReply *sts = NULL;
        mb_status s = MB_OK;

        if (status) {
            s = list_status(st, shard, status, fn, arg, &stop, err);
        } else {
            s = list_statuses(st, shard, &sts, err);
            for (size_t i = 0; s == MB_OK && !stop && sts && i < sts->elements; i++)
                s = list_status(st, shard, sts->element[i]->str, fn, arg, &stop, err);
        }
        if (sts)
            freeReplyObject(sts);
        if (s != MB_OK)
            return s;
    }
    return MB_OK;
}

/* ================================================================ DLQ records */

mb_status mb_store_dlq_record(mb_store *st, const mb_dlq_record *d, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "XADD");
    args_str(&c.a, "mb:dlq");
    args_str(&c.a, "MAXLEN");
    args_str(&c.a, "~");
    args_str(&c.a, "10000");
    args_str(&c.a, "*");
    args_str(&c.a, "reason");
    args_str(&c.a, d->reason);
    args_str(&c.a, "class");
    args_str(&c.a, d->error_class);
    args_str(&c.a, "topic");
    args_str(&c.a, d->topic);
    args_str(&c.a, "partition");
    args_ll(&c.a, d->partition);
    args_str(&c.a, "offset");
    args_ll(&c.a, d->offset);
    args_str(&c.a, "key");
    args_str(&c.a, d->key);
    args_str(&c.a, "order_id");
    args_str(&c.a, d->order_id);
    args_str(&c.a, "size");
    args_ll(&c.a, (long long)d->size);
    args_str(&c.a, "at");
    args_ll(&c.a, d->now_ms);
    args_str(&c.a, "dlq");
    if (d->undeliverable && *d->undeliverable) {
        args_str(&c.a, "undeliverable");
        args_str(&c.a, "dlq_error");
        args_str(&c.a, d->undeliverable);
    } else {
        args_str(&c.a, "delivered");
    }
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s == MB_OK && r->type == REDIS_REPLY_ERROR) {
        mb_error_set(err, MB_FATAL, "RedisError", "XADD mb:dlq: %s", r->str);
        s = MB_FATAL;
    }
    if (r)
        freeReplyObject(r);
    return s;
}

/* The newest max entries of a stream, newest first, as objects of strings plus "id". */
static mb_status stream_list(mb_store *st, const char *stream, size_t max, json_t **out,
                             mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    *out = NULL;
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "XREVRANGE");
    args_str(&c.a, stream);
    args_str(&c.a, "+");
    args_str(&c.a, "-");
    args_str(&c.a, "COUNT");
    args_ll(&c.a, (long long)max);
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    *out = json_array();
    for (size_t i = 0; *out && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        json_t *o = json_object();
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || o == NULL) {
            json_decref(o);
            continue;
        }
        json_object_set_new(o, "id", json_string(e->element[0]->str));
        for (size_t k = 0; k + 1 < e->element[1]->elements; k += 2)
            json_object_set_new(o, e->element[1]->element[k]->str,
                                json_stringn(e->element[1]->element[k + 1]->str,
                                             e->element[1]->element[k + 1]->len));
        json_array_append_new(*out, o);
    }
    freeReplyObject(r);
    return *out ? MB_OK : MB_FATAL;
}

mb_status mb_store_dlq_list(mb_store *st, size_t max, json_t **out, mb_error *err)
{
    return stream_list(st, "mb:dlq", max, out, err);
}

/* ================================================================ outbox */

typedef struct batch_priv {
    redisReply *reply;
} batch_priv;

void mb_outbox_batch_clear(mb_outbox_batch *b)
{
    batch_priv *p;

    if (b == NULL)
        return;
    p = b->priv;
    if (p && p->reply)
        freeReplyObject(p->reply);
    free(p);
    free(b->entries);
    b->priv = NULL;
    b->entries = NULL;
    b->n = 0;
    b->held = 0;
}

/* "<key>\n<tp>\n<json>" into an entry pointing into the reply (NUL-separated in place). */
static int parse_entry(redisReply *v, mb_outbox_entry *e)
{
    char *s = v->str;
    char *nl1, *nl2;

    if (v->type != REDIS_REPLY_STRING)
        return -1;
    nl1 = memchr(s, '\n', v->len);
    if (nl1 == NULL)
        return -1;
    nl2 = memchr(nl1 + 1, '\n', v->len - (size_t)(nl1 + 1 - s));
    if (nl2 == NULL)
        return -1;
    *nl1 = '\0';
    *nl2 = '\0';
    e->key = s;
    e->traceparent = nl1 + 1;
    e->event = nl2 + 1;
    e->event_len = v->len - (size_t)(nl2 + 1 - s);
    return 0;
}

/* Whether a peek reads batch b's entries (an LRANGE behind its hold), or only its lease. */
static int peek_reads(const mb_outbox_batch *b, size_t max)
{
    return !b->lease_only && max > 0;
}

/* For each shard the relay_hold script, then a plain LRANGE if peek_reads: one round trip.
 * Sent again if a hold was re-sent after NOSCRIPT, because then its LRANGE ran before the
 * lease was taken and may hold entries another worker has relayed and trimmed since (twice
 * in a row: MB_AGAIN, every reply dropped). */
static mb_status peek_send(mb_store *st, const char *const *tokens, const mb_outbox_batch *b,
                           size_t n, long long lease_ms, size_t max, cmd *cmds, redisReply **rep,
                           mb_error *err)
{
    size_t m = 0;

    for (size_t i = 0; i < n; i++) {
        cmd *hold = &cmds[m++];
        hold->script = S_RELAY_HOLD;
        hold->nkeys = 1;
        key_shard(&hold->a, b[i].shard, "relay");
        args_str(&hold->a, tokens[i]);
        args_ll(&hold->a, lease_ms);
        if (!peek_reads(&b[i], max))
            continue;
        cmd *lr = &cmds[m++];
        lr->script = -1;
        args_str(&lr->a, "LRANGE");
        key_shard(&lr->a, b[i].shard, "outbox");
        args_ll(&lr->a, 0);
        args_ll(&lr->a, (long long)max - 1);
    }
    for (int round = 0; round < 2; round++) {
        unsigned long long reloads = st->reloads;
        mb_status s = pipeline(st, cmds, m, rep, err);
        if (s != MB_OK || st->reloads == reloads)
            return s;
        free_replies(rep, m);
        memset(rep, 0, m * sizeof(*rep));
    }
    mb_error_set(err, MB_AGAIN, "ScriptsReloaded", "outbox peek: scripts flushed twice meanwhile");
    return MB_AGAIN;
}

mb_status mb_store_outbox_peek(mb_store *st, const char *const *tokens, mb_outbox_batch *batches,
                               size_t n, long long lease_ms, size_t max, mb_error *err)
{
    cmd *cmds = calloc(n ? 2 * n : 1, sizeof(*cmds));
    redisReply **rep = calloc(n ? 2 * n : 1, sizeof(*rep));
    mb_status s;

    if (cmds == NULL || rep == NULL) {
        free(cmds);
        free(rep);
        return MB_FATAL;
    }
    for (size_t i = 0; i < n; i++) {
        batches[i].held = 0;
        batches[i].n = 0;
        batches[i].entries = NULL;
        batches[i].priv = NULL;
    }
    s = peek_send(st, tokens, batches, n, lease_ms, max, cmds, rep, err);
    for (size_t i = 0, at = 0; s == MB_OK && i < n; i++) {
        redisReply *h = rep[at++];
        redisReply **read = peek_reads(&batches[i], max) ? &rep[at++] : NULL;
        redisReply *r = read ? *read : NULL;
        batch_priv *p;
        if (h->type == REDIS_REPLY_ERROR) {
            s = script_error(h, "relay_hold", "-", err);
            break;
        }
        if (h->type != REDIS_REPLY_INTEGER || h->integer != 1)
            continue; /* another worker relays this shard */
        batches[i].held = 1;
        if (r == NULL)
            continue;
        if (r->type == REDIS_REPLY_ERROR) {
            s = script_error(r, "outbox LRANGE", "-", err);
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY) {
            mb_error_set(err, MB_FATAL, "RedisError", "outbox shard %d: LRANGE: not a list",
                         batches[i].shard);
            s = MB_FATAL;
            break;
        }
        if (r->elements == 0)
            continue;
        p = calloc(1, sizeof(*p));
        batches[i].entries = calloc(r->elements, sizeof(mb_outbox_entry));
        if (p == NULL || batches[i].entries == NULL) {
            free(p);
            s = MB_FATAL;
            break;
        }
        p->reply = r;
        *read = NULL; /* owned by the batch */
        batches[i].priv = p;
        for (size_t k = 0; k < r->elements; k++) {
            if (parse_entry(r->element[k], &batches[i].entries[batches[i].n]) < 0) {
                /* A malformed entry cannot be relayed or skipped silently: stop before it
                 * and say so; an SRE must look (it would block the shard). */
                mb_error("store", "outbox shard %d entry %zu malformed: relay stops there",
                         batches[i].shard, k);
                break;
            }
            batches[i].n++;
        }
    }
    free_replies(rep, 2 * n);
    free(rep);
    free_cmds(cmds, 2 * n);
    free(cmds);
    if (s != MB_OK) {
        for (size_t i = 0; i < n; i++)
            mb_outbox_batch_clear(&batches[i]);
    }
    return s;
}

static mb_status relay_script(mb_store *st, int script, int shard, const char *token,
                              long long count, long long *result, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    memset(&c, 0, sizeof(c));
    c.script = script;
    c.nkeys = script == S_RELAY_RELEASE ? 1 : 2;
    key_shard(&c.a, shard, "relay");
    if (script != S_RELAY_RELEASE)
        key_shard(&c.a, shard, "outbox");
    args_str(&c.a, token);
    if (script != S_RELAY_RELEASE)
        args_ll(&c.a, count);
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    if (r->type == REDIS_REPLY_ERROR)
        s = script_error(r, scripts[script].name, "-", err);
    else
        *result = r->integer;
    freeReplyObject(r);
    return s;
}

mb_status mb_store_outbox_ack(mb_store *st, int shard, const char *token, size_t count,
                              int *removed, mb_error *err)
{
    long long v = 0;
    mb_status s = relay_script(st, S_RELAY_ACK, shard, token, (long long)count, &v, err);

    *removed = s == MB_OK && v == 1;
    return s;
}

mb_status mb_store_outbox_release(mb_store *st, int shard, const char *token, mb_error *err)
{
    long long v = 0;
    return relay_script(st, S_RELAY_RELEASE, shard, token, 0, &v, err);
}

long long mb_store_next_due_in_ms(const mb_store *st)
{
    return st->next_due_in_ms;
}

mb_status mb_store_stirs(mb_store *st, unsigned long long *wake, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    memset(wake, 0, (size_t)st->shards * sizeof(*wake));
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "MGET");
    for (int i = 0; i < st->shards; i++)
        key_shard(&c.a, i, "wake");
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements && i < (size_t)st->shards;
         i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            wake[i] = strtoull(r->element[i]->str, NULL, 10);
    freeReplyObject(r);
    return MB_OK;
}

mb_status mb_store_depths(mb_store *st, long long now_ms, mb_store_depth *depth, mb_error *err)
{
    size_t ns = (size_t)st->shards;
    batch b;
    mb_status s;

    if (batch_new(&b, 4 * ns, "depths", err) < 0)
        return MB_FATAL;
    for (size_t i = 0; i < ns; i++) {
        cmd *c = &b.c[4 * i];
        args_str(&c[0].a, "LLEN");
        key_shard(&c[0].a, (int)i, "outbox");
        args_str(&c[1].a, "ZCOUNT");
        key_shard(&c[1].a, (int)i, "due");
        args_str(&c[1].a, "-inf");
        args_ll(&c[1].a, now_ms);
        args_str(&c[2].a, "ZCOUNT");
        key_shard(&c[2].a, (int)i, "due");
        args_excl(&c[2].a, now_ms);
        args_str(&c[2].a, "+inf");
        args_str(&c[3].a, "ZCARD");
        key_shard(&c[3].a, (int)i, "status:NeedsAttention");
    }
    s = batch_send(st, &b, err);
    for (size_t i = 0; i < ns; i++) {
        long long *f[4] = {&depth[i].outbox, &depth[i].due, &depth[i].delayed, &depth[i].attention};
        for (int k = 0; k < 4; k++) {
            redisReply *r = b.r[4 * i + (size_t)k];
            *f[k] = s == MB_OK && r && r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        }
    }
    batch_free(&b);
    return s;
}

mb_status mb_store_outbox_len(mb_store *st, long long *total, mb_error *err)
{
    size_t ns = (size_t)st->shards;
    batch b;
    mb_status s;

    *total = 0;
    if (batch_new(&b, ns, "outbox length", err) < 0)
        return MB_FATAL;
    for (size_t i = 0; i < ns; i++) {
        args_str(&b.c[i].a, "LLEN");
        key_shard(&b.c[i].a, (int)i, "outbox");
    }
    s = batch_send(st, &b, err);
    for (size_t i = 0; s == MB_OK && i < ns; i++)
        if (b.r[i]->type == REDIS_REPLY_INTEGER)
            *total += b.r[i]->integer;
    batch_free(&b);
    return s;
}

mb_status mb_store_ping(mb_store *st, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "PING");
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (r)
        freeReplyObject(r);
    return s;
}

/* ================================================================ SRE operations */

mb_status mb_store_rewrite(mb_store *st, const mb_rewrite *w, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;
    char *state = NULL;
    int shard;

    if (!id_ok(w->order_id, 64) || !id_ok(w->key, 140)) {
        mb_error_set(err, MB_PERM, "BadRequest", "rewrite: bad order id or key");
        return MB_PERM;
    }
    if (w->state) {
        state = mb_json_dumps(w->state);
        if (state == NULL) {
            mb_error_set(err, MB_PERM, "BadRequest", "rewrite %s: state not serializable",
                         w->order_id);
            return MB_PERM;
        }
    }
    shard = mb_store_shard_of(st, w->key);
    memset(&c, 0, sizeof(c));
    c.script = S_REWRITE;
    c.nkeys = 5;
    key_of(&c.a, shard, "job", w->order_id);
    key_shard(&c.a, shard, "due");
    key_of(&c.a, shard, "hist", w->order_id);
    key_of(&c.a, shard, "name", w->key);
    key_index(&c.a, w->order_id);
    args_str(&c.a, w->order_id);
    args_ll(&c.a, w->expect_fence);
    args_ll(&c.a, w->expect_ck);
    args_opt(&c.a, state);
    free(state);
    args_opt(&c.a, w->status);
    args_opt(&c.a, w->step);
    if (w->attempt >= 0)
        args_ll(&c.a, w->attempt);
    else
        args_str(&c.a, UNCHANGED);
    args_opt(&c.a, w->error_code);
    args_opt(&c.a, w->error_msg);
    args_opt(&c.a, w->history);
    args_str(&c.a, w->clear_cancel ? "1" : "0");
    args_str(&c.a, w->claim_name ? "1" : "0");
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    if (r->type == REDIS_REPLY_ERROR)
        s = script_error(r, "rewrite", w->order_id, err);
    freeReplyObject(r);
    return s;
}

mb_status mb_store_forget_rejected(mb_store *st, const char *order_id, const char *line,
                                   int *forgotten, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;
    int shard;

    *forgotten = 0;
    if (!id_ok(order_id, 64)) {
        mb_error_set(err, MB_PERM, "BadRequest", "forget: bad order id");
        return MB_PERM;
    }
    s = find_shard(st, order_id, NULL, &shard, err);
    if (s != MB_OK || shard < 0)
        return s;
    memset(&c, 0, sizeof(c));
    c.script = S_FORGET;
    c.nkeys = 3;
    key_of(&c.a, shard, "job", order_id);
    key_index(&c.a, order_id);
    key_of(&c.a, shard, "hist", order_id);
    args_str(&c.a, order_id);
    args_str(&c.a, line);
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s != MB_OK)
        return s;
    if (r->type == REDIS_REPLY_ERROR)
        s = script_error(r, "forget", order_id, err);
    else
        *forgotten = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return s;
}

mb_status mb_store_history_add(mb_store *st, const char *key, const char *order_id,
                               const char *line, mb_error *err)
{
    cmd c[2];
    redisReply *r[2] = {NULL, NULL};
    mb_status s;
    int shard;

    if (!id_ok(order_id, 64) || !id_ok(key, 140) || line == NULL) {
        mb_error_set(err, MB_PERM, "BadRequest", "history: bad order id, key or line");
        return MB_PERM;
    }
    shard = mb_store_shard_of(st, key);
    memset(c, 0, sizeof(c));
    c[0].script = c[1].script = -1;
    args_str(&c[0].a, "RPUSH");
    key_of(&c[0].a, shard, "hist", order_id);
    args_str(&c[0].a, line);
    args_str(&c[1].a, "LTRIM");
    key_of(&c[1].a, shard, "hist", order_id);
    args_str(&c[1].a, "-200");
    args_str(&c[1].a, "-1");
    s = pipeline(st, c, 2, r, err);
    for (int i = 0; i < 2; i++) {
        if (s == MB_OK && r[i]->type == REDIS_REPLY_ERROR) {
            mb_error_set(err, MB_FATAL, "RedisError", "history %s: %s", order_id, r[i]->str);
            s = MB_FATAL;
        }
        if (r[i])
            freeReplyObject(r[i]);
        args_free(&c[i].a);
    }
    return s;
}

mb_status mb_store_dlq_redrive_record(mb_store *st, const mb_dlq_redrive *d, mb_error *err)
{
    cmd c;
    redisReply *r = NULL;
    mb_status s;

    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "XADD");
    args_str(&c.a, "mb:dlq:redrives");
    args_str(&c.a, "MAXLEN");
    args_str(&c.a, "~");
    args_str(&c.a, "10000");
    args_str(&c.a, "*");
    args_str(&c.a, "dlq_id");
    args_str(&c.a, d->dlq_id);
    args_str(&c.a, "by");
    args_str(&c.a, d->by);
    args_str(&c.a, "topic");
    args_str(&c.a, d->topic);
    args_str(&c.a, "partition");
    args_ll(&c.a, d->partition);
    args_str(&c.a, "offset");
    args_ll(&c.a, d->offset);
    args_str(&c.a, "key");
    args_str(&c.a, d->key);
    args_str(&c.a, "order_id");
    args_str(&c.a, d->order_id);
    args_str(&c.a, "edited");
    args_str(&c.a, d->edited ? "1" : "0");
    args_str(&c.a, "at");
    args_ll(&c.a, d->now_ms);
    s = pipeline(st, &c, 1, &r, err);
    args_free(&c.a);
    if (s == MB_OK && r->type == REDIS_REPLY_ERROR) {
        mb_error_set(err, MB_FATAL, "RedisError", "XADD mb:dlq:redrives: %s", r->str);
        s = MB_FATAL;
    }
    if (r)
        freeReplyObject(r);
    return s;
}

mb_status mb_store_dlq_redrives(mb_store *st, size_t max, json_t **out, mb_error *err)
{
    return stream_list(st, "mb:dlq:redrives", max, out, err);
}

/* ================================================================ workers (meshctl workers) */

#define WORKERS_KEEP_MS (24LL * 3600 * 1000) /* index entries of workers not seen for a day go */
/* How far back the beat looks for live workers of an older layout: a worker whose record
 * still exists beat within its ttl (2 x lease + its period), well inside an hour. */
#define WORKERS_LIVE_MS (3600LL * 1000)
#define WORKERS_MAX     1000

static void key_worker(args *a, const char *id)
{
    key_prefixed(a, "mb:{w}:worker:", id);
}

/* Runs one command; an error reply becomes the status (a script's through script_error).
 * *out (may be NULL: freed) gets the reply on MB_OK. */
static mb_status run_one(mb_store *st, cmd *c, const char *what, redisReply **out, mb_error *err)
{
    redisReply *r = NULL;
    mb_status s = pipeline(st, c, 1, &r, err);

    args_free(&c->a);
    if (s == MB_OK && r->type == REDIS_REPLY_ERROR) {
        if (c->script >= 0) {
            s = script_error(r, what, "-", err);
        } else {
            mb_error_set(err, MB_FATAL, "RedisError", "%s: %s", what, r->str);
            s = MB_FATAL;
        }
        freeReplyObject(r);
        r = NULL;
    }
    if (out)
        *out = r;
    else if (r)
        freeReplyObject(r);
    return s;
}

mb_status mb_store_worker_beat(mb_store *st, const mb_worker_info *w, int *peers_current,
                               mb_error *err)
{
    redisReply *r = NULL;
    mb_status s;
    cmd c;

    memset(&c, 0, sizeof(c));
    c.script = S_WORKER_BEAT;
    c.nkeys = 2;
    key_worker(&c.a, st->worker_id);
    args_str(&c.a, "mb:{w}:workers");
    args_str(&c.a, st->worker_id);
    args_ll(&c.a, w->ttl_ms);
    args_ll(&c.a, WORKERS_KEEP_MS);
    args_ll(&c.a, WORKERS_LIVE_MS);
    args_ll(&c.a, MB_STORE_LAYOUT);
    args_str(&c.a, "id");
    args_str(&c.a, st->worker_id);
    args_str(&c.a, "host");
    args_str(&c.a, w->host);
    args_str(&c.a, "pid");
    args_ll(&c.a, w->pid);
    args_str(&c.a, "version");
    args_str(&c.a, w->version);
    args_str(&c.a, "started");
    args_ll(&c.a, w->started_ms);
    args_str(&c.a, "every");
    args_ll(&c.a, w->every_ms);
    args_str(&c.a, "ttl");
    args_ll(&c.a, w->ttl_ms);
    args_str(&c.a, "lease");
    args_ll(&c.a, w->lease_ms);
    args_str(&c.a, "admin");
    args_str(&c.a, w->admin);
    args_str(&c.a, "sagas");
    args_ll(&c.a, w->sagas);
    s = run_one(st, &c, "worker_beat", &r, err);
    if (s != MB_OK)
        return s;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_INTEGER) {
        mb_error_set(err, MB_AGAIN, "BadReply", "worker_beat: unexpected reply");
        s = MB_AGAIN;
    } else if (peers_current) {
        *peers_current = r->element[1]->integer == 1;
    }
    freeReplyObject(r);
    return s;
}

mb_status mb_store_worker_gone(mb_store *st, mb_error *err)
{
    cmd c;

    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "DEL");
    key_worker(&c.a, st->worker_id);
    return run_one(st, &c, "worker_gone", NULL, err);
}

/* One worker's entry: the index's id and score, its record and its time left. */
static json_t *worker_entry(const redisReply *id, const redisReply *score, const redisReply *rec,
                            const redisReply *ttl)
{
    json_t *o = json_object(), *fields = NULL;

    if (o == NULL)
        return NULL;
    json_object_set_new(o, "id", json_stringn(id->str, id->len));
    json_object_set_new(o, "seen_ms", json_integer(strtoll(score->str, NULL, 10)));
    if (rec && rec->type == REDIS_REPLY_ARRAY && rec->elements > 0) {
        fields = json_object();
        for (size_t k = 0; fields && k + 1 < rec->elements; k += 2)
            json_object_set_new(fields, rec->element[k]->str,
                                json_stringn(rec->element[k + 1]->str, rec->element[k + 1]->len));
    }
    json_object_set_new(
        o, "ttl_ms",
        json_integer(fields && ttl && ttl->type == REDIS_REPLY_INTEGER && ttl->integer >= 0
                         ? ttl->integer
                         : -1));
    json_object_set_new(o, "record", fields ? fields : json_null());
    return o;
}

mb_status mb_store_workers(mb_store *st, json_t **out, mb_error *err)
{
    cmd c;
    redisReply *idx = NULL;
    batch b;
    size_t n = 0;
    mb_status s;

    *out = NULL;
    memset(&c, 0, sizeof(c));
    c.script = -1;
    args_str(&c.a, "ZREVRANGE");
    args_str(&c.a, "mb:{w}:workers");
    args_str(&c.a, "0");
    args_ll(&c.a, WORKERS_MAX - 1);
    args_str(&c.a, "WITHSCORES");
    s = run_one(st, &c, "workers", &idx, err);
    if (s != MB_OK)
        return s;
    if (idx->type == REDIS_REPLY_ARRAY)
        n = idx->elements / 2;
    *out = json_array();
    if (batch_new(&b, 2 * n, "workers", err) < 0) {
        s = MB_FATAL;
        goto done;
    }
    if (*out == NULL) {
        s = MB_FATAL;
        mb_error_set(err, MB_FATAL, "NoMemory", "workers");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        args_str(&b.c[2 * i].a, "HGETALL");
        key_worker(&b.c[2 * i].a, idx->element[2 * i]->str);
        args_str(&b.c[2 * i + 1].a, "PTTL");
        key_worker(&b.c[2 * i + 1].a, idx->element[2 * i]->str);
    }
    s = batch_send(st, &b, err);
    for (size_t i = 0; s == MB_OK && i < n; i++)
        json_array_append_new(*out, worker_entry(idx->element[2 * i], idx->element[2 * i + 1],
                                                 b.r[2 * i], b.r[2 * i + 1]));
done:
    if (s != MB_OK) {
        json_decref(*out);
        *out = NULL;
    }
    batch_free(&b);
    freeReplyObject(idx);
    return s;
}

static json_t *rstr(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? json_stringn(r->str, r->len) : json_string("");
}

mb_status mb_store_leases(mb_store *st, size_t max_per_shard, json_t **out, long long *truncated,
                          mb_error *err)
{
    size_t ns = (size_t)st->shards;
    batch b;
    mb_status s;

    *out = NULL;
    if (truncated)
        *truncated = 0;
    if (batch_new(&b, ns, "leases", err) < 0)
        return MB_FATAL;
    for (size_t i = 0; i < ns; i++) {
        b.c[i].script = S_LEASES;
        b.c[i].nkeys = 1;
        key_shard(&b.c[i].a, (int)i, "due");
        key_of(&b.c[i].a, (int)i, "job", "");
        args_ll(&b.c[i].a, (long long)max_per_shard);
    }
    s = batch_send(st, &b, err);
    *out = s == MB_OK ? json_array() : NULL;
    for (size_t i = 0; *out && i < ns; i++) {
        const redisReply *r = b.r[i];
        if (r->type == REDIS_REPLY_ERROR) {
            s = script_error(r, "leases", "-", err);
            break;
        }
        if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
            continue;
        if (truncated && r->element[0]->integer > (long long)max_per_shard)
            *truncated += r->element[0]->integer - (long long)max_per_shard;
        for (size_t k = 1; k + 7 <= r->elements; k += 7) {
            redisReply *const *f = &r->element[k];
            json_t *o = json_object();
            json_object_set_new(o, "order_id", rstr(f[0]));
            json_object_set_new(o, "key", rstr(f[5]));
            json_object_set_new(o, "shard", json_integer((json_int_t)i));
            json_object_set_new(o, "owner", rstr(f[1]));
            json_object_set_new(
                o, "lease_until_ms",
                json_integer(f[2]->type == REDIS_REPLY_STRING ? strtoll(f[2]->str, NULL, 10) : 0));
            json_object_set_new(o, "status", rstr(f[3]));
            json_object_set_new(o, "step", rstr(f[4]));
            json_object_set_new(o, "saga", rstr(f[6]));
            json_array_append_new(*out, o);
        }
    }
    if (s != MB_OK) {
        json_decref(*out);
        *out = NULL;
    }
    batch_free(&b);
    return s;
}

/* The CloudEvent of an outbox entry "<key>\n<tp>\n<json>" as a new object, or null. */
static json_t *entry_event(const redisReply *r)
{
    const char *nl1, *nl2;
    json_t *ev;

    if (r == NULL || r->type != REDIS_REPLY_STRING)
        return json_null();
    nl1 = memchr(r->str, '\n', r->len);
    nl2 = nl1 ? memchr(nl1 + 1, '\n', r->len - (size_t)(nl1 + 1 - r->str)) : NULL;
    if (nl2 == NULL)
        return json_null();
    ev = json_loadb(nl2 + 1, r->len - (size_t)(nl2 + 1 - r->str), 0, NULL);
    return ev ? ev : json_null();
}

/* The worker id of a relay token "<worker id>:<n>". */
static json_t *token_worker(const redisReply *r)
{
    const char *colon;

    if (r == NULL || r->type != REDIS_REPLY_STRING)
        return json_null();
    colon = memrchr(r->str, ':', r->len);
    return json_stringn(r->str, colon ? (size_t)(colon - r->str) : r->len);
}

mb_status mb_store_outbox_shards(mb_store *st, json_t **out, mb_error *err)
{
    size_t ns = (size_t)st->shards;
    batch b;
    mb_status s;

    *out = NULL;
    if (batch_new(&b, 4 * ns, "outbox", err) < 0)
        return MB_FATAL;
    for (size_t i = 0; i < ns; i++) {
        cmd *c = &b.c[4 * i];
        args_str(&c[0].a, "LLEN");
        key_shard(&c[0].a, (int)i, "outbox");
        args_str(&c[1].a, "LINDEX");
        key_shard(&c[1].a, (int)i, "outbox");
        args_str(&c[1].a, "0");
        args_str(&c[2].a, "GET");
        key_shard(&c[2].a, (int)i, "relay");
        args_str(&c[3].a, "PTTL");
        key_shard(&c[3].a, (int)i, "relay");
    }
    s = batch_send(st, &b, err);
    *out = s == MB_OK ? json_array() : NULL;
    for (size_t i = 0; *out && i < ns; i++) {
        redisReply **r = &b.r[4 * i];
        int held = r[2]->type == REDIS_REPLY_STRING;
        json_t *o = json_object();
        json_object_set_new(o, "shard", json_integer((json_int_t)i));
        json_object_set_new(o, "backlog",
                            json_integer(r[0]->type == REDIS_REPLY_INTEGER ? r[0]->integer : 0));
        json_object_set_new(o, "oldest", entry_event(r[1]));
        json_object_set_new(o, "relay_token", held ? rstr(r[2]) : json_null());
        json_object_set_new(o, "relay_worker", token_worker(r[2]));
        json_object_set_new(
            o, "relay_ttl_ms",
            json_integer(held && r[3]->type == REDIS_REPLY_INTEGER ? r[3]->integer : -1));
        json_array_append_new(*out, o);
    }
    batch_free(&b);
    return s;
}
