"""HTTP client for the EchoForge MONAI Label server: every endpoint the Slicer module uses.

Standard library and numpy only (``urllib``; runs in 3D Slicer's Python 3.9 and 3.12)::

    client = EchoForgeClient("http://127.0.0.1:8000")                 # api_key="..." for a server on the network
    sample = client.next_sample("uncertainty")           # {"id", "suggested_frames", "ed", "es", ...}
    video = client.download_image(sample["id"])          # Volume: T×H×W frames + geometry
    labels = client.segment(sample["id"], drawn, annotated_frames=[0, 9])   # (T, H, W) uint8
    client.save_label(sample["id"], drawn, annotated_frames=[0, 9])
    client.train({"max_epochs": 5})

Every failure is an :class:`~EchoForgeLib.errors.EchoForgeClientError` whose message says what
happened in plain words: :class:`ServerUnreachableError` (not running, restarting, wrong address),
:class:`ServerTimeoutError`, :class:`ServerRejectedError` (bad input or a missing or wrong API key,
with the server's own explanation), :class:`ServerBusyError` (too much work queued: try again) or
:class:`ServerFailedError` (the server broke).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .errors import (
    AnnotationError,
    EchoForgeClientError,
    ServerBusyError,
    ServerFailedError,
    ServerRejectedError,
    ServerTimeoutError,
    ServerUnreachableError,
    VolumeFormatError,
)
from .multipart import FilePart, decode_multipart, encode_multipart
from .volume import Volume, encode_volume, parse_volume

MODEL = "echoforge"
LABEL_FILE_EXTENSION = ".nii.gz"
RESULT_EXTENSION = ".nrrd"  # what 3D Slicer asks MONAI Label for


@dataclass(frozen=True)
class SegmentationResult:
    """What "segment" returns: labels of every frame and the server's JSON about them.

    Attributes:
        labels: ``T×H×W`` uint8 (0 background, 1 LV cavity, 2 myocardium, 3 left atrium).
        info: the server's JSON: ``annotated_frames``, ``measurements``, ``frame_confidence``,
            ``adapted``, ``seconds``, ...
    """

    labels: np.ndarray
    info: dict[str, Any]


class EchoForgeClient:
    """A connection to one EchoForge server.

    Args:
        server_url: e.g. ``http://127.0.0.1:8000`` (``http://`` is added when no scheme is given).
        timeout: seconds to wait for quick calls (server information, status, saving a label).
        work_timeout: seconds to wait for calls that run the model (segmenting, ranking videos for
            the next sample, training synchronously); at least ``timeout``.
        token: an access token from the site's identity server, when the server uses MONAI Label's
            own (Keycloak) authentication; sent like the API key.
        model: the server's model name.
        api_key: the server's API key, which a server listening beyond its own machine requires (its
            ``api_key`` file or ``ECHOFORGE_API_KEY``); sent as ``Authorization: Bearer <key>``.
    """

    def __init__(self, server_url: str, timeout: float = 30.0, token: Optional[str] = None,
                 work_timeout: float = 900.0, model: str = MODEL, api_key: Optional[str] = None):
        url = (server_url or "").strip()
        if not url:
            raise EchoForgeClientError("No server address given: enter the EchoForge server URL, "
                                       "for example http://127.0.0.1:8000")
        if "://" not in url:
            url = "http://" + url
        api_key, token = (api_key or "").strip() or None, (token or "").strip() or None
        if api_key and token and api_key != token:
            raise EchoForgeClientError("Give the server's API key or an access token, not both.")
        self.server_url = url.rstrip("/")
        self.timeout = float(timeout)
        self.work_timeout = max(float(work_timeout), self.timeout)
        self.api_key = api_key or token
        self.model = model
        self.last_result: Optional[dict[str, Any]] = None
        self._videos: dict[str, Volume] = {}

    # ------------------------------------------------------------------ server and datastore
    def info(self) -> dict[str, Any]:
        """``GET /info/``: models, labels, strategies, training statistics, datastore counts."""
        return self._json("GET", "/info/", action="reading the server information")

    def next_sample(self, strategy: str = "uncertainty", params: Optional[Mapping[str, Any]] = None
                    ) -> Optional[dict[str, Any]]:
        """``POST /activelearning/{strategy}``: the next video to annotate, or ``None`` when none is left.

        With ``uncertainty`` the answer also has ``suggested_frames``, ``ed``, ``es`` and
        ``most_uncertain_frame``.
        """
        sample = self._json("POST", f"/activelearning/{_quote(strategy)}", body=dict(params or {}),
                            timeout=self.work_timeout, action=f"asking for the next video ({strategy})")
        return sample if sample and sample.get("id") else None

    def image_info(self, image_id: str) -> dict[str, Any]:
        """``GET /datastore/image/info``: what the datastore records about a video (conversion, spacing, ...)."""
        return self._json("GET", "/datastore/image/info", query={"image": image_id},
                          action=f"reading the information of video {image_id!r}") or {}

    def download_image(self, image_id: str) -> Volume:
        """``GET /datastore/image``: the video as a :class:`Volume` (T×H×W frames and geometry).

        A video converted from a source without calibration (the datastore records ``spacing_mm``
        as null, e.g. an AVI) comes back with ``spacing`` None, so it is never measured in ml.
        """
        raw, _ = self._request("GET", "/datastore/image", query={"image": image_id},
                               action=f"downloading video {image_id!r}")
        try:
            video = parse_volume(raw, f"video {image_id!r} from the server")
        except VolumeFormatError as err:
            raise ServerFailedError(f"The server sent video {image_id!r} in a form the module cannot read: {err}",
                                    0, str(err)) from None
        info = self.image_info(image_id)
        if "spacing_mm" in info and info["spacing_mm"] is None:
            video = video.without_spacing()
        self._videos[image_id] = video
        return video

    def upload_image(self, volume: Volume, image_id: str) -> str:
        """``PUT /datastore/image``: add a video of the clinician's own to the datastore; returns its id.

        The video is sent as NIfTI on its own geometry; its image info records the spacing (null when
        unknown, as the server records it for uncalibrated conversions) and the frame time.
        """
        data = encode_volume(volume.grey_uint8(), volume.layout, LABEL_FILE_EXTENSION, volume.spacing is not None,
                             frame_time_ms=volume.frame_time_ms)
        info = {"spacing_mm": list(volume.spacing) if volume.spacing else None,
                "frame_time_ms": volume.frame_time_ms, "source": "3D Slicer (EchoForge module)"}
        fields = {"params": json.dumps(info)}
        files = {"file": (f"{image_id}{LABEL_FILE_EXTENSION}", data, "application/octet-stream")}
        answer = self._json("PUT", "/datastore/image", query={"image": image_id}, fields=fields, files=files,
                            action=f"uploading video {image_id!r}")
        self._videos[str(answer.get("image", image_id))] = volume
        return str(answer.get("image", image_id))

    # ------------------------------------------------------------------ segmentation
    def segment(self, image_id: str, label: Optional[np.ndarray] = None,
                annotated_frames: Optional[Sequence[int]] = None, adapt: str = "auto",
                like: Optional[Volume] = None) -> np.ndarray:
        """Segment every frame: ``(T, H, W)`` uint8 labels; the server's JSON goes to :attr:`last_result`.

        Args:
            image_id: the video's id in the datastore.
            label: ``T×H×W`` labels holding the drawn frames ("segment the rest"); ``None`` for a
                fully automatic segmentation.
            annotated_frames: which frames of ``label`` were drawn (default: those with foreground).
                The drawn frames come back exactly as drawn.
            adapt: per-video adaptation, ``auto``, ``on`` or ``off``.
            like: the video (its geometry writes the label file); default: the downloaded one.

        Raises:
            AnnotationError: a label is given but no frame is annotated (nothing is sent).
            EchoForgeClientError: the server could not be reached or refused or failed.
        """
        return self.segment_with_result(image_id, label, annotated_frames, adapt, like).labels

    def segment_with_result(self, image_id: str, label: Optional[np.ndarray] = None,
                            annotated_frames: Optional[Sequence[int]] = None, adapt: str = "auto",
                            like: Optional[Volume] = None) -> SegmentationResult:
        """:meth:`segment`, returning the labels together with the server's JSON."""
        params: dict[str, Any] = {"adapt": adapt, "result_extension": RESULT_EXTENSION, "result_dtype": "uint8"}
        files: dict[str, FilePart] = {}
        video = like
        if label is not None:
            video = like or self._video(image_id)
            frames = self._checked_frames(label, annotated_frames, video)
            params["annotated_frames"] = frames
            files["label"] = (f"{image_id}_drawn{LABEL_FILE_EXTENSION}",
                              encode_volume(np.asarray(label, dtype=np.uint8), video.layout, LABEL_FILE_EXTENSION,
                                            video.spacing is not None, frames), "application/octet-stream")
        elif annotated_frames:
            raise AnnotationError("Annotated frames were given without the drawn labels to go with them.")
        raw, content_type = self._request(
            "POST", f"/infer/{_quote(self.model)}", query={"image": image_id, "output": "all"},
            fields={"params": json.dumps(params)}, files=files, timeout=self.work_timeout,
            action=f"segmenting video {image_id!r}")
        result = self._segmentation_answer(raw, content_type, image_id)
        if video is not None and result.labels.shape != video.frames.shape:
            raise ServerFailedError(f"The server's segmentation of {image_id!r} has {result.labels.shape} "
                                    f"(T×H×W) where the video has {video.frames.shape}.", 0, "")
        self.last_result = result.info
        return result

    def save_label(self, image_id: str, label: np.ndarray, annotated_frames: Optional[Sequence[int]],
                   like: Optional[Volume] = None, tag: str = "final") -> dict[str, Any]:
        """``PUT /datastore/label``: submit the drawn frames; the server may start retraining by itself.

        Returns the server's answer (``image``, ``label``, ``auto_train``).

        Raises:
            AnnotationError: no frame is annotated (nothing is sent).
        """
        video = like or self._video(image_id)
        frames = self._checked_frames(label, annotated_frames, video)
        data = encode_volume(np.asarray(label, dtype=np.uint8), video.layout, LABEL_FILE_EXTENSION,
                             video.spacing is not None, frames)
        fields = {"params": json.dumps({"annotated_frames": frames})}
        files = {"label": (f"{image_id}{LABEL_FILE_EXTENSION}", data, "application/octet-stream")}
        return self._json("PUT", "/datastore/label", query={"image": image_id, "tag": tag}, fields=fields,
                          files=files, action=f"saving the annotation of video {image_id!r}")

    # ------------------------------------------------------------------ training
    def train(self, params: Optional[Mapping[str, Any]] = None, wait: bool = False) -> dict[str, Any]:
        """``POST /train/{model}``: start semi-supervised retraining.

        Args:
            params: e.g. ``{"max_epochs": 5}``.
            wait: train synchronously and return the final statistics (else the task record at once).

        Raises:
            ServerRejectedError: no annotated video yet (400), or a training already running (429).
        """
        query = {"run_sync": "true"} if wait else None
        return self._json("POST", f"/train/{_quote(self.model)}", query=query, body=dict(params or {}),
                          timeout=self.work_timeout if wait else self.timeout, action="starting training")

    def training_status(self) -> Optional[dict[str, Any]]:
        """``GET /train/``: the last background training (``status`` RUNNING/DONE/ERROR/STOPPED, ``details``
        log lines), or ``None`` when none has run on this server yet."""
        try:
            return self._json("GET", "/train/", action="reading the training status")
        except ServerRejectedError as err:
            if err.status == 404:
                return None
            raise

    def training_progress(self) -> dict[str, Any]:
        """The last training's status merged with the model's statistics from ``/info/``.

        Keys: ``status`` (``None`` when no training ran), ``details``, and from the statistics
        ``epoch``, ``total_epochs``, ``best_metric``, ``total_time`` when known, and ``not_published``:
        why the retrained model was not published (it did worse than the model that serves), else ``None``.
        """
        record = self.training_status() or {}
        stats = (self.info().get("train_stats") or {}).get(self.model) or {}
        return {"status": record.get("status"), "details": record.get("details") or [],
                **{k: stats.get(k) for k in ("epoch", "total_epochs", "best_metric", "total_time", "not_published")}}

    def stop_training(self) -> Optional[dict[str, Any]]:
        """``DELETE /train/``: stop the running training (the previous model keeps serving)."""
        return self._json("DELETE", "/train/", action="stopping training")

    # ------------------------------------------------------------------ internals
    def _video(self, image_id: str) -> Volume:
        return self._videos.get(image_id) or self.download_image(image_id)

    @staticmethod
    def _checked_frames(label: np.ndarray, annotated_frames: Optional[Sequence[int]], video: Volume) -> list:
        labels = np.asarray(label)
        if labels.shape != video.frames.shape:
            raise AnnotationError(f"The annotation has {labels.shape} (T×H×W) but the video has "
                                  f"{video.frames.shape}; it was drawn on another video.")
        if annotated_frames is None:
            frames = [int(f) for f in np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))]
        else:
            frames = sorted({int(f) for f in annotated_frames})
        if not frames:
            raise AnnotationError("No frame is annotated yet: draw the LV cavity (and, if you can, the myocardium "
                                  "and left atrium) on at least one frame, ideally ED and ES. Nothing was sent.")
        outside = [f for f in frames if not 0 <= f < labels.shape[0]]
        if outside:
            raise AnnotationError(f"Annotated frame(s) {outside} are outside the video (frames 0 to "
                                  f"{labels.shape[0] - 1}). Nothing was sent.")
        return frames

    def _segmentation_answer(self, raw: bytes, content_type: str, image_id: str) -> SegmentationResult:
        try:
            parts = decode_multipart(raw, content_type)
            info = json.loads(parts["params"].content.decode("utf-8")) if "params" in parts else {}
            if "image" not in parts:
                raise ValueError("the answer holds no label volume")
            labels = parse_volume(parts["image"].content, f"the segmentation of {image_id!r}").frames
        except (ValueError, KeyError, VolumeFormatError) as err:
            raise ServerFailedError(f"The server's answer to segmenting {image_id!r} could not be read: {err}",
                                    0, str(err)) from None
        return SegmentationResult(labels=np.ascontiguousarray(labels, dtype=np.uint8), info=info)

    def _json(self, method: str, path: str, action: str, query: Optional[Mapping[str, str]] = None,
              body: Optional[dict[str, Any]] = None, fields: Optional[Mapping[str, str]] = None,
              files: Optional[Mapping[str, FilePart]] = None, timeout: Optional[float] = None) -> Any:
        raw, _ = self._request(method, path, action, query, body, fields, files, timeout)
        if not raw.strip():
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise ServerFailedError(f"The server's answer to {action} is not JSON: {raw[:200]!r}", 0,
                                    raw[:500].decode("utf-8", "replace")) from None

    def _request(self, method: str, path: str, action: str, query: Optional[Mapping[str, str]] = None,
                 body: Optional[dict[str, Any]] = None, fields: Optional[Mapping[str, str]] = None,
                 files: Optional[Mapping[str, FilePart]] = None,
                 timeout: Optional[float] = None) -> tuple[bytes, str]:
        """Send one request; returns (body, content type) of a 2xx answer, else raises a client error."""
        url = self.server_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json, multipart/form-data, application/octet-stream"}
        data: Optional[bytes] = None
        if fields is not None or files:
            data, headers["Content-Type"] = encode_multipart(fields or {}, files)
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode("utf-8"), "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        wait = self.timeout if timeout is None else timeout
        try:
            with urllib.request.urlopen(request, timeout=wait) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            with err:
                text = err.read().decode("utf-8", "replace")
                retry_after = err.headers.get("Retry-After") if err.headers else None
            raise _answer_error(err.code, text, action, self.server_url, bool(self.api_key), retry_after) from None
        except urllib.error.URLError as err:
            raise self._connection_error(err.reason, action, wait) from None
        except TimeoutError as err:
            raise self._connection_error(err, action, wait) from None
        except (http.client.HTTPException, ConnectionError, OSError) as err:
            raise self._connection_error(err, action, wait) from None

    def _connection_error(self, reason: Any, action: str, wait: float) -> EchoForgeClientError:
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return ServerTimeoutError(
                f"The server at {self.server_url} did not answer within {wait:g} s while {action}. It may be busy "
                "(training, or segmenting a long video) or stuck; try again, or allow more time.")
        if isinstance(reason, ConnectionRefusedError):
            return ServerUnreachableError(
                f"Cannot reach the EchoForge server at {self.server_url} ({action}): the connection was refused. "
                "Is the server running? If it is restarting, try again in a moment.")
        if isinstance(reason, socket.gaierror):
            return ServerUnreachableError(
                f"Cannot reach the EchoForge server at {self.server_url} ({action}): the host name is unknown. "
                "Check the server address.")
        if isinstance(reason, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                               http.client.IncompleteRead)):
            return ServerUnreachableError(
                f"The connection to the EchoForge server at {self.server_url} was lost while {action}; the server "
                "may be restarting. Try again in a moment.")
        return ServerUnreachableError(
            f"Cannot reach the EchoForge server at {self.server_url} ({action}): {reason}.")


def _answer_error(status: int, text: str, action: str, server_url: str = "", sent_key: bool = False,
                  retry_after: Optional[str] = None) -> EchoForgeClientError:
    """The error for a non-2xx answer, carrying the server's own explanation."""
    detail = text.strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and "detail" in parsed:
            detail = parsed["detail"] if isinstance(parsed["detail"], str) else json.dumps(parsed["detail"])
    except ValueError:
        pass
    detail = detail[:1000]
    if status == 401:
        problem = ("did not accept the API key: check it against the server's key" if sent_key else
                   "needs its API key: enter the key (the server's api_key file, or ECHOFORGE_API_KEY) and connect again")
        return ServerRejectedError(f"The server at {server_url} {problem}.", status, detail)
    if status == 503:
        wait = _seconds(retry_after)
        return ServerBusyError(f"The server is busy ({detail}); try again in {wait:g} s." if wait is not None else
                               f"The server is busy ({detail}); try again in a moment.", wait, detail)
    if status == 429:
        return ServerRejectedError(f"Training is already running on the server ({detail}); wait for it to finish "
                                   "or stop it first.", status, detail)
    if 400 <= status < 500:
        return ServerRejectedError(f"The server refused {action}: {detail} (HTTP {status}).", status, detail)
    return ServerFailedError(f"The server failed while {action} (HTTP {status}): {detail or 'no explanation'}. "
                             "Its log (GET /logs/) has the details.", status, detail)


def _seconds(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _quote(segment: str) -> str:
    return urllib.parse.quote(str(segment), safe="")
