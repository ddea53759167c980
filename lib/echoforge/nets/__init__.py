"""EchoForge networks: the ASA network (ARC + TSF) and the baselines it is compared with."""

from __future__ import annotations

from typing import Any

from torch import nn

from echoforge.nets.config import CONFIGS, NetConfig, get_config


def build_model(config: str | NetConfig = "light", **overrides: Any) -> nn.Module:
    """Assemble a network from a named configuration (see :mod:`echoforge.nets.config`).

    Example::

        net = build_model("paper", mode="lv")                  # binary LV, ResNet-50
        net = build_model("light", use_arc=False)              # ablation without ARC
        net = build_model("light", encoder_weights="resnet18_imagenet.pth")   # local weights only
    """
    config = get_config(config, **overrides)
    if config.arch != "echoforge":
        from echoforge.nets.baselines import build_baseline

        return build_baseline(config)
    from echoforge.nets.echoforge_net import EchoForgeNet

    return EchoForgeNet(config)


__all__ = ["CONFIGS", "NetConfig", "build_model", "get_config"]
