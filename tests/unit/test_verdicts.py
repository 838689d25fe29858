"""The regression decision (``server.verdicts.judge``) on hand-made figures, and the
webhook signature a receiver checks (``shared.contract.signatures``)."""

import random

import pytest

pytest.importorskip("fastapi")

from edgefarm.server.verdicts import Figures, judge  # noqa: E402
from edgefarm.shared.contract.signatures import SignatureError, signature_header, verify  # noqa: E402
from edgefarm.shared.contract.watch import Thresholds  # noqa: E402
from edgefarm.shared.stats.encoding import pack_flags  # noqa: E402

DEFAULTS = Thresholds()


def timed(p50: float, n: int = 40, spread: float = 0.02, seed: int = 0) -> Figures:
    rng = random.Random(seed)
    samples = sorted(p50 * (1 + rng.uniform(-spread, spread)) for _ in range(n))
    return Figures(p50_ms=samples[n // 2], samples=samples)


def test_a_significant_rise_past_the_threshold_regresses():
    found = judge(timed(10.0, seed=1), timed(12.0, seed=2), DEFAULTS)
    assert [(f.metric, f.rule) for f in found] == [("latency_p50_ms", "significance")]
    assert found[0].change == pytest.approx(20.0, abs=2.0)
    assert 0 < found[0].low < found[0].change < found[0].high


def test_a_rise_within_the_threshold_or_the_noise_does_not():
    assert judge(timed(10.0, seed=1), timed(10.3, seed=2), DEFAULTS) == []  # +3% < 5%
    noisy_base, noisy_new = timed(10.0, n=8, spread=0.5, seed=3), timed(10.0, n=8, spread=0.5, seed=4)
    noisy_new = Figures(p50_ms=noisy_base.p50_ms * 1.08, samples=noisy_new.samples)
    assert judge(noisy_base, noisy_new, DEFAULTS) == []  # +8% but not significant


def test_without_raw_times_the_plain_threshold_decides():
    found = judge(Figures(p50_ms=10.0), Figures(p50_ms=10.6), DEFAULTS)
    assert [(f.rule, f.low) for f in found] == [("threshold", None)]
    assert "plain threshold" in found[0].detail
    assert judge(Figures(p50_ms=10.0), Figures(p50_ms=10.4), DEFAULTS) == []


def accuracy(flags, order="a" * 64) -> Figures:
    per_sample = {"count": len(flags), "order_sha256": order, "top1_correct": pack_flags(flags)}
    return Figures(accuracy=sum(flags) / len(flags), accuracy_metric="top1", per_sample=per_sample)


def test_accuracy_drop_by_mcnemar_on_paired_samples():
    base = [True] * 180 + [False] * 20
    worse = [True] * 150 + [False] * 50  # 15 pp down: the 30 lost samples were right before
    found = judge(accuracy(base), accuracy(worse), DEFAULTS)
    assert [(f.metric, f.rule) for f in found] == [("accuracy", "significance")]
    assert found[0].change == pytest.approx(-15.0) and found[0].high < 0
    # one sample of 200 flips: -0.5 pp is not past -0.5, -1 pp is, but is not significant
    flipped = list(base)
    flipped[0] = flipped[1] = False
    assert judge(accuracy(base), accuracy(flipped), DEFAULTS) == []
    # other samples (another order): only the threshold can speak
    plain = judge(accuracy(base), accuracy(worse, order="b" * 64), DEFAULTS)
    assert [f.rule for f in plain] == ["threshold"]


def test_family_thresholds_and_psnr():
    loose = Thresholds(latency_pct=50.0, psnr_db=10.0)
    assert judge(timed(10.0, seed=1), timed(14.0, seed=2), loose) == []
    assert judge(Figures(psnr_db=40.0), Figures(psnr_db=35.0), loose) == []
    found = judge(Figures(psnr_db=40.0), Figures(psnr_db=35.0), DEFAULTS)
    assert [(f.metric, f.change) for f in found] == [("psnr_db", -5.0)]


def test_signature_round_trip_tamper_and_replay():
    body = b'{"event": "job.finished"}'
    header = signature_header("whsec_x", 1_000_000, body)
    assert verify("whsec_x", header, body, now=1_000_100) == 1_000_000
    for secret, sent, now in (("other", body, 1_000_100), ("whsec_x", body + b" ", 1_000_100),
                              ("whsec_x", body, 1_000_000 + 301)):
        with pytest.raises(SignatureError):
            verify(secret, header, sent, now=now)
    with pytest.raises(SignatureError):
        verify("whsec_x", "t=abc", body)


def segmentation(inter_share: float, images: int = 30, order="c" * 64) -> Figures:
    """Per-image counts of 2 classes (union 1000 px each) with ``inter_share`` of it intersected."""
    from edgefarm.shared.stats.encoding import pack_counts

    rng = random.Random(int(inter_share * 100))
    inter = [[int(1000 * min(1.0, inter_share + rng.uniform(-0.05, 0.05)))] * 2 for _ in range(images)]
    union = [[1000, 1000] for _ in range(images)]
    iou = {"classes": 2, "images": images, "intersection": pack_counts(inter), "union": pack_counts(union)}
    miou = sum(sum(r) for r in inter) / sum(sum(r) for r in union)
    return Figures(accuracy=miou, accuracy_metric="miou",
                   per_sample={"count": images, "order_sha256": order, "iou": iou})


def test_miou_drop_by_paired_bootstrap_over_images():
    found = judge(segmentation(0.80), segmentation(0.70), DEFAULTS)
    assert [(f.metric, f.rule) for f in found] == [("accuracy", "significance")]
    assert found[0].high < 0 and "bootstrap" in found[0].detail
    assert judge(segmentation(0.80), segmentation(0.799), DEFAULTS) == []
