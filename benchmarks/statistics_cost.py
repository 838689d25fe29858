"""What the server's statistics cost on large results (pure Python, one core): the
Hodges-Lehmann shift of two 100,000-sample latency sets, the mIoU bootstrap interval and the
paired bootstrap over 1,449 VOC-sized images (21 classes, 3 present per image), McNemar's
exact test with its interval on 50,000 paired samples, and the order-statistic intervals of
p50/p90/p99 of 100,000 samples. Each is computed once per result or pair and then cached by
the server (``edgefarm.server.statistics``).

Run: ``.venv/bin/python benchmarks/statistics_cost.py``.
"""

import random
import statistics
import time

from edgefarm.shared.stats import accuracy_shift, latency_shift, quantile_ci
from edgefarm.shared.stats.bootstrap import ImageCounts, interval, paired_difference


def timed(repeat, call):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    rng = random.Random(1)
    base = [rng.lognormvariate(0, 0.3) for _ in range(100_000)]
    new = [rng.lognormvariate(0.01, 0.3) for _ in range(100_000)]
    inter, union = [], []
    for _ in range(1449):
        i_row, u_row = [0] * 21, [0] * 21
        for c in [0] + rng.sample(range(1, 21), 2):
            u = rng.randrange(500, 50_000)
            u_row[c], i_row[c] = u, int(u * rng.uniform(0.5, 0.9))
        inter.append(i_row)
        union.append(u_row)
    counts = ImageCounts.from_tables(inter, union)
    flags_a = [rng.random() < 0.8 for _ in range(50_000)]
    flags_b = [f if rng.random() < 0.97 else not f for f in flags_a]
    rows = [
        ("latency shift, 100,000 x 100,000 samples", lambda: latency_shift(base, new)),
        ("p50/p90/p99 intervals, 100,000 samples",
         lambda: [quantile_ci(base, q) for q in (0.5, 0.9, 0.99)]),
        ("mIoU bootstrap interval, 1,449 images", lambda: interval(counts, "miou")),
        ("paired mIoU bootstrap, 1,449 images", lambda: paired_difference(counts, counts, "miou")),
        ("McNemar exact + interval, 50,000 samples", lambda: accuracy_shift(flags_a, flags_b)),
    ]
    print("| computation | median of 3 |\n| --- | --- |")
    for name, call in rows:
        print(f"| {name} | {timed(3, call) * 1000:.0f} ms |")


if __name__ == "__main__":
    main()
