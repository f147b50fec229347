/* mb_pace.h: how long a polled effect (a release installing) usually takes, learnt from the
 * ones this worker saw end, and so how long to wait before looking at one again. */
#ifndef MB_PACE_H
#define MB_PACE_H

#define MB_PACE_SAMPLES 15 /* the usual time is the median of the last this many */

/* One kind of effect (a step's run, or its compensation).  Zeroed = nothing learnt. */
typedef struct mb_pace {
    long long ms[MB_PACE_SAMPLES]; /* ring: first poll -> the last look that saw it under way */
    int n;                         /* samples held (<= MB_PACE_SAMPLES) */
    int next;                      /* where the next sample goes */
    long long usual;               /* median of the samples; 0 = none yet */
} mb_pace;

/* An effect of this kind ended; it was last seen under way ms after its first poll. */
void mb_pace_note(mb_pace *p, long long ms);

/* The wait before the next look at an effect of this kind under way for elapsed_ms: every
 * floor_ms (MESHBUY_POLL_MS), except that the looks before four fifths of the usual time are
 * skipped, but never past left_ms (the step's deadline, from now) less one floor_ms: a
 * release that failed is still seen failed in time.  With nothing learnt, floor_ms. */
long long mb_pace_wait(const mb_pace *p, long long elapsed_ms, long long floor_ms,
                       long long left_ms);

#endif
