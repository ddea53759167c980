"""Which weights serve, and loading them once per file version.

Order: the model published by training in this app (``model/echoforge.pt``), else the demo model
shipped with echoforge (when ``use_shipped_weights`` and the configured network is ``light``), else
a randomly initialised network (the app still runs; ``/info/`` says the model is untrained).
A newly published file is picked up on the next request (its modification time is checked).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import torch

from echoforge.engine.checkpoint import load_model
from echoforge.engine.train import resolve_device
from echoforge.errors import CheckpointError
from echoforge.nets import build_model, get_config
from echoforge.weights import DEMO_CHECKPOINT

logger = logging.getLogger(__name__)

PUBLISHED_NAME = "echoforge.pt"


class ModelStore:
    """Thread-safe cache of the serving network, reloaded when its weight file changes."""

    def __init__(self, model_dir: Path, network: str, use_shipped_weights: bool, device: str):
        self.model_dir = Path(model_dir)
        self.network = network
        self.use_shipped = use_shipped_weights
        self.device = resolve_device(device)
        self._lock = threading.Lock()
        self._cache: tuple[tuple[str, float], Any] | None = None

    @property
    def published(self) -> Path:
        return self.model_dir / PUBLISHED_NAME

    def weights_path(self) -> Path | None:
        if self.published.exists():
            return self.published
        if self.use_shipped and DEMO_CHECKPOINT.exists() and self.network == "light":
            return DEMO_CHECKPOINT
        return None

    def version(self) -> tuple[str, float]:
        """(weight file, modification time) identifying the model that serves now."""
        path = self.weights_path()
        return (str(path), path.stat().st_mtime) if path else ("random-init", 0.0)

    def get(self) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The network (eval mode, on the device) and its checkpoint entries (empty when untrained)."""
        with self._lock:
            version = self.version()
            if self._cache is None or self._cache[0] != version:
                self._cache = (version, self._load(version[0]))
                logger.info(f"EchoForge model loaded from {version[0]}")
            return self._cache[1]

    def _load(self, path: str) -> tuple[torch.nn.Module, dict[str, Any]]:
        if path != "random-init":
            try:
                model, _, payload = load_model(path, expect=self.network, device=self.device)
                return model, payload
            except CheckpointError as err:  # e.g. --conf network changed since the model was published
                logger.warning(f"{err}; serving a randomly initialised {self.network!r} network instead")
        torch.manual_seed(0)
        model = build_model(get_config(self.network)).to(self.device).eval()
        return model, {}
