/* mb_admin.c: the worker's small HTTP port: /healthz, /readyz, /metrics (Prometheus). */
#include "mb_admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "mb_log.h"
#include "mb_loop.h"

struct mb_admin {
    struct evhttp *http;
    struct mb_loop *loop;
    int port;
    double start_s; /* wall clock at start, for process_start_time_seconds */
};

static void reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
                  struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, reason, body);
}

/* Open file descriptors: the entries of /proc/self/fd (the directory's own fd aside). */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    long n = 0;

    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the fd of the walk itself */
}

/* Resident set size in bytes from /proc/self/statm (pages), -1 when unreadable. */
static double rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    int n;

    if (f == NULL)
        return -1;
    n = fscanf(f, "%lu %lu", &size, &res);
    fclose(f);
    return n == 2 ? (double)res * (double)sysconf(_SC_PAGESIZE) : -1;
}

/* The process families of the Prometheus client libraries (same names, same meaning). */
static void process_metrics(struct evbuffer *b, double start_s)
{
    struct rusage ru;
    struct rlimit rl;
    double cpu = 0, rss = rss_bytes();
    long fds = open_fds();

    if (getrusage(RUSAGE_SELF, &ru) == 0)
        cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
              (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    evbuffer_add_printf(b,
                        "# HELP process_cpu_seconds_total User and system CPU time spent.\n"
                        "# TYPE process_cpu_seconds_total counter\n"
                        "process_cpu_seconds_total %.6f\n"
                        "# HELP process_start_time_seconds Start time of the process since the "
                        "epoch.\n"
                        "# TYPE process_start_time_seconds gauge\n"
                        "process_start_time_seconds %.3f\n",
                        cpu, start_s);
    if (rss >= 0)
        evbuffer_add_printf(b,
                            "# HELP process_resident_memory_bytes Resident memory size.\n"
                            "# TYPE process_resident_memory_bytes gauge\n"
                            "process_resident_memory_bytes %.0f\n",
                            rss);
    if (fds >= 0)
        evbuffer_add_printf(b,
                            "# HELP process_open_fds Open file descriptors.\n"
                            "# TYPE process_open_fds gauge\n"
                            "process_open_fds %ld\n",
                            fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        evbuffer_add_printf(b,
                            "# HELP process_max_fds Limit of open file descriptors.\n"
                            "# TYPE process_max_fds gauge\n"
                            "process_max_fds %llu\n",
                            (unsigned long long)rl.rlim_cur);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    mb_admin *a = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *b = evbuffer_new();

    if (b == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
        evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
        evbuffer_add_printf(b, "method not allowed\n");
        reply(req, 405, "Method Not Allowed", "text/plain", b);
    } else if (path && strcmp(path, "/healthz") == 0) {
        /* Alive: the loop turns (this very reply proves it).  Never asks Redis: a stalled
         * Redis must not make a live worker look dead (/readyz reports it instead). */
        evbuffer_add_printf(b, "ok\n");
        reply(req, 200, "OK", "text/plain", b);
    } else if (path && strcmp(path, "/readyz") == 0) {
        int ready = mb_loop_ready(a->loop);
        evbuffer_add_printf(b, "%s\n", ready ? "ready" : "not ready");
        reply(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", "text/plain", b);
    } else if (path && strcmp(path, "/metrics") == 0) {
        mb_loop_metrics_text(a->loop, b);
        process_metrics(b, a->start_s);
        reply(req, 200, "OK", "text/plain; version=0.0.4", b);
    } else {
        evbuffer_add_printf(b, "not found\n");
        reply(req, 404, "Not Found", "text/plain", b);
    }
    evbuffer_free(b);
}

mb_admin *mb_admin_new(struct event_base *base, const char *addr, int port, struct mb_loop *loop,
                       char *err, size_t errlen)
{
    mb_admin *a = calloc(1, sizeof(*a));
    struct evhttp_bound_socket *bs;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (a == NULL) {
        snprintf(err, errlen, "admin: out of memory");
        return NULL;
    }
    a->loop = loop;
    a->start_s = (double)mb_loop_now_ms() / 1000.0;
    a->http = evhttp_new(base);
    if (a->http == NULL) {
        snprintf(err, errlen, "admin: evhttp_new failed");
        goto err;
    }
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(a->http, on_request, a);
    evhttp_set_timeout(a->http, 10);
    bs = evhttp_bind_socket_with_handle(a->http, addr, (ev_uint16_t)port);
    if (bs == NULL) {
        snprintf(err, errlen, "MESHBUY_HTTP_PORT: cannot listen on %s:%d", addr, port);
        goto err;
    }
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            a->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            a->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    mb_info("admin", "http on %s:%d (/healthz /readyz /metrics)", addr, a->port);
    return a;
err:
    mb_admin_free(a);
    return NULL;
}

int mb_admin_port(const mb_admin *a)
{
    return a ? a->port : 0;
}

void mb_admin_free(mb_admin *a)
{
    if (a == NULL)
        return;
    if (a->http)
        evhttp_free(a->http);
    free(a);
}
