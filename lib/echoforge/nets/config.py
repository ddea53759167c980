"""Named network configurations.

=========  ==============  ====  ====  ========  =======  ======  ===========  ==========
name       encoder         D     FFN   decoder   queries  layers  input size   for
=========  ==============  ====  ====  ========  =======  ======  ===========  ==========
paper      ResNet-50 (+4)  256   2048  128       16       3       256×256      the paper's setting (GPU)
light      ResNet-18       96    384   48        8        1       112×112      CPU, real time, the demo checkpoint
tiny       ResNet-18       32    128   16        4        1       64×64        tests
=========  ==============  ====  ====  ========  =======  ======  ===========  ==========

``paper`` keeps the whole ResNet-50 of the paper's encoder (layer4 at stride 32 is projected,
upsampled and added to the stride-16 features) and GDKVM's transformer width (FFN 2048, 8 heads,
16 queries, 3 layers; the same group's scaffold). That gives 35.5 M parameters and 6.7 GMAC per
256×256 frame (13.4 GFLOPs, 134 GFLOPs per 10-frame clip): the paper's 125 GFLOPs match a
10-frame clip, not a frame. Its 67 M parameters cannot be reached from what the paper describes
without inventing parts (a second encoder for memory masks, as in XMem, would be one). ARC runs on
every stride-16 position (``patch = 1``) in every configuration.

Baselines, frame by frame (:mod:`echoforge.nets.baselines`): ``unet`` (MONAI 2-D U-Net) and
``deeplabv3`` (EchoNet-Dynamic's DeepLabV3-ResNet50), both at 112×112 by default.

Every configuration takes ``mode`` = ``"camus"`` (4 classes: background, LV, myocardium, LA) or
``"lv"`` (2 classes: background, LV cavity), and the ablation switches ``use_arc`` / ``use_tsf`` /
``use_readout`` (the pixel-level memory readout of :mod:`echoforge.nets.readout`) / ``use_flow_prior``
(the drawn masks carried by optical flow, :func:`echoforge.engine.propagation.flow_prior`, as an
input of the decoder). Both go beyond the paper: on in ``light`` and ``tiny``, off in ``paper``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

MODES = {"camus": 4, "lv": 2}
#: configuration fields added after the first checkpoint files, with the values that rebuild those files' networks
ADDED_PARTS_OFF: dict[str, Any] = {"use_readout": False, "use_flow_prior": False, "layer4": False, "ffn_mult": 4}
ARCHS = ("echoforge", "unet", "deeplabv3")


@dataclass
class NetConfig:
    """Everything needed to rebuild a network (stored in every checkpoint)."""

    name: str = "light"
    arch: str = "echoforge"
    mode: str = "camus"
    encoder_depth: int = 18
    encoder_weights: str | None = None
    dim: int = 96
    dec_dim: int = 48
    heads: int = 4
    n_queries: int = 8
    n_layers: int = 1
    ffn_mult: int = 4
    layer4: bool = False
    n_anchors: int = 2
    knn: int = 16
    patch: int = 1
    memory_size: int = 4
    use_readout: bool = True
    use_flow_prior: bool = True
    key_dim: int = 64
    value_dim: int = 64
    input_size: tuple[int, int] = (112, 112)
    use_arc: bool = True
    use_tsf: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return MODES[self.mode]

    def to_dict(self) -> dict[str, Any]:
        return settings_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        # parts added since the first checkpoints: a file that does not mention them was built without them
        return settings_from_dict(cls, {**ADDED_PARTS_OFF, **d})


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """A settings dataclass as JSON/checkpoint-friendly values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}


def settings_from_dict(cls: type, d: dict[str, Any]) -> Any:
    """The inverse of :func:`settings_to_dict`; keys the dataclass does not know (older files) are ignored."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(fields[k].default, tuple) else v for k, v in d.items() if k in fields})


CONFIGS: dict[str, NetConfig] = {
    "paper": NetConfig(name="paper", encoder_depth=50, dim=256, dec_dim=128, heads=8, n_queries=16, n_layers=3,
                       ffn_mult=8, layer4=True, use_readout=False, use_flow_prior=False, input_size=(256, 256)),
    "light": NetConfig(name="light"),
    "tiny": NetConfig(name="tiny", dim=32, dec_dim=16, heads=2, n_queries=4, n_layers=1, knn=8, key_dim=16,
                      value_dim=16, input_size=(64, 64)),
    # baselines (frame by frame, see echoforge.nets.baselines)
    "unet": NetConfig(name="unet", arch="unet"),
    "deeplabv3": NetConfig(name="deeplabv3", arch="deeplabv3"),
}


def get_config(name: str | NetConfig, **overrides: Any) -> NetConfig:
    """A copy of the named configuration with ``overrides`` applied (unknown keys are an error)."""
    if isinstance(name, NetConfig):
        base = name
    elif name in CONFIGS:
        base = CONFIGS[name]
    else:
        raise ValueError(f"unknown network configuration {name!r}; choose from {sorted(CONFIGS)}")
    config = dataclasses.replace(base, **overrides)
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {config.mode!r}")
    if config.arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {config.arch!r}")
    return config
