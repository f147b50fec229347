/* mb_admin.h: the worker's small HTTP port: /healthz, /readyz, /metrics (Prometheus). */
#ifndef MB_ADMIN_H
#define MB_ADMIN_H

#include <stddef.h>

struct event_base;
struct mb_loop;

typedef struct mb_admin mb_admin;

/* Listens on addr:port (port 0: the kernel picks; the bound port is logged) on base, serving
 * the loop's state (borrowed; must outlive the admin).  NULL with the reason in err. */
mb_admin *mb_admin_new(struct event_base *base, const char *addr, int port, struct mb_loop *loop,
                       char *err, size_t errlen);

/* The port actually bound. */
int mb_admin_port(const mb_admin *a);

void mb_admin_free(mb_admin *a);

#endif
