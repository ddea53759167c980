"""Export the clip network to TorchScript or ONNX, checked against PyTorch before it is written.

The exported graph takes ``frames`` (1×T×H×W, floats in [0, 1], T and H×W fixed at export: the
memory walk is unrolled over T frames) and returns ``logits`` (1×T×C×H×W) for automatic
segmentation. The file is only written when the exported model reproduces the PyTorch output on a
fresh random clip (max absolute difference below ``atol``).
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from echoforge.errors import EchoForgeError
from echoforge.io.atomic import atomic_path, write_bytes_atomic

FORMATS = ("torchscript", "onnx")


class ClipLogits(nn.Module):
    """``frames 1×T×H×W -> logits 1×T×C×H×W`` (automatic mode, no references)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)["logits"]


def export_model(model: nn.Module, fmt: str, out: str | os.PathLike[str], n_frames: int = 10,
                 atol: float = 1e-3) -> Path:
    """Export ``model`` (an EchoForgeNet) as ``fmt`` to ``out`` and verify it."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    wrapper = ClipLogits(model.cpu()).eval()
    size = tuple(model.config.input_size)
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(1, n_frames, *size, generator=generator)
    check = torch.rand(1, n_frames, *size, generator=generator)
    with torch.no_grad():
        expected = wrapper(check).numpy()
    out = Path(out)
    if fmt == "torchscript":
        with torch.no_grad():
            traced = torch.jit.trace(wrapper, example, check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        got = torch.jit.load(io.BytesIO(buffer.getvalue()))(check).detach().numpy()
        _verify(got, expected, atol, fmt)
        return write_bytes_atomic(out, buffer.getvalue())
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(wrapper, (example,), str(path), input_names=["frames"], output_names=["logits"],
                              opset_version=18, dynamo=True, external_data=False)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"frames": check.numpy()})[0]
        _verify(got, expected, atol, fmt)
        with atomic_path(out) as target:
            target.write_bytes(path.read_bytes())
    return out


def _verify(got: np.ndarray, expected: np.ndarray, atol: float, fmt: str) -> None:
    if got.shape != expected.shape:
        raise EchoForgeError(f"the {fmt} export gives shape {got.shape}, PyTorch {expected.shape}")
    diff = float(np.abs(got - expected).max())
    if diff > atol:
        raise EchoForgeError(f"the {fmt} export differs from PyTorch by {diff:.2e} (> {atol:.0e}); not written")
