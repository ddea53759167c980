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
                                 drawn frames are not re-found from each other), ``on``, ``off``
adapt_steps            8         adaptation steps (at most; adaptation stops when the drawn frames fit)
prior_blend            0.8       share of the drawn masks carried by optical flow in "segment the rest"
                                 (0 = the network alone, 1 = the flow alone)
chunk                  16        frames per inference batch (1 = streaming)
max_upload_mb          256       largest request body (upload, label, session) in MB; larger
                                 ones are refused with 413
max_frames             1000      most frames a video may have (upload, ingest, infer); 422
max_adapt_steps        200       largest ``adapt_steps`` a request may ask for; 422
max_chunk              64        largest ``chunk`` a request may ask for; 422
max_train_epochs       1000      largest ``max_epochs`` a training request may ask for; 422
infer_workers          1         requests that run the model at once (infer, next sample,
                                 scoring); the server itself keeps answering meanwhile
infer_queue            4         model requests that may wait for a worker; more are refused
                                 with 503 and ``Retry-After``
auth                   auto      API key (bearer token): ``auto`` (required when the server
                                 listens beyond loopback), ``on``, ``off``
api_key_file           (empty)   file holding the API key; else ``ECHOFORGE_API_KEY_FILE`` or
                                 ``ECHOFORGE_API_KEY``; else a new key is written to
                                 ``<app>/api_key`` (mode 0600) when one is required
cors_origins           (empty)   comma-separated browser origins allowed to call the server
                                 (``https://viewer.example.org``); empty = no cross-origin use
=====================  ========  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from echoforge.engine.inference import PRIOR_BLEND

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
    adapt_steps: int = 8
    prior_blend: float = PRIOR_BLEND
    chunk: int = 16
    max_upload_mb: int = 256
    max_frames: int = 1000
    max_adapt_steps: int = 200
    max_chunk: int = 64
    max_train_epochs: int = 1000
    infer_workers: int = 1
    infer_queue: int = 4
    auth: str = "auto"
    api_key_file: str = ""
    cors_origins: str = ""

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
        for key in ("adapt", "auth"):
            if getattr(settings, key) not in ("auto", "on", "off"):
                raise ValueError(f"--conf {key} must be auto, on or off, not {getattr(settings, key)!r}")
        for key in ("max_upload_mb", "max_frames", "max_adapt_steps", "max_chunk", "max_train_epochs",
                    "infer_workers"):
            if getattr(settings, key) < 1:
                raise ValueError(f"--conf {key} must be at least 1, not {getattr(settings, key)}")
        if settings.infer_queue < 0:
            raise ValueError(f"--conf infer_queue must be 0 or more, not {settings.infer_queue}")
        if not 0.0 <= settings.prior_blend <= 1.0:
            raise ValueError(f"--conf prior_blend must lie between 0 and 1, not {settings.prior_blend}")
        if not 1 <= settings.adapt_steps <= settings.max_adapt_steps or not 1 <= settings.chunk <= settings.max_chunk:
            raise ValueError("--conf adapt_steps and chunk must lie between 1 and max_adapt_steps / max_chunk")
        return settings

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())
