/* mc_jobs.c: meshctl jobs, show and cancel: reading jobs from the store and one write, cancel. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "mb_sagadef.h"
#include "mc_out.h"
#include "mc.h"
#include "mc_kafka.h"

#define SHOW_EVENTS_TIMEOUT_MS 5000

/* ================================================================ jobs */

typedef struct list_ctx {
    const mc_ctx *c;
    const char *status;                             /* canonical, "stuck", or NULL */
    const char *account;                            /* NULL = all */
    long long since_ms;                             /* 0 = any age */
    long long until_ms;                             /* created at least this long ago; 0 = any */
    const char *saga, *step, *error_code, *cluster; /* NULL = any */
    long long now;
    json_t *rows;
} list_ctx;

/* 1 if want is NULL or the row's key holds exactly want. */
static int matches(const json_t *row, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(row, key));

    return want == NULL || (v && strcmp(v, want) == 0);
}

static int list_one(void *arg, const mb_job *j)
{
    list_ctx *l = arg;
    size_t alen = l->account ? strlen(l->account) : 0;
    json_t *row;

    if (l->account && (strncmp(j->key, l->account, alen) != 0 || j->key[alen] != '/'))
        return 0;
    if (l->since_ms > 0 && j->created_ms < l->now - l->since_ms)
        return 0;
    if (l->until_ms > 0 && j->created_ms > l->now - l->until_ms)
        return 0;
    row = mc_job_summary(l->c, j, l->now);
    if (row == NULL)
        return 0;
    if ((l->status && strcmp(l->status, "stuck") == 0 &&
         !json_is_true(json_object_get(row, "stuck"))) ||
        !matches(row, "saga", l->saga) || !matches(row, "step", l->step) ||
        !matches(row, "error_code", l->error_code) || !matches(row, "cluster", l->cluster)) {
        json_decref(row);
        return 0;
    }
    json_array_append_new(l->rows, row);
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "created_ms"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "created_ms"));

    return x < y ? 1 : x > y ? -1 : 0;
}

static void sort_rows(json_t *rows)
{
    size_t n = json_array_size(rows);
    json_t **v = calloc(n ? n : 1, sizeof(*v));

    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(rows, i));
    qsort(v, n, sizeof(*v), newest_first);
    json_array_clear(rows);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(rows, v[i]);
    free(v);
}

static const char *row_str(const json_t *r, const char *k)
{
    const char *v = json_string_value(json_object_get(r, k));
    return v && *v ? v : "-";
}

/* The table (wide: cluster, lease, updated, error message too); a stuck job's reason is
 * printed under it. */
static void print_table(const json_t *rows, const mc_out *o)
{
    static const char *const cols[] = {"ORDER", "MESH",  "SAGA",    "STATUS", "STEP",    "ATT",
                                       "AGE",   "ERROR", "CLUSTER", "LEASE",  "UPDATED", "MESSAGE"};
    int wide = o->fmt == MC_FMT_WIDE;
    mc_table *t = mc_table_new(cols, wide ? 12 : 8);
    size_t i;
    json_t *r;

    json_array_foreach(rows, i, r)
    {
        char age[16], status[48], att[24], why[400];
        int stuck = json_is_true(json_object_get(r, "stuck"));
        const char *cells[12];

        snprintf(status, sizeof(status), "%s%s", row_str(r, "status"),
                 stuck                                        ? " STUCK"
                 : json_is_true(json_object_get(r, "parked")) ? " (parked)"
                                                              : "");
        snprintf(att, sizeof(att), "%lld",
                 (long long)json_integer_value(json_object_get(r, "attempts")));
        mc_fmt_age(json_integer_value(json_object_get(r, "age_ms")), age, sizeof(age));
        cells[0] = row_str(r, "order_id");
        cells[1] = row_str(r, "mesh");
        cells[2] = row_str(r, "saga");
        cells[3] = status;
        cells[4] = row_str(r, "step");
        cells[5] = att;
        cells[6] = age;
        cells[7] = row_str(r, "error_code");
        cells[8] = row_str(r, "cluster");
        cells[9] = row_str(r, "lease_owner");
        cells[10] = row_str(r, "updated");
        cells[11] = row_str(r, "error_msg");
        mc_table_row(t, cells);
        if (stuck) {
            snprintf(why, sizeof(why), "stuck: %s", row_str(r, "stuck_reason"));
            mc_table_note(t, why);
        }
    }
    if (json_array_size(rows) == 0 && !o->no_headers) {
        printf("(no jobs match)\n");
    } else {
        mc_table_print(t, stdout, o->no_headers);
    }
    mc_table_free(t);
}

static void print_rows(const json_t *rows, const mc_out *o)
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
            printf("%s\n", row_str(r, "order_id"));
        }
        return;
    }
    print_table(rows, o);
}

static void jobs_usage(FILE *f)
{
    fprintf(f,
            "usage: meshctl jobs [--status S] [--saga S] [--step S] [--error-code C]\n"
            "                    [--cluster C] [--account A] [--since DUR] [--until DUR]\n"
            "                    [--limit N] [-o FMT]\n"
            "\n"
            "Lists jobs, newest first: order id, mesh (<account>/<name>), saga, status, step,\n"
            "attempts at that step, age, last error code.  A job is flagged STUCK when its step\n"
            "ran past its deadline, its lease holder stopped renewing, or it is due and no worker\n"
            "claims it; the reason is printed under it.\n"
            "\n"
            "  --status S      Accepted|RollingBack|Failed|Cancelled|NeedsAttention, a saga's\n"
            "                  status words (Installing|Running for create; any case), or 'stuck'\n"
            "  --account A     only this account's jobs\n"
            "  --since DUR     only jobs created within DUR (90s, 15m, 2h, 1d)\n"
            "  --until DUR     only jobs created at least DUR ago\n"
            "  --saga S        only jobs of saga S (create, delete)\n"
            "  --step S        only jobs at step S (for an ended job: where it stopped)\n"
            "  --error-code C  only jobs whose last error code is C\n"
            "  --cluster C     only jobs whose order targets cluster C\n"
            "  --limit N       the N newest that match\n"
            "(jobs come from the per-status indexes, never a keyspace scan; filters\n"
            "other than --status read every job of the status asked, or of all)\n" MC_OUT_USAGE "\n"
            "JSON/YAML: an array of jobs, each the shape `meshctl show -o json` prints as .job\n"
            "(order_id mesh account cluster saga status step step_index step_total attempts\n"
            "parked created_ms created updated_ms updated age_ms next_run_ms next_run error_code\n"
            "error_msg lease_owner lease_until_ms lease_until fence claims cancel_requested stuck\n"
            "stuck_reason; null when absent).  -o name: one order id a line.\n");
}

/* jobs' options (getopt_long; also the completion's, mc_complete.c). */
const struct option mc_jobs_opts[] = {
    {"status", required_argument, NULL, 's'},  {"account", required_argument, NULL, 'a'},
    {"since", required_argument, NULL, 'S'},   MC_OUT_OPTIONS,
    {"until", required_argument, NULL, 'U'},   {"saga", required_argument, NULL, 'g'},
    {"step", required_argument, NULL, 'p'},    {"error-code", required_argument, NULL, 'e'},
    {"cluster", required_argument, NULL, 'c'}, {"limit", required_argument, NULL, 'l'},
    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
};

int mc_cmd_jobs(mc_ctx *c, int argc, char **argv)
{
    list_ctx l = {.c = c};
    long limit = 0;
    mc_out out = {MC_FMT_TABLE, 0};
    int opt, taken;
    mb_store *st;
    mb_error e;
    const char *scan_status;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "ho:", mc_jobs_opts, NULL)) != -1) {
        taken = mc_out_opt(&out, opt, optarg);
        if (taken < 0)
            return MC_EXIT_USAGE;
        if (taken)
            continue;
        switch (opt) {
        case 's':
            l.status = mc_status_canon(optarg);
            if (l.status == NULL)
                return mc_fail(MC_EXIT_USAGE,
                               "--status %s: not a job status (see meshctl "
                               "jobs --help)",
                               optarg);
            break;
        case 'a': l.account = optarg; break;
        case 'S':
            if (mc_parse_duration(optarg, &l.since_ms) != 0)
                return mc_fail(MC_EXIT_USAGE,
                               "--since %s: want a duration like 90s, 15m, "
                               "2h, 1d",
                               optarg);
            break;
        case 'U':
            if (mc_parse_duration(optarg, &l.until_ms) != 0)
                return mc_fail(MC_EXIT_USAGE,
                               "--until %s: want a duration like 90s, 15m, "
                               "2h, 1d",
                               optarg);
            break;
        case 'g':
            if (mb_saga_def_find(mb_saga_defs, mb_saga_defs_count, optarg) == NULL)
                return mc_fail(MC_EXIT_USAGE, "--saga %s: not a saga this meshctl knows", optarg);
            l.saga = optarg;
            break;
        case 'p': l.step = optarg; break;
        case 'e': l.error_code = optarg; break;
        case 'c': l.cluster = optarg; break;
        case 'l':
            if (mc_parse_long(optarg, 1, 1000000, &limit) != 0)
                return mc_fail(MC_EXIT_USAGE, "--limit %s: want a positive number", optarg);
            break;
        case 'h': jobs_usage(stdout); return MC_EXIT_OK;
        default: jobs_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return mc_fail(MC_EXIT_USAGE, "jobs: unexpected argument '%s'", argv[optind]);
    st = mc_store(c);
    if (st == NULL)
        return MC_EXIT_CONFIG;
    l.now = mc_store_now_ms(c);
    l.rows = json_array();
    mb_error_clear(&e);
    scan_status = l.status && strcmp(l.status, "stuck") != 0 ? l.status : NULL;
    if (mb_store_list(st, scan_status, list_one, &l, &e) != MB_OK) {
        json_decref(l.rows);
        return mc_store_fail("listing jobs", &e);
    }
    sort_rows(l.rows);
    while (limit > 0 && json_array_size(l.rows) > (size_t)limit)
        json_array_remove(l.rows, json_array_size(l.rows) - 1);
    print_rows(l.rows, &out);
    json_decref(l.rows);
    return MC_EXIT_OK;
}

/* ================================================================ show */

static void show_usage(FILE *f)
{
    fprintf(f,
            "usage: meshctl show JOB... [-o FMT] [--no-events] [--events-timeout SEC]\n"
            "\n"
            "Prints the job: its order, where it stands (status, step, lease, stuck or not), each\n"
            "step's history (attempts, start and end, last error, what it changed), the job's\n"
            "history lines (replays, rollbacks and who asked), and the status events emitted for\n"
            "it, read back from the status topic (needs KAFKA_BROKERS; --no-events skips them).\n"
            "Several JOBs (xargs meshctl show < ids) are shown one after the other (JSON: an\n"
            "array; YAML: documents).\n" MC_OUT_USAGE
            "JSON/YAML: {job, order, state, history, events, events_unavailable}; job has the\n"
            "shape of `meshctl jobs -o json`; events null when not read (the reason beside).\n");
}

/* Steps in saga order with what the state document recorded for each.  A saga this
 * meshctl does not know: its recorded steps as they are. */
static void print_steps(const mb_saga_def *d, const json_t *state)
{
    json_t *steps = json_object_get(state, "steps");
    int n = d ? d->nsteps : (int)json_object_size(steps);
    void *it = json_object_iter(steps);

    printf("\nsteps:\n");
    for (int i = 0; i < n; i++, it = json_object_iter_next(steps, it)) {
        const char *name = d ? d->steps[i]->name : json_object_iter_key(it);
        json_t *rec = json_object_get(steps, name);
        json_t *le, *ck;
        char t1[32], t2[32];
        char *cks;

        if (rec == NULL) {
            printf("  %d %-16s -\n", i + 1, name);
            continue;
        }
        printf("  %d %-16s %-20s attempts %lld  started %s  ended %s\n", i + 1, name,
               json_string_value(json_object_get(rec, "status"))
                   ? json_string_value(json_object_get(rec, "status"))
                   : "?",
               (long long)json_integer_value(json_object_get(rec, "attempts")),
               mc_fmt_time(json_integer_value(json_object_get(rec, "started_ms")), t1, sizeof(t1)),
               mc_fmt_time(json_integer_value(json_object_get(rec, "ended_ms")), t2, sizeof(t2)));
        le = json_object_get(rec, "last_error");
        if (le)
            printf("      last error: %s: %s\n", json_string_value(json_object_get(le, "code")),
                   json_string_value(json_object_get(le, "message")));
        ck = json_object_get(rec, "ck");
        if (ck && json_object_size(ck) > 0) {
            cks = json_dumps(ck, JSON_COMPACT | JSON_SORT_KEYS);
            printf("      changed/observed: %s\n", cks ? cks : "?");
            free(cks);
        }
    }
}

static void print_order(const json_t *order)
{
    json_t *d = json_object_get(order, "data");
    json_t *mesh = json_object_get(d, "mesh");
    char *nodes = json_dumps(json_object_get(mesh, "control_plane_nodes"), JSON_COMPACT);
    char *sidecar = json_dumps(json_object_get(mesh, "sidecar"), JSON_COMPACT);

    if (d == NULL) {
        printf("order:    (none stored: the message was rejected; see meshctl dlq list)\n");
        return;
    }
    printf("order:    account %s  project %s  region %s\n",
           json_string_value(json_object_get(d, "account_id")),
           json_string_value(json_object_get(d, "project_id")),
           json_string_value(json_object_get(d, "region")));
    printf("mesh:     %s  istio %s  cluster %s\n", json_string_value(json_object_get(mesh, "name")),
           json_string_value(json_object_get(mesh, "istio_version")),
           json_string_value(json_object_get(mesh, "cluster_id")));
    printf("nodes:    %s\n", nodes ? nodes : "-");
    printf("sidecar:  %s\n", sidecar ? sidecar : "-");
    free(nodes);
    free(sidecar);
}

static void print_job(const mc_ctx *c, const mb_job *j, const json_t *sum, long long now)
{
    char t1[32], t2[32], t3[32], why[300];
    json_t *err = json_object_get(j->state, "error");

    printf("job:      %s  (%s)  saga %s\n", j->order_id, j->key,
           json_string_value(json_object_get(sum, "saga")));
    printf("status:   %s%s  step %s  attempt %d\n", j->status,
           json_is_true(json_object_get(j->state, "parked")) ? " (parked: effects kept)" : "",
           mc_job_step(j)[0] ? mc_job_step(j) : "-", j->attempt);
    printf("created:  %s  updated %s  next run %s\n", mc_fmt_time(j->created_ms, t1, sizeof(t1)),
           mc_fmt_time(j->updated_ms, t2, sizeof(t2)), mc_fmt_time(j->next_run_ms, t3, sizeof(t3)));
    printf("lease:    %s  fence %lld  claims %lld%s\n",
           j->lease_owner[0] ? j->lease_owner : "(none)", j->fence, j->claims,
           j->cancel_requested ? "  CANCEL REQUESTED" : "");
    if (j->lease_owner[0])
        printf("          until %s\n", mc_fmt_time(j->lease_until_ms, t1, sizeof(t1)));
    if (j->error_code[0])
        printf("error:    %s: %s\n", j->error_code, j->error_msg);
    else if (err)
        printf("error:    %s: %s\n", json_string_value(json_object_get(err, "code")),
               json_string_value(json_object_get(err, "message")));
    mc_stuck_reason(c, j, now, why, sizeof(why));
    if (why[0])
        printf("STUCK:    %s\n", why);
    if (j->traceparent[0])
        printf("trace:    %s\n", j->traceparent);
}

static void print_events(const json_t *events, const char *why_none)
{
    size_t i;
    json_t *ev;

    printf("\nstatus events:\n");
    if (events == NULL) {
        printf("  (not read: %s)\n", why_none);
        return;
    }
    json_array_foreach(events, i, ev)
    {
        json_t *d = json_object_get(ev, "data");
        json_t *er = json_object_get(d, "error");
        printf("  #%lld %s %-11s %-16s %s%s%s\n",
               (long long)json_integer_value(json_object_get(d, "seq")),
               json_string_value(json_object_get(d, "occurred_at")),
               json_string_value(json_object_get(d, "status")),
               json_string_value(json_object_get(d, "step")),
               json_string_value(json_object_get(d, "message")), er ? "  error " : "",
               er ? json_string_value(json_object_get(er, "code")) : "");
    }
    if (json_array_size(events) == 0)
        printf("  (none found on the status topic)\n");
}

/* Shows one job; a document for JSON/YAML is appended to docs instead of printed. */
static int show_one(mc_ctx *c, const char *id, const mc_out *o, int events, long tmo_s,
                    json_t *docs)
{
    long long now;
    mb_job *j = NULL;
    json_t *hist = NULL, *evs = NULL, *sum, *h;
    char why[300] = "--no-events";
    mb_error e;
    size_t i;
    int rc;

    rc = mc_get_job(c, id, &j);
    if (rc != MC_EXIT_OK)
        return rc;
    now = mc_store_now_ms(c);
    if (o->fmt == MC_FMT_NAME) {
        printf("%s\n", j->order_id);
        mb_job_free(j);
        return MC_EXIT_OK;
    }
    mb_error_clear(&e);
    if (mb_store_history(c->store, j, &hist, &e) != MB_OK) {
        mb_job_free(j);
        return mc_store_fail("reading the job's history", &e);
    }
    if (events)
        evs = mc_kafka_status_events(c, j->key, j->order_id, (int)tmo_s * 1000, why, sizeof(why));
    sum = mc_job_summary(c, j, now);
    if (docs) {
        json_array_append_new(docs, json_pack("{s:O, s:O, s:O, s:O, s:O, s:o}", "job", sum, "order",
                                              j->order ? j->order : json_null(), "state", j->state,
                                              "history", hist, "events", evs ? evs : json_null(),
                                              "events_unavailable",
                                              evs ? json_null() : json_string(why)));
    } else {
        print_job(c, j, sum, now);
        print_order(j->order);
        print_steps(mb_saga_def_find(mb_saga_defs, mb_saga_defs_count, j->saga), j->state);
        printf("\nhistory (replays, rollbacks, cancels; who asked, why):\n");
        json_array_foreach(hist, i, h)
        {
            printf("  %s\n", json_string_value(h));
        }
        if (json_array_size(hist) == 0)
            printf("  (none)\n");
        print_events(evs, why);
    }
    json_decref(sum);
    json_decref(hist);
    json_decref(evs);
    mb_job_free(j);
    return MC_EXIT_OK;
}

/* show's options. */
const struct option mc_show_opts[] = {
    MC_OUT_OPTIONS,
    {"no-events", no_argument, NULL, 'n'},
    {"events-timeout", required_argument, NULL, 't'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int mc_cmd_show(mc_ctx *c, int argc, char **argv)
{
    int events = 1, opt, rc = MC_EXIT_OK, taken;
    long tmo_s = SHOW_EVENTS_TIMEOUT_MS / 1000;
    mc_out out = {MC_FMT_TABLE, 0};
    json_t *docs = NULL;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "ho:", mc_show_opts, NULL)) != -1) {
        taken = mc_out_opt(&out, opt, optarg);
        if (taken < 0)
            return MC_EXIT_USAGE;
        if (taken)
            continue;
        switch (opt) {
        case 'n': events = 0; break;
        case 't':
            if (mc_parse_long(optarg, 1, 3600, &tmo_s) != 0)
                return mc_fail(MC_EXIT_USAGE, "--events-timeout %s: want seconds", optarg);
            break;
        case 'h': show_usage(stdout); return MC_EXIT_OK;
        default: show_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (optind >= argc)
        return mc_fail(MC_EXIT_USAGE, "show: want a JOB (see meshctl show --help)");
    if (out.fmt == MC_FMT_JSON || out.fmt == MC_FMT_YAML)
        docs = json_array();
    for (int i = optind; i < argc; i++) {
        int one;
        if (docs == NULL && out.fmt != MC_FMT_NAME && i > optind)
            printf("\n---\n\n");
        one = show_one(c, argv[i], &out, events, tmo_s, docs);
        if (one != MC_EXIT_OK && rc == MC_EXIT_OK)
            rc = one;
        if (one == MC_EXIT_CONFIG)
            break;
    }
    if (docs && json_array_size(docs) > 0 && out.fmt == MC_FMT_JSON) /* one JOB: its object */
        mc_out_doc(
            &out, json_array_size(docs) == 1 && argc - optind == 1 ? json_array_get(docs, 0) : docs,
            stdout);
    for (size_t i = 0; docs && out.fmt == MC_FMT_YAML && i < json_array_size(docs); i++) {
        if (argc - optind > 1)
            printf("---\n");
        mc_out_doc(&out, json_array_get(docs, i), stdout);
    }
    json_decref(docs);
    return rc;
}

/* ================================================================ cancel */

static void cancel_usage(FILE *f)
{
    fprintf(f,
            "usage: meshctl cancel JOB\n"
            "\n"
            "Asks the saga to stop: a worker running the job stops at the next step boundary and\n"
            "undoes what the job changed, then reports Cancelled.  An idle job is made due now so\n"
            "a worker picks the cancel up at once.  A job that already ended (Running, Failed,\n"
            "Cancelled, NeedsAttention) is refused: use `meshctl rollback JOB` to undo a Running\n"
            "mesh.\n");
}

/* cancel's options. */
const struct option mc_cancel_opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int mc_cmd_cancel(mc_ctx *c, int argc, char **argv)
{
    mb_job *j = NULL;
    int opt, rc, found = 0;
    char status[32];
    char line[400], t[32];
    mb_error e;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", mc_cancel_opts, NULL)) != -1) {
        if (opt == 'h') {
            cancel_usage(stdout);
            return MC_EXIT_OK;
        }
        cancel_usage(stderr);
        return MC_EXIT_USAGE;
    }
    if (optind + 1 != argc)
        return mc_fail(MC_EXIT_USAGE, "cancel: want exactly one JOB (see meshctl cancel --help)");
    rc = mc_get_job(c, argv[optind], &j);
    if (rc != MC_EXIT_OK)
        return rc;
    if (mc_status_terminal(j->status)) {
        rc = mc_fail(MC_EXIT_FAILED, "job %s is already %s: nothing to cancel%s", j->order_id,
                     j->status,
                     mc_status_done(j->status) ? " (to undo the mesh: meshctl rollback JOB)" : "");
        mb_job_free(j);
        return rc;
    }
    mb_error_clear(&e);
    if (mb_store_cancel(c->store, j->order_id, j->key, &found, status, sizeof(status), &e) !=
        MB_OK) {
        mb_job_free(j);
        return mc_store_fail("cancelling", &e);
    }
    if (!found) {
        mb_job_free(j);
        return mc_fail(MC_EXIT_NOTFOUND, "job vanished while cancelling");
    }
    snprintf(line, sizeof(line), "%s cancel requested by %s (status was %s)",
             mc_fmt_time(mc_now_ms(), t, sizeof(t)), c->who, status);
    mc_history_note(c, j, line);
    printf("cancel requested for %s (status %s): a worker stops it at the next step boundary "
           "and undoes its changes; follow with: meshctl watch %s\n",
           j->order_id, status, j->order_id);
    mb_job_free(j);
    return MC_EXIT_OK;
}
