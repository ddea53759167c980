"""App configuration from ``--conf KEY VALUE`` (MONAI Label passes every value as a string).

=====================  ========  ==========================================================
key                    default   meaning
=====================  ========  ==========================================================
network                light     network configuration: ``light`` (CPU, real time), ``paper``
                                 (ResNet-50, GPU), ``tiny`` (tests)
device                 auto      ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``
use_shipped_weights    true      start from the demo model shipped with echoforge (``light`` only)
epochs                 20        training epochs per run
lr                     0.0003    training learning rate (fine-tuning from the current model)
batch_size             2         clips per training step
clip_frames            10        frames per training clip
auto_train_every       1         retrain in the background after every K saved labels (0 = never)
adapt                  auto      per-video adaptation before "segment the rest": ``auto`` (when the
                                 video looks unlike the training data), ``on``, ``off``
adapt_steps            24        adaptation steps
chunk                  16        frames per inference batch (1 = streaming)
=====================  ========  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AppSettings:
    network: str = "light"
    device: str = "auto"
    use_shipped_weights: bool = True
    epochs: int = 20
    lr: float = 3e-4
    batch_size: int = 2
    clip_frames: int = 10
    auto_train_every: int = 1
    adapt: str = "auto"
    adapt_steps: int = 24
    chunk: int = 16

    @classmethod
    def from_conf(cls, conf: dict[str, str]) -> AppSettings:
        values = {}
        for f in fields(cls):
            if f.name not in conf:
                continue
            raw = str(conf[f.name]).strip()
            if f.type in ("bool", bool):
                values[f.name] = raw.lower() in TRUE
            elif f.type in ("int", int):
                values[f.name] = int(raw)
            elif f.type in ("float", float):
                values[f.name] = float(raw)
            else:
                values[f.name] = raw
        settings = cls(**values)
        if settings.adapt not in ("auto", "on", "off"):
            raise ValueError(f"--conf adapt must be auto, on or off, not {settings.adapt!r}")
        return settings
