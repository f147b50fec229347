/* mc.h: what the meshctl commands share: exit codes, the context, job views, helpers. */
#ifndef MC_H
#define MC_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "mb_conf.h"
#include "mb_err.h"
#include "mb_sagadef.h"
#include "mb_store.h"

/* Exit codes: documented in `meshctl --help` and OPERATING.md; scripts branch on them. */
enum {
    MC_EXIT_OK = 0,
    MC_EXIT_FAILED = 1,   /* the operation failed or was refused (leased job, bad state) */
    MC_EXIT_USAGE = 2,    /* bad command line: nothing was done */
    MC_EXIT_CONFIG = 3,   /* bad environment, or Redis / Kafka / cloud unreachable */
    MC_EXIT_NOTFOUND = 4, /* no such job / DLQ record */
};

typedef struct mc_ctx {
    mb_conf *conf;   /* owned by main */
    mb_store *store; /* opened on first use (mc_store) */
    char who[200];   /* "$USER@host": who asked, for history lines */
} mc_ctx;

/* The store, connected and pinged; prints why not and returns NULL (exit MC_EXIT_CONFIG).
 * Borrowed from c. */
mb_store *mc_store(mc_ctx *c);

/* Wall clock, ms. */
long long mc_now_ms(void);

/* Redis's clock (mb_store_time_ms), ms: lease ends and due times are on it, so compare
 * jobs' times with this.  The local clock if Redis cannot tell. */
long long mc_store_now_ms(mc_ctx *c);

/* Prints "meshctl: <msg>" on stderr, with a newline.  Returns code. */
int mc_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Maps a failed store call to an exit code after printing its error with context. */
int mc_store_fail(const char *what, const mb_error *e);

/* "45s", "12m", "3h", "2d" into buf (len >= 16).  Returns buf. */
char *mc_fmt_age(long long ms, char *buf, size_t len);

/* RFC 3339 UTC of epoch ms, or "-" for 0.  Returns buf (len >= 25). */
char *mc_fmt_time(long long ms, char *buf, size_t len);

/* Parses "90", "90s", "15m", "2h", "1d" into ms.  0 or -1. */
int mc_parse_duration(const char *s, long long *ms);

/* Parses a positive integer (or a decimal for rates) strictly.  0 or -1. */
int mc_parse_long(const char *s, long min, long max, long *out);
int mc_parse_double(const char *s, double min, double max, double *out);

/* Canonical job status for a user's spelling ("failed" -> "Failed"), or NULL if none.
 * "stuck" is accepted and returned as is (a view, not a stored status).  Static. */
const char *mc_status_canon(const char *s);

/* 1 for a saga's done word (Running), Failed, Cancelled, NeedsAttention: no worker will
 * touch the job again. */
int mc_status_terminal(const char *status);

/* 1 for a saga's done word (Running for create): the saga reached its end. */
int mc_status_done(const char *status);

/* The saga definition of the job (its record's saga field; none = create) into *out
 * (static).  Prints why and returns MC_EXIT_FAILED when this meshctl does not know it. */
int mc_saga_of(const mb_job *j, const mb_saga_def **out);

/* Why a job is stuck ("" when it is not) into buf: a step past its deadline, a lease
 * whose holder stopped renewing, or a due job nobody claimed.  now in ms. */
const char *mc_stuck_reason(const mc_ctx *c, const mb_job *j, long long now, char *buf, size_t len);

/* The step to show for the job: where the saga stopped for a Failed, Cancelled or
 * NeedsAttention job (the failed or cancelled step), else its current step.  Borrowed. */
const char *mc_job_step(const mb_job *j);

/* The job as JSON, one shape for every command (new reference): order_id, mesh, account,
 * cluster, saga, status, step (where it stopped, for an ended job), step_index, step_total,
 * attempts, parked, created_ms/created, updated_ms/updated, age_ms, next_run_ms/next_run,
 * error_code, error_msg, lease_owner, lease_until_ms/lease_until, fence, claims,
 * cancel_requested, stuck, stuck_reason.  Numbers are numbers, times RFC 3339 beside the
 * epoch ms, null for absent. */
json_t *mc_job_summary(const mc_ctx *c, const mb_job *j, long long now);

/* 1 if a worker holds the job's lease now. */
int mc_job_leased(const mb_job *j, long long now);

/* Fetches the job of id; prints a not-found line and returns MC_EXIT_NOTFOUND when there
 * is none.  *out is new (mb_job_free). */
int mc_get_job(mc_ctx *c, const char *id, mb_job **out);

/* Adds a history line to the job (best effort: prints a warning when it cannot). */
void mc_history_note(mc_ctx *c, const mb_job *j, const char *line);

/* replay --dry-run: prints (fmt: an mc_fmt of mc_out.h; json and yaml as documents) the plan of a replay of j (saga d) from step index `from`: each
 * step that would run says through its read-only face what it would change and what is
 * in place in the cloud.  Reads only.  Returns an exit code. */
int mc_plan_show(mc_ctx *c, const mb_job *j, const mb_saga_def *d, int from, int fmt);

/* dlq redrive --edit: the message to send from the file's n bytes in buf (taken over, NUL
 * after the n bytes): a full envelope as is, a data object (no "specversion") wrapped in a
 * fresh buy envelope.  New string with its length in len, or NULL with why (out of memory).
 * Pure: no store, no Kafka. */
char *mc_edit_order(char *buf, size_t n, size_t *len, char *why, size_t whylen);

/* Commands: each parses its own options from argv[0] = command name, with its getopt_long
 * table mc_<command>_opts (the completion script is generated from the same tables). */
int mc_cmd_jobs(mc_ctx *c, int argc, char **argv);
int mc_cmd_show(mc_ctx *c, int argc, char **argv);
int mc_cmd_cancel(mc_ctx *c, int argc, char **argv);
int mc_cmd_replay(mc_ctx *c, int argc, char **argv);
int mc_cmd_rollback(mc_ctx *c, int argc, char **argv);
int mc_cmd_dlq(mc_ctx *c, int argc, char **argv);
int mc_cmd_watch(mc_ctx *c, int argc, char **argv);
int mc_cmd_workers(mc_ctx *c, int argc, char **argv);
int mc_cmd_outbox(mc_ctx *c, int argc, char **argv);
int mc_cmd_completion(mc_ctx *c, int argc, char **argv);

extern const struct option mc_jobs_opts[], mc_show_opts[], mc_cancel_opts[], mc_replay_opts[],
    mc_rollback_opts[], mc_dlq_opts[], mc_watch_opts[], mc_workers_opts[], mc_outbox_opts[],
    mc_completion_opts[];

/* What a command's operands are, for completion. */
typedef enum mc_operand {
    MC_OPERAND_NONE,
    MC_OPERAND_JOB,    /* order ids (completed from `meshctl jobs -o name`) */
    MC_OPERAND_WORKER, /* worker ids (`meshctl workers -o name`) */
} mc_operand;

/* The one command table: main dispatches from it and prints `meshctl --help` from it, and
 * `meshctl completion bash` generates its script from it and the option tables. */
typedef struct mc_command {
    const char *name;
    int (*fn)(mc_ctx *c, int argc, char **argv);
    const struct option *opts; /* its getopt_long table */
    const char *const *subs;   /* its sub-commands (NULL-terminated), or NULL */
    mc_operand operand;
    int no_store;     /* needs no configuration (completion) */
    const char *help; /* its lines in `meshctl --help`, after "  <name> " */
} mc_command;

extern const mc_command mc_commands[];
extern const size_t mc_commands_count;

/* The words --status takes (store statuses, the sagas' words, "stuck"), NULL-terminated,
 * into out (at most max - 1).  Static strings. */
void mc_status_words(const char **out, size_t max);

#endif
