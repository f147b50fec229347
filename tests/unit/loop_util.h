/* loop_util.h: helpers the unit tests that drive a libevent loop share (header only). */
#ifndef LOOP_UTIL_H
#define LOOP_UTIL_H

#include <event2/event.h>
#include <sys/time.h>

static inline long now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return tv.tv_sec * 1000L + tv.tv_usec / 1000;
}

static inline void loop_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *count reaches want or limit_ms passes; a 20 ms tick
 * keeps EVLOOP_ONCE from blocking past the limit. */
static inline void run_until(struct event_base *base, const int *count, int want, long limit_ms)
{
    struct timeval tv = {0, 20000};
    struct event *t = event_new(base, -1, EV_PERSIST, loop_tick, NULL);
    long end = now_ms() + limit_ms;
    event_add(t, &tv);
    while (*count < want && now_ms() < end)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}

#endif
