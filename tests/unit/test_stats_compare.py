"""Intervals and tests of ``edgefarm.shared.stats`` against reference implementations on
fixed data: SciPy (tests only) and published worked examples."""

import random

import pytest

from edgefarm.shared.stats import compare, proportions
from edgefarm.shared.stats.bootstrap import ImageCounts, interval, paired_difference
from edgefarm.shared.stats.shift import count_at_most, hodges_lehmann, kth_difference, thin

stats = pytest.importorskip("scipy.stats")
np = pytest.importorskip("numpy")


# ------------------------------------------------------------------ Wilson


def test_wilson_matches_the_published_worked_example():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553 to 0.3662
    ci = proportions.wilson(81, 263, 0.95)
    assert ci.low == pytest.approx(0.2553, abs=5e-5)
    assert ci.high == pytest.approx(0.3662, abs=5e-5)
    # ... and 15/148 -> 0.0624 to 0.1605
    ci = proportions.wilson(15, 148, 0.95)
    assert (round(ci.low, 4), round(ci.high, 4)) == (0.0624, 0.1605)


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (1, 1), (37, 50), (9870, 10000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy_binomtest(k, n, confidence):
    theirs = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
    ours = proportions.wilson(k, n, confidence)
    assert ours.low == pytest.approx(theirs.low, abs=1e-12)
    assert ours.high == pytest.approx(theirs.high, abs=1e-12)
    assert ours.estimate == k / n


def test_wilson_rejects_impossible_counts():
    with pytest.raises(ValueError):
        proportions.wilson(5, 4)
    with pytest.raises(ValueError):
        proportions.wilson(0, 0)


# ------------------------------------------------------------------ McNemar


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 9), (5, 5), (12, 30), (300, 250),
                                 (2000, 2150), (0, 25)])
def test_mcnemar_exact_is_scipys_two_sided_binomial_test(b, c):
    expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
    assert proportions.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("k,n", [(0, 7), (3, 7), (7, 7), (45, 100), (700, 1449)])
def test_clopper_pearson_matches_scipy(k, n):
    theirs = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    ours = proportions.clopper_pearson(k, n, 0.95)
    assert ours.low == pytest.approx(theirs.low, abs=1e-9)
    assert ours.high == pytest.approx(theirs.high, abs=1e-9)


def test_paired_accuracy_interval_agrees_with_mcnemar():
    rng = random.Random(3)
    for trial in range(40):
        n = rng.randrange(20, 400)
        base = [rng.random() < 0.7 for _ in range(n)]
        lift = rng.choice([0.0, 0.05, 0.15])
        new = [x or rng.random() < lift for x in base]
        new = [y and rng.random() > lift / 3 for y in new]
        shift = compare.accuracy_shift(base, new)
        counts = proportions.paired_counts(base, new)
        p = stats.binomtest(counts.b, counts.b + counts.c).pvalue if counts.b + counts.c else 1.0
        assert shift.p_value == pytest.approx(p, rel=1e-9)
        assert shift.estimate == pytest.approx((sum(new) - sum(base)) / n)
        significant = shift.verdict != compare.NO_DIFFERENCE
        assert significant == (p < 0.05), (trial, counts, p, shift)
        if significant:
            assert shift.verdict == ("better" if counts.c > counts.b else "worse")


# ------------------------------------------------------------------ Hodges-Lehmann


def _pairwise(base, new):
    return np.sort(np.subtract.outer(np.asarray(new), np.asarray(base)).ravel())


@pytest.mark.parametrize("n,m", [(1, 1), (7, 9), (15, 12), (20, 20), (60, 45), (400, 333)])
def test_hodges_lehmann_estimate_is_the_median_of_pairwise_differences(n, m):
    rng = np.random.default_rng(n * 1000 + m)
    base, new = rng.lognormal(0, 0.4, n), rng.lognormal(0.2, 0.4, m)
    ours = hodges_lehmann(base.tolist(), new.tolist())
    assert ours.estimate == pytest.approx(float(np.median(_pairwise(base, new))), abs=1e-12)


@pytest.mark.parametrize("n,m,method", [(8, 7, "exact"), (15, 12, "exact"), (20, 20, "exact"),
                                        (60, 45, "asymptotic"), (400, 333, "asymptotic")])
def test_hodges_lehmann_interval_inverts_scipys_mann_whitney(n, m, method):
    """Shifts inside the interval are not rejected by SciPy's test at 5%; shifts just
    outside it are."""
    rng = np.random.default_rng(n + m)
    base, new = rng.normal(10, 1, n), rng.normal(10.5, 1, m)
    ours = hodges_lehmann(base.tolist(), new.tolist(), 0.95)
    diffs = _pairwise(base, new)
    low_rank = int(np.searchsorted(diffs, ours.low))
    high_rank = int(np.searchsorted(diffs, ours.high))
    assert diffs[low_rank] == ours.low and diffs[high_rank] == ours.high

    def p_at(shift):
        return stats.mannwhitneyu(new - shift, base, alternative="two-sided",
                                  method=method).pvalue

    inside = [(diffs[low_rank] + diffs[low_rank + 1]) / 2, (diffs[high_rank - 1] + diffs[high_rank]) / 2]
    outside = [(diffs[low_rank - 1] + diffs[low_rank]) / 2, (diffs[high_rank] + diffs[high_rank + 1]) / 2]
    assert all(p_at(s) > 0.05 for s in inside)
    assert all(p_at(s) <= 0.05 for s in outside)


def test_hodges_lehmann_interval_is_none_when_samples_are_too_small():
    ours = hodges_lehmann([1.0, 2.0], [1.5, 2.5])
    assert ours.low is None and ours.high is None and ours.estimate == 0.5


def test_kth_difference_handles_ties():
    base = [1.0, 1.0, 2.0, 2.0, 2.0, 3.0]
    new = [2.0, 2.0, 3.0, 3.0, 4.0]
    diffs = sorted(y - x for x in base for y in new)
    for k in range(1, len(diffs) + 1):
        assert kth_difference(sorted(base), sorted(new), k) == diffs[k - 1]
    assert count_at_most(sorted(base), sorted(new), 0.0) == sum(d <= 0 for d in diffs)


def test_thinned_hodges_lehmann_is_fast_and_close_to_the_exact_one():
    import time
    rng = np.random.default_rng(5)
    base, new = rng.lognormal(0, 0.2, 100_000), rng.lognormal(0.01, 0.2, 100_000)
    started = time.perf_counter()
    ours = hodges_lehmann(base.tolist(), new.tolist())
    elapsed = time.perf_counter() - started
    assert "thinned" in ours.method
    assert elapsed < 1.5  # documented: well under a second on a PC
    # the exact HL estimate on a random 3,000 x 3,000 subset is close; the shift is real
    reference = float(np.median(_pairwise(base[:3000], new[:3000])))
    assert abs(ours.estimate - reference) < 0.005
    assert ours.low > 0 and ours.low < ours.estimate < ours.high
    assert thin(sorted(base.tolist()))[0] >= base.min()


# ------------------------------------------------------------------ latency verdicts


def test_latency_shift_verdicts():
    rng = np.random.default_rng(9)
    base = rng.lognormal(0, 0.1, 2000).tolist()
    same = rng.lognormal(0, 0.1, 2000).tolist()
    slower = (rng.lognormal(0, 0.1, 2000) * 1.05).tolist()
    assert compare.latency_shift(base, same).verdict == compare.NO_DIFFERENCE
    shift = compare.latency_shift(base, slower)
    assert shift.verdict == "worse" and shift.low > 0
    assert shift.relative == pytest.approx(0.05, abs=0.015)
    assert compare.latency_shift(slower, base).verdict == "better"


# ------------------------------------------------------------------ bootstrap


def _segmentation_counts(rng, images, classes, quality):
    inter, union = [], []
    for _ in range(images):
        present = rng.sample(range(classes), 3)
        i_row, u_row = [0] * classes, [0] * classes
        for c in present:
            u = rng.randrange(100, 5000)
            i_row[c], u_row[c] = int(u * min(1.0, max(0.0, rng.gauss(quality, 0.1)))), u
        inter.append(i_row)
        union.append(u_row)
    return inter, union


def test_bootstrap_estimate_matches_the_dataset_definition_and_is_reproducible():
    rng = random.Random(1)
    inter, union = _segmentation_counts(rng, 200, 21, 0.7)
    counts = ImageCounts.from_tables(inter, union)
    first = interval(counts, "miou")
    again = interval(ImageCounts.from_tables(inter, union), "miou")
    assert first == again  # seeded: the same interval every time
    i_sum = np.asarray(inter).sum(axis=0)
    u_sum = np.asarray(union).sum(axis=0)
    assert first.estimate == pytest.approx(float(np.mean(i_sum[u_sum > 0] / u_sum[u_sum > 0])))
    assert first.low < first.estimate < first.high
    pixel = interval(counts, "pixel_accuracy")
    assert pixel.estimate == pytest.approx(i_sum.sum() / ((u_sum.sum() + i_sum.sum()) / 2))
    # the percentile interval agrees with SciPy's percentile bootstrap to sampling noise
    theirs = stats.bootstrap(
        (np.arange(200),), lambda idx: _dataset_miou(inter, union, idx), n_resamples=1000,
        method="percentile", random_state=0, vectorized=False).confidence_interval
    width = first.high - first.low
    assert abs(first.low - theirs.low) < 0.25 * width
    assert abs(first.high - theirs.high) < 0.25 * width


def _dataset_miou(inter, union, images):
    rows = np.asarray(images, dtype=int)
    i_sum, u_sum = np.asarray(inter)[rows].sum(axis=0), np.asarray(union)[rows].sum(axis=0)
    present = u_sum > 0
    return float(np.mean(i_sum[present] / u_sum[present]))


def test_paired_bootstrap_separates_a_real_difference_from_none():
    rng = random.Random(2)
    inter, union = _segmentation_counts(rng, 150, 21, 0.7)
    base = ImageCounts.from_tables(inter, union)
    same = compare.iou_shift(base, ImageCounts.from_tables(inter, union))
    assert same.estimate == 0 and same.verdict == compare.NO_DIFFERENCE
    worse_inter = [[int(v * 0.9) for v in row] for row in inter]
    worse = compare.iou_shift(base, ImageCounts.from_tables(worse_inter, union))
    assert worse.verdict == "worse" and worse.high < 0
    better = paired_difference(ImageCounts.from_tables(worse_inter, union), base, "miou")
    assert better.low > 0


def test_image_counts_reject_an_intersection_above_its_union():
    with pytest.raises(ValueError):
        ImageCounts.from_tables([[5, 0]], [[4, 0]])


def test_kth_difference_matches_brute_force_on_rounded_timer_values():
    """Timer-resolution samples (many ties, float rounding) select exactly the k-th."""
    rng = random.Random(11)
    for _ in range(60):
        a = sorted(round(rng.gauss(0.0012, 0.0001), 6) for _ in range(rng.randrange(1, 200)))
        b = sorted(round(rng.gauss(0.00125, 0.0001), 6) for _ in range(rng.randrange(1, 200)))
        diffs = sorted(y - x for x in a for y in b)
        for k in (1, len(diffs) // 3 + 1, len(diffs) // 2 + 1, len(diffs)):
            assert kth_difference(a, b, k) == pytest.approx(diffs[k - 1], abs=1e-15)


def test_heavily_tied_samples_give_an_exact_zero_shift():
    base = [0.001] * 50_000 + [0.002] * 50_000
    new = [0.001] * 60_000 + [0.003] * 40_000
    shift = compare.latency_shift(base, new)
    assert shift.estimate == 0.0 and shift.verdict == compare.NO_DIFFERENCE
