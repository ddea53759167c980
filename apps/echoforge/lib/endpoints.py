"""The checks MONAI Label's endpoints skip, added in front of them for this app.

MONAI Label 0.8.5 parses the ``params`` / ``info`` form fields with ``json.loads`` and uses the
result as a dict, and looks models, strategies and scoring methods up by name, before the app
sees the request: a field that is not JSON, a JSON array, or an unknown name ends in an HTTP 500.
:func:`install` wraps those endpoint functions (module attributes that the routes call by name) so
that such a request is answered 422 or 404 with the field or name in the message, and so that
training starts one at a time (:meth:`EchoForgeApp.training_start`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException

from lib.params import json_object

Check = Callable[[dict[str, Any]], Any]


def _wrap(module: Any, name: str, check: Check) -> None:
    """Run ``check(arguments)`` before ``module.name``; a context manager it returns spans the call."""
    original = getattr(module, name)
    if getattr(original, "__echoforge_checked__", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def checked(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        with check(bound.arguments) or contextlib.nullcontext():
            return original(*args, **kwargs)

    checked.__echoforge_checked__ = True  # type: ignore[attr-defined]
    setattr(module, name, checked)


def _json_fields(*names: str) -> Check:
    def check(arguments: dict[str, Any]) -> None:
        for name in names:
            json_object(arguments.get(name), name)
    return check


def _known(kind: str, argument: str, known: Callable[[], Any]) -> Check:
    def check(arguments: dict[str, Any]) -> None:
        name = arguments.get(argument)
        if name and name not in known():
            raise HTTPException(status_code=404, detail=f"unknown {kind} {name!r}; this server has "
                                                        f"{', '.join(sorted(known())) or 'none'}")
    return check


def install(app: Any) -> None:
    """Wrap MONAI Label's endpoint functions for ``app`` (an :class:`EchoForgeApp`)."""
    from monailabel.endpoints import activelearning, datastore, infer, scoring, train

    _wrap(datastore, "add_image", _json_fields("params"))
    _wrap(datastore, "save_label", _json_fields("params"))
    _wrap(datastore, "update_image_info", _json_fields("info"))
    _wrap(datastore, "update_label_info", _json_fields("info"))

    known_model = _known("model", "model", lambda: app._infers)

    def infer_check(arguments: dict[str, Any]) -> None:
        known_model(arguments)
        json_object(arguments.get("params"), "params")
        if not (arguments.get("image") or arguments.get("file") or arguments.get("session_id")):
            raise HTTPException(status_code=422, detail="image: give the id of a video in the datastore")
        if arguments.get("output") == "dicom_seg":
            raise HTTPException(status_code=422, detail="output: dicom_seg needs a DICOMweb datastore; use image, "
                                                        "json or all")

    _wrap(infer, "run_inference", infer_check)
    _wrap(activelearning, "sample", _known("strategy", "strategy", lambda: app._strategies))
    _wrap(scoring, "run_method", _known("scoring method", "method", lambda: app._scoring_methods))

    known_trainer = _known("model", "model", lambda: app._trainers)

    def train_check(arguments: dict[str, Any]) -> Any:
        known_trainer(arguments)
        app._trainers[arguments["model"]].parse_request(arguments.get("params") or {})
        return app.training_start()

    def train_all_check(arguments: dict[str, Any]) -> Any:  # POST /train/: params per model
        for name, trainer in app._trainers.items():
            trainer.parse_request((arguments.get("params") or {}).get(name) or {})
        return app.training_start()

    _wrap(train, "run_model", train_check)
    _wrap(train, "run", train_all_check)
