"""ECG R-waves: found in a recorded trace, and a synthetic trace for the phantom's DICOM cines.

Echo cines often carry the ECG recorded with them (DICOM Waveform Sequence). Its R-waves time
end-diastole better than the LV volume curve does, so the beats of a clip are cut at them when they
are known (:func:`~.beats.detect_beats`).

:func:`detect_r_waves` is a small Pan–Tompkins-style detector: the squared slope, integrated over
120 ms, rises above a third of its largest value once per QRS complex; a complex closer than 250 ms
to a larger one is a T wave or noise; the R-wave is the largest sample within 60 ms of the rise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

#: Sampling frequency of the synthetic ECG.
ECG_SAMPLING_HZ = 500.0
_REFRACTORY_MS = 250.0
_INTEGRATION_MS = 120.0
_SEARCH_MS = 60.0


def synthetic_ecg(r_waves_ms: Sequence[float], duration_ms: float, sampling_hz: float = ECG_SAMPLING_HZ,
                  atrial_waves: bool = True, seed: int = 0) -> np.ndarray:
    """A lead-II-like ECG (µV, float) with its R-waves at ``r_waves_ms``, over ``duration_ms``.

    Each beat is P, Q, R, S and T waves (Gaussians; the T wave later for longer beats); without
    ``atrial_waves`` (atrial fibrillation) there is no P wave but a small fibrillatory ripple. A
    slow baseline wander and white noise (from ``seed``) make it look recorded.
    """
    n = max(int(round(duration_ms * sampling_hz / 1000.0)), 1)
    t = np.arange(n) * 1000.0 / sampling_hz
    rng = np.random.default_rng(seed)
    r = np.asarray(sorted(float(v) for v in r_waves_ms), dtype=np.float64)
    rr = np.diff(r)
    typical = float(np.median(rr)) if rr.size else 800.0
    signal = np.zeros(n)
    for k, at in enumerate(r):
        after = rr[k] if k < rr.size else typical
        waves = [(-25.0, -100.0, 8.0), (0.0, 1200.0, 10.0), (25.0, -250.0, 9.0),
                 (0.16 * after + 120.0, 300.0, 0.05 * after + 10.0)]
        if atrial_waves:
            waves.append((-160.0, 150.0, 22.0))
        for offset, amplitude, width in waves:
            signal += amplitude * np.exp(-0.5 * ((t - at - offset) / width) ** 2)
    if not atrial_waves:
        signal += 40.0 * np.sin(2 * np.pi * 6.3 * t / 1000.0 + rng.uniform(0, 2 * np.pi))
    signal += 50.0 * np.sin(2 * np.pi * 0.3 * t / 1000.0 + rng.uniform(0, 2 * np.pi))
    return signal + rng.normal(0.0, 15.0, n)


def detect_r_waves(signal: np.ndarray, sampling_hz: float) -> np.ndarray:
    """R-wave times (ms from the first sample) in an ECG trace; empty for a trace without QRS complexes.

    Args:
        signal: ``N`` samples of one lead (any unit; R-waves positive).
        sampling_hz: its sampling frequency.
    """
    x = np.asarray(signal, dtype=np.float64).ravel()
    if x.size < 3 or not np.isfinite(x).all() or not sampling_hz > 0:
        return np.zeros(0)
    per_ms = sampling_hz / 1000.0
    energy = np.diff(x, prepend=x[0]) ** 2
    width = max(int(round(_INTEGRATION_MS * per_ms)), 1)
    integrated = np.convolve(energy, np.ones(width) / width, mode="same")
    if integrated.max() <= 0:
        return np.zeros(0)
    above = integrated > integrated.max() / 3.0
    rises = np.flatnonzero(above & ~np.concatenate([[False], above[:-1]]))
    search = max(int(round(_SEARCH_MS * per_ms)), 1)
    peaks: list[int] = []
    for rise in rises:
        lo, hi = max(rise - search, 0), min(rise + 2 * search, x.size)
        peak = lo + int(np.argmax(x[lo:hi]))
        if peaks and (peak - peaks[-1]) < _REFRACTORY_MS * per_ms:
            if x[peak] > x[peaks[-1]]:
                peaks[-1] = peak
            continue
        peaks.append(peak)
    return np.asarray(peaks, dtype=np.float64) / per_ms


def r_wave_frames(r_waves_ms: Optional[Sequence[float]], frame_time_ms: Optional[float],
                  n_frames: int) -> Optional[np.ndarray]:
    """R-wave positions in frames (fractional), those within the clip; ``None`` without both inputs."""
    if not r_waves_ms or not frame_time_ms:
        return None
    frames = np.asarray(r_waves_ms, dtype=np.float64) / float(frame_time_ms)
    return np.sort(frames[(frames > -0.5) & (frames < n_frames - 0.5)])
