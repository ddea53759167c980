"""Model files: written atomically, self-describing, loadable with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and JSON-like values::

    {"format": "echoforge-checkpoint", "version": 1, "model": state_dict, "net": NetConfig dict,
     "train": TrainConfig dict, "epoch": int, "metrics": {...}, ...training state when resumable...}

MONAI Label's infer task loads ``checkpoint["model"]`` directly (plain state dict, no pickled
objects), and the network is rebuilt from ``checkpoint["net"]``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echoforge.errors import CheckpointError
from echoforge.io.atomic import write_bytes_atomic
from echoforge.nets import NetConfig, build_model

FORMAT = "echoforge-checkpoint"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DistributedDataParallel / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, config: NetConfig,
                    half: bool = False, **extra: Any) -> Path:
    """Write ``model`` (and ``extra`` entries) to ``path`` atomically; ``half`` stores float16 weights."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in unwrap(model).state_dict().items()}
    payload = {"format": FORMAT, "version": 1, "model": state, "net": config.to_dict(), **extra}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def add_to_checkpoint(path: str | os.PathLike[str], **entries: Any) -> Path:
    """Add or replace top-level entries of an existing checkpoint (atomically)."""
    payload = read_checkpoint(path)
    payload.update(entries)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError("model file not found", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many unrelated types for a damaged file
        raise CheckpointError(f"not a readable model file ({type(err).__name__}: {str(err)[:120]})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError("not an EchoForge checkpoint (no network configuration inside)", path)
    return payload


def load_model(path: str | os.PathLike[str], expect: str | None = None, device: str | torch.device = "cpu",
               **overrides: Any) -> tuple[nn.Module, NetConfig, dict[str, Any]]:
    """Rebuild the network stored in ``path`` and load its weights.

    Args:
        expect: a configuration name the caller requires (``"paper"``, ``"light"``, ...); a file made
            for another configuration is refused with a clear error instead of loading wrong weights.
        overrides: configuration fields to change (e.g. ``encoder_weights=None``).

    Returns:
        ``(model in eval mode on device, config, the whole checkpoint dict)``.
    """
    payload = read_checkpoint(path)
    config = NetConfig.from_dict({**payload["net"], "encoder_weights": None, **overrides})
    if expect is not None and config.name != expect:
        raise CheckpointError(f"this model was trained with configuration {config.name!r}, not {expect!r}", path)
    model = build_model(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise CheckpointError(f"weights do not fit configuration {config.name!r}: {first}", path) from None
    return model.to(device).eval(), config, payload
