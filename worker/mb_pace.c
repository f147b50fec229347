/* mb_pace.c: the usual time of a polled effect, and the wait before the next look. */
#include "mb_pace.h"

/* The first look comes at LEAD_NUM/LEAD_DEN of the usual time, not at it: the usual time is
 * a median, so an effect ending somewhat sooner is still seen soon after.  One that got much
 * faster is seen ended at that first look; it was last seen under way at its first poll, so
 * its sample is small, and once such samples are the median the looks go every floor_ms
 * again and learn the new pace.  A slower effect needs nothing: the looks go on every
 * floor_ms until it ends. */
#define LEAD_NUM 4
#define LEAD_DEN 5

void mb_pace_note(mb_pace *p, long long ms)
{
    long long v[MB_PACE_SAMPLES];

    if (ms < 0)
        ms = 0; /* a wall clock stepped back between the two workers' looks */
    p->ms[p->next] = ms;
    p->next = (p->next + 1) % MB_PACE_SAMPLES;
    if (p->n < MB_PACE_SAMPLES)
        p->n++;
    /* Insertion sort of at most 15: once per effect that ended. */
    for (int i = 0; i < p->n; i++) {
        long long x = p->ms[i];
        int k = i;

        for (; k > 0 && v[k - 1] > x; k--)
            v[k] = v[k - 1];
        v[k] = x;
    }
    /* The lower median: one slow outlier among two samples does not decide. */
    p->usual = v[(p->n - 1) / 2];
}

long long mb_pace_wait(const mb_pace *p, long long elapsed_ms, long long floor_ms,
                       long long left_ms)
{
    long long wait = p->usual * LEAD_NUM / LEAD_DEN - elapsed_ms;

    if (wait > left_ms - floor_ms)
        wait = left_ms - floor_ms; /* one sample, or a slow past, must not outlast the step */
    return p->n == 0 || wait <= floor_ms ? floor_ms : wait;
}
