"""EchoForge as a MONAI Label app.

    monailabel start_server --app apps/echoforge --studies sample-data/studies [--conf network light ...]

Serves one model, ``echoforge`` (type ``segmentation``): segment every frame of an echo video, or
"segment the rest" from a few drawn frames; retrains semi-supervised (CPR) on the clinicians'
annotations, by itself after saved labels; and suggests what to annotate next. Configuration keys
are listed in ``lib/settings.py`` and the app's README. The app only wires the ``echoforge``
library into MONAI Label; the model maths live in the library.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.config import settings as ml_settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.async_tasks.utils import processes

import echoforge

from lib.activelearning import UncertaintyScoring, UncertaintyStrategy
from lib.biplane import BiplanePartners
from lib.datastore import EchoDatastore
from lib.infer import LABELS, EchoForgeInfer
from lib.models import ModelStore
from lib.settings import AppSettings
from lib.train import EchoForgeTrain

logger = logging.getLogger(__name__)

MODEL = "echoforge"


class EchoForgeApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        self.app_settings = AppSettings.from_conf(conf)
        self.model_dir = Path(app_dir) / "model"
        self.model_dir.mkdir(exist_ok=True)
        s = self.app_settings
        self.store = ModelStore(self.model_dir, s.network, s.use_shipped_weights, s.device)
        self._saved_labels = 0
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="EchoForge",
                         description="Echocardiography video segmentation from a few annotated frames",
                         version=echoforge.__version__, labels=LABELS)

    # ------------------------------------------------------------------ wiring
    def init_datastore(self) -> EchoDatastore:
        return EchoDatastore(self.studies, auto_reload=ml_settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                             read_only=ml_settings.MONAI_LABEL_DATASTORE_READ_ONLY)

    def init_infers(self) -> dict[str, Any]:
        return {MODEL: EchoForgeInfer(self.store, self.app_settings, BiplanePartners(self.datastore))}

    def init_trainers(self) -> dict[str, Any]:
        return {MODEL: EchoForgeTrain(self.store, self.app_settings)}

    def init_strategies(self) -> dict[str, Any]:
        return {"uncertainty": UncertaintyStrategy(self.store, self.app_settings.chunk), "random": Random(),
                "first": First()}

    def init_scoring_methods(self) -> dict[str, Any]:
        return {"uncertainty": UncertaintyScoring(self.store, self.app_settings.chunk)}

    # ------------------------------------------------------------------ behaviour
    def info(self) -> dict[str, Any]:
        meta = super().info()
        path, _ = self.store.version()
        meta["echoforge"] = {"network": self.app_settings.network, "weights": path, "device": str(self.store.device),
                             "trained": path != "random-init",
                             "settings": {k: v for k, v in vars(self.app_settings).items()}}
        return meta

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        image = request.get("image")
        if isinstance(image, str) and not os.path.exists(image) and image not in self.datastore().list_images():
            raise HTTPException(status_code=404, detail=f"unknown image id {image!r}")
        return super().infer(request, datastore)

    def bundle_path(self, model: str) -> str | None:
        # MONAI Label calls this in the server process for every training request, sync or background,
        # before it starts: the place to refuse a run that has nothing to learn from with a 4xx
        if model in self._trainers:
            self._trainers[model].check(self.datastore())
        return super().bundle_path(model)

    def on_save_label(self, image_id: str, label_id: str) -> dict[str, Any]:
        """Start semi-supervised retraining in the background every ``auto_train_every`` saved labels."""
        self._saved_labels += 1
        every = self.app_settings.auto_train_every
        if every <= 0 or self._saved_labels % every:
            return {"auto_train": "not this time" if every > 0 else "off"}
        if processes("train"):
            return {"auto_train": "already running"}
        self.async_training(MODEL)
        logger.info(f"Label saved for {image_id}: retraining started in the background")
        return {"auto_train": "started"}
