"""EchoForge as a MONAI Label app.

    monailabel start_server --app apps/echoforge --studies sample-data/studies [--conf network light ...]

Serves one model, ``echoforge`` (type ``segmentation``): segment every frame of an echo video, or
"segment the rest" from a few drawn frames; retrains semi-supervised (CPR) on the clinicians'
annotations, by itself after saved labels; and suggests what to annotate next. Configuration keys
are listed in ``lib/settings.py`` and the app's README. The app only wires the ``echoforge``
library into MONAI Label; the model maths live in the library.

The server reads and writes only inside its studies folder and its own app folder: client ids
become paths in one place (``lib/names.py``), the datastore checks every entry point, the request
gate (``lib/gate.py``) authenticates, limits and runs requests so that the server keeps answering
while the model works, and training is exclusive and dies with its server (``lib/runs.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.config import settings as ml_settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.async_tasks.utils import processes, tasks

import echoforge
from echoforge.io.atomic import finite_json

from lib import endpoints, gate
from lib.activelearning import UncertaintyScoring, UncertaintyStrategy
from lib.biplane import BiplanePartners
from lib.datastore import EchoDatastore
from lib.dicomweb import DicomWebDatastore
from lib.infer import LABELS, EchoForgeInfer
from lib.models import ModelStore
from lib.names import check_name
from lib.params import flag
from lib.runs import SERVER_PID_ENV, busy_message, die_with_parent, is_task_process, start_server_generation
from lib.sessions import SafeSessions
from lib.settings import AppSettings
from lib.train import EchoForgeTrain

logger = logging.getLogger(__name__)

MODEL = "echoforge"


class EchoForgeApp(MONAILabelApp):
    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]):
        if is_task_process() and os.environ.get(SERVER_PID_ENV):
            die_with_parent(int(os.environ[SERVER_PID_ENV]))  # a background task never outlives its server
        self.app_settings = AppSettings.from_conf(conf)
        self.model_dir = Path(app_dir) / "model"
        self.model_dir.mkdir(exist_ok=True)
        s = self.app_settings
        self.store = ModelStore(self.model_dir, s.network, s.use_shipped_weights, s.device)
        self._saved_labels = 0
        self._training_start = threading.Lock()
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="EchoForge",
                         description="Echocardiography video segmentation from a few annotated frames",
                         version=echoforge.__version__, labels=LABELS)

    # ------------------------------------------------------------------ wiring
    def init_datastore(self) -> EchoDatastore:
        # a background task reads the datastore its server keeps: only the server ingests, reconciles and
        # quarantines (a task doing so too would race with the server's own writes)
        if self.studies.startswith(("http://", "https://")):  # a PACS: see lib/dicomweb.py
            return DicomWebDatastore(self.studies, read_only=is_task_process(), max_frames=self.app_settings.max_frames)
        return EchoDatastore(self.studies, auto_reload=ml_settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                             read_only=ml_settings.MONAI_LABEL_DATASTORE_READ_ONLY or is_task_process(),
                             max_frames=self.app_settings.max_frames)

    def init_infers(self) -> dict[str, Any]:
        return {MODEL: EchoForgeInfer(self.store, self.app_settings, BiplanePartners(self.datastore))}

    def init_trainers(self) -> dict[str, Any]:
        return {MODEL: EchoForgeTrain(self.store, self.app_settings)}

    def init_strategies(self) -> dict[str, Any]:
        return {"uncertainty": UncertaintyStrategy(self.store, self.app_settings.chunk), "random": Random(),
                "first": First()}

    def init_scoring_methods(self) -> dict[str, Any]:
        return {"uncertainty": UncertaintyScoring(self.store, self.app_settings.chunk)}

    def _load_sessions(self, load: bool = False) -> SafeSessions | None:
        if not load:
            return None
        return SafeSessions(ml_settings.MONAI_LABEL_SESSION_PATH, ml_settings.MONAI_LABEL_SESSION_EXPIRY,
                            self.app_settings.max_upload_mb * 2**20)

    def on_init_complete(self) -> None:
        """In the server process only (MONAI Label's lifespan): the request gate and a new server generation."""
        import monailabel.app as server

        start_server_generation(self.model_dir)
        s = self.app_settings
        access = gate.access_policy(s, Path(self.app_dir), keycloak=ml_settings.MONAI_LABEL_AUTH_ENABLE)
        limits = gate.Limits(max_body=s.max_upload_mb * 2**20, infer_workers=s.infer_workers,
                             infer_queue=s.infer_queue)
        gate.install(server.app, access, limits, ml_settings.MONAI_LABEL_API_STR)
        endpoints.install(self)
        self._access = access
        super().on_init_complete()

    # ------------------------------------------------------------------ behaviour
    def info(self) -> dict[str, Any]:
        meta = super().info()
        path, _ = self.store.version()
        access = getattr(self, "_access", None)
        meta["echoforge"] = {"network": self.app_settings.network, "weights": path, "device": str(self.store.device),
                             "trained": path != "random-init",
                             "settings": {k: v for k, v in vars(self.app_settings).items()},
                             "api_key_required": bool(access and access.api_key)}
        return finite_json(meta)

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        """Infer on a datastore id (or this request's own upload or session), never a server path.

        The prediction is never a clinician's label: ``save_label`` may keep it under another tag
        (``original`` by default, MONAI Label's batch pre-annotation), with no frame marked annotated,
        and is refused for ``final``.
        """
        request = dict(request)
        request["image"], image_id = self._infer_image(request)
        label = request.get("label")
        if label and not _in_request_folder(label):
            raise HTTPException(status_code=422, detail="label: send the drawn labels as the 'label' file part; "
                                                        "a server path is not accepted")
        save = flag(request, "save_label")
        tag = check_name(request.pop("label_tag", None) or DefaultLabelTag.ORIGINAL, "label_tag")
        if save and (tag == DefaultLabelTag.FINAL.value or image_id is None):
            raise HTTPException(status_code=422, detail=(
                "save_label: a prediction is never saved as the clinician's final label (save that with PUT "
                "/datastore/label)" if tag == DefaultLabelTag.FINAL.value else
                "save_label: only a prediction for a datastore image can be saved"))
        request["save_label"] = False
        result = super().infer(request, datastore)
        if save:
            self.datastore().save_label(image_id, result["file"], tag, {"model": request.get("model"),
                                                                        "params": result["params"]})
        return result

    def _infer_image(self, request: dict[str, Any]) -> tuple[str, str | None]:
        """(the file to segment, its datastore id or None for this request's upload or session)."""
        image = request.get("image")
        session = request.get("session")
        if session is not None:  # MONAI Label put the session's own image here: check it is that one
            stored = self.sessions().get_session(session.get("name", ""), update_ts=False) if self.sessions() else None
            if stored is None or stored.image != image:
                raise HTTPException(status_code=422, detail="session: unknown session or image")
            return image, None
        if isinstance(image, str) and _in_request_folder(image):
            return image, None  # the 'file' part of this very request
        image_id = check_name(image, "image id")
        uri = self.datastore().get_image_uri(image_id)
        if not uri:
            raise HTTPException(status_code=404, detail=f"unknown image id {image_id!r}")
        return uri, image_id  # absolute: MONAI Label then takes it as the file (an id alone may name a file in its cwd)

    def next_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        return finite_json(super().next_sample(request))

    def scoring(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        return finite_json(super().scoring(request, datastore))

    def train(self, request: dict[str, Any]) -> dict[str, Any]:
        return finite_json(super().train(request))

    @contextlib.contextmanager
    def training_start(self) -> Iterator[None]:
        """One training request at a time in this server (the check and the start happen together)."""
        if not self._training_start.acquire(blocking=False):
            raise HTTPException(status_code=429, detail=busy_message(None))
        try:
            yield
        finally:
            self._training_start.release()

    def bundle_path(self, model: str) -> str | None:
        # MONAI Label calls this in the server process for every training request, sync or background,
        # before it starts: the place to refuse a run that has nothing to learn from or would be a second one
        if model in self._trainers:
            trainer = self._trainers[model]
            if any(t.get("status") in ("SUBMITTED", "RUNNING") for t in tasks("train")) or processes("train"):
                raise HTTPException(status_code=429, detail=busy_message(None))
            holder = trainer.lock.holder()
            if holder is not None:
                raise HTTPException(status_code=429, detail=busy_message(holder))
            trainer.check(self.datastore())
        return super().bundle_path(model)

    def on_save_label(self, image_id: str, label_id: str) -> dict[str, Any]:
        """Start semi-supervised retraining in the background every ``auto_train_every`` saved labels."""
        self._saved_labels += 1
        every = self.app_settings.auto_train_every
        if every <= 0 or self._saved_labels % every:
            return {"auto_train": "not this time" if every > 0 else "off"}
        try:
            with self.training_start():
                self.async_training(MODEL)
        except HTTPException as err:
            return {"auto_train": "already running" if err.status_code == 429 else f"not started: {err.detail}"}
        logger.info(f"Label saved for {image_id}: retraining started in the background")
        return {"auto_train": "started"}


def _in_request_folder(path: Any) -> bool:
    folder = gate.request_folder()
    if folder is None or not isinstance(path, str):
        return False
    resolved = Path(path).resolve()
    return folder.resolve() in resolved.parents
