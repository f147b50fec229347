/* test_pace.c: the usual time of a polled effect and the wait before the next look. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "mb_pace.h"

static void nothing_learnt(void **state)
{
    mb_pace p = {0};

    (void)state;
    assert_int_equal(mb_pace_wait(&p, 0, 2000), 2000);
    assert_int_equal(mb_pace_wait(&p, 90000, 2000), 2000);
}

/* Usual 60 s: the first look at 48 s, then every POLL_MS. */
static void skips_the_early_looks(void **state)
{
    mb_pace p = {0};

    (void)state;
    mb_pace_note(&p, 60000);
    assert_int_equal(p.usual, 60000);
    assert_int_equal(mb_pace_wait(&p, 0, 2000), 48000);
    assert_int_equal(mb_pace_wait(&p, 40000, 2000), 8000);
    assert_int_equal(mb_pace_wait(&p, 46500, 2000), 2000); /* 1.5 s left: not below POLL_MS */
    assert_int_equal(mb_pace_wait(&p, 48000, 2000), 2000);
    assert_int_equal(mb_pace_wait(&p, 300000, 2000), 2000);
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

/* An effect that got faster (60 s -> 10 s): each generation is first looked at 4/5 of the
 * last usual time and seen ending there, so the usual time shrinks until it meets 10 s. */
static void learns_a_faster_pace(void **state)
{
    mb_pace p = {0};
    int generations = 0;

    (void)state;
    for (int i = 0; i < MB_PACE_SAMPLES; i++)
        mb_pace_note(&p, 60000);
    while (p.usual > 10000 && generations < 100) {
        long long first = mb_pace_wait(&p, 0, 2000);
        long long seen = first > 10000 ? first : 10000;

        for (int i = 0; i < MB_PACE_SAMPLES; i++)
            mb_pace_note(&p, seen);
        generations++;
    }
    assert_true(generations <= 9);
    assert_int_equal(p.usual, 10000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nothing_learnt),
        cmocka_unit_test(skips_the_early_looks),
        cmocka_unit_test(median_of_the_last),
        cmocka_unit_test(learns_a_faster_pace),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
