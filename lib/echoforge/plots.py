"""Evaluation figures as PNG files: Bland–Altman, regression, LV area/volume over a clip (every beat marked).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, so importing this module never
changes the backend of an interactive session) and written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from echoforge.core.agreement import agreement
from echoforge.io.atomic import atomic_path

_DPI = 120


def bland_altman_png(pred: Sequence[float], ref: Sequence[float], path: str | os.PathLike[str],
                     title: str = "Bland–Altman", unit: str = "%") -> Path:
    """Differences (pred − ref) against means, with the bias and 95 % limits of agreement.

    Args:
        pred, ref: ``N`` paired values; pairs with a NaN are left out (the count is shown).
        path: the PNG to write.
        title: figure title.
        unit: unit of the values, shown on the axes (e.g. ``"%"`` for EF, ``"ml"``).

    Returns:
        ``path``.
    """
    p, r, dropped = _paired(pred, ref)
    stats = agreement(p, r)
    fig, ax = _figure()
    mean, diff = (p + r) / 2, p - r
    ax.scatter(mean, diff, s=22, alpha=0.75, color="tab:blue", edgecolors="none", label=f"n = {stats['n']}")
    if stats["n"]:
        ax.axhline(stats["bias"], color="tab:red", lw=1.5, label=f"bias {stats['bias']:+.2f} {unit}")
    if np.isfinite(stats["sd"]):
        for key in ("loa_upper", "loa_lower"):
            ax.axhline(stats[key], color="tab:red", lw=1, ls="--")
        ax.plot([], [], color="tab:red", lw=1, ls="--",
                label=f"95% LoA [{stats['loa_lower']:.2f}, {stats['loa_upper']:.2f}] {unit}")
    ax.axhline(0.0, color="0.4", lw=0.8)
    ax.set_xlabel(f"mean of prediction and reference ({unit})")
    ax.set_ylabel(f"prediction − reference ({unit})")
    _finish(ax, title, dropped)
    return _save(fig, path)


def regression_png(pred: Sequence[float], ref: Sequence[float], path: str | os.PathLike[str],
                   title: str = "Prediction vs reference", unit: str = "%") -> Path:
    """Scatter of pred against ref with the identity line, the least-squares fit and Pearson r.

    Args and return value as :func:`bland_altman_png`.
    """
    p, r, dropped = _paired(pred, ref)
    stats = agreement(p, r)
    fig, ax = _figure()
    r_text = f"r = {stats['pearson_r']:.3f}" if np.isfinite(stats["pearson_r"]) else "r undefined"
    ax.scatter(r, p, s=22, alpha=0.75, color="tab:blue", edgecolors="none", label=f"n = {stats['n']}, {r_text}")
    if r.size:
        lo, hi = float(min(r.min(), p.min())), float(max(r.max(), p.max()))
        pad = 0.05 * (hi - lo) or 1.0
        lo, hi = lo - pad, hi + pad
        ax.plot([lo, hi], [lo, hi], color="0.4", lw=1, ls="--", label="identity")
        if r.size >= 2 and np.ptp(r) > 0:
            slope, intercept = np.polyfit(r, p, 1)
            ax.plot([lo, hi], [slope * lo + intercept, slope * hi + intercept], color="tab:red", lw=1.5,
                    label=f"fit: y = {slope:.2f}x {intercept:+.2f}")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(f"reference ({unit})")
    ax.set_ylabel(f"prediction ({unit})")
    _finish(ax, title, dropped)
    return _save(fig, path)


def volume_curve_png(values: Sequence[float], path: str | os.PathLike[str], ed: int | None = None,
                     es: int | None = None, frame_time_ms: float | None = None, ylabel: str = "LV area (mm²)",
                     title: str = "LV over the clip", beats: Sequence[dict] | None = None,
                     r_waves_ms: Sequence[float] | None = None) -> Path:
    """LV area or volume on every frame, with the ED and ES frames marked (of every beat when given).

    Args:
        values: ``T`` areas or volumes (NaN frames are left as gaps).
        path: the PNG to write.
        ed, es: frames to mark, if known (used when ``beats`` is not given).
        frame_time_ms: time between frames; the x axis is in ms when given, in frames otherwise.
        ylabel: y-axis label with its unit, e.g. ``"LV volume (ml)"``.
        title: figure title.
        beats: per-beat results (``ed``, ``es``, ``ef``, ``included``, ``flags``; the ``beats`` of
            :func:`echoforge.core.clip.report_measurements`): each beat's ED and ES are marked, its
            span shaded and its EF written over it (greyed, with the reason, when left out of the mean).
        r_waves_ms: ECG R-wave times from the first frame, drawn as ticks along the bottom.

    Returns:
        ``path``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("no values to plot")
    step = frame_time_ms or 1.0
    x = np.arange(v.size) * step
    fig, ax = _figure(wide=True)
    ax.plot(x, v, color="tab:blue", lw=1.8, marker="o", ms=3, zorder=2)
    marks = [(b["ed"], b["es"], b) for b in beats] if beats else [(ed, es, None)]
    finite = v[np.isfinite(v)]
    top = float(finite.max()) if finite.size else 1.0
    spread = float(np.ptp(finite)) if finite.size else 1.0
    for k, (ed_frame, es_frame, beat) in enumerate(marks):
        for index, name, color, marker in ((ed_frame, "ED", "tab:red", "^"), (es_frame, "ES", "tab:green", "v")):
            if index is None:
                continue
            if not 0 <= index < v.size:
                raise ValueError(f"{name} frame {index} is outside the {v.size} frames")
            label = f"{name}: frame {index} ({v[index]:.1f})" if beat is None else (name if k == 0 else None)
            ax.plot(x[index], v[index], marker, color=color, ms=8, label=label, zorder=3)
            if beat is None:
                ax.axvline(x[index], color=color, lw=1, ls="--")
        if beat is None:
            continue
        end = beat.get("next_ed") if beat.get("next_ed") is not None else es_frame
        ax.axvspan(x[ed_frame] - step / 2, x[end] + step / 2, color="tab:blue" if k % 2 else "tab:purple",
                   alpha=0.07, lw=0, zorder=0)
        ef = beat.get("ef")
        text = f"EF {ef:.0f}%" if ef is not None and np.isfinite(ef) else "EF –"
        if not beat.get("included", True):
            codes = ", ".join(f["code"].replace("_", " ") for f in beat.get("flags", []))
            text += f"\n(left out: {codes})" if codes else "\n(left out)"
        ax.text((x[ed_frame] + x[es_frame]) / 2, top + 0.04 * spread, text, ha="center", va="bottom", fontsize=8.5,
                color="black" if beat.get("included", True) else "0.5")
    if beats:
        ax.set_ylim(top=top + 0.28 * spread)
    if r_waves_ms:
        low = float(finite.min()) if finite.size else 0.0
        for t in r_waves_ms:
            position = t if frame_time_ms else t / step
            ax.plot([position, position], [low - 0.06 * spread, low - 0.02 * spread], color="0.3", lw=1.2)
        ax.plot([], [], color="0.3", lw=1.2, label="ECG R-wave")
    ax.set_xlabel("time (ms)" if frame_time_ms else "frame")
    ax.set_ylabel(ylabel)
    _finish(ax, title, 0)
    return _save(fig, path)


def _paired(pred: Sequence[float], ref: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """The finite pairs of ``pred`` and ``ref`` and how many pairs were left out."""
    p = np.asarray(pred, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    if p.shape != r.shape:
        raise ValueError(f"pred and ref must be paired: {p.size} vs {r.size} values")
    keep = np.isfinite(p) & np.isfinite(r)
    return p[keep], r[keep], int(keep.size - keep.sum())


def _figure(wide: bool = False) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(7.5, 4.2) if wide else (5.6, 5.0), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _finish(ax: Axes, title: str, dropped: int) -> None:
    note = f"\n({dropped} pair{'s' if dropped > 1 else ''} with a missing value left out)" if dropped else ""
    ax.set_title(title + note, fontsize=11)
    ax.grid(True, alpha=0.35)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8.5, loc="best", framealpha=0.85)
    ax.figure.tight_layout()


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return Path(path)
