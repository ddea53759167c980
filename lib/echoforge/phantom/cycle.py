"""The cardiac cycle of the phantom: LV volume curve, left-atrial filling and valve opening.

Time is expressed as the *phase* of the cycle, a fraction in [0, 1) with phase 0 at end-diastole
(ED, the start of systole). One cycle is::

    0 ── isovolumic ── ejection ── ES ── isovolumic ── rapid filling ── diastasis ── atrial ── 1 (= ED)
         contraction                      relaxation      (E wave)                   kick (A wave)

All curves are periodic and continuous, so a clip may start at any phase and span several beats.

A clip of several *different* beats (heart-rate variability, beat-to-beat EF variation, an
irregular rhythm like atrial fibrillation) is a :class:`BeatSequence`: one cycle per beat, timed
by its R-wave.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.special import betainc


@dataclass(frozen=True)
class CardiacCycle:
    """Timing of one heart beat, as fractions of the cycle.

    Attributes:
        heart_rate_bpm: beats per minute.
        ejection_start: end of isovolumic contraction (the LV volume starts to fall).
        es: end-systole, the end of ejection (smallest LV volume, typically 0.33-0.40).
        filling_start: end of isovolumic relaxation (the mitral valve opens).
        diastasis_start: end of rapid filling (E wave).
        atrial_start: start of the atrial contraction (A wave), which ends at phase 1.
        early_filling: fraction of the stroke volume refilled during rapid filling.
        diastasis_filling: fraction refilled slowly during diastasis; the atrial kick brings the rest.
    """

    heart_rate_bpm: float
    ejection_start: float
    es: float
    filling_start: float
    diastasis_start: float
    atrial_start: float
    early_filling: float
    diastasis_filling: float

    @property
    def period_s(self) -> float:
        return 60.0 / self.heart_rate_bpm

    @classmethod
    def sample(cls, rng: np.random.Generator, ef_percent: float) -> CardiacCycle:
        """A plausible cycle: 50-110 bpm, systole lengthening (as a fraction) at high heart rates.

        A low EF goes with impaired relaxation: less early filling and a larger atrial share.
        """
        bpm = float(rng.uniform(50.0, 110.0))
        es_offset = float(rng.uniform(-0.015, 0.015))
        relaxation = np.clip((ef_percent - 15.0) / 45.0, 0.0, 1.0)  # 0 = stiff, 1 = normal
        early = float(rng.uniform(0.45, 0.6) + 0.2 * relaxation)
        return cls._timed(bpm, es_offset, early, float(rng.uniform(0.03, 0.08)))

    @classmethod
    def _timed(cls, bpm: float, es_offset: float, early: float, diastasis: float) -> CardiacCycle:
        """The cycle at ``bpm``: the isovolumic periods, the filling waves and the atrial kick last about
        as long in seconds at any rate, so their fractions of the cycle grow with it."""
        period = 60.0 / bpm
        ejection_start = float(np.clip(0.045 / period, 0.03, 0.07))
        es = float(0.33 + 0.0009 * (bpm - 50.0) + es_offset)
        filling_start = es + float(np.clip(0.075 / period, 0.045, 0.11))
        diastole = 1.0 - filling_start
        atrial = min(0.12 / period, 0.35 * diastole)
        rapid = min(0.16 / period, 0.45 * diastole)
        return cls(heart_rate_bpm=bpm, ejection_start=ejection_start, es=es, filling_start=filling_start,
                   diastasis_start=filling_start + rapid, atrial_start=1.0 - atrial,
                   early_filling=early, diastasis_filling=diastasis)

    def at_heart_rate(self, bpm: float) -> CardiacCycle:
        """The same heart beating at ``bpm``: the timing rescaled as :meth:`sample` makes it, the filling kept."""
        es_offset = self.es - 0.33 - 0.0009 * (self.heart_rate_bpm - 50.0)
        return self._timed(float(bpm), es_offset, self.early_filling, self.diastasis_filling)

    def without_atrial_kick(self) -> CardiacCycle:
        """The cycle in atrial fibrillation: no atrial contraction; the late filling is passive (diastasis),
        but for 2 % of the stroke volume that keeps the atrial emptying curve continuous."""
        return dataclasses.replace(self, diastasis_filling=0.98 - self.early_filling)

    def lv_volume_fraction(self, phase: np.ndarray | float) -> np.ndarray:
        """``(V - ESV) / (EDV - ESV)``: 1 at ED, 0 at ES; same shape as ``phase``.

        Ejection flow peaks in its first third; the E wave is early and steep; the volume is flat
        during the isovolumic periods, so ED and ES are plateaus a frame can land on.
        """
        p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
        ejected = _ramp(p, self.ejection_start, self.es, 2.0, 2.6)
        early = _ramp(p, self.filling_start, self.diastasis_start, 1.6, 2.6)
        slow = _ramp(p, self.diastasis_start, self.atrial_start, 1.0, 1.0)
        kick = _ramp(p, self.atrial_start, 1.0, 2.0, 2.0)
        late = 1.0 - self.early_filling - self.diastasis_filling
        refilled = self.early_filling * early + self.diastasis_filling * slow + late * kick
        return np.where(p < self.es, 1.0 - ejected, refilled)

    def la_filling(self, phase: np.ndarray | float) -> np.ndarray:
        """Left-atrial filling in [0, 1]: 0 at ED (just after the atrial kick), 1 when the mitral valve
        opens (reservoir phase), then emptying while the LV fills (conduit and booster phases)."""
        p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
        reservoir = 0.5 - 0.5 * np.cos(np.pi * np.clip(p / self.filling_start, 0.0, 1.0))
        refilled = self.lv_volume_fraction(p)
        passive = self.early_filling + self.diastasis_filling
        conduit = 1.0 - 0.55 * refilled / passive
        booster = 0.45 * (1.0 - refilled) / (1.0 - passive)
        emptying = np.where(p < self.atrial_start, conduit, booster)
        return np.where(p < self.filling_start, reservoir, emptying)

    def valve_opening(self, phase: np.ndarray | float) -> np.ndarray:
        """Opening of the atrioventricular valves in [0, 1] (0 closed): shut in systole, wide open in the
        E wave, half closing in diastasis, open again with the atrial kick, shut at ED."""
        p = np.mod(np.asarray(phase, dtype=np.float64), 1.0)
        rapid = self.diastasis_start - self.filling_start
        atrial = 1.0 - self.atrial_start
        knots = [0.0, self.filling_start, self.filling_start + 0.3 * rapid, self.diastasis_start,
                 self.atrial_start, self.atrial_start + 0.4 * atrial, 0.97, 1.0]
        values = [0.0, 0.0, 1.0, 0.55, 0.35, 0.85, 0.0, 0.0]
        return np.interp(p, knots, values)


def _ramp(phase: np.ndarray, start: float, end: float, a: float, b: float) -> np.ndarray:
    """0 before ``start``, 1 after ``end``, a regularised incomplete beta ``I(a, b)`` in between
    (its derivative, the flow, peaks at ``(a - 1) / (a + b - 2)`` of the interval)."""
    s = np.clip((phase - start) / (end - start), 0.0, 1.0)
    return betainc(a, b, s)


@dataclass(frozen=True)
class BeatSequence:
    """Consecutive beats of one heart: their R-wave times, cycles and ejection fractions.

    Beat ``k`` starts at ``starts_s[k]`` (its R-wave, end-diastole, phase 0) and lasts ``periods_s[k]``;
    ``cycles[k]`` is its :class:`CardiacCycle` (at its own rate) and ``ef_percent[k]`` its EF. The
    end-diastolic volume is the same for every beat; the stroke volume varies.

    Attributes:
        starts_s, periods_s, ef_percent: per beat.
        cycles: per beat.
        irregular: drawn as an irregular rhythm (atrial fibrillation: no atrial kick).
    """

    starts_s: tuple[float, ...]
    periods_s: tuple[float, ...]
    ef_percent: tuple[float, ...]
    cycles: tuple[CardiacCycle, ...]
    irregular: bool = False

    @property
    def n_beats(self) -> int:
        return len(self.starts_s)

    @property
    def duration_s(self) -> float:
        return float(self.starts_s[-1] + self.periods_s[-1] - self.starts_s[0])

    def locate(self, times_s: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """The beat index and phase in it of each time (s, same clock as ``starts_s``; times before
        the first beat or after the last are placed in them, periodically)."""
        t = np.atleast_1d(np.asarray(times_s, dtype=np.float64))
        starts = np.asarray(self.starts_s)
        beat = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
        phase = (t - starts[beat]) / np.asarray(self.periods_s)[beat]
        return beat, phase

    @classmethod
    def sample(cls, rng: np.random.Generator, cycle: CardiacCycle, ef_percent: float, n_beats: int,
               irregular: bool = False) -> BeatSequence:
        """``n_beats`` beats around ``cycle`` and ``ef_percent``.

        Sinus rhythm: the RR interval follows breathing (a 4-s sinusoid of ±3 %) plus 1 % jitter, and
        the EF varies by about 1.5 points from beat to beat. Irregular (atrial fibrillation): RR
        intervals drawn independently within ±40 % of the mean (and redrawn until their normalised
        RMSSD exceeds 0.2, over all beats and over all but the first and last), no atrial kick, and each EF follows the filling time the previous
        interval allowed (Frank–Starling), plus 2 points of noise.
        """
        if n_beats < 1:
            raise ValueError("a beat sequence needs at least one beat")
        period = cycle.period_s
        if irregular:
            period *= 0.8  # atrial fibrillation runs faster
            for _ in range(100):
                periods = period * rng.uniform(0.6, 1.4, n_beats)
                # irregular over the whole sequence and over the beats a clip shows whole (not the ends)
                if all(len(p) < 3 or np.sqrt(np.mean(np.diff(p) ** 2)) / p.mean() > 0.2
                       for p in (periods, periods[1:-1])):
                    break
            previous = np.concatenate([[period], periods[:-1]]) / period
            ef = ef_percent * (1.0 + 0.25 * (previous - 1.0)) + rng.normal(0.0, 2.0, n_beats)
        else:
            phase = rng.uniform(0.0, 2 * np.pi)
            elapsed = np.concatenate([[0.0], np.cumsum(np.full(n_beats - 1, period))])
            periods = period * (1.0 + 0.03 * np.sin(2 * np.pi * elapsed / 4.0 + phase)
                                + rng.normal(0.0, 0.01, n_beats))
            ef = ef_percent + rng.normal(0.0, 1.5, n_beats)
        ef = np.clip(ef, 8.0, 82.0)
        cycles = tuple(cycle.at_heart_rate(60.0 / p) for p in periods)
        if irregular:
            cycles = tuple(c.without_atrial_kick() for c in cycles)
        starts = np.concatenate([[0.0], np.cumsum(periods[:-1])])
        return cls(starts_s=tuple(float(v) for v in starts), periods_s=tuple(float(v) for v in periods),
                   ef_percent=tuple(float(v) for v in ef), cycles=cycles, irregular=bool(irregular))
