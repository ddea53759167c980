"""Agreement between paired measurements (predicted vs reference EF, volumes, ...), Bland–Altman style."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np

#: Half-width of the 95 % limits of agreement, in standard deviations of the differences.
LOA_Z = 1.96

Values = Union[np.ndarray, Sequence[Optional[float]]]


def agreement(pred: Values, ref: Values) -> dict[str, Any]:
    """Bias, spread and correlation of ``pred`` against ``ref``.

    Pairs where either value is NaN (or infinite, or ``None``) are dropped first.

    Args:
        pred: ``N`` predicted values.
        ref: ``N`` reference values, paired with ``pred``.

    Returns:
        ``n`` (pairs used), ``n_dropped``; ``bias`` = mean(pred − ref); ``sd`` of the differences
        (ddof = 1); ``loa_lower``/``loa_upper`` = bias ∓ 1.96·sd; ``pearson_r``; ``mae``; ``rmse``;
        ``r2`` = 1 − Σ(ref − pred)² / Σ(ref − mean ref)², how well ``pred`` reproduces ``ref``
        (it can be negative). Values that need more pairs are NaN: everything at n = 0; ``sd``,
        the limits, ``pearson_r`` and ``r2`` at n = 1; ``pearson_r`` when either side is constant
        and ``r2`` when ``ref`` is.

    Raises:
        ValueError: ``pred`` and ``ref`` differ in length.
    """
    p = _floats(pred)
    r = _floats(ref)
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must be paired: {p.size} vs {r.size} values")
    keep = np.isfinite(p) & np.isfinite(r)
    p, r = p[keep], r[keep]
    n = int(p.size)
    nan = float("nan")
    out: dict[str, Any] = {"n": n, "n_dropped": int(keep.size - n), "bias": nan, "sd": nan, "loa_lower": nan,
                           "loa_upper": nan, "pearson_r": nan, "mae": nan, "rmse": nan, "r2": nan}
    if n == 0:
        return out
    diff = p - r
    out["bias"] = float(diff.mean())
    out["mae"] = float(np.abs(diff).mean())
    out["rmse"] = float(np.sqrt(np.mean(diff ** 2)))
    if n < 2:
        return out
    sd = float(diff.std(ddof=1))
    out.update(sd=sd, loa_lower=out["bias"] - LOA_Z * sd, loa_upper=out["bias"] + LOA_Z * sd)
    pc, rc = p - p.mean(), r - r.mean()
    denominator = float(np.sqrt(np.sum(pc ** 2) * np.sum(rc ** 2)))
    if denominator > 0:
        out["pearson_r"] = float(np.clip(np.sum(pc * rc) / denominator, -1.0, 1.0))
    total = float(np.sum(rc ** 2))
    if total > 0:
        out["r2"] = 1.0 - float(np.sum(diff ** 2)) / total
    return out


def _floats(values: Values) -> np.ndarray:
    """``values`` as a flat float64 array, ``None`` as NaN."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64).ravel()
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64).ravel()
