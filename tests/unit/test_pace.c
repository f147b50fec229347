/* test_pace.c: the usual time of a polled effect and the wait before the next look. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "mb_pace.h"

#define NO_DEADLINE (24LL * 3600 * 1000) /* the step's deadline a day away */

static void nothing_learnt(void **state)
{
    mb_pace p = {0};

    (void)state;
    assert_int_equal(mb_pace_wait(&p, 0, 2000, NO_DEADLINE), 2000);
    assert_int_equal(mb_pace_wait(&p, 90000, 2000, NO_DEADLINE), 2000);
}

/* Usual 60 s: the first look at 48 s, then every POLL_MS. */
static void skips_the_early_looks(void **state)
{
    mb_pace p = {0};

    (void)state;
    mb_pace_note(&p, 60000);
    assert_int_equal(p.usual, 60000);
    assert_int_equal(mb_pace_wait(&p, 0, 2000, NO_DEADLINE), 48000);
    assert_int_equal(mb_pace_wait(&p, 40000, 2000, NO_DEADLINE), 8000);
    assert_int_equal(mb_pace_wait(&p, 46500, 2000, NO_DEADLINE),
                     2000); /* 1.5 s left: not below POLL_MS */
    assert_int_equal(mb_pace_wait(&p, 48000, 2000, NO_DEADLINE), 2000);
    assert_int_equal(mb_pace_wait(&p, 300000, 2000, NO_DEADLINE), 2000);
}

/* The skipped looks never carry the next one past the step's deadline less one POLL_MS: with
 * 10 s left, the next look in 8 s, not 48; with 3 s or less, every POLL_MS as without. */
static void not_past_the_deadline(void **state)
{
    mb_pace p = {0};

    (void)state;
    mb_pace_note(&p, 60000);
    assert_int_equal(mb_pace_wait(&p, 0, 2000, 10000), 8000);
    assert_int_equal(mb_pace_wait(&p, 0, 2000, 3000), 2000);
    assert_int_equal(mb_pace_wait(&p, 0, 2000, -5000), 2000); /* past it: as without */
    assert_int_equal(mb_pace_wait(&p, 47000, 2000, 0), 2000);
}

/* The lower median: one slow sample among two does not decide, nor 7 among 14. */
static void median_of_the_last(void **state)
{
    mb_pace p = {0};

    (void)state;
    mb_pace_note(&p, 10000);
    mb_pace_note(&p, 600000);
    assert_int_equal(p.usual, 10000);
    for (int i = 0; i < 6; i++)
        mb_pace_note(&p, 10000);
    for (int i = 0; i < 6; i++)
        mb_pace_note(&p, 600000);
    assert_int_equal(p.usual, 10000);
    assert_int_equal(p.n, 14);
    mb_pace_note(&p, 600000); /* 8 of 15 slow now */
    assert_int_equal(p.usual, 600000);
    assert_int_equal(p.n, MB_PACE_SAMPLES);
    mb_pace_note(&p, -5); /* a clock stepped back: counted as 0 */
    assert_int_equal(p.ms[0], 0);
    /* The ring forgets the oldest: 15 fresh samples of 30 s replace everything. */
    for (int i = 0; i < MB_PACE_SAMPLES; i++)
        mb_pace_note(&p, 30000);
    assert_int_equal(p.usual, 30000);
}

/* One effect of d ms polled as the worker would, its first poll at 0: when it was last seen
 * under way (what the worker learns). */
static long long poll_one(const mb_pace *p, long long d, long long floor_ms)
{
    long long t = 0, last = 0;

    while (t < d) {
        last = t;
        t += mb_pace_wait(p, t, floor_ms, NO_DEADLINE);
    }
    return last;
}

/* Effects of 60 s polled every 2 s: the looks before 48 s are skipped, and what is learnt
 * stays put (it is not fed by the pace's own waits). */
static void steady(void **state)
{
    mb_pace p = {0};

    (void)state;
    for (int i = 0; i < 50; i++)
        mb_pace_note(&p, poll_one(&p, 60000, 2000));
    assert_true(p.usual >= 58000 && p.usual < 60000);
    assert_int_equal(mb_pace_wait(&p, 0, 2000, NO_DEADLINE), p.usual * 4 / 5);
}

/* An effect that ends at once, seen through calls of 100 ms, is learnt as 0: POLL_MS paces it. */
static void at_once(void **state)
{
    mb_pace p = {0};

    (void)state;
    for (int i = 0; i < 30; i++)
        mb_pace_note(&p, 0);
    assert_int_equal(mb_pace_wait(&p, 0, 10, NO_DEADLINE), 10);
}

/* Effects that got faster (60 s -> 10 s): the first look at 48 s sees each ended, last seen
 * under way at 0; once that is the median (8 of 15), the looks go every 2 s and learn 10 s. */
static void learns_a_faster_pace(void **state)
{
    mb_pace p = {0};
    int n = 0;

    (void)state;
    for (int i = 0; i < MB_PACE_SAMPLES; i++)
        mb_pace_note(&p, poll_one(&p, 60000, 2000));
    while ((p.usual < 8000 || p.usual >= 10000) && n < 100) {
        mb_pace_note(&p, poll_one(&p, 10000, 2000));
        n++;
    }
    assert_true(n <= 2 * MB_PACE_SAMPLES);
    assert_true(p.usual >= 8000 && p.usual < 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_learnt),
        cmocka_unit_test(skips_the_early_looks),
        cmocka_unit_test(not_past_the_deadline),
        cmocka_unit_test(median_of_the_last),
        cmocka_unit_test(steady),
        cmocka_unit_test(at_once),
        cmocka_unit_test(learns_a_faster_pace),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
