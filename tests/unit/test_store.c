/* test_store.c: the Redis job store against a private redis-server: accept, claim, fencing,
 * checkpoints, gapless seq, leases, cancel, outbox relay leases, script reload. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "mb_event.h"
#include "mb_store.h"
#include "redis_util.h"

static int start_redis(void **state)
{
    (void)state;
    return redis_start();
}

static int teardown_all(void **state)
{
    (void)state;
    redis_cleanup();
    return 0;
}

static redisContext *raw(void)
{
    redisContext *c = redisConnectUnix(sock);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    return c;
}

static void flushall(void)
{
    redisContext *c = raw();
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Redis's clock: every lease end and due time the scripts write is on it. */
static long long redis_now(mb_store *st)
{
    long long now = 0;
    mb_error e;
    mb_error_clear(&e);
    assert_int_equal(mb_store_time_ms(st, &now, &e), MB_OK);
    return now;
}

static mb_store *open_store(const char *worker)
{
    mb_error e;
    mb_store *st;
    mb_error_clear(&e);
    st = mb_store_new(url, 16, 1000, worker, &e);
    assert_non_null(st);
    assert_int_equal(mb_store_ping(st, &e), MB_OK);
    return st;
}

static json_t *status_event(const char *order_id, const char *acct, const char *mesh,
                            mb_mesh_status s, const char *code)
{
    char err[256];
    mb_status_event ev = {
        .order_id = order_id,
        .account_id = acct,
        .mesh_name = mesh,
        .mesh_id = "mesh-0123456789abcdef", /* every event has one */
        .status = s,
        .step = "reserve",
        .step_index = 2,
        .step_total = 9,
        .message = "m",
        .error_code = code,
        .error_message = code ? "name taken" : NULL,
        .attempt = 1,
        .seq = 1,
        .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    };
    json_t *j = mb_event_build_json(&ev, err, sizeof(err));
    if (j == NULL)
        fail_msg("event build: %s", err);
    return j;
}

/* Accepts order_id for acct/mesh; returns the verdict. */
static mb_accept_result accept1(mb_store *st, const char *order_id, const char *acct,
                                const char *mesh)
{
    json_t *acc = status_event(order_id, acct, mesh, MB_MESH_ACCEPTED, NULL);
    json_t *con = status_event(order_id, acct, mesh, MB_MESH_FAILED, "NameConflict");
    char order[256];
    mb_accept q = {order_id, acct, mesh, order, "", acc, con};
    mb_accept_result res;
    mb_status s;
    mb_error e;

    snprintf(order, sizeof(order), "{\"data\":{\"order_id\":\"%s\"}}", order_id);
    mb_error_clear(&e);
    assert_int_equal(mb_store_accept(st, &q, 1, &res, &s, &e), MB_OK);
    assert_int_equal(s, MB_OK);
    json_decref(acc);
    json_decref(con);
    return res;
}

/* Reads the whole outbox of the key's shard as parsed events (new array). */
static json_t *outbox(mb_store *st, const char *key)
{
    mb_outbox_batch b = {.shard = mb_store_shard_of(st, key)};
    const char *tok = "test-reader";
    json_t *arr = json_array();
    mb_error e;
    int removed;

    mb_error_clear(&e);
    assert_int_equal(mb_store_outbox_peek(st, &tok, &b, 1, 5000, 1000, &e), MB_OK);
    assert_true(b.held);
    for (size_t i = 0; i < b.n; i++) {
        if (strcmp(b.entries[i].key, key) != 0)
            continue;
        json_t *ev = json_loadb(b.entries[i].event, b.entries[i].event_len, 0, NULL);
        assert_non_null(ev);
        json_array_append_new(arr, ev);
    }
    mb_outbox_batch_clear(&b);
    assert_int_equal(mb_store_outbox_release(st, mb_store_shard_of(st, key), tok, &e), MB_OK);
    (void)removed;
    return arr;
}

static long long ev_seq(const json_t *ev)
{
    return json_integer_value(json_object_get(json_object_get(ev, "data"), "seq"));
}

static const char *ev_status(const json_t *ev)
{
    return json_string_value(json_object_get(json_object_get(ev, "data"), "status"));
}

static void test_accept(void **state)
{
    mb_store *st;
    mb_accept_result r;
    json_t *evs;
    char err[256];
    (void)state;
    flushall();
    st = open_store("w1");
    r = accept1(st, "ord-1", "acct1", "mesh-a");
    assert_int_equal(r.verdict, MB_ACCEPT_NEW);
    assert_int_equal(r.seq, 1);
    /* Redelivered: joins, queues nothing. */
    for (int i = 0; i < 3; i++) {
        r = accept1(st, "ord-1", "acct1", "mesh-a");
        assert_int_equal(r.verdict, MB_ACCEPT_DUPLICATE);
        assert_int_equal(r.seq, 0);
    }
    /* Another order for the same name: conflict, recorded, Failed seq 2. */
    r = accept1(st, "ord-2", "acct1", "mesh-a");
    assert_int_equal(r.verdict, MB_ACCEPT_CONFLICT);
    assert_string_equal(r.other, "ord-1");
    assert_int_equal(r.seq, 2);
    r = accept1(st, "ord-2", "acct1", "mesh-a");
    assert_int_equal(r.verdict, MB_ACCEPT_DUPLICATE);

    evs = outbox(st, "acct1/mesh-a");
    assert_int_equal(json_array_size(evs), 2);
    assert_int_equal(ev_seq(json_array_get(evs, 0)), 1);
    assert_string_equal(ev_status(json_array_get(evs, 0)), "Accepted");
    assert_string_equal(json_string_value(json_object_get(json_array_get(evs, 0), "id")),
                        "acct1/mesh-a#1");
    assert_int_equal(ev_seq(json_array_get(evs, 1)), 2);
    assert_string_equal(ev_status(json_array_get(evs, 1)), "Failed");
    /* What the store queues is still a valid status event. */
    assert_int_equal(mb_event_check(json_array_get(evs, 0), err, sizeof(err)), 0);
    assert_int_equal(mb_event_check(json_array_get(evs, 1), err, sizeof(err)), 0);
    json_decref(evs);

    mb_job *j = NULL;
    mb_error e;
    mb_error_clear(&e);
    assert_int_equal(mb_store_get(st, "ord-2", &j, &e), MB_OK);
    assert_non_null(j);
    assert_string_equal(j->status, "Failed");
    assert_string_equal(j->error_code, "NameConflict");
    mb_job_free(j);
    assert_int_equal(mb_store_get(st, "ord-1", &j, &e), MB_OK);
    assert_string_equal(j->status, "Accepted");
    assert_string_equal(j->key, "acct1/mesh-a");
    assert_non_null(j->order);
    mb_job_free(j);
    assert_int_equal(mb_store_get(st, "nope", &j, &e), MB_OK);
    assert_null(j);
    mb_store_free(st);
}

static mb_job *claim_one(mb_store *st, long long lease)
{
    mb_job **jobs = NULL;
    size_t n = 0;
    mb_error e;
    mb_job *j;

    mb_error_clear(&e);
    assert_int_equal(mb_store_claim(st, lease, 100, "t-1", 0, &jobs, &n, &e), MB_OK);
    if (n == 0)
        return NULL;
    assert_int_equal(n, 1);
    j = jobs[0];
    free(jobs);
    return j;
}

/* A fresh Redis with one order accepted and claimed by worker (*st: its new store). */
static mb_job *fresh_claimed(mb_store **st, const char *worker, const char *order_id,
                             const char *acct, const char *mesh, long long lease)
{
    mb_job *j;

    flushall();
    *st = open_store(worker);
    accept1(*st, order_id, acct, mesh);
    j = claim_one(*st, lease);
    assert_non_null(j);
    return j;
}

static mb_status ckpt(mb_store *st, const mb_job *j, long long fence, const char *status,
                      long long run_in, json_t *ev, mb_checkpoint_result *res, mb_error *e)
{
    json_t *evs[1] = {ev};
    json_t *state = json_pack("{s:s}", "step", status);
    mb_checkpoint k = {
        .order_id = j->order_id,
        .key = j->key,
        .fence = fence,
        .state = state,
        .status = status,
        .step = "label_nodes",
        .attempt = 1,
        .run_in_ms = run_in,
        .lease_ms = 30000,
        .history = "{\"step\":\"label_nodes\"}",
        .events = evs,
        .n_events = ev ? 1 : 0,
    };
    mb_status s;
    mb_error_clear(e);
    mb_store_checkpoint(st, &k, 1, res, &s, e);
    json_decref(state);
    return s;
}

/* What emit() queues for ev at seq: {"id":"<key>#<seq>", the head members, "data":{"seq":..,
 * the data members}} in the event's own member order (new string). */
static char *expected_entry(const json_t *ev, const char *key, long long seq)
{
    json_t *x = json_object(), *d = json_object();
    const json_t *evd = json_object_get(ev, "data");
    const char *k;
    json_t *v;
    char id[200];
    char *out;

    snprintf(id, sizeof(id), "%s#%lld", key, seq);
    json_object_set_new(x, "id", json_string(id));
    json_object_foreach((json_t *)ev, k, v)
    {
        if (strcmp(k, "id") != 0 && strcmp(k, "data") != 0)
            json_object_set(x, k, v);
    }
    json_object_set_new(d, "seq", json_integer(seq));
    json_object_foreach((json_t *)evd, k, v)
    {
        if (strcmp(k, "seq") != 0)
            json_object_set(d, k, v);
    }
    json_object_set_new(x, "data", d);
    out = json_dumps(x, JSON_COMPACT);
    json_decref(x);
    return out;
}

/* The store writes its arguments as Redis protocol by hand: the state document and the
 * event text stored must be byte for byte what json_dumps writes, whatever the sizes
 * (a state larger than any buffer's first size, lengths of every digit count). */
static void test_bytes_stored(void **state)
{
    mb_store *st;
    mb_job *j;
    mb_checkpoint_result res;
    mb_status s;
    mb_error e;
    redisContext *rc;
    redisReply *r;
    char big[70001];
    const char *key = "acct-b/mesh-bytes";
    (void)state;

    j = fresh_claimed(&st, "wbytes", "ord-bytes", "acct-b", "mesh-bytes", 30000);
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    json_t *doc = json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:f, s:[i,s,{}], s:{s:[]}, s:s, s:b, s:n}", "step", "Installing",
        "esc", "q\"b\\s/n\n\t\x01 \xc3\xa9\xe2\x98\x83", "neg", (json_int_t)-1234567890123LL, "min",
        (json_int_t)(-9223372036854775807LL - 1), "zero", (json_int_t)0, "real", 0.1, "arr", 7,
        "\xf0\x9f\x98\x80", "obj", "empty", "big", big, "t", 1, "nul");
    json_t *ev = json_pack("{s:s, s:s, s:s, s:{s:i, s:s, s:s, s:I}}", "specversion", "1.0", "id",
                           "dropped", "type", "t\"\xc3\xa9", "data", "seq", 99, "status",
                           "Installing", "message", "tab\there", "n", (json_int_t)-42);
    json_t *evs[2] = {ev, ev};
    mb_checkpoint k = {
        .order_id = j->order_id,
        .key = j->key,
        .fence = j->fence,
        .state = doc,
        .status = "Installing",
        .step = "label_nodes",
        .attempt = -1,
        .run_in_ms = -1,
        .lease_ms = 30000,
        .history = NULL,
        .events = evs,
        .n_events = 2,
    };
    mb_error_clear(&e);
    mb_store_checkpoint(st, &k, 1, &res, &s, &e);
    assert_int_equal(s, MB_OK);
    assert_int_equal(res.last_seq, 3);

    char *want = json_dumps(doc, JSON_COMPACT);
    rc = raw();
    r = redisCommand(rc, "HGET mb:{s%d}:job:ord-bytes state", mb_store_shard_of(st, key));
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, strlen(want));
    assert_memory_equal(r->str, want, strlen(want));
    freeReplyObject(r);
    free(want);
    redisFree(rc);

    mb_outbox_batch b = {.shard = mb_store_shard_of(st, key)};
    const char *tok = "bytes-reader";
    long long seen = 0;
    assert_int_equal(mb_store_outbox_peek(st, &tok, &b, 1, 5000, 1000, &e), MB_OK);
    for (size_t i = 0; i < b.n; i++) {
        if (strcmp(b.entries[i].key, key) != 0)
            continue;
        seen++;
        if (seen == 1) /* the accepted event, from accept1 */
            continue;
        want = expected_entry(ev, key, seen);
        assert_int_equal(b.entries[i].event_len, strlen(want));
        assert_memory_equal(b.entries[i].event, want, strlen(want));
        free(want);
    }
    assert_int_equal(seen, 3);
    mb_outbox_batch_clear(&b);
    assert_int_equal(mb_store_outbox_release(st, b.shard, tok, &e), MB_OK);
    json_decref(doc);
    json_decref(ev);
    mb_job_free(j);
    mb_store_free(st);
}

static size_t claim_as(mb_store *st, const char *id, int resend, mb_job ***jobs)
{
    size_t n = 0;
    mb_error e;

    mb_error_clear(&e);
    assert_int_equal(mb_store_claim(st, 30000, 100, id, resend, jobs, &n, &e), MB_OK);
    return n;
}

/* A claim whose reply was lost, sent again under its id, gets its jobs back (same fence,
 * the lease as it stands, claimed once); only its worker, only that id, and only while
 * the lease is that claim's. */
static void test_claim_resent(void **state)
{
    mb_store *a, *b;
    mb_job **jobs = NULL, **again = NULL;
    (void)state;
    flushall();
    a = open_store("wa");
    b = open_store("wb");
    accept1(a, "ord-r1", "acct3", "mesh-r1");
    accept1(a, "ord-r2", "acct3", "mesh-r2");
    assert_int_equal(claim_as(a, "a-1", 0, &jobs), 2); /* "lost" */
    sleep_ms(20);
    assert_int_equal(claim_as(a, "a-1", 1, &again), 2);
    for (size_t i = 0; i < 2; i++) {
        mb_job *j = NULL;
        for (size_t k = 0; k < 2; k++) {
            if (strcmp(again[k]->order_id, jobs[i]->order_id) == 0)
                j = again[k];
        }
        assert_non_null(j);
        assert_int_equal(j->fence, jobs[i]->fence);
        assert_int_equal(j->claims, 1);
        assert_int_equal(j->lease_until_ms, jobs[i]->lease_until_ms);
        assert_true(j->lease_left_ms > 0 && j->lease_left_ms <= 30000 - 20);
    }
    assert_true(jobs[0]->lease_left_ms == 30000);
    mb_job_free_array(again, 2);
    /* Another id, or another worker with that id, gets nothing: the jobs are held. */
    assert_int_equal(claim_as(a, "a-2", 1, &again), 0);
    assert_int_equal(claim_as(b, "a-1", 1, &again), 0);
    /* Once another worker holds one (a's lease ran out), a's old id no longer returns it. */
    {
        redisContext *c = raw();
        int sh = mb_store_shard_of(a, "acct3/mesh-r1");
        freeReplyObject(redisCommand(c, "HSET mb:{s%d}:job:ord-r1 lease_until 1", sh));
        freeReplyObject(redisCommand(c, "ZADD mb:{s%d}:due 0 ord-r1", sh));
        redisFree(c);
    }
    assert_int_equal(claim_as(b, "b-1", 0, &again), 1);
    mb_job_free_array(again, 1);
    assert_int_equal(claim_as(a, "a-1", 1, &again), 1);
    assert_string_equal(again[0]->order_id, "ord-r2");
    mb_job_free_array(again, 1);
    mb_job_free_array(jobs, 2);
    mb_store_free(a);
    mb_store_free(b);
}

/* A job given up is handed back only while the lease is still that worker's, under its
 * fence: then it is due now, lease cleared; otherwise nothing changes. */
static void test_handback(void **state)
{
    mb_store *a, *b;
    mb_job **jobs = NULL;
    mb_status sts[1];
    int back[1];
    mb_error errs[1];
    (void)state;
    flushall();
    a = open_store("wa");
    b = open_store("wb");
    accept1(a, "ord-h1", "acct4", "mesh-h1");
    assert_int_equal(claim_as(a, "a-1", 0, &jobs), 1);
    mb_lease_ref ref = {jobs[0]->order_id, jobs[0]->key, jobs[0]->fence};
    mb_lease_ref stale = {jobs[0]->order_id, jobs[0]->key, jobs[0]->fence - 1};
    /* Not b's lease, nor a's older fence. */
    mb_error_clear(&errs[0]);
    assert_int_equal(mb_store_handback(b, &ref, 1, sts, back, errs), MB_OK);
    assert_int_equal(back[0], 0);
    assert_int_equal(mb_store_handback(a, &stale, 1, sts, back, errs), MB_OK);
    assert_int_equal(back[0], 0);
    mb_job **none = NULL;
    assert_int_equal(claim_as(b, "b-1", 0, &none), 0);
    /* a's: due now for anyone. */
    assert_int_equal(mb_store_handback(a, &ref, 1, sts, back, errs), MB_OK);
    assert_int_equal(back[0], 1);
    mb_job **again = NULL;
    assert_int_equal(claim_as(b, "b-2", 0, &again), 1);
    assert_int_equal(again[0]->fence, jobs[0]->fence + 1);
    /* Handing back what is now b's does nothing. */
    assert_int_equal(mb_store_handback(a, &ref, 1, sts, back, errs), MB_OK);
    assert_int_equal(back[0], 0);
    mb_job_free_array(again, 1);
    mb_job_free_array(jobs, 1);
    mb_store_free(a);
    mb_store_free(b);
}

static void test_claim_fence_lease(void **state)
{
    mb_store *a, *b;
    mb_job *j, *j2;
    mb_error e;
    mb_checkpoint_result res;
    json_t *ev;
    (void)state;
    flushall();
    a = open_store("wa");
    b = open_store("wb");
    accept1(a, "ord-9", "acct2", "mesh-b");
    long long t0 = redis_now(a);
    j = claim_one(a, 600);
    long long t1 = redis_now(a);
    assert_non_null(j);
    assert_int_equal(j->fence, 1);
    assert_string_equal(j->lease_owner, "wa");
    /* The lease ends lease_ms after the script ran, on Redis's clock. */
    assert_true(j->lease_until_ms >= t0 + 600 && j->lease_until_ms <= t1 + 600);
    assert_string_equal(j->status, "Accepted");
    assert_string_equal(j->order_id, "ord-9");
    /* Leased: nobody else gets it while the lease runs. */
    assert_null(claim_one(b, 30000));
    /* A job whose lease a holds is never handed to a again, even made due by hand; its
     * score goes back to its lease end (so b does not get it either). */
    {
        redisContext *c = raw();
        freeReplyObject(
            redisCommand(c, "ZADD mb:{s%d}:due 0 ord-9", mb_store_shard_of(a, "acct2/mesh-b")));
        assert_null(claim_one(a, 30000));
        assert_null(claim_one(b, 30000));
        redisReply *r =
            redisCommand(c, "ZSCORE mb:{s%d}:due ord-9", mb_store_shard_of(a, "acct2/mesh-b"));
        assert_int_equal(strtoll(r->str, NULL, 10), j->lease_until_ms);
        freeReplyObject(r);
        redisFree(c);
    }
    /* a renews for 600 ms more. */
    {
        mb_lease_ref ref = {j->order_id, j->key, j->fence};
        mb_status s;
        int cancel = -1;
        mb_error_clear(&e);
        assert_int_equal(mb_store_renew(a, &ref, 1, 600, &s, &cancel, &e), MB_OK);
        assert_int_equal(cancel, 0);
    }
    assert_null(claim_one(b, 30000));
    /* a dies: the lease runs out, the job is due again by itself; b takes it, fence 2. */
    sleep_ms(700);
    j2 = claim_one(b, 30000);
    assert_non_null(j2);
    assert_int_equal(j2->fence, 2);
    assert_string_equal(j2->lease_owner, "wb");
    /* a's late checkpoint and renewal are refused. */
    ev = status_event("ord-9", "acct2", "mesh-b", MB_MESH_INSTALLING, NULL);
    assert_int_equal(ckpt(a, j, 1, "Installing", 0, ev, &res, &e), MB_PERM);
    assert_string_equal(e.code, "StaleFence");
    {
        mb_lease_ref ref = {j->order_id, j->key, 1};
        mb_status s;
        mb_error_clear(&e);
        assert_int_equal(mb_store_renew(a, &ref, 1, 30000, &s, NULL, &e), MB_PERM);
        assert_string_equal(e.code, "StaleFence");
    }
    /* b's checkpoint goes through, keeps the lease (run in 0), seq 2. */
    assert_int_equal(ckpt(b, j2, 2, "Installing", 0, ev, &res, &e), MB_OK);
    assert_int_equal(res.last_seq, 2);
    assert_null(claim_one(a, 30000));
    /* Run in 400 ms: lease released, due then for anyone. */
    assert_int_equal(ckpt(b, j2, 2, "Installing", 400, ev, &res, &e), MB_OK);
    assert_int_equal(res.last_seq, 3);
    assert_null(claim_one(a, 30000));
    mb_job_free(j);
    sleep_ms(500);
    j = claim_one(a, 30000);
    assert_non_null(j);
    assert_int_equal(j->fence, 3);
    assert_string_equal(j->status, "Installing");
    assert_string_equal(j->step, "label_nodes");
    assert_string_equal(json_string_value(json_object_get(j->state, "step")), "Installing");
    /* Terminal: off the due set for good. */
    json_decref(ev);
    ev = status_event("ord-9", "acct2", "mesh-b", MB_MESH_RUNNING, NULL);
    assert_int_equal(ckpt(a, j, 3, "Running", -1, ev, &res, &e), MB_OK);
    assert_int_equal(res.last_seq, 4);
    assert_null(claim_one(b, 30000));
    json_decref(ev);

    /* Seq gapless and in order across accept and checkpoints. */
    json_t *evs = outbox(a, "acct2/mesh-b");
    assert_int_equal(json_array_size(evs), 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(ev_seq(json_array_get(evs, i)), (long long)i + 1);
    assert_string_equal(ev_status(json_array_get(evs, 0)), "Accepted");
    assert_string_equal(ev_status(json_array_get(evs, 3)), "Running");
    json_decref(evs);

    json_t *hist = NULL;
    assert_int_equal(mb_store_history(a, j, &hist, &e), MB_OK);
    assert_int_equal(json_array_size(hist), 3);
    json_decref(hist);
    mb_job_free(j);
    mb_job_free(j2);
    mb_store_free(a);
    mb_store_free(b);
}

/* The first checkpoint (ck 1) of claimed job j: events only, the job stays with its worker
 * (no field but the events and the counters changes). */
static mb_checkpoint events_ck(const mb_job *j, json_t *const *events, size_t n)
{
    mb_checkpoint k = {.order_id = j->order_id,
                       .key = j->key,
                       .fence = j->fence,
                       .attempt = -1,
                       .run_in_ms = 0,
                       .lease_ms = 30000,
                       .ck = 1,
                       .events = events,
                       .n_events = n};
    return k;
}

/* A checkpoint stirs its shard once however many events it queues (a script is atomic:
 * readers see one change either way), and not at all when it queues none and the job
 * stays with its worker. */
static void test_stir_once(void **state)
{
    mb_store *a;
    mb_job *j;
    mb_error e;
    mb_checkpoint_result res;
    mb_status s;
    unsigned long long w0[16], w1[16], w2[16];
    json_t *list[3];
    int sh;
    (void)state;
    j = fresh_claimed(&a, "wa", "ord-w", "acct9", "mesh-w", 30000);
    sh = mb_store_shard_of(a, "acct9/mesh-w");
    for (int i = 0; i < 3; i++)
        list[i] = status_event("ord-w", "acct9", "mesh-w", MB_MESH_INSTALLING, NULL);
    mb_checkpoint k = events_ck(j, list, 3);
    mb_error_clear(&e);
    assert_int_equal(mb_store_stirs(a, w0, &e), MB_OK);
    assert_int_equal(mb_store_checkpoint(a, &k, 1, &res, &s, &e), MB_OK);
    assert_int_equal(s, MB_OK);
    assert_int_equal(res.last_seq, 4); /* Accepted, then these three */
    assert_int_equal(mb_store_stirs(a, w1, &e), MB_OK);
    assert_int_equal(w1[sh], w0[sh] + 1);
    k.ck = 2;
    k.n_events = 0;
    assert_int_equal(mb_store_checkpoint(a, &k, 1, &res, &s, &e), MB_OK);
    assert_int_equal(mb_store_stirs(a, w2, &e), MB_OK);
    assert_int_equal(w2[sh], w1[sh]);
    for (int i = 0; i < 3; i++)
        json_decref(list[i]);
    mb_job_free(j);
    mb_store_free(a);
}

static void test_ck_idempotent(void **state)
{
    mb_store *a;
    mb_job *j;
    mb_error e;
    mb_checkpoint_result res;
    json_t *ev, *evs;
    mb_status s;
    (void)state;
    j = fresh_claimed(&a, "wa", "ord-c", "acct3", "mesh-c", 30000);
    assert_int_equal(j->checkpoints, 0);
    ev = status_event("ord-c", "acct3", "mesh-c", MB_MESH_INSTALLING, NULL);
    json_t *list[1] = {ev};
    mb_checkpoint k = events_ck(j, list, 1);
    mb_error_clear(&e);
    assert_int_equal(mb_store_checkpoint(a, &k, 1, &res, &s, &e), MB_OK);
    assert_false(res.already_applied);
    /* A retry after a lost reply: not applied twice. */
    assert_int_equal(mb_store_checkpoint(a, &k, 1, &res, &s, &e), MB_OK);
    assert_true(res.already_applied);
    /* Skipping one is refused. */
    k.ck = 3;
    assert_int_equal(mb_store_checkpoint(a, &k, 1, &res, &s, &e), MB_PERM);
    /* Pipelined: two checkpoints of two jobs... here two in a row of one job. */
    mb_checkpoint two[2] = {k, k};
    mb_status sts[2];
    mb_checkpoint_result rr[2];
    two[0].ck = 2;
    two[1].ck = 3;
    unsigned long long rt = mb_store_round_trips(a);
    mb_error_clear(&e);
    assert_int_equal(mb_store_checkpoint(a, two, 2, rr, sts, NULL), MB_OK);
    assert_int_equal(mb_store_round_trips(a), rt + 1);
    assert_int_equal(rr[0].last_seq, 3);
    assert_int_equal(rr[1].last_seq, 4);
    evs = outbox(a, "acct3/mesh-c");
    assert_int_equal(json_array_size(evs), 4);
    json_decref(evs);
    json_decref(ev);
    mb_job_free(j);
    mb_store_free(a);
}

static void test_cancel(void **state)
{
    mb_store *a;
    mb_job *j;
    mb_error e;
    int found;
    char status[32];
    (void)state;
    flushall();
    a = open_store("wa");
    mb_error_clear(&e);
    assert_int_equal(mb_store_cancel(a, "ord-x", NULL, &found, status, sizeof(status), &e), MB_OK);
    assert_false(found);
    accept1(a, "ord-x", "acct4", "mesh-d");
    j = claim_one(a, 400);
    assert_false(j->cancel_requested);
    /* Cancelled while leased: the holder learns it from renew; the score is untouched. */
    assert_int_equal(mb_store_cancel(a, "ord-x", NULL, &found, status, sizeof(status), &e), MB_OK);
    assert_true(found);
    assert_string_equal(status, "Accepted");
    {
        mb_lease_ref ref = {j->order_id, j->key, j->fence};
        mb_status s;
        int cancel = 0;
        assert_int_equal(mb_store_renew(a, &ref, 1, 400, &s, &cancel, &e), MB_OK);
        assert_int_equal(cancel, 1);
    }
    assert_null(claim_one(a, 30000));
    mb_job_free(j);
    /* Not leased (lease ran out): due now, with the flag. */
    sleep_ms(500);
    j = claim_one(a, 30000);
    assert_non_null(j);
    assert_true(j->cancel_requested);
    /* By mesh key (no index needed). */
    assert_int_equal(mb_store_cancel(a, "ord-x", "acct4/mesh-d", &found, NULL, 0, &e), MB_OK);
    assert_true(found);
    /* A job that ended NeedsAttention (an undo gave up) stays as it is: a cancel neither
     * makes it due nor runs its compensation again. */
    {
        mb_checkpoint_result res;
        assert_int_equal(ckpt(a, j, j->fence, "NeedsAttention", -1, NULL, &res, &e), MB_OK);
    }
    assert_int_equal(mb_store_cancel(a, "ord-x", NULL, &found, status, sizeof(status), &e), MB_OK);
    assert_true(found);
    assert_string_equal(status, "NeedsAttention");
    assert_null(claim_one(a, 30000));
    mb_job_free(j);
    assert_true(mb_store_status_terminal("NeedsAttention"));
    assert_true(mb_store_status_terminal("Cancelled"));
    assert_false(mb_store_status_terminal("RollingBack"));
    assert_false(mb_store_status_terminal(NULL));
    mb_store_free(a);
}

static void test_relay_lease(void **state)
{
    mb_store *a;
    mb_error e;
    int shard, removed;
    const char *ta = "wa:1", *tb = "wb:1";
    mb_outbox_batch b;
    (void)state;
    flushall();
    a = open_store("wa");
    accept1(a, "o1", "acct5", "mesh-e");
    accept1(a, "o2", "acct5", "mesh-e");
    accept1(a, "o3", "acct5", "mesh-e");
    shard = mb_store_shard_of(a, "acct5/mesh-e");
    memset(&b, 0, sizeof(b));
    b.shard = shard;
    mb_error_clear(&e);
    assert_int_equal(mb_store_outbox_peek(a, &ta, &b, 1, 5000, 2, &e), MB_OK);
    assert_true(b.held);
    assert_int_equal(b.n, 2);
    assert_string_equal(b.entries[0].key, "acct5/mesh-e");
    assert_string_equal(b.entries[0].traceparent, "");
    assert_non_null(strstr(b.entries[1].event, "#2\""));
    mb_outbox_batch_clear(&b);
    /* Another relayer is kept out while the lease holds, and cannot trim. */
    b.shard = shard;
    assert_int_equal(mb_store_outbox_peek(a, &tb, &b, 1, 5000, 2, &e), MB_OK);
    assert_false(b.held);
    assert_int_equal(b.n, 0);
    assert_int_equal(mb_store_outbox_ack(a, shard, tb, 2, &removed, &e), MB_OK);
    assert_false(removed);
    assert_int_equal(mb_store_outbox_ack(a, shard, ta, 2, &removed, &e), MB_OK);
    assert_true(removed);
    b.shard = shard;
    assert_int_equal(mb_store_outbox_peek(a, &ta, &b, 1, 5000, 10, &e), MB_OK);
    assert_int_equal(b.n, 1);
    assert_non_null(strstr(b.entries[0].event, "\"seq\":3"));
    mb_outbox_batch_clear(&b);
    assert_int_equal(mb_store_outbox_release(a, shard, ta, &e), MB_OK);
    b.shard = shard;
    assert_int_equal(mb_store_outbox_peek(a, &tb, &b, 1, 5000, 10, &e), MB_OK);
    assert_true(b.held);
    mb_outbox_batch_clear(&b);
    /* Scripts flushed (a Redis restart): the hold is loaded again and the outbox read again
     * behind it, so its entries come once; the lease still decides who relays. */
    for (int i = 0; i < 2; i++) {
        redisContext *c = raw();
        freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
        redisFree(c);
        b.shard = shard;
        assert_int_equal(mb_store_outbox_peek(a, i ? &ta : &tb, &b, 1, 5000, 10, &e), MB_OK);
        assert_int_equal(b.held, !i);
        assert_int_equal(b.n, i ? 0 : 1);
        if (!i)
            assert_non_null(strstr(b.entries[0].event, "\"seq\":3"));
        mb_outbox_batch_clear(&b);
    }
    /* lease_only (the relay's peek of a shard it does not hold yet, and its renewals): the
     * lease is taken or renewed, nothing is read; so does max 0. */
    b.lease_only = 1;
    assert_int_equal(mb_store_outbox_peek(a, &tb, &b, 1, 5000, 10, &e), MB_OK);
    assert_true(b.held);
    assert_int_equal(b.n, 0);
    assert_int_equal(mb_store_outbox_peek(a, &ta, &b, 1, 5000, 10, &e), MB_OK);
    assert_false(b.held);
    b.lease_only = 0;
    assert_int_equal(mb_store_outbox_peek(a, &tb, &b, 1, 5000, 0, &e), MB_OK);
    assert_true(b.held);
    assert_int_equal(b.n, 0);
    assert_int_equal(mb_store_outbox_peek(a, &tb, &b, 1, 5000, 10, &e), MB_OK);
    assert_int_equal(b.n, 1);
    mb_outbox_batch_clear(&b);
    long long total = 0;
    assert_int_equal(mb_store_outbox_len(a, &total, &e), MB_OK);
    assert_int_equal(total, 1);
    mb_store_free(a);
}

static void test_reject_and_dlq(void **state)
{
    mb_store *a;
    mb_error e;
    int queued;
    json_t *ev, *list;
    (void)state;
    flushall();
    a = open_store("wa");
    ev = status_event("ord-r", "acct6", "mesh-f", MB_MESH_FAILED, "InvalidOrder");
    mb_reject r = {"ord-r", "acct6", "mesh-f", "", "data.x: unknown", "{bad", 4, ev};
    mb_error_clear(&e);
    assert_int_equal(mb_store_reject(a, &r, &queued, &e), MB_OK);
    assert_true(queued);
    assert_int_equal(mb_store_reject(a, &r, &queued, &e), MB_OK);
    assert_false(queued);
    json_decref(ev);
    mb_dlq_record d = {"not JSON", "parse", "mesh.orders", 3, 42, "k", "", 4, 1000};
    assert_int_equal(mb_store_dlq_record(a, &d, &e), MB_OK);
    assert_int_equal(mb_store_dlq_list(a, 10, &list, &e), MB_OK);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "offset")),
                        "42");
    json_decref(list);
    mb_store_free(a);
}

static int count_fn(void *arg, const mb_job *j)
{
    (void)j;
    (*(int *)arg)++;
    return 0;
}

static void test_scan_and_noscript(void **state)
{
    mb_store *a;
    mb_error e;
    int n = 0;
    redisContext *c;
    (void)state;
    flushall();
    a = open_store("wa");
    accept1(a, "s1", "acct7", "mesh-g");
    accept1(a, "s2", "acct7", "mesh-h");
    accept1(a, "s3", "acct7", "mesh-g"); /* conflict: Failed */
    mb_error_clear(&e);
    assert_int_equal(mb_store_scan(a, NULL, count_fn, &n, &e), MB_OK);
    assert_int_equal(n, 3);
    n = 0;
    assert_int_equal(mb_store_scan(a, "Failed", count_fn, &n, &e), MB_OK);
    assert_int_equal(n, 1);
    /* Scripts flushed (a Redis restart): reloaded on NOSCRIPT, the call still succeeds. */
    c = raw();
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    assert_int_equal(accept1(a, "s4", "acct7", "mesh-i").verdict, MB_ACCEPT_NEW);
    /* Changing the shard count against existing data is refused. */
    mb_store *b = mb_store_new(url, 8, 1000, "wb", &e);
    assert_non_null(b);
    mb_error_clear(&e);
    assert_int_equal(mb_store_ping(b, &e), MB_FATAL);
    assert_string_equal(e.code, "ShardMismatch");
    mb_store_free(b);
    mb_store_free(a);
}

/* Listing from the status index, the retention TTLs, and the depth gauges. */
static void test_index_retention_depths(void **state)
{
    mb_store *a;
    mb_error e;
    int n = 0;
    mb_store_depth d[16];
    long long due = 0, outbox = 0, delayed = 0;
    mb_job **jobs = NULL;
    size_t nj = 0;
    redisContext *c;
    redisReply *r;
    (void)state;
    flushall();
    a = open_store("wa");
    mb_error_clear(&e);
    mb_store_set_retention(a, 60000, 600000);
    /* A record written before the status index: the first listing walks and indexes it. */
    c = raw();
    freeReplyObject(redisCommand(c, "HSET mb:{s0}:job:old1 id old1 key acct8/old shard 0 "
                                    "state {} status Running step finish updated 1 created 1"));
    accept1(a, "x1", "acct8", "mesh-g");
    accept1(a, "x2", "acct8", "mesh-h");
    accept1(a, "x3", "acct8", "mesh-g"); /* conflict: Failed, expires */
    mb_error_clear(&e);
    n = 0;
    assert_int_equal(mb_store_list(a, "Running", count_fn, &n, &e), MB_OK);
    assert_int_equal(n, 1);
    r = redisCommand(c, "GET mb:meta:indexed");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    freeReplyObject(r);
    n = 0;
    assert_int_equal(mb_store_list(a, "Running", count_fn, &n, &e), MB_OK);
    assert_int_equal(n, 1); /* from the index now */
    freeReplyObject(redisCommand(c, "DEL mb:{s0}:job:old1"));
    redisFree(c);
    n = 0;
    assert_int_equal(mb_store_list(a, NULL, count_fn, &n, &e), MB_OK);
    assert_int_equal(n, 3);
    n = 0;
    assert_int_equal(mb_store_list(a, "Accepted", count_fn, &n, &e), MB_OK);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_equal(mb_store_list(a, "Failed", count_fn, &n, &e), MB_OK);
    assert_int_equal(n, 1);
    c = raw();
    r = redisCommand(c, "PTTL mb:{s%d}:job:x3", mb_store_shard_of(a, "acct8/mesh-g"));
    assert_true(r->integer > 0 && r->integer <= 60000);
    freeReplyObject(r);
    r = redisCommand(c, "PTTL mb:order:x3");
    assert_true(r->integer > 60000 && r->integer <= 600000);
    freeReplyObject(r);
    r = redisCommand(c, "PTTL mb:{s%d}:job:x1", mb_store_shard_of(a, "acct8/mesh-g"));
    assert_int_equal(r->integer, -1); /* not finished: no TTL */
    freeReplyObject(r);
    /* An expired record leaves the listing; the tombstone keeps the order a duplicate. */
    freeReplyObject(redisCommand(c, "DEL mb:{s%d}:job:x3", mb_store_shard_of(a, "acct8/mesh-g")));
    n = 0;
    assert_int_equal(mb_store_list(a, "Failed", count_fn, &n, &e), MB_OK);
    assert_int_equal(n, 0);
    assert_int_equal(accept1(a, "x3", "acct8", "mesh-k").verdict, MB_ACCEPT_DUPLICATE);
    redisFree(c);
    /* Depths: two due now, three Accepted/Failed events queued; a claim moves one to
     * delayed (its lease end). */
    assert_int_equal(mb_store_depths(a, redis_now(a), d, &e), MB_OK);
    for (int i = 0; i < 16; i++) {
        due += d[i].due;
        outbox += d[i].outbox;
        delayed += d[i].delayed;
        assert_int_equal(d[i].attention, 0);
    }
    assert_int_equal(due, 2);
    assert_int_equal(outbox, 3);
    assert_int_equal(delayed, 0);
    assert_int_equal(mb_store_claim(a, 60000, 1, "t-2", 0, &jobs, &nj, &e), MB_OK);
    assert_true(nj >= 1); /* max is per shard */
    mb_job_free_array(jobs, nj);
    due = delayed = 0;
    assert_int_equal(mb_store_depths(a, redis_now(a), d, &e), MB_OK);
    for (int i = 0; i < 16; i++) {
        due += d[i].due;
        delayed += d[i].delayed;
    }
    assert_int_equal(due, 2 - (long long)nj);
    assert_int_equal(delayed, (long long)nj);
    /* The wake counters move with every script that queues events; a claim learns the next
     * due time. */
    {
        unsigned long long w0[16], w1[16], sum = 0;
        int sh = mb_store_shard_of(a, "acct8/mesh-m");
        long long now;
        assert_int_equal(mb_store_stirs(a, w0, &e), MB_OK);
        for (int i = 0; i < 16; i++)
            sum += w0[i];
        assert_true(sum >= 3); /* three events queued */
        accept1(a, "x4", "acct8", "mesh-m");
        assert_int_equal(mb_store_stirs(a, w1, &e), MB_OK);
        assert_true(w1[sh] > w0[sh]);
        now = redis_now(a);
        assert_int_equal(mb_store_claim(a, 60000, 1000, "t-3", 0, &jobs, &nj, &e), MB_OK);
        mb_job_free_array(jobs, nj);
        /* everything is leased now: the earliest due job is a lease end, a minute out */
        assert_true(mb_store_next_due_in_ms(a) > 50000 && mb_store_next_due_in_ms(a) <= 60000);
        (void)now;
    }
    mb_store_free(a);
}

/* meshctl workers and outbox: a heartbeat, the leases of the due sets, the outboxes with
 * their relay leases. */
static void test_workers_views(void **state)
{
    mb_store *a;
    mb_error e;
    json_t *ws, *ls, *ob, *w, *l, *sh;
    mb_job **jobs = NULL;
    size_t n = 0;
    long long truncated = -1, now;
    int shard;
    const char *tok = "wa:3";
    mb_outbox_batch b;
    mb_worker_info info = {.host = "h1",
                           .version = "v9",
                           .admin = "127.0.0.1:9464",
                           .pid = 42,
                           .started_ms = 1000,
                           .every_ms = 5000,
                           .ttl_ms = 60000,
                           .lease_ms = 20000,
                           .sagas = 1};
    (void)state;
    flushall();
    a = open_store("wa");
    mb_error_clear(&e);
    now = redis_now(a);
    int current = -1;
    assert_int_equal(mb_store_worker_beat(a, &info, &current, &e), MB_OK);
    assert_int_equal(current, 1); /* alone */
    /* a live worker of an older build says no layout: split checkpoints wait for it to go */
    redisContext *rc = raw();
    freeReplyObject(redisCommand(rc, "HSET mb:{w}:worker:old id old host h0"));
    freeReplyObject(redisCommand(rc, "ZADD mb:{w}:workers %lld old", now));
    assert_int_equal(mb_store_worker_beat(a, &info, &current, &e), MB_OK);
    assert_int_equal(current, 0);
    freeReplyObject(redisCommand(rc, "HSET mb:{w}:worker:old layout 1"));
    assert_int_equal(mb_store_worker_beat(a, &info, &current, &e), MB_OK);
    assert_int_equal(current, 0);
    freeReplyObject(redisCommand(rc, "DEL mb:{w}:worker:old")); /* its record expired */
    assert_int_equal(mb_store_worker_beat(a, &info, &current, &e), MB_OK);
    assert_int_equal(current, 1);
    freeReplyObject(redisCommand(rc, "ZREM mb:{w}:workers old"));
    redisFree(rc);
    assert_int_equal(mb_store_workers(a, &ws, &e), MB_OK);
    assert_int_equal(json_array_size(ws), 1);
    w = json_array_get(ws, 0);
    assert_string_equal(json_string_value(json_object_get(w, "id")), "wa");
    assert_true(json_integer_value(json_object_get(w, "seen_ms")) >= now);
    assert_true(json_integer_value(json_object_get(w, "ttl_ms")) > 50000);
    assert_string_equal(json_string_value(json_object_get(json_object_get(w, "record"), "host")),
                        "h1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(w, "record"), "pid")),
                        "42");
    assert_string_equal(json_string_value(json_object_get(json_object_get(w, "record"), "admin")),
                        "127.0.0.1:9464");
    json_decref(ws);

    /* a claimed job names its owner; an unclaimed one is not a lease */
    accept1(a, "o1", "acct6", "mesh-w");
    assert_int_equal(mb_store_claim(a, 30000, 1, "t-4", 0, &jobs, &n, &e), MB_OK);
    assert_int_equal(n, 1);
    accept1(a, "o2", "acct6", "mesh-x"); /* due, not leased */
    assert_int_equal(mb_store_leases(a, 100, &ls, &truncated, &e), MB_OK);
    assert_int_equal(truncated, 0);
    assert_int_equal(json_array_size(ls), 1);
    l = json_array_get(ls, 0);
    assert_string_equal(json_string_value(json_object_get(l, "order_id")), jobs[0]->order_id);
    assert_string_equal(json_string_value(json_object_get(l, "owner")), "wa");
    assert_string_equal(json_string_value(json_object_get(l, "status")), "Accepted");
    assert_true(json_integer_value(json_object_get(l, "lease_until_ms")) >= now + 29000);
    json_decref(ls);
    /* a bound smaller than a due set says how much it left out */
    assert_int_equal(mb_store_leases(a, 1, &ls, &truncated, &e), MB_OK);
    assert_int_equal(truncated,
                     mb_store_shard_of(a, "acct6/mesh-w") == mb_store_shard_of(a, "acct6/mesh-x"));
    json_decref(ls);
    mb_job_free_array(jobs, n);

    /* the outbox of o1's shard: its Accepted event waits, nobody relays */
    shard = mb_store_shard_of(a, "acct6/mesh-w");
    assert_int_equal(mb_store_outbox_shards(a, &ob, &e), MB_OK);
    assert_int_equal(json_array_size(ob), 16);
    sh = json_array_get(ob, (size_t)shard);
    assert_true(json_integer_value(json_object_get(sh, "backlog")) >= 1);
    assert_non_null(
        strstr(json_string_value(json_object_get(json_object_get(sh, "oldest"), "id")), "#1"));
    assert_true(json_is_null(json_object_get(sh, "relay_token")));
    assert_int_equal(json_integer_value(json_object_get(sh, "relay_ttl_ms")), -1);
    json_decref(ob);
    memset(&b, 0, sizeof(b));
    b.shard = shard;
    assert_int_equal(mb_store_outbox_peek(a, &tok, &b, 1, 5000, 1, &e), MB_OK);
    mb_outbox_batch_clear(&b);
    assert_int_equal(mb_store_outbox_shards(a, &ob, &e), MB_OK);
    sh = json_array_get(ob, (size_t)shard);
    assert_string_equal(json_string_value(json_object_get(sh, "relay_token")), "wa:3");
    assert_string_equal(json_string_value(json_object_get(sh, "relay_worker")), "wa");
    assert_true(json_integer_value(json_object_get(sh, "relay_ttl_ms")) > 0);
    json_decref(ob);

    /* a clean exit: the record goes, the index entry stays */
    assert_int_equal(mb_store_worker_gone(a, &e), MB_OK);
    assert_int_equal(mb_store_workers(a, &ws, &e), MB_OK);
    assert_int_equal(json_array_size(ws), 1);
    assert_true(json_is_null(json_object_get(json_array_get(ws, 0), "record")));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(ws, 0), "ttl_ms")), -1);
    json_decref(ws);
    mb_store_free(a);
}

static void test_redis_down(void **state)
{
    mb_store *a;
    mb_error e;
    (void)state;
    flushall();
    a = open_store("wa");
    redis_kill();
    mb_error_clear(&e);
    json_t *acc = status_event("d1", "a", "mesh-z", MB_MESH_ACCEPTED, NULL);
    mb_accept q = {"d1", "a", "mesh-z", "{}", NULL, acc, acc};
    mb_accept_result res;
    mb_status s;
    assert_int_equal(mb_store_accept(a, &q, 1, &res, &s, &e), MB_AGAIN);
    assert_int_equal(s, MB_AGAIN);
    assert_false(mb_store_connected(a));
    mb_error_clear(&e);
    assert_int_equal(mb_store_ping(a, &e), MB_AGAIN);
    json_decref(acc);
    mb_store_free(a);
}

static void test_sre_ops(void **state)
{
    mb_store *a;
    mb_job *j, *j2;
    mb_error e;
    int forgotten;
    json_t *list, *st_doc;
    (void)state;
    j = fresh_claimed(&a, "wa", "ord-s", "acct8", "mesh-s", 400);
    st_doc = json_pack("{s:s}", "replayed", "yes");
    mb_rewrite w = {"ord-s", "acct8/mesh-s",  st_doc, "Installing", "precheck",    0, "",
                    "",      "replay by sre", 1,      j->fence,     j->checkpoints};
    /* Leased by a live worker: refused. */
    mb_error_clear(&e);
    assert_int_equal(mb_store_rewrite(a, &w, &e), MB_PERM);
    assert_string_equal(e.code, "Leased");
    /* After the lease: done, due now, fence bumped. */
    sleep_ms(500);
    mb_error_clear(&e);
    assert_int_equal(mb_store_rewrite(a, &w, &e), MB_OK);
    /* Read before the rewrite: refused as changed. */
    mb_error_clear(&e);
    assert_int_equal(mb_store_rewrite(a, &w, &e), MB_PERM);
    assert_string_equal(e.code, "Changed");
    j2 = claim_one(a, 30000);
    assert_non_null(j2);
    assert_int_equal(j2->fence, j->fence + 2);
    assert_string_equal(j2->status, "Installing");
    assert_string_equal(j2->step, "precheck");
    assert_string_equal(json_string_value(json_object_get(j2->state, "replayed")), "yes");
    assert_int_equal(mb_store_history_add(a, j2->key, j2->order_id, "note", &e), MB_OK);
    assert_int_equal(mb_store_history(a, j2, &list, &e), MB_OK);
    assert_int_equal(json_array_size(list), 2);
    json_decref(list);
    json_decref(st_doc);
    mb_job_free(j);
    mb_job_free(j2);
    /* A real job is not forgotten; a rejected record is, then the id is free again. */
    mb_error_clear(&e);
    assert_int_equal(mb_store_forget_rejected(a, "ord-s", "x", &forgotten, &e), MB_PERM);
    assert_string_equal(e.code, "Exists");
    json_t *ev = status_event("ord-q", "acct8", "mesh-q", MB_MESH_FAILED, "InvalidOrder");
    mb_reject r = {"ord-q", "acct8", "mesh-q", "", "bad", "{", 1, ev};
    int queued;
    assert_int_equal(mb_store_reject(a, &r, &queued, &e), MB_OK);
    json_decref(ev);
    assert_int_equal(mb_store_forget_rejected(a, "ord-q", "redriven", &forgotten, &e), MB_OK);
    assert_true(forgotten);
    assert_int_equal(accept1(a, "ord-q", "acct8", "mesh-q").verdict, MB_ACCEPT_NEW);
    assert_int_equal(mb_store_forget_rejected(a, "nope", "x", &forgotten, &e), MB_OK);
    assert_false(forgotten);
    mb_dlq_redrive d = {"1-0", "sre", "mesh.orders", 1, 7, "k", "ord-q", 1, 5000};
    assert_int_equal(mb_store_dlq_redrive_record(a, &d, &e), MB_OK);
    assert_int_equal(mb_store_dlq_redrives(a, 10, &list, &e), MB_OK);
    assert_int_equal(json_array_size(list), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "dlq_id")),
                        "1-0");
    json_decref(list);
    mb_store_free(a);
}

/* A replay after compensation takes the mesh name back, unless another order holds it. */
static void test_replay_claims_name(void **state)
{
    mb_store *a;
    mb_job *loser, *winner;
    mb_error e;
    (void)state;
    flushall();
    a = open_store("wn");
    accept1(a, "ord-w", "acct9", "mesh-n");
    assert_int_equal(accept1(a, "ord-l", "acct9", "mesh-n").verdict, MB_ACCEPT_CONFLICT);
    assert_int_equal(mb_store_get(a, "ord-l", &loser, &e), MB_OK);
    assert_int_equal(mb_store_get(a, "ord-w", &winner, &e), MB_OK);

    mb_rewrite w = {"ord-l", "acct9/mesh-n",  NULL, "Installing", "reserve",          0, "",
                    "",      "replay by sre", 1,    loser->fence, loser->checkpoints, 1};
    mb_error_clear(&e);
    assert_int_equal(mb_store_rewrite(a, &w, &e), MB_PERM);
    assert_string_equal(e.code, "NameConflict");
    assert_non_null(strstr(e.msg, "ord-w"));

    /* The holder itself may claim it again (idempotent). */
    mb_rewrite w2 = {"ord-w", "acct9/mesh-n",  NULL, "Installing",  "reserve",           0, "",
                     "",      "replay by sre", 1,    winner->fence, winner->checkpoints, 1};
    mb_error_clear(&e);
    assert_int_equal(mb_store_rewrite(a, &w2, &e), MB_OK);
    mb_job_free(loser);
    mb_job_free(winner);
    mb_store_free(a);
}

/* Accepts order_id as a job of saga; returns the verdict. */
static mb_accept_result accept_saga(mb_store *st, const char *order_id, const char *acct,
                                    const char *mesh, const char *saga)
{
    json_t *acc = status_event(order_id, acct, mesh, MB_MESH_DELETING, NULL);
    json_t *con = status_event(order_id, acct, mesh, MB_MESH_FAILED, "NameConflict");
    char order[256];
    mb_accept q = {order_id, acct, mesh, order, "", acc, con, saga};
    mb_accept_result res;
    mb_status s;
    mb_error e;

    snprintf(order, sizeof(order), "{\"data\":{\"order_id\":\"%s\"}}", order_id);
    mb_error_clear(&e);
    assert_int_equal(mb_store_accept(st, &q, 1, &res, &s, &e), MB_OK);
    assert_int_equal(s, MB_OK);
    json_decref(acc);
    json_decref(con);
    return res;
}

static json_t *target_of(mb_store *st, const char *order_id)
{
    mb_job *j = NULL;
    mb_error e;
    json_t *t;

    mb_error_clear(&e);
    assert_int_equal(mb_store_get(st, order_id, &j, &e), MB_OK);
    assert_non_null(j);
    assert_string_equal(j->saga, "delete");
    t = json_incref(json_object_get(j->state, "target"));
    mb_job_free(j);
    return t;
}

/* A delete claims no name: it snapshots the create that holds it, marks it deleted_by, and
 * its release_name checkpoint frees the name only while the create holds it. */
/* Claims every due job (want_n of them) and keeps the one of order_id; frees the others. */
static mb_job *claim_keep(mb_store *st, const char *claim_id, size_t want_n, const char *order_id)
{
    mb_job **jobs = NULL, *keep = NULL;
    size_t n = 0;
    mb_error e;

    mb_error_clear(&e);
    assert_int_equal(mb_store_claim(st, 30000, 100, claim_id, 0, &jobs, &n, &e), MB_OK);
    assert_int_equal(n, want_n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(jobs[i]->order_id, order_id) == 0)
            keep = jobs[i];
        else
            mb_job_free(jobs[i]);
    }
    free(jobs);
    assert_non_null(keep);
    return keep;
}

static void test_delete_accept(void **state)
{
    mb_store *a;
    mb_job *c, *d;
    mb_error e;
    mb_checkpoint_result res;
    mb_status s;
    json_t *t;
    redisContext *rc;
    redisReply *r;
    (void)state;
    c = fresh_claimed(&a, "wd", "ord-c", "acct5", "mesh-d", 30000);
    json_t *cst = json_pack("{s:{s:{s:{s:{s:n}}}}}", "steps", "inject", "ck", "prior", "shop");
    mb_checkpoint k = {.order_id = "ord-c",
                       .key = "acct5/mesh-d",
                       .fence = c->fence,
                       .state = cst,
                       .status = "Running",
                       .step = "finish",
                       .attempt = 1,
                       .run_in_ms = -1,
                       .lease_ms = 30000};
    mb_error_clear(&e);
    mb_store_checkpoint(a, &k, 1, &res, &s, &e);
    assert_int_equal(s, MB_OK);
    json_decref(cst);
    mb_job_free(c);

    assert_int_equal(accept_saga(a, "del-1", "acct5", "mesh-d", "delete").verdict, MB_ACCEPT_NEW);
    t = target_of(a, "del-1");
    assert_string_equal(json_string_value(json_object_get(t, "order_id")), "ord-c");
    assert_string_equal(json_string_value(json_object_get(t, "status")), "Running");
    assert_string_equal(json_string_value(json_object_get(t, "saga")), "create");
    assert_string_equal(json_string_value(json_object_get(t, "deleted_by")), "");
    assert_true(json_is_null(json_object_get(
        json_object_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(t, "state"), "steps"), "inject"),
                "ck"),
            "prior"),
        "shop")));
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_object_get(t, "order"), "data"), "order_id")),
                        "ord-c");
    json_decref(t);
    rc = raw();
    r = redisCommand(rc, "HGET mb:{s%d}:job:ord-c deleted_by",
                     mb_store_shard_of(a, "acct5/mesh-d"));
    assert_string_equal(r->str, "del-1");
    freeReplyObject(r);
    redisFree(rc);
    /* the name still belongs to the create; the same delete again joins */
    assert_int_equal(accept1(a, "ord-x", "acct5", "mesh-d").verdict, MB_ACCEPT_CONFLICT);
    assert_int_equal(accept_saga(a, "del-1", "acct5", "mesh-d", "delete").verdict,
                     MB_ACCEPT_DUPLICATE);
    /* another delete while del-1 runs: told who deletes it */
    assert_int_equal(accept_saga(a, "del-2", "acct5", "mesh-d", "delete").verdict, MB_ACCEPT_NEW);
    t = target_of(a, "del-2");
    assert_string_equal(json_string_value(json_object_get(t, "deleted_by")), "del-1");
    json_decref(t);
    /* no mesh of that name */
    assert_int_equal(accept_saga(a, "del-3", "acct5", "mesh-none", "delete").verdict,
                     MB_ACCEPT_NEW);
    t = target_of(a, "del-3");
    assert_true(json_is_null(t));
    json_decref(t);

    /* release_name frees the name only if it points at the order named */
    d = claim_keep(a, "t-5", 3, "del-1"); /* of del-1, del-2, del-3 */
    mb_checkpoint k2 = {.order_id = "del-1",
                        .key = "acct5/mesh-d",
                        .fence = d->fence,
                        .status = "Deleting",
                        .attempt = -1,
                        .run_in_ms = 0,
                        .lease_ms = 30000,
                        .release_name = 1,
                        .release_name_of = "ord-other"};
    mb_store_checkpoint(a, &k2, 1, &res, &s, &e);
    assert_int_equal(s, MB_OK);
    assert_int_equal(accept1(a, "ord-y", "acct5", "mesh-d").verdict, MB_ACCEPT_CONFLICT);
    k2.release_name_of = "ord-c";
    mb_store_checkpoint(a, &k2, 1, &res, &s, &e);
    assert_int_equal(s, MB_OK);
    assert_int_equal(accept1(a, "ord-z", "acct5", "mesh-d").verdict, MB_ACCEPT_NEW);
    mb_job_free(d);
    mb_store_free(a);
}

/* The number of step:<NN>:<name> fields of a job record. */
static size_t step_fields(mb_store *st, const char *order_id, const char *key)
{
    redisContext *rc = raw();
    redisReply *r = redisCommand(rc, "HKEYS mb:{s%d}:job:%s", mb_store_shard_of(st, key), order_id);
    size_t n = 0;

    assert_non_null(r);
    for (size_t i = 0; i < r->elements; i++)
        n += strncmp(r->element[i]->str, "step:", 5) == 0;
    freeReplyObject(r);
    redisFree(rc);
    return n;
}

static mb_status split_ckpt(mb_store *st, const mb_job *j, const json_t *doc,
                            const mb_ck_record *recs, size_t n, long long run_in, mb_error *e)
{
    mb_checkpoint_result res;
    mb_status s;
    mb_checkpoint k = {.order_id = j->order_id,
                       .key = j->key,
                       .fence = j->fence,
                       .state = doc,
                       .status = run_in < 0 ? "Running" : "Installing",
                       .step = "label_nodes",
                       .attempt = 1,
                       .run_in_ms = run_in,
                       .lease_ms = 30000,
                       .split = 1,
                       .records = recs,
                       .n_records = n};

    mb_error_clear(e);
    mb_store_checkpoint(st, &k, 1, &res, &s, e);
    return s;
}

/* A split checkpoint rewrites only the records it names; readers, the delete's snapshot
 * included, get the whole document back, records in saga order; a whole-document write
 * drops the records' fields. */
/* The document test_split_checkpoint wrote, as a reader gets it back: step 3, and the
 * records joined in saga order with what each last held. */
static void assert_split_read_back(const json_t *st)
{
    static const char *const order[] = {"validate", "precheck", "label_nodes"};
    static const char *const status[] = {"done", "done", "running"};
    const char *k;
    json_t *v;
    size_t i = 0;

    assert_int_equal(json_integer_value(json_object_get(st, "step")), 3);
    json_object_foreach(json_object_get(st, "steps"), k, v)
    {
        assert_true(i < 3);
        assert_string_equal(k, order[i]);
        assert_string_equal(json_string_value(json_object_get(v, "status")), status[i]);
        i++;
    }
    assert_int_equal(i, 3);
}

static void test_split_checkpoint(void **state)
{
    const char *key = "acct6/mesh-split";
    mb_store *a;
    mb_job *c, *g;
    mb_error e;
    json_t *doc, *steps, *t;
    (void)state;
    c = fresh_claimed(&a, "wsplit", "ord-sp", "acct6", "mesh-split", 30000);
    doc = json_pack("{s:i, s:{s:{s:s}, s:{s:s}}}", "step", 2, "steps", "precheck", "status",
                    "running", "validate", "status", "done");
    steps = json_object_get(doc, "steps");
    mb_ck_record all[2] = {{2, "precheck", json_object_get(steps, "precheck")},
                           {0, "validate", json_object_get(steps, "validate")}};
    assert_int_equal(split_ckpt(a, c, doc, all, 2, 0, &e), MB_OK);
    assert_int_equal(step_fields(a, "ord-sp", key), 2);

    /* one record changes, one is new: only they are sent */
    json_object_set_new(json_object_get(steps, "precheck"), "status", json_string("done"));
    json_object_set_new(steps, "label_nodes", json_pack("{s:s}", "status", "running"));
    json_object_set_new(doc, "step", json_integer(3));
    json_object_set_new(json_object_get(steps, "validate"), "status", json_string("not sent"));
    mb_ck_record two[2] = {{2, "precheck", json_object_get(steps, "precheck")},
                           {3, "label_nodes", json_object_get(steps, "label_nodes")}};
    assert_int_equal(split_ckpt(a, c, doc, two, 2, -1, &e), MB_OK);
    assert_int_equal(step_fields(a, "ord-sp", key), 3);
    assert_int_equal(mb_store_get(a, "ord-sp", &g, &e), MB_OK);
    assert_split_read_back(g->state);

    /* the delete's snapshot of the create is the whole document too */
    assert_int_equal(accept_saga(a, "del-sp", "acct6", "mesh-split", "delete").verdict,
                     MB_ACCEPT_NEW);
    t = target_of(a, "del-sp");
    assert_split_read_back(json_object_get(t, "state"));
    json_decref(t);

    /* a rewrite writes the whole document: the fields go, its own steps count */
    json_t *whole = json_pack("{s:{s:{s:s}}}", "steps", "validate", "status", "replayed");
    mb_rewrite w = {"ord-sp", key,  whole, "Installing", "validate",     0, "",
                    "",       NULL, 0,     g->fence,     g->checkpoints, 0};
    assert_int_equal(mb_store_rewrite(a, &w, &e), MB_OK);
    assert_int_equal(step_fields(a, "ord-sp", key), 0);
    mb_job_free(g);
    assert_int_equal(mb_store_get(a, "ord-sp", &g, &e), MB_OK);
    assert_true(json_equal(g->state, whole));
    mb_job_free(g);
    json_decref(whole);

    /* records the store cannot name are refused, nothing written */
    mb_job_free(c);
    c = claim_keep(a, "t-sp", 2, "ord-sp"); /* of the rewritten create and the delete */
    mb_ck_record bad[2] = {{100, "validate", json_object_get(steps, "validate")},
                           {0, "validate", json_string("x")}};
    assert_int_equal(split_ckpt(a, c, doc, bad, 1, 0, &e), MB_PERM);
    assert_string_equal(e.code, "BadRequest");
    assert_int_equal(split_ckpt(a, c, doc, bad + 1, 1, 0, &e), MB_PERM);
    json_decref((json_t *)bad[1].rec);
    assert_int_equal(step_fields(a, "ord-sp", key), 0);
    /* so is a checkpoint of the whole document */
    assert_int_equal(split_ckpt(a, c, doc, all, 1, 0, &e), MB_OK);
    assert_int_equal(step_fields(a, "ord-sp", key), 1);
    mb_checkpoint_result res;
    assert_int_equal(ckpt(a, c, c->fence, "Installing", 0, NULL, &res, &e), MB_OK);
    assert_int_equal(step_fields(a, "ord-sp", key), 0);
    mb_job_free(c);
    json_decref(doc);
    mb_store_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept),
        cmocka_unit_test(test_claim_fence_lease),
        cmocka_unit_test(test_ck_idempotent),
        cmocka_unit_test(test_stir_once),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_relay_lease),
        cmocka_unit_test(test_reject_and_dlq),
        cmocka_unit_test(test_scan_and_noscript),
        cmocka_unit_test(test_sre_ops),
        cmocka_unit_test(test_replay_claims_name),
        cmocka_unit_test(test_delete_accept),
        cmocka_unit_test(test_split_checkpoint),
        cmocka_unit_test(test_index_retention_depths),
        cmocka_unit_test(test_bytes_stored),
        cmocka_unit_test(test_claim_resent),
        cmocka_unit_test(test_handback),
        cmocka_unit_test(test_workers_views),
        cmocka_unit_test(test_redis_down), /* last: stops the server */
    };
    /* As the daemon does: a write to a dead server must fail, not kill the process. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, start_redis, teardown_all);
}
