/* mb_log.h: JSON-lines logging to stderr, one line per event, never a secret. */
#ifndef MB_LOG_H
#define MB_LOG_H

typedef enum mb_log_level {
    MB_LOG_DEBUG = 0,
    MB_LOG_INFO,
    MB_LOG_WARN,
    MB_LOG_ERROR,
    MB_LOG_OFF,
} mb_log_level;

/* Who a line is about.  Any field may be NULL; all are borrowed for the call. */
typedef struct mb_log_ctx {
    const char *order_id;
    const char *job_id;
    const char *trace_id;
} mb_log_ctx;

extern mb_log_level mb_log_min;

/* The level is checked before any formatting happens. */
#define mb_log(lvl, mod, ctx, ...)                         \
    do {                                                   \
        if ((lvl) >= mb_log_min)                           \
            mb_log_emit((lvl), (mod), (ctx), __VA_ARGS__); \
    } while (0)

#define mb_debug(mod, ...) mb_log(MB_LOG_DEBUG, mod, NULL, __VA_ARGS__)
#define mb_info(mod, ...)  mb_log(MB_LOG_INFO, mod, NULL, __VA_ARGS__)
#define mb_warn(mod, ...)  mb_log(MB_LOG_WARN, mod, NULL, __VA_ARGS__)
#define mb_error(mod, ...) mb_log(MB_LOG_ERROR, mod, NULL, __VA_ARGS__)

/* Names the program in every line and reads MESHBUY_LOG_LEVEL
 * (debug|info|warn|error|off).  Returns -1 on a bad level (the default,
 * info, stays in force). program is borrowed for the process's life. */
int mb_log_init(const char *program);

/* Parses a level name.  Returns 0, or -1 if s names none. */
int mb_log_level_parse(const char *s, mb_log_level *out);

/* Writes one line with one write(2), so lines from many processes sharing a
 * pipe do not interleave. */
void mb_log_emit(mb_log_level lvl, const char *module, const mb_log_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
