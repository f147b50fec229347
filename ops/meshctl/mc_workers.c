/* mc_workers.c: meshctl workers and outbox: who runs what.  Workers from their heartbeat
 * records (mb_store_workers), the jobs each holds from the lease owners of the due sets
 * (mb_store_leases: every unfinished job is in a due set, a leased one scored by its lease
 * end), the relay shards each holds from the shards' relay leases (mb_store_outbox_shards).
 * No keyspace scan. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mc.h"
#include "mc_out.h"

/* Jobs read a shard at most (a bounded walk of the due sets; more is reported). */
#define LEASES_PER_SHARD 5000
/* A heartbeat older than this many beat periods makes its worker "late". */
#define LATE_BEATS 3
/* Jobs listed under a worker in the table (-o wide: all). */
#define TABLE_JOBS 5

static int want_id(int argc, char **argv, int first, const char *id)
{
    if (first >= argc)
        return 1;
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], id) == 0)
            return 1;
    return 0;
}

static long long field_ll(const json_t *rec, const char *k)
{
    const char *v = json_string_value(json_object_get(rec, k));
    return v ? strtoll(v, NULL, 10) : 0;
}

static json_t *field_str(const json_t *rec, const char *k)
{
    return mc_json_str(json_string_value(json_object_get(rec, k)));
}

static json_t *ms_or_null(long long ms, int known)
{
    return known ? json_integer(ms) : json_null();
}

/* The worker object for id (created in by_id if new): identity from its heartbeat entry
 * (may be NULL), jobs and relay shards added later. */
static json_t *worker_of(json_t *by_id, const char *id, const json_t *entry, long long now)
{
    json_t *w = json_object_get(by_id, id), *rec;
    long long seen, every;
    int has_rec;

    if (w)
        return w;
    rec = json_object_get(entry, "record");
    has_rec = json_is_object(rec);
    seen = entry ? json_integer_value(json_object_get(entry, "seen_ms")) : 0;
    every = has_rec ? field_ll(rec, "every") : 0;
    w = json_object();
    json_object_set_new(w, "id", json_string(id));
    json_object_set_new(w, "state",
                        json_string(!has_rec                                 ? "gone"
                                    : now - seen > LATE_BEATS * every + 1000 ? "late"
                                                                             : "live"));
    json_object_set_new(w, "host", field_str(rec, "host"));
    json_object_set_new(w, "pid", ms_or_null(field_ll(rec, "pid"), has_rec));
    json_object_set_new(w, "version", field_str(rec, "version"));
    json_object_set_new(w, "admin", field_str(rec, "admin"));
    json_object_set_new(w, "sagas", has_rec ? json_boolean(field_ll(rec, "sagas")) : json_null());
    json_object_set_new(w, "started_ms", ms_or_null(field_ll(rec, "started"), has_rec));
    json_object_set_new(w, "started",
                        has_rec ? mc_json_time(field_ll(rec, "started")) : json_null());
    json_object_set_new(w, "seen_ms", ms_or_null(seen, seen > 0));
    json_object_set_new(w, "seen", seen > 0 ? mc_json_time(seen) : json_null());
    json_object_set_new(w, "seen_age_ms", ms_or_null(now - seen, seen > 0));
    /* how long it has run: to now while it beats, to its last beat once it stopped */
    json_object_set_new(
        w, "up_ms",
        ms_or_null((strcmp(json_string_value(json_object_get(w, "state")), "live") ? seen : now) -
                       field_ll(rec, "started"),
                   has_rec));
    json_object_set_new(w, "beat_every_ms", ms_or_null(every, has_rec));
    json_object_set_new(w, "record_ttl_ms",
                        ms_or_null(json_integer_value(json_object_get(entry, "ttl_ms")), has_rec));
    json_object_set_new(w, "lease_ms", ms_or_null(field_ll(rec, "lease"), has_rec));
    json_object_set_new(w, "jobs", json_array());
    json_object_set_new(w, "jobs_held", json_integer(0));
    json_object_set_new(w, "jobs_expired", json_integer(0));
    json_object_set_new(w, "relay_shards", json_array());
    json_object_set_new(by_id, id, w);
    return w;
}

static void bump(json_t *w, const char *k)
{
    json_object_set_new(w, k, json_integer(json_integer_value(json_object_get(w, k)) + 1));
}

static void add_job(json_t *w, const json_t *l, long long now)
{
    long long until = json_integer_value(json_object_get(l, "lease_until_ms"));
    json_t *j = json_object();

    json_object_set(j, "order_id", json_object_get(l, "order_id"));
    json_object_set(j, "mesh", json_object_get(l, "key"));
    json_object_set_new(j, "saga",
                        json_string(json_string_value(json_object_get(l, "saga"))[0]
                                        ? json_string_value(json_object_get(l, "saga"))
                                        : "create"));
    json_object_set(j, "status", json_object_get(l, "status"));
    json_object_set_new(j, "step", field_str(l, "step"));
    json_object_set_new(j, "lease_until_ms", json_integer(until));
    json_object_set_new(j, "lease_until", mc_json_time(until));
    json_object_set_new(j, "lease_left_ms", json_integer(until - now));
    json_object_set_new(j, "expired", json_boolean(until <= now));
    json_array_append_new(json_object_get(w, "jobs"), j);
    bump(w, until > now ? "jobs_held" : "jobs_expired");
}

static int by_id_cmp(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "id")),
                  json_string_value(json_object_get(*(json_t *const *)b, "id")));
}

/* The values of an object as a new array sorted by "id". */
static json_t *sorted_values(json_t *obj)
{
    size_t n = json_object_size(obj), i = 0;
    json_t **v = calloc(n ? n : 1, sizeof(*v)), *out = json_array(), *x;
    const char *k;

    if (v == NULL)
        return out;
    json_object_foreach(obj, k, x)
    {
        v[i++] = x;
    }
    qsort(v, n, sizeof(*v), by_id_cmp);
    for (i = 0; i < n; i++)
        json_array_append(out, v[i]);
    free(v);
    return out;
}

/* Reads heartbeats, leases and relay leases into the worker objects, sorted by id: those
 * with a heartbeat record or holding something, plus (all) every worker of the index. */
static int gather_workers(mc_ctx *c, int all, long long *now, json_t **out, json_t **shards)
{
    mb_store *st = mc_store(c);
    json_t *beats = NULL, *leases = NULL, *by_id, *beat_of, *e;
    long long truncated = 0;
    mb_error err;
    size_t i;

    *out = NULL;
    if (st == NULL)
        return MC_EXIT_CONFIG;
    *now = mc_store_now_ms(c);
    mb_error_clear(&err);
    if (mb_store_workers(st, &beats, &err) != MB_OK)
        return mc_store_fail("reading the workers' heartbeats", &err);
    if (mb_store_leases(st, LEASES_PER_SHARD, &leases, &truncated, &err) != MB_OK ||
        mb_store_outbox_shards(st, shards, &err) != MB_OK) {
        json_decref(beats);
        json_decref(leases);
        return mc_store_fail("reading the leases", &err);
    }
    if (truncated > 0)
        fprintf(stderr,
                "meshctl: %lld job(s) of long due sets not read (%d a shard at most): the jobs "
                "shown may be short\n",
                truncated, LEASES_PER_SHARD);
    by_id = json_object();
    beat_of = json_object(); /* worker id -> its index entry (borrowed from beats) */
    json_array_foreach(beats, i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        json_object_set(beat_of, id, e);
        if (all || json_is_object(json_object_get(e, "record")))
            worker_of(by_id, id, e, *now);
    }
    /* Holders without a record are listed too: their heartbeat expired (or never was). */
    json_array_foreach(leases, i, e)
    {
        const char *owner = json_string_value(json_object_get(e, "owner"));
        add_job(worker_of(by_id, owner, json_object_get(beat_of, owner), *now), e, *now);
    }
    json_array_foreach(*shards, i, e)
    {
        const char *holder = json_string_value(json_object_get(e, "relay_worker"));
        json_t *w;
        if (holder == NULL)
            continue;
        w = worker_of(by_id, holder, json_object_get(beat_of, holder), *now);
        json_array_append_new(json_object_get(w, "relay_shards"),
                              json_pack("{s:O, s:O}", "shard", json_object_get(e, "shard"),
                                        "ttl_ms", json_object_get(e, "relay_ttl_ms")));
    }
    *out = sorted_values(by_id);
    json_decref(by_id);
    json_decref(beat_of);
    json_decref(beats);
    json_decref(leases);
    return MC_EXIT_OK;
}

static const char *str_or(const json_t *o, const char *k, const char *none)
{
    const char *v = json_string_value(json_object_get(o, k));
    return v && *v ? v : none;
}

/* "12s left" or "expired 30s ago" */
static const char *lease_left(long long left, char *buf, size_t len)
{
    char age[16];

    if (left > 0)
        snprintf(buf, len, "%s left", mc_fmt_age(left + 999, age, sizeof(age)));
    else
        snprintf(buf, len, "expired %s ago", mc_fmt_age(-left, age, sizeof(age)));
    return buf;
}

static void worker_notes(mc_table *t, const json_t *w, int wide)
{
    json_t *jobs = json_object_get(w, "jobs"), *j;
    size_t i, n = json_array_size(jobs);
    char line[600], left[48];

    if (strcmp(str_or(w, "state", ""), "live") != 0 && n > 0) {
        snprintf(line, sizeof(line), "%s; %s",
                 strcmp(str_or(w, "state", ""), "gone") == 0
                     ? "no heartbeat record (the worker is gone)"
                     : "heartbeat late (stalled or dead)",
                 json_integer_value(json_object_get(w, "jobs_held")) > 0
                     ? "its jobs wait until their leases run out"
                     : "its jobs' leases ran out: any worker may claim them");
        mc_table_note(t, line);
    }
    json_array_foreach(jobs, i, j)
    {
        if (!wide && i == TABLE_JOBS) {
            snprintf(line, sizeof(line), "... and %zu more job(s) (-o wide lists all)",
                     n - TABLE_JOBS);
            mc_table_note(t, line);
            break;
        }
        snprintf(line, sizeof(line), "job %s  %s  %s at %s  lease %s", str_or(j, "order_id", "?"),
                 str_or(j, "mesh", "-"), str_or(j, "status", "?"), str_or(j, "step", "-"),
                 lease_left(json_integer_value(json_object_get(j, "lease_left_ms")), left,
                            sizeof(left)));
        mc_table_note(t, line);
    }
}

static void workers_table(const json_t *ws, const mc_out *o)
{
    static const char *const cols[] = {"WORKER", "STATE", "HOST",  "PID",   "VERSION", "SEEN",
                                       "UP",     "JOBS",  "RELAY", "ADMIN", "LEASE"};
    int wide = o->fmt == MC_FMT_WIDE;
    mc_table *t = mc_table_new(cols, wide ? 11 : 9);
    size_t i, k;
    json_t *w, *r;

    json_array_foreach(ws, i, w)
    {
        char pid[24] = "-", seen[32] = "-", up[16] = "-", jobs[48], relay[256] = "-", lease[16];
        long long expired = json_integer_value(json_object_get(w, "jobs_expired"));
        size_t used = 0;
        const char *cells[11];

        if (json_is_integer(json_object_get(w, "pid")))
            snprintf(pid, sizeof(pid), "%lld",
                     (long long)json_integer_value(json_object_get(w, "pid")));
        if (json_is_integer(json_object_get(w, "seen_age_ms"))) {
            mc_fmt_age(json_integer_value(json_object_get(w, "seen_age_ms")), seen, sizeof(seen));
            strncat(seen, " ago", sizeof(seen) - strlen(seen) - 1);
        }
        if (json_is_integer(json_object_get(w, "up_ms")))
            mc_fmt_age(json_integer_value(json_object_get(w, "up_ms")), up, sizeof(up));
        snprintf(jobs, sizeof(jobs), "%lld",
                 (long long)json_integer_value(json_object_get(w, "jobs_held")));
        if (expired > 0)
            snprintf(jobs + strlen(jobs), sizeof(jobs) - strlen(jobs), " (+%lld expired)", expired);
        json_array_foreach(json_object_get(w, "relay_shards"), k, r)
        {
            int n = snprintf(relay + used, sizeof(relay) - used, "%s%lld", k ? "," : "",
                             (long long)json_integer_value(json_object_get(r, "shard")));
            if (n < 0 || (size_t)n >= sizeof(relay) - used)
                break;
            used += (size_t)n;
        }
        if (json_is_integer(json_object_get(w, "lease_ms")))
            mc_fmt_age(json_integer_value(json_object_get(w, "lease_ms")), lease, sizeof(lease));
        else
            snprintf(lease, sizeof(lease), "-");
        cells[0] = str_or(w, "id", "?");
        cells[1] = str_or(w, "state", "?");
        cells[2] = str_or(w, "host", "-");
        cells[3] = pid;
        cells[4] = str_or(w, "version", "-");
        cells[5] = seen;
        cells[6] = up;
        cells[7] = jobs;
        cells[8] = relay;
        cells[9] = str_or(w, "admin", "-");
        cells[10] = lease;
        mc_table_row(t, cells);
        worker_notes(t, w, wide);
    }
    if (json_array_size(ws) == 0 && !o->no_headers)
        printf("(no workers: none has a heartbeat record or holds a lease)\n");
    else
        mc_table_print(t, stdout, o->no_headers);
    mc_table_free(t);
}

static void print_list(const json_t *rows, const mc_out *o, const char *name_key,
                       void (*table)(const json_t *, const mc_out *))
{
    size_t i;
    json_t *r;

    if (o->fmt == MC_FMT_JSON || o->fmt == MC_FMT_YAML) {
        mc_out_doc(o, rows, stdout);
        return;
    }
    if (o->fmt == MC_FMT_NAME) {
        json_array_foreach(rows, i, r)
        {
            json_t *v = json_object_get(r, name_key);
            if (json_is_string(v))
                printf("%s\n", json_string_value(v));
            else
                printf("%lld\n", (long long)json_integer_value(v));
        }
        return;
    }
    table(rows, o);
}

static void workers_usage(FILE *f)
{
    fprintf(f,
            "usage: meshctl workers [WORKER...] [--all] [-o FMT]\n"
            "\n"
            "Lists the workers: each one's heartbeat (host, pid, version, when it last beat,\n"
            "how long it has run), the jobs it holds (lease owner on the job record, with the\n"
            "lease's time left) and the status relay shards it holds.  STATE is live (beat\n"
            "recently), late (no beat for %d periods: stalled or dead) or gone (no heartbeat\n"
            "record left, yet still named as a lease owner).  A gone or late worker holding\n"
            "jobs is what to look at: its jobs wait until their leases run out, then any\n"
            "worker may claim them (meshctl jobs --status stuck).\n"
            "  --all         also the workers gone (exited, or their record expired) within\n"
            "                the last day that hold nothing\n" MC_OUT_USAGE
            "JSON/YAML: an array of workers (schemas/meshctl-worker.schema.json): id state\n"
            "host pid version admin sagas started_ms started seen_ms seen seen_age_ms up_ms\n"
            "beat_every_ms record_ttl_ms lease_ms jobs[] (order_id mesh saga status step\n"
            "lease_until_ms lease_until lease_left_ms expired) jobs_held jobs_expired\n"
            "relay_shards[] (shard ttl_ms); null when unknown.  -o name: one worker id a line.\n",
            LATE_BEATS);
}

/* Parses the options workers and outbox share (--all, -o, --help).  Returns -1 to go on,
 * or the exit code (after --help, or a usage error). */
static int view_opts(int argc, char **argv, const struct option *opts, void (*usage)(FILE *),
                     mc_out *out, int *all)
{
    int opt, taken;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        taken = mc_out_opt(out, opt, optarg);
        if (taken < 0)
            return MC_EXIT_USAGE;
        if (taken)
            continue;
        switch (opt) {
        case 'a': *all = 1; break;
        case 'h': usage(stdout); return MC_EXIT_OK;
        default: usage(stderr); return MC_EXIT_USAGE;
        }
    }
    return -1;
}

/* workers' options (getopt_long; also the completion's). */
const struct option mc_workers_opts[] = {
    {"all", no_argument, NULL, 'a'},
    MC_OUT_OPTIONS,
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int mc_cmd_workers(mc_ctx *c, int argc, char **argv)
{
    mc_out out = {MC_FMT_TABLE, 0};
    int all = 0, rc = view_opts(argc, argv, mc_workers_opts, workers_usage, &out, &all);
    json_t *ws = NULL, *shards = NULL, *sel, *w;
    long long now;
    size_t i;

    if (rc >= 0)
        return rc;
    rc = gather_workers(c, all || optind < argc, &now, &ws, &shards);
    if (rc != MC_EXIT_OK)
        return rc;
    sel = json_array();
    json_array_foreach(ws, i, w)
    {
        if (want_id(argc, argv, optind, json_string_value(json_object_get(w, "id"))))
            json_array_append(sel, w);
    }
    print_list(sel, &out, "id", workers_table);
    rc = optind < argc && json_array_size(sel) == 0
             ? mc_fail(MC_EXIT_NOTFOUND, "no such worker (seen within a day or holding a lease)")
             : MC_EXIT_OK;
    json_decref(sel);
    json_decref(ws);
    json_decref(shards);
    return rc;
}

/* ================================================================ outbox */

/* RFC 3339 ("2026-12-04T20:14:49.123Z", or with an offset) into epoch ms; 0 if it is not. */
static long long parse_time(const char *s)
{
    struct tm tm;
    const char *p;
    long long ms = 0, scale = 100;
    int sign, oh = 0, om = 0;

    if (s == NULL)
        return 0;
    memset(&tm, 0, sizeof(tm));
    p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return 0;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ms += (*p - '0') * scale;
    if (*p == 'Z')
        return (long long)timegm(&tm) * 1000 + ms;
    if (*p != '+' && *p != '-')
        return 0;
    sign = *p == '-' ? -1 : 1;
    if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
        return 0;
    return ((long long)timegm(&tm) - sign * (oh * 3600LL + om * 60LL)) * 1000 + ms;
}

/* One shard as meshctl shows it (new): backlog, the oldest entry's id and age, the relay
 * lease holder and its state. */
static json_t *shard_row(const json_t *s, const json_t *workers, long long now)
{
    const json_t *ev = json_object_get(s, "oldest");
    const char *holder = json_string_value(json_object_get(s, "relay_worker"));
    long long t = parse_time(json_string_value(json_object_get(ev, "time")));
    const char *state = NULL;
    json_t *w;
    size_t i;

    json_array_foreach(workers, i, w)
    {
        if (holder && strcmp(json_string_value(json_object_get(w, "id")), holder) == 0)
            state = json_string_value(json_object_get(w, "state"));
    }
    return json_pack(
        "{s:O, s:O, s:o, s:o, s:o, s:o, s:o, s:O, s:O, s:o, s:o}", "shard",
        json_object_get(s, "shard"), "backlog", json_object_get(s, "backlog"), "oldest_id",
        mc_json_str(json_string_value(json_object_get(ev, "id"))), "oldest_time_ms",
        ms_or_null(t, t > 0), "oldest_time", t > 0 ? mc_json_time(t) : json_null(), "oldest_age_ms",
        ms_or_null(now - t, t > 0), "oldest_status",
        mc_json_str(json_string_value(json_object_get(json_object_get(ev, "data"), "status"))),
        "relay_worker", json_object_get(s, "relay_worker"), "relay_token",
        json_object_get(s, "relay_token"), "relay_ttl_ms",
        holder ? json_integer(json_integer_value(json_object_get(s, "relay_ttl_ms"))) : json_null(),
        "relay_worker_state", holder ? mc_json_str(state ? state : "gone") : json_null());
}

static void outbox_table(const json_t *rows, const mc_out *o)
{
    static const char *const cols[] = {"SHARD", "BACKLOG", "OLDEST",   "RELAY",
                                       "STATE", "LEASE",   "OLDEST-ID"};
    int wide = o->fmt == MC_FMT_WIDE;
    mc_table *t = mc_table_new(cols, wide ? 7 : 6);
    long long total = 0, oldest = -1;
    size_t i;
    json_t *r;

    json_array_foreach(rows, i, r)
    {
        char shard[16], backlog[24], age[16] = "-", lease[48] = "-", ttl[16];
        const char *cells[7];
        json_t *a = json_object_get(r, "oldest_age_ms");

        snprintf(shard, sizeof(shard), "%lld",
                 (long long)json_integer_value(json_object_get(r, "shard")));
        snprintf(backlog, sizeof(backlog), "%lld",
                 (long long)json_integer_value(json_object_get(r, "backlog")));
        total += json_integer_value(json_object_get(r, "backlog"));
        if (json_is_integer(a)) {
            mc_fmt_age(json_integer_value(a), age, sizeof(age));
            if (json_integer_value(a) > oldest)
                oldest = json_integer_value(a);
        }
        if (json_is_integer(json_object_get(r, "relay_ttl_ms")))
            snprintf(lease, sizeof(lease), "%s left",
                     mc_fmt_age(json_integer_value(json_object_get(r, "relay_ttl_ms")) + 999, ttl,
                                sizeof(ttl)));
        cells[0] = shard;
        cells[1] = backlog;
        cells[2] = age;
        cells[3] = str_or(r, "relay_worker", "-");       /* the holder */
        cells[4] = str_or(r, "relay_worker_state", "-"); /* its heartbeat state */
        cells[5] = lease;
        cells[6] = str_or(r, "oldest_id", "-");
        mc_table_row(t, cells);
    }
    if (json_array_size(rows) == 0 && !o->no_headers) {
        printf("(every outbox is empty and no relay lease is held; --all lists every shard)\n");
    } else {
        mc_table_print(t, stdout, o->no_headers);
    }
    if (!o->no_headers && total > 0) {
        char age[16];
        printf("%lld event(s) waiting; the oldest for %s\n", total,
               mc_fmt_age(oldest > 0 ? oldest : 0, age, sizeof(age)));
    }
    mc_table_free(t);
}

static void outbox_usage(FILE *f)
{
    fprintf(
        f,
        "usage: meshctl outbox [--all] [-o FMT]\n"
        "\n"
        "The status-event outboxes, one a shard: events queued in Redis and not yet\n"
        "delivered to the status topic (BACKLOG), how long the oldest has waited (its\n"
        "event's time: when the worker queued it), which worker holds the shard's relay\n"
        "lease, its heartbeat state and the lease's time left.  A backlog that grows while\n"
        "no live worker holds the relay, or one that is old, means status events are late.\n"
        "Lists the shards with a backlog or a relay lease; --all lists every shard.\n" MC_OUT_USAGE
        "JSON/YAML: an array of shards (schemas/meshctl-outbox.schema.json): shard backlog\n"
        "oldest_id oldest_time_ms oldest_time oldest_age_ms oldest_status relay_worker\n"
        "relay_token relay_ttl_ms relay_worker_state; null when none.  -o name: shard\n"
        "numbers.\n");
}

/* outbox's options (getopt_long; also the completion's). */
const struct option mc_outbox_opts[] = {
    {"all", no_argument, NULL, 'a'},
    MC_OUT_OPTIONS,
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int mc_cmd_outbox(mc_ctx *c, int argc, char **argv)
{
    mc_out out = {MC_FMT_TABLE, 0};
    int all = 0, rc = view_opts(argc, argv, mc_outbox_opts, outbox_usage, &out, &all);
    json_t *ws = NULL, *shards = NULL, *rows, *s;
    long long now;
    size_t i;

    if (rc >= 0)
        return rc;
    if (optind < argc)
        return mc_fail(MC_EXIT_USAGE, "outbox: unexpected argument '%s'", argv[optind]);
    rc = gather_workers(c, 0, &now, &ws, &shards);
    if (rc != MC_EXIT_OK)
        return rc;
    rows = json_array();
    json_array_foreach(shards, i, s)
    {
        if (all || json_integer_value(json_object_get(s, "backlog")) > 0 ||
            json_is_string(json_object_get(s, "relay_token")))
            json_array_append_new(rows, shard_row(s, ws, now));
    }
    print_list(rows, &out, "shard", outbox_table);
    json_decref(rows);
    json_decref(ws);
    json_decref(shards);
    return MC_EXIT_OK;
}
