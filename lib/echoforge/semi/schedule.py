"""FlameRise: the curriculum of the unlabelled loss.

The weight of the unlabelled (pseudo-label) loss is zero during a burn-in (the network first learns
from the drawn frames alone), then rises linearly to ``lambda_max``; at the same time the
confidence a pseudo-label pixel needs to be used falls linearly from ``tau0`` to ``tau1``, so early
on only the surest pixels teach and later more of the frame does.

Defaults (the paper gives none; chosen for runs of 20-50 epochs and measured in the benchmark):
burn-in ends at 20 % of training, the ramp ends at 60 %, ``lambda_max = 1``, ``tau0 = 0.95``,
``tau1 = 0.80``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlameRise:
    """Unlabelled-loss weight λ(e) and confidence threshold τ(e) at (fractional) epoch ``e``.

    Args:
        e0: burn-in end (λ = 0 before it).
        e1: ramp end (λ = ``lambda_max`` from it on; τ reaches ``tau1``).
        lambda_max: final weight of the unlabelled loss.
        tau0, tau1: confidence threshold at ``e0`` and from ``e1`` on.
    """

    e0: float
    e1: float
    lambda_max: float = 1.0
    tau0: float = 0.95
    tau1: float = 0.80

    def __post_init__(self) -> None:
        if not 0 <= self.e0 <= self.e1:
            raise ValueError(f"FlameRise needs 0 <= e0 <= e1, got e0={self.e0}, e1={self.e1}")
        if not 0 < self.tau1 <= self.tau0 <= 1:
            raise ValueError(f"FlameRise needs 0 < tau1 <= tau0 <= 1, got {self.tau0} -> {self.tau1}")

    @classmethod
    def for_epochs(cls, epochs: int, burn_in: float = 0.2, ramp_end: float = 0.6, **kwargs: float) -> FlameRise:
        return cls(e0=burn_in * epochs, e1=ramp_end * epochs, **kwargs)

    def _progress(self, epoch: float) -> float:
        if epoch < self.e0:
            return 0.0
        if self.e1 <= self.e0:
            return 1.0
        return min(1.0, (epoch - self.e0) / (self.e1 - self.e0))

    def weight(self, epoch: float) -> float:
        return 0.0 if epoch < self.e0 else self.lambda_max * self._progress(epoch)

    def threshold(self, epoch: float) -> float:
        return self.tau0 + (self.tau1 - self.tau0) * self._progress(epoch)
