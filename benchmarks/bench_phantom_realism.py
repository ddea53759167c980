"""How the phantom's style families compare with real echo cines, by image statistics.

For each family (a few patients, apical 4CH, 112×112 as the network sees them) and each real,
redistributable cine (the MIT files in ``tests/data/real-echo``, ``sample-data/real`` and, when
present, ``../shared/data/real-echo``; colour-Doppler pixels left out), inside the imaging sector:

* grey-level distribution: mean, 10th/50th/90th percentiles, and its distance to the real cines'
  pooled distribution (earth mover's distance on [0, 1]);
* speckle size: full width at half maximum (pixels) of the autocorrelation of the high-passed image,
  along rows (lateral) and columns (axial);
* contrast: the two Otsu classes' mean grey levels (dark = blood, bright = tissue) as a ratio in dB;
* frame-to-frame decorrelation: 1 − correlation of consecutive frames, per 20 ms;
* tracked speckle correlation at 33, 100 and 300 ms: the correlation of the high-passed tissue
  (the brightest 40 % inside the sector) with the later frame warped back by Farneback optical
  flow — how much of the speckle survives once the motion is undone, i.e. how well a tracker can
  follow it (real speckle decorrelates through out-of-plane motion, noise and compression).

    python benchmarks/bench_phantom_realism.py            # writes benchmarks/results/phantom_realism.{json,md,png}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from common import RESULTS, table, write_results  # noqa: E402

from echoforge.engine.clips import Letterbox  # noqa: E402
from echoforge.engine.propagation import PairFlows  # noqa: E402
from echoforge.io import load_video  # noqa: E402
from echoforge.phantom.families import FAMILIES, TEST_FAMILIES, make_family_patient  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE = (112, 112)
REAL_CANDIDATES = [REPO / "sample-data" / "real", REPO / "tests" / "data" / "real-echo",
                   REPO.parent / "shared" / "data" / "real-echo"]
BINS = np.linspace(0.0, 1.0, 65)
#: the redistributable real *B-mode* cines (the apical 4-chamber SonoSite cine at full and reduced size);
#: the Philips parasternal cine carries a colour-Doppler box and the other files are stills
REAL_BMODE = ("pydicom-data-1.0.0__color3d_jpeg_baseline.dcm", "pydicom-3.0.2__examples_ybr_color.dcm")


def real_cines() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """The real B-mode cines found (:data:`REAL_BMODE`) as (T×H×W frames in [0, 1], H×W sector, frame time ms)."""
    found: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for folder in REAL_CANDIDATES:
        for name in REAL_BMODE:
            path = folder / name
            if name in found or not path.exists():
                continue
            video = load_video(path)
            box = Letterbox.fit(video.shape, SIZE)
            frames = np.stack([box.forward(f.astype(np.float32)) for f in video.frames])
            sector = video.sector if video.sector is not None else np.ones(video.shape, bool)
            found[name] = (frames, box.forward(sector.astype(np.uint8), nearest=True) > 0,
                           float(video.frame_time_ms or 33.3))
    return found


def speckle_fwhm(frames: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Autocorrelation FWHM (pixels) of the high-passed frames inside ``mask``: (lateral, axial)."""
    widths = []
    for frame in frames[:: max(1, len(frames) // 8)]:
        high = frame - cv2.GaussianBlur(frame, (0, 0), 4.0)
        high = np.where(mask, high, 0.0).astype(np.float32)
        spectrum = np.abs(np.fft.fft2(high)) ** 2
        auto = np.real(np.fft.ifft2(spectrum))
        auto = np.fft.fftshift(auto / auto.flat[0])
        cy, cx = np.array(auto.shape) // 2
        row, col = auto[cy, cx:], auto[cy:, cx]
        widths.append((2 * _half_width(row), 2 * _half_width(col)))
    return tuple(float(v) for v in np.median(widths, axis=0))


def _half_width(profile: np.ndarray) -> float:
    below = np.flatnonzero(profile < 0.5)
    if not below.size:
        return float(len(profile))
    k = int(below[0])
    return float(k - 1 + (profile[k - 1] - 0.5) / (profile[k - 1] - profile[k])) if k > 0 else 0.0


TRACK_LAGS_MS = (33, 100, 300)


def tracked_correlation(frames: np.ndarray, mask: np.ndarray, frame_time_ms: float,
                        lags_ms: tuple[int, ...] = TRACK_LAGS_MS, pairs: int = 12) -> dict[int, float]:
    """Mean correlation of the high-passed tissue speckle of frame ``t`` with frame ``t + lag`` warped
    back onto it by Farneback optical flow, for each lag (ms; at least one frame), over up to
    ``pairs`` frame pairs spread through the clip. Tissue: the brightest 40 % of the sector, eroded."""
    def high(f: np.ndarray) -> np.ndarray:
        return f - cv2.GaussianBlur(f, (0, 0), 3.0)

    h, w = frames.shape[1:]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    flows = PairFlows(frames)
    out = {}
    for lag_ms in lags_ms:
        k = max(1, int(round(lag_ms / frame_time_ms)))
        if k >= len(frames):
            out[lag_ms] = float("nan")
            continue
        values = []
        for t in range(0, len(frames) - k, max(1, (len(frames) - k) // pairs)):
            a, b = frames[t].astype(np.float32), frames[t + k].astype(np.float32)
            flow = flows.between(t, t + k)  # the flow "segment the rest" uses
            back = cv2.remap(b, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR)
            tissue = mask & (a > np.percentile(a[mask], 60))
            tissue = cv2.erode(tissue.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            values.append(np.corrcoef(high(a)[tissue], high(back)[tissue])[0, 1])
        out[lag_ms] = float(np.nanmean(values))
    return out


def statistics(frames: np.ndarray, mask: np.ndarray, frame_time_ms: float) -> dict[str, float]:
    values = frames[:, mask]
    pct = np.percentile(values, [10, 50, 90])
    threshold, _ = cv2.threshold((values.ravel() * 255).astype(np.uint8)[None], 0, 255,
                                 cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = values[values * 255 <= threshold].mean()
    bright = values[values * 255 > threshold].mean()
    pairs = [np.corrcoef(frames[i][mask], frames[i + 1][mask])[0, 1] for i in range(min(len(frames) - 1, 30))]
    decorrelation = (1.0 - float(np.nanmean(pairs))) * 20.0 / frame_time_ms
    lateral, axial = speckle_fwhm(frames, mask)
    return {"mean": float(values.mean()), "p10": float(pct[0]), "p50": float(pct[1]), "p90": float(pct[2]),
            "contrast_db": float(10 * np.log10(max(bright, 1e-4) / max(dark, 1e-4))),
            "speckle_lateral_px": lateral, "speckle_axial_px": axial,
            "decorrelation_per_20ms": decorrelation,
            **{f"tracked_{lag}ms": v for lag, v in tracked_correlation(frames, mask, frame_time_ms).items()},
            "histogram": np.histogram(values, BINS)[0].astype(float) / values.size}


def emd(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's distance between two histograms over [0, 1]."""
    return float(np.abs(np.cumsum(a) - np.cumsum(b)).sum() * (BINS[1] - BINS[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=4)
    args = parser.parse_args()
    real = real_cines()
    rows, previews = [], []
    for name, (frames, mask, ft) in real.items():
        rows.append({"source": f"real: {name}", **statistics(frames, mask, ft)})
        previews.append(frames[[0, len(frames) // 2]])
    pooled = np.mean([r["histogram"] for r in rows], axis=0) if rows else None
    for family in FAMILIES:
        stats = []
        for seed in range(args.patients):
            patient = make_family_patient(seed, family)
            fps = patient.acquisition.fps
            video = patient.render("4CH", size=SIZE, fps=fps, n_frames=int(round(patient.period_s * fps)))
            stats.append(statistics(video.frames, video.sector, 1000.0 / fps))
            if seed == 0:
                previews.append(video.frames[[0, video.es or 0]])
        row = {k: float(np.mean([s[k] for s in stats])) for k in stats[0] if k != "histogram"}
        row["histogram"] = np.mean([s["histogram"] for s in stats], axis=0)
        held = " (held out)" if family in TEST_FAMILIES else ""
        rows.append({"source": f"phantom: {family}{held}", **row})
    for row in rows:
        row["emd_to_real"] = emd(row["histogram"], pooled) if pooled is not None else None
    columns = [("source", "source"), ("mean", "mean"), ("p10", "p10"), ("p50", "p50"), ("p90", "p90"),
               ("contrast_db", "contrast (dB)"), ("speckle_lateral_px", "speckle lat. (px)"),
               ("speckle_axial_px", "speckle ax. (px)"), ("decorrelation_per_20ms", "decorr./20 ms"),
               *[(f"tracked_{lag}ms", f"tracked {lag} ms") for lag in TRACK_LAGS_MS],
               ("emd_to_real", "EMD to real")]
    md = ["# Phantom style families vs real echo cines (112×112, inside the sector)", "",
          table(rows, columns), "",
          f"Real cines: {', '.join(real) or 'none found'}. EMD: earth mover's distance between grey-level "
          "histograms and the real cines' pooled histogram. Tracked: the tissue speckle's correlation with a later "
          "frame warped back by optical flow (what a tracker can follow). Preview: "
          "[phantom_realism.png](phantom_realism.png) (rows: real cines, then one patient per family, ED and ES)."]
    print("\n".join(md))
    tiles = [np.concatenate(list(p), axis=1) for p in previews]
    sheet = (np.concatenate(tiles, axis=0) * 255).clip(0, 255).astype(np.uint8)
    RESULTS.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(RESULTS / "phantom_realism.png"), cv2.resize(sheet, None, fx=2, fy=2, interpolation=cv2.INTER_AREA))
    for row in rows:
        row["histogram"] = [round(float(v), 5) for v in row["histogram"]]
    write_results("phantom_realism", {"rows": rows, "families": {k: vars(v) for k, v in FAMILIES.items()}},
                  "\n".join(md))


if __name__ == "__main__":
    main()
