"""Model files shipped with EchoForge.

``echoforge_light_phantom.pt``: the demo model (configuration ``light``, 4 classes, float16
weights), trained on phantom patients only — good enough to show sensible masks out of the box,
not a clinical model. Rebuild it with ``make demo-model`` (the exact command is in the Makefile
and the README).
"""

from __future__ import annotations

from pathlib import Path

from echoforge.errors import CheckpointError

DEMO_CHECKPOINT = Path(__file__).resolve().parent / "echoforge_light_phantom.pt"


def default_checkpoint() -> Path:
    """The shipped demo model, or a clear error saying how to build it."""
    if not DEMO_CHECKPOINT.exists():
        raise CheckpointError("the demo model is missing; build it with `make demo-model` or pass --model",
                              DEMO_CHECKPOINT)
    return DEMO_CHECKPOINT
