"""Agreement statistics (echoforge.metrics.agreement) and the evaluation figures (echoforge.plots)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from echoforge.metrics import agreement
from echoforge.plots import bland_altman_png, regression_png, volume_curve_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_constant_offset():
    ref = np.array([40.0, 50.0, 60.0, 70.0])
    res = agreement(ref + 2.0, ref)
    assert res["n"] == 4 and res["n_dropped"] == 0
    assert res["bias"] == pytest.approx(2.0)
    assert res["sd"] == pytest.approx(0.0)
    assert res["loa_lower"] == pytest.approx(2.0) and res["loa_upper"] == pytest.approx(2.0)
    assert res["pearson_r"] == pytest.approx(1.0)
    assert res["mae"] == pytest.approx(2.0) and res["rmse"] == pytest.approx(2.0)
    assert res["r2"] == pytest.approx(1 - 16 / 500)


def test_matches_reference_formulas():
    rng = np.random.default_rng(0)
    ref = rng.uniform(20, 75, 50)
    pred = ref + rng.normal(1.5, 4.0, 50)
    res = agreement(pred, ref)
    diff = pred - ref
    assert res["bias"] == pytest.approx(diff.mean())
    assert res["sd"] == pytest.approx(np.std(diff, ddof=1))
    assert res["loa_upper"] == pytest.approx(diff.mean() + 1.96 * np.std(diff, ddof=1))
    assert res["loa_lower"] == pytest.approx(diff.mean() - 1.96 * np.std(diff, ddof=1))
    assert res["pearson_r"] == pytest.approx(stats.pearsonr(pred, ref)[0])
    assert res["mae"] == pytest.approx(np.abs(diff).mean())
    assert res["rmse"] == pytest.approx(np.sqrt(np.mean(diff ** 2)))
    assert res["r2"] == pytest.approx(1 - np.sum(diff ** 2) / np.sum((ref - ref.mean()) ** 2))


def test_pairs_with_missing_values_are_dropped():
    pred = [50.0, np.nan, 61.0, 40.0, None, 30.0]
    ref = [52.0, 55.0, np.inf, 41.0, 60.0, 33.0]
    res = agreement(pred, ref)
    assert res["n"] == 3 and res["n_dropped"] == 3
    assert res["bias"] == pytest.approx(-2.0)


def test_small_and_degenerate_samples():
    empty = agreement([], [])
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("bias", "sd", "mae", "rmse", "pearson_r"))
    one = agreement([55.0], [50.0])
    assert one["n"] == 1 and one["bias"] == 5.0 and one["mae"] == 5.0
    assert all(math.isnan(one[k]) for k in ("sd", "loa_lower", "loa_upper", "pearson_r", "r2"))
    flat = agreement([50.0, 50.0, 50.0], [40.0, 50.0, 60.0])
    assert math.isnan(flat["pearson_r"]) and flat["sd"] > 0
    assert math.isnan(agreement([40.0, 50.0], [50.0, 50.0])["r2"])
    with pytest.raises(ValueError, match="paired"):
        agreement([1.0, 2.0], [1.0])


# ----------------------------------------------------------------------------- figures
def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_bland_altman_and_regression_pngs(tmp_path):
    rng = np.random.default_rng(1)
    ref = rng.uniform(25, 70, 40)
    pred = ref + rng.normal(-1.0, 3.0, 40)
    pred[3] = np.nan
    out = bland_altman_png(pred, ref, tmp_path / "ba" / "ef_bland_altman.png", "LVEF, test set", "%")
    assert out == tmp_path / "ba" / "ef_bland_altman.png"
    assert_png(out)
    assert_png(regression_png(pred, ref, tmp_path / "ef_regression.png", "LVEF, test set", "%"))
    assert_png(regression_png([50.0], [48.0], tmp_path / "single.png", "one pair", "ml"))
    with pytest.raises(ValueError, match="paired"):
        bland_altman_png([1.0], [1.0, 2.0], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_volume_curve_png(tmp_path):
    t = np.arange(25)
    areas = 1500 - 400 * (1 - np.cos(2 * np.pi * (t - 2) / 25)) / 2
    assert_png(volume_curve_png(areas, tmp_path / "curve.png", ed=2, es=14, frame_time_ms=33.3))
    assert_png(volume_curve_png(areas / 10, tmp_path / "volumes.png", ylabel="LV volume (ml)"))
    with pytest.raises(ValueError, match="outside"):
        volume_curve_png(areas, tmp_path / "bad.png", ed=30)
    assert not (tmp_path / "bad.png").exists()
