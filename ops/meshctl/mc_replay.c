/* mc_replay.c: meshctl replay (one job or in bulk) and rollback: rewrite a job's saga
 * state so the workers run it again, or compensate it, in one atomic store call that
 * refuses while a worker holds the job's lease. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mb_sagadoc.h"
#include "mc.h"
#include "mc_out.h"
#include "mc_kafka.h"

/* A job that moved between our read and our write is read again, this many times. */
#define REWRITE_TRIES 3

void mc_history_note(mc_ctx *c, const mb_job *j, const char *line)
{
    mb_error e;

    mb_error_clear(&e);
    if (mb_store_history_add(c->store, j->key, j->order_id, line, &e) != MB_OK)
        fprintf(stderr, "meshctl: warning: history line not recorded: %s\n", e.msg);
}

/* ================================================================ what may be rewritten */

/* The rewrites themselves (replay from a step, roll back) are the engine's too: mb_sagadoc. */

static int parked(const mb_job *j)
{
    return json_is_true(json_object_get(j->state, "parked"));
}

/* Whether the job may be replayed; why not in why. */
static int check_replayable(const mb_job *j, int force, int dry_run, long long now, char *why,
                            size_t len)
{
    if (j->order == NULL || json_is_null(j->order)) {
        snprintf(why, len,
                 "job %s has no order (the message was rejected: %s); correct it and "
                 "redrive it: meshctl dlq list",
                 j->order_id, j->error_msg);
        return -1;
    }
    if (mc_job_leased(j, now)) {
        snprintf(why, len,
                 "a worker (%s) holds the lease of job %s until %lld ms from now: "
                 "wait, or cancel it (meshctl cancel %s)",
                 j->lease_owner, j->order_id, j->lease_until_ms - now, j->order_id);
        return -1;
    }
    if (mc_status_done(j->status) && !dry_run) {
        snprintf(why, len, "job %s is %s: nothing to replay", j->order_id, j->status);
        return -1;
    }
    if (!mc_status_terminal(j->status) && !force && !dry_run) {
        snprintf(why, len,
                 "job %s is %s, not finished: a worker will resume it; add --force "
                 "to restart it from a step anyway",
                 j->order_id, j->status);
        return -1;
    }
    return 0;
}

/* ================================================================ replay one */

typedef struct replay_opts {
    const char *from_step; /* NULL = default */
    const char *reason;    /* why, for the job's history; NULL = none given */
    int dry_run, force, fmt, quiet, yes;
} replay_opts;

/* Replays one job.  Returns an exit code; prints what it did. */
static int replay_one(mc_ctx *c, const char *id, const replay_opts *o)
{
    char why[700], line[800], t[32];
    int rc = MC_EXIT_FAILED;

    for (int tries = 0; tries < REWRITE_TRIES; tries++) {
        mb_job *j = NULL;
        const mb_saga_def *d;
        long long now = mc_store_now_ms(c);
        int from;
        json_t *state;
        mb_rewrite rw;
        mb_error e;
        mb_status s;

        rc = mc_get_job(c, id, &j);
        if (rc != MC_EXIT_OK)
            return rc;
        rc = mc_saga_of(j, &d);
        if (rc != MC_EXIT_OK) {
            mb_job_free(j);
            return rc;
        }
        from = o->from_step ? mb_saga_def_step(d, o->from_step)
                            : mb_sagadoc_default_from(d, j->state, j->status);
        if (from < 0) {
            char names[600];
            size_t len = 0;
            for (int i = 0; i < d->nsteps && len < sizeof(names); i++)
                len += (size_t)snprintf(names + len, sizeof(names) - len, "%s%s", i ? ", " : "",
                                        d->steps[i]->name);
            rc = mc_fail(MC_EXIT_USAGE, "--from-step %s: not a step of the %s saga (%s)",
                         o->from_step, d->name, names);
            mb_job_free(j);
            return rc;
        }
        if (check_replayable(j, o->force, o->dry_run, now, why, sizeof(why)) != 0 ||
            (!o->force && mb_sagadoc_check_skipped(d, j->state, from, why, sizeof(why)) != 0)) {
            mb_job_free(j);
            return mc_fail(MC_EXIT_FAILED, "replay refused: %s", why);
        }
        if (o->dry_run) {
            rc = mc_plan_show(c, j, d, from, o->fmt);
            mb_job_free(j);
            return rc;
        }
        state = mb_sagadoc_replay(d, j->state, from, c->who, j->status, now);
        snprintf(line, sizeof(line), "%s replay from %s by %s (status was %s%s)%s%s",
                 mc_fmt_time(now, t, sizeof(t)), d->steps[from]->name, c->who, j->status,
                 parked(j) ? ", parked" : "", o->reason ? ": " : "", o->reason ? o->reason : "");
        memset(&rw, 0, sizeof(rw));
        rw.order_id = j->order_id;
        rw.key = j->key;
        rw.state = state;
        rw.status = d->active;
        rw.step = d->steps[from]->name;
        rw.attempt = 0;
        rw.error_code = "";
        rw.error_msg = "";
        rw.history = line;
        rw.clear_cancel = 1;
        /* Compensation gave the name back; a replay that runs the step which gave it back
         * takes it again (refused with NameConflict if another order holds it now). */
        rw.claim_name = mb_sagadoc_claims_name(d, from);
        rw.expect_fence = j->fence;
        rw.expect_ck = j->checkpoints;
        mb_error_clear(&e);
        s = mb_store_rewrite(c->store, &rw, &e);
        json_decref(state);
        if (s == MB_PERM && strcmp(e.code, "Changed") == 0) {
            mb_job_free(j);
            continue;
        }
        if (s == MB_PERM && strcmp(e.code, "Leased") == 0) {
            mb_job_free(j);
            return mc_fail(MC_EXIT_FAILED,
                           "replay refused: %s (wait for the lease to end, or "
                           "cancel the job)",
                           e.msg);
        }
        if (s != MB_OK) {
            mb_job_free(j);
            return mc_store_fail("replay", &e);
        }
        if (!o->quiet)
            printf("replaying %s from %s (was %s): due now; follow with: meshctl watch %s\n",
                   j->order_id, d->steps[from]->name, j->status, j->order_id);
        mb_job_free(j);
        return MC_EXIT_OK;
    }
    return mc_fail(MC_EXIT_FAILED,
                   "replay of %s: the job kept changing while we wrote it; "
                   "look at it (meshctl show %s) and try again",
                   id, id);
}

/* ================================================================ bulk replay */

typedef struct bulk_ctx {
    const mc_ctx *c;
    const char *error_class; /* NULL = any */
    long limit;
    json_t *ids;
} bulk_ctx;

static int bulk_pick(void *arg, const mb_job *j)
{
    bulk_ctx *b = arg;

    if (b->error_class && strcmp(j->error_code, b->error_class) != 0)
        return 0;
    if (j->order == NULL || json_is_null(j->order))
        return 0; /* rejected messages: the DLQ's business */
    json_array_append_new(b->ids, json_pack("{s:s, s:I, s:s}", "id", j->order_id, "created",
                                            (json_int_t)j->created_ms, "error", j->error_code));
    return 0;
}

static int oldest_first(const void *a, const void *b)
{
    json_int_t x = json_integer_value(json_object_get(*(json_t *const *)a, "created"));
    json_int_t y = json_integer_value(json_object_get(*(json_t *const *)b, "created"));

    return x < y ? -1 : x > y ? 1 : 0;
}

static void sleep_ms(long long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (ms > 0 && nanosleep(&ts, &ts) != 0)
        ;
}

/* Says what a bulk replay will do and, on a terminal without --yes, asks.  0 to go on. */
static int confirm_bulk(json_t **v, size_t n, const char *status, const char *error_code,
                        double rate, const replay_opts *o)
{
    char answer[16] = "";

    printf("will replay %zu %s job(s)%s%s, oldest first, at most %.2f/s, reason: %s\n", n, status,
           error_code ? " with error " : "", error_code ? error_code : "", rate, o->reason);
    for (size_t i = 0; v && i < n; i++)
        printf("  %-36s error %s\n", json_string_value(json_object_get(v[i], "id")),
               json_string_value(json_object_get(v[i], "error")));
    if (o->yes || n == 0)
        return 0;
    if (!isatty(STDIN_FILENO)) {
        mc_fail(MC_EXIT_FAILED, "not a terminal: nothing was replayed; add --yes to confirm "
                                "(check the list first with --dry-run)");
        return -1;
    }
    printf("replay these %zu job(s)? [y/N] ", n);
    fflush(stdout);
    if (fgets(answer, sizeof(answer), stdin) == NULL ||
        (strcmp(answer, "y\n") != 0 && strcmp(answer, "yes\n") != 0)) {
        printf("nothing was replayed\n");
        return -1;
    }
    return 0;
}

static int replay_bulk(mc_ctx *c, const char *status, const char *error_class, long limit,
                       double rate, const replay_opts *o)
{
    bulk_ctx b = {c, error_class, limit, json_array()};
    mb_store *st = mc_store(c);
    size_t n, ok = 0, refused = 0;
    json_t **v;
    mb_error e;
    long long t0;

    if (st == NULL) {
        json_decref(b.ids);
        return MC_EXIT_CONFIG;
    }
    mb_error_clear(&e);
    if (mb_store_list(st, status, bulk_pick, &b, &e) != MB_OK) {
        json_decref(b.ids);
        return mc_store_fail("listing jobs", &e);
    }
    n = json_array_size(b.ids);
    v = calloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; v && i < n; i++)
        v[i] = json_array_get(b.ids, i);
    if (v)
        qsort(v, n, sizeof(*v), oldest_first);
    if (limit > 0 && n > (size_t)limit)
        n = (size_t)limit;
    if (!o->dry_run && confirm_bulk(v, n, status, error_class, rate, o) != 0) {
        free(v);
        json_decref(b.ids);
        return MC_EXIT_FAILED;
    }
    printf("%s %zu %s job(s)%s%s, oldest first, at most %.2f/s\n",
           o->dry_run ? "would replay" : "replaying", n, status, error_class ? " with error " : "",
           error_class ? error_class : "", rate);
    t0 = mc_now_ms();
    for (size_t i = 0; v && i < n; i++) {
        const char *id = json_string_value(json_object_get(v[i], "id"));
        replay_opts one = *o;
        int rc;

        /* Paced from the start, not from the previous call: a slow call does not add up. */
        sleep_ms(t0 + (long long)(1000.0 * (double)i / rate) - mc_now_ms());
        if (o->dry_run) {
            mb_job *j = NULL;
            char why[700];
            if (mc_get_job(c, id, &j) != MC_EXIT_OK)
                continue;
            const mb_saga_def *d = mb_saga_def_find(mb_saga_defs, mb_saga_defs_count, j->saga);
            if (d == NULL) {
                printf("  %-34s refused: saga \"%s\" unknown to this meshctl\n", id, j->saga);
                refused++;
            } else if (check_replayable(j, 0, 0, mc_store_now_ms(c), why, sizeof(why)) != 0) {
                printf("  %-34s refused: %s\n", id, why);
                refused++;
            } else {
                printf("  %-34s from %-16s error %s\n", id,
                       d->steps[mb_sagadoc_default_from(d, j->state, j->status)]->name,
                       j->error_code[0] ? j->error_code : "-");
                ok++;
            }
            mb_job_free(j);
            continue;
        }
        one.quiet = 1;
        rc = replay_one(c, id, &one);
        if (rc == MC_EXIT_OK) {
            printf("  %-34s replayed\n", id);
            ok++;
        } else {
            printf("  %-34s not replayed (exit %d)\n", id, rc);
            refused++;
            if (rc == MC_EXIT_CONFIG)
                break;
        }
    }
    printf("%zu %s, %zu refused or failed\n", ok, o->dry_run ? "would be replayed" : "replayed",
           refused);
    free(v);
    json_decref(b.ids);
    return refused ? MC_EXIT_FAILED : MC_EXIT_OK;
}

/* ================================================================ replay command */

static void replay_usage(FILE *f)
{
    fprintf(
        f, "usage: meshctl replay JOB [--from-step STEP] [--dry-run [-o json|yaml]] [--force]\n"
           "                          [--reason TEXT]\n"
           "       meshctl replay --status failed --reason TEXT [--error-code CODE] [--limit N]\n"
           "                      [--rate R] [--yes | --dry-run]\n"
           "\n"
           "Runs a finished job's saga again.  The workers pick it up at once (due now, fence\n"
           "bumped) at STEP with a fresh attempt count and deadline.  Steps observe before they\n"
           "act, so a step whose effect is already in place costs a read and changes nothing.\n"
           "\n"
           "Default STEP: for a parked job (MESHBUY_ON_FAILURE=park) the failed step; for a\n"
           "compensated job (Failed, Cancelled, NeedsAttention) the first step with something\n"
           "to undo (create: reserve).  A replay that would skip a step compensation undid is\n"
           "refused (--force overrides; also needed to restart an unfinished job).\n"
           "\n"
           "Refused while a worker holds the job's lease.  Recorded in the job's history as\n"
           "\"replay from STEP by $USER@host: REASON\".  A bulk replay needs --reason, prints\n"
           "the jobs it will replay and asks on a terminal (--yes confirms for scripts;\n"
           "without a terminal it is refused unless --yes).\n"
           "\n"
           "  --from-step STEP   a step of the job's saga (listed below)\n"
           "  --dry-run          print the plan and change nothing: each step that will run says,\n"
           "                     by its own read-only face, what it would change and what is\n"
           "                     already in place in the cloud (read with MESHBUY_CCE_URL,\n"
           "                     _VPC_URL, _K8S_URL, _AK, _SK; reads only)\n"
           "  -o json|yaml       the plan as JSON or YAML (with --dry-run; --json = -o json)\n"
           "  --status S         bulk: every job with this status (failed, cancelled, ...)\n"
           "  --reason TEXT      why: written to each job's history (needed in bulk)\n"
           "  --yes              bulk: do not ask\n"
           "  --error-code CODE  bulk: only jobs whose error code is CODE (see meshctl jobs;\n"
           "                     --error-class is the same)\n"
           "  --limit N          bulk: at most N jobs, oldest first\n"
           "  --rate R           bulk: at most R replays per second (default 5)\n"
           "\n"
           "steps, per saga:\n");
    for (size_t d = 0; d < mb_saga_defs_count; d++) {
        fprintf(f, "  %-8s", mb_saga_defs[d]->name);
        for (int i = 0; i < mb_saga_defs[d]->nsteps; i++)
            fprintf(f, " %s", mb_saga_defs[d]->steps[i]->name);
        fputc('\n', f);
    }
}

/* replay's options (getopt_long; also the completion's). */
const struct option mc_replay_opts[] = {
    {"from-step", required_argument, NULL, 'f'},
    {"dry-run", no_argument, NULL, 'n'},
    {"force", no_argument, NULL, 'F'},
    MC_OUT_OPTIONS,
    {"status", required_argument, NULL, 's'},
    {"error-class", required_argument, NULL, 'e'},
    {"error-code", required_argument, NULL, 'e'},
    {"reason", required_argument, NULL, 'R'},
    {"yes", no_argument, NULL, 'y'},
    {"limit", required_argument, NULL, 'l'},
    {"rate", required_argument, NULL, 'r'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int mc_cmd_replay(mc_ctx *c, int argc, char **argv)
{
    replay_opts o = {NULL, NULL, 0, 0, 0, 0, 0};
    const char *status = NULL, *error_class = NULL;
    long limit = 0;
    double rate = 5.0;
    int opt;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "ho:", mc_replay_opts, NULL)) != -1) {
        switch (opt) {
        case 'f': o.from_step = optarg; break;
        case 'n': o.dry_run = 1; break;
        case 'F': o.force = 1; break;
        case 'o':
        case MC_OUT_OPT_NOHEAD:
        case MC_OUT_OPT_JSON: {
            mc_out out = {MC_FMT_TABLE, 0};
            if (mc_out_opt(&out, opt, optarg) < 0)
                return MC_EXIT_USAGE;
            o.fmt = (int)out.fmt;
            break;
        }
        case 's':
            status = mc_status_canon(optarg);
            if (status == NULL || strcmp(status, "stuck") == 0)
                return mc_fail(MC_EXIT_USAGE,
                               "--status %s: want a job status (failed, "
                               "cancelled, needsattention, ...)",
                               optarg);
            break;
        case 'e': error_class = optarg; break;
        case 'R':
            if (optarg[0] == '\0' || strlen(optarg) > 300)
                return mc_fail(MC_EXIT_USAGE, "--reason: want a short text (1..300 characters)");
            o.reason = optarg;
            break;
        case 'y': o.yes = 1; break;
        case 'l':
            if (mc_parse_long(optarg, 1, 1000000, &limit) != 0)
                return mc_fail(MC_EXIT_USAGE, "--limit %s: want a positive number", optarg);
            break;
        case 'r':
            if (mc_parse_double(optarg, 0.01, 10000, &rate) != 0)
                return mc_fail(MC_EXIT_USAGE,
                               "--rate %s: want replays per second "
                               "(0.01..10000)",
                               optarg);
            break;
        case 'h': replay_usage(stdout); return MC_EXIT_OK;
        default: replay_usage(stderr); return MC_EXIT_USAGE;
        }
    }
    if (status) {
        if (optind != argc || o.from_step || o.force)
            return mc_fail(MC_EXIT_USAGE, "replay --status takes no JOB, --from-step or --force "
                                          "(see meshctl replay --help)");
        if (o.reason == NULL && !o.dry_run)
            return mc_fail(MC_EXIT_USAGE, "a bulk replay needs --reason TEXT (written to each "
                                          "job's history); see what it would do with --dry-run");
        if (mc_status_done(status))
            return mc_fail(MC_EXIT_USAGE, "replay --status %s: %s jobs have nothing to replay",
                           status, status);
        return replay_bulk(c, status, error_class, limit, rate, &o);
    }
    if (error_class || limit || o.yes)
        return mc_fail(MC_EXIT_USAGE, "--error-code, --limit and --yes go with --status");
    if (optind + 1 != argc)
        return mc_fail(MC_EXIT_USAGE, "replay: want one JOB, or --status for a bulk replay "
                                      "(see meshctl replay --help)");
    return replay_one(c, argv[optind], &o);
}

/* ================================================================ rollback */

static void rollback_usage(FILE *f)
{
    fprintf(f,
            "usage: meshctl rollback JOB\n"
            "\n"
            "Compensates now: the workers undo, in reverse order, every step of the job that\n"
            "started and was not already undone (create: labels restored to their prior values,\n"
            "the release deleted, a 7443 rule the job created deleted, the name released), then\n"
            "the job ends Failed with error RolledBack.  Works on Running (its saga's end),\n"
            "parked Failed and NeedsAttention jobs (an undo that gave up is tried again).\n"
            "Refused while a worker holds the lease (to stop a job that is installing: meshctl\n"
            "cancel JOB), and for a saga that keeps its effects (delete: replay it instead).\n"
            "Recorded in the job's history with who asked.\n");
}

static int rollback_once(mc_ctx *c, const char *id, int *retry)
{
    mb_job *j = NULL;
    const mb_saga_def *d = NULL;
    long long now = mc_store_now_ms(c);
    char why[700], msg[300], line[400], t[32];
    json_t *state;
    mb_rewrite rw;
    mb_error e;
    mb_status s;
    int rc, from;

    *retry = 0;
    rc = mc_get_job(c, id, &j);
    if (rc != MC_EXIT_OK)
        return rc;
    rc = mc_saga_of(j, &d);
    from = d ? mb_sagadoc_last_started(d, j->state) : -1;
    if (rc != MC_EXIT_OK) {
        /* printed */
    } else if (d->keep_effects) {
        rc = mc_fail(MC_EXIT_FAILED,
                     "rollback refused: the %s saga does not undo what it did "
                     "(job %s); replay it instead (meshctl replay %s)",
                     d->name, j->order_id, j->order_id);
    } else if (mc_job_leased(j, now)) {
        snprintf(why, sizeof(why),
                 "a worker (%s) holds the lease: to stop an installing job "
                 "use meshctl cancel %s",
                 j->lease_owner, j->order_id);
        rc = mc_fail(MC_EXIT_FAILED, "rollback refused: %s", why);
    } else if (from < 0) {
        rc = mc_fail(MC_EXIT_FAILED,
                     "rollback refused: job %s never started a step: nothing "
                     "to undo%s",
                     j->order_id,
                     mc_status_terminal(j->status) ? "" : " (to stop it: meshctl cancel JOB)");
    } else if ((strcmp(j->status, "Failed") == 0 || strcmp(j->status, "Cancelled") == 0) &&
               !parked(j)) {
        rc = mc_fail(MC_EXIT_FAILED,
                     "rollback refused: job %s is %s and was already "
                     "compensated: nothing to undo",
                     j->order_id, j->status);
    }
    if (rc != MC_EXIT_OK) {
        mb_job_free(j);
        return rc;
    }
    snprintf(msg, sizeof(msg), "rolled back by %s", c->who);
    state = mb_sagadoc_rollback(d, j->state, from, msg);
    snprintf(line, sizeof(line), "%s rollback from %s by %s (status was %s)",
             mc_fmt_time(now, t, sizeof(t)), d->steps[from]->name, c->who, j->status);
    memset(&rw, 0, sizeof(rw));
    rw.order_id = j->order_id;
    rw.key = j->key;
    rw.state = state;
    rw.status = "RollingBack";
    rw.step = d->steps[from]->name;
    rw.attempt = 0;
    rw.error_code = "RolledBack";
    rw.error_msg = msg;
    rw.history = line;
    rw.expect_fence = j->fence;
    rw.expect_ck = j->checkpoints;
    mb_error_clear(&e);
    s = mb_store_rewrite(c->store, &rw, &e);
    json_decref(state);
    if (s == MB_PERM && strcmp(e.code, "Changed") == 0)
        *retry = 1;
    else if (s == MB_PERM && strcmp(e.code, "Leased") == 0)
        rc = mc_fail(MC_EXIT_FAILED, "rollback refused: %s", e.msg);
    else if (s != MB_OK)
        rc = mc_store_fail("rollback", &e);
    else
        printf("rolling back %s from %s (was %s): follow with: meshctl watch %s\n", j->order_id,
               d->steps[from]->name, j->status, j->order_id);
    mb_job_free(j);
    return rc;
}

/* rollback's options. */
const struct option mc_rollback_opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

int mc_cmd_rollback(mc_ctx *c, int argc, char **argv)
{
    int opt, rc = MC_EXIT_FAILED, retry = 0;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", mc_rollback_opts, NULL)) != -1) {
        if (opt == 'h') {
            rollback_usage(stdout);
            return MC_EXIT_OK;
        }
        rollback_usage(stderr);
        return MC_EXIT_USAGE;
    }
    if (optind + 1 != argc)
        return mc_fail(MC_EXIT_USAGE, "rollback: want exactly one JOB (see meshctl rollback "
                                      "--help)");
    for (int i = 0; i < REWRITE_TRIES; i++) {
        rc = rollback_once(c, argv[optind], &retry);
        if (!retry)
            return rc;
    }
    return mc_fail(MC_EXIT_FAILED, "rollback: the job kept changing while we wrote it; try "
                                   "again");
}
