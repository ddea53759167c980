"""Segment a whole archive: every video of a folder, a file list, or a CSV (EchoNet's FileList.csv).

    echoforge segment EchoNet-Dynamic/FileList.csv --out results/
    torchrun --standalone --nproc_per_node 4 -m echoforge.cli segment Videos/ --out results/
    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --rdzv-endpoint HOST:29500 -m echoforge.cli segment ...

What ``OUT`` receives::

    labels/<name>.nii.gz     every frame's labels (0-3) on the video's geometry
    videos/<name>.json       that video's row: measurements (ED/ES, EDV/ESV/EF, FAC, ...) or its error
    measurements.csv         one row per video, the whole archive (written at the end by rank 0)
    measurements.json        the same rows plus a summary (videos, failures, throughput)

Every file is written atomically (a temporary file in the same folder, moved into place), labels
before the row, so a video counts as done exactly when its row says ``ok``. A killed run started
again skips the finished videos (and retries the failed ones). A video that cannot be read or
segmented is logged, recorded with its error and skipped; the batch goes on.

Under ``torchrun`` each process takes its shard (``videos[rank::world]`` of the input order), uses
its own GPU (``LOCAL_RANK``) or CPU threads, and the rows are gathered with torch.distributed
(gloo on CPU, NCCL on CUDA) so rank 0 writes one merged table — also when the nodes share no disk.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from echoforge.errors import DatasetLayoutError, EchoForgeError
from echoforge.io.atomic import compound_suffix, write_json_atomic, write_text_atomic
from echoforge.io.avi import MOVIE_EXTS

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".dcm", ".dicom", ".dcm.gz", ".nii.gz", ".nii", ".nrrd", *MOVIE_EXTS)
LIST_SUFFIXES = (".csv", ".txt", ".lst", ".list")
#: Sub-folders of a studies folder that hold labels, not videos.
NOT_VIDEO_FOLDERS = {"labels", "reference", "originals"}
#: The columns of measurements.csv, in order (extra measurement keys follow when present).
COLUMNS = ("name", "source", "status", "error", "frames", "height", "width", "spacing_row_mm", "spacing_col_mm",
           "frame_time_ms", "view", "ed", "es", "edv_ml", "esv_ml", "ef", "fac", "seconds", "rank", "labels")
#: Per-beat and strain keys a newer :func:`echoforge.report.measurements` may add; copied when present.
OPTIONAL_KEYS = ("n_beats", "ef_mean", "ef_sd", "gls")
#: How long a process waits at the end for the slowest shard (gloo's default, 30 min, is too short).
GATHER_TIMEOUT = datetime.timedelta(hours=72)


@dataclass(frozen=True)
class ArchiveItem:
    name: str  # unique, safe as a file name
    path: Path


def is_archive_input(path: str | os.PathLike[str]) -> bool:
    """A folder or a list/CSV file: what ``echoforge segment`` runs as a batch."""
    path = Path(path)
    return path.is_dir() or compound_suffix(path) in LIST_SUFFIXES


def collect_items(source: str | os.PathLike[str], exclude: Path | None = None) -> list[ArchiveItem]:
    """The videos of a folder (recursive; an EchoNet root by its FileList.csv), a list file (one path a
    line, ``#`` comments, relative to the list) or a CSV (a ``FileName`` column as in EchoNet, found
    in ``Videos/``, or a ``path`` column), in a stable order.

    Raises:
        DatasetLayoutError: nothing to segment, or a CSV without a file column.
    """
    source = Path(source).expanduser()
    if source.is_dir() and (source / "FileList.csv").exists():
        source = source / "FileList.csv"
    if source.is_dir():
        paths = sorted(_videos_under(source, exclude.resolve() if exclude else None))
        names = [str(p.relative_to(source)) for p in paths]
    elif compound_suffix(source) == ".csv":
        paths, names = _from_csv(source)
    elif source.exists():
        lines = [ln.strip() for ln in source.read_text().splitlines()]
        paths = [(source.parent / ln).expanduser() for ln in lines if ln and not ln.startswith("#")]
        names = [p.name for p in paths]
    else:
        raise DatasetLayoutError("not found", source)
    if not paths:
        raise DatasetLayoutError("no videos to segment", source)
    return [ArchiveItem(name, path) for name, path in zip(_unique_names(names), paths, strict=True)]


def _videos_under(root: Path, exclude: Path | None) -> Iterable[Path]:
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in NOT_VIDEO_FOLDERS
                   and (exclude is None or (here / d).resolve() != exclude)]
        yield from (here / f for f in files if not f.startswith(".") and compound_suffix(f) in VIDEO_SUFFIXES)


def _from_csv(path: Path) -> tuple[list[Path], list[str]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fields = {f.strip().lower(): f for f in reader.fieldnames or ()}
        rows = list(reader)
    if "filename" in fields:  # EchoNet-Dynamic: names without .avi, the videos in Videos/
        key = fields["filename"]
        stems = [row[key].strip() for row in rows if row.get(key, "").strip()]
        folder = path.parent / "Videos" if (path.parent / "Videos").is_dir() else path.parent
        paths = [folder / (s if Path(s).suffix.lower() in MOVIE_EXTS else f"{s}.avi") for s in stems]
        return paths, stems
    key = fields.get("path") or fields.get("file")
    if key is None:
        raise DatasetLayoutError("the CSV needs a FileName (EchoNet) or a path column", path)
    paths = [(path.parent / row[key].strip()).expanduser() for row in rows if row.get(key, "").strip()]
    return paths, [p.name for p in paths]


def _unique_names(names: list[str]) -> list[str]:
    """File-safe, unique output names: extension dropped, folders joined with ``__``."""
    out, seen = [], set()
    for raw in names:
        stem = raw[: len(raw) - len(compound_suffix(raw))] if compound_suffix(raw) in VIDEO_SUFFIXES else raw
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.replace(os.sep, "__")).strip("._") or "video"
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


# --------------------------------------------------------------------------------------- running
def run_archive(items: list[ArchiveItem], out: str | os.PathLike[str], model_path: str | os.PathLike[str],
                device: str = "auto", chunk: int | None = 16, progress: bool = True) -> dict[str, Any]:
    """Segment ``items`` into ``out`` (see the module docstring); under torchrun, this process's shard.

    Returns:
        The summary (on every rank): ``videos``, ``ok``, ``failed``, ``resumed`` (done before this
        run), ``processed`` (segmented now, all ranks), ``seconds``, ``videos_per_minute`` (this
        run's segmented videos over its wall time), ``world_size``, ``table`` (CSV path).
    """
    from tqdm.auto import tqdm

    from echoforge.engine.checkpoint import load_model
    from echoforge.engine.train import resolve_device

    started = time.perf_counter()
    out = Path(out)
    rank, world, local_rank = _join_process_group()
    device_obj = resolve_device(device)
    if device_obj.type == "cuda" and world > 1:
        device_obj = torch.device("cuda", local_rank)
        torch.cuda.set_device(device_obj)
    model, _, _ = load_model(model_path, device=device_obj)
    shard = items[rank::world]
    rows, processed = [], 0
    bar = tqdm(shard, desc=f"segment (rank {rank}/{world})" if world > 1 else "segment", unit="video",
               disable=not progress, position=local_rank if world > 1 else None, dynamic_ncols=True)
    for item in bar:
        row = _finished_row(out, item)
        if row is None:
            row = _segment_one(model, item, out, device_obj, chunk, rank)
            processed += 1
        rows.append(row)
    bar.close()
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, (rows, processed))
        rows = [r for part, _ in gathered for r in part]
        processed = sum(n for _, n in gathered)
    order = {item.name: i for i, item in enumerate(items)}
    rows.sort(key=lambda r: order.get(r["name"], len(order)))
    seconds = time.perf_counter() - started
    summary = {"videos": len(items), "ok": sum(r["status"] == "ok" for r in rows),
               "failed": sum(r["status"] != "ok" for r in rows), "resumed": len(rows) - processed,
               "processed": processed, "seconds": round(seconds, 3),
               "videos_per_minute": round(60.0 * processed / seconds, 2) if processed else None,
               "world_size": world, "table": str(out / "measurements.csv")}
    if rank == 0:
        _write_table(out, rows, summary)
    if world > 1:
        dist.barrier()  # nobody leaves before the table is written
    return summary


def _join_process_group() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins torchrun's process group with a long timeout."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return 0, 1, 0
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, timeout=GATHER_TIMEOUT)
    return dist.get_rank(), dist.get_world_size(), local_rank


def _paths(out: Path, item: ArchiveItem) -> tuple[Path, Path]:
    return out / "labels" / f"{item.name}.nii.gz", out / "videos" / f"{item.name}.json"


def _finished_row(out: Path, item: ArchiveItem) -> dict[str, Any] | None:
    """The stored row of a video finished by an earlier run, or None (never run, failed, or damaged)."""
    labels, row_path = _paths(out, item)
    try:
        row = json.loads(row_path.read_text())
    except (OSError, ValueError):
        return None
    return row if row.get("status") == "ok" and labels.exists() else None


def _segment_one(model: torch.nn.Module, item: ArchiveItem, out: Path, device: torch.device, chunk: int | None,
                 rank: int) -> dict[str, Any]:
    from echoforge.engine.inference import segment_video
    from echoforge.io import load_video
    from echoforge.io.volume import write_labels
    from echoforge.report import measurements

    labels_path, row_path = _paths(out, item)
    for stale in [*labels_path.parent.glob(f".{item.name}.nii.gz.*.part*"),
                  *row_path.parent.glob(f".{item.name}.json.*.part*")]:
        stale.unlink(missing_ok=True)  # the temporary files of a killed run
    row: dict[str, Any] = {"name": item.name, "source": str(item.path), "rank": rank}
    try:
        video = load_video(item.path)
        seg = segment_video(model, video, use_annotations=False, chunk=chunk, device=device)
        write_labels(video, labels_path, labels=seg.labels, annotated=tuple(range(video.n_frames)))
        m = measurements(seg.labels, video.spacing, video.frame_time_ms)
        row.update(status="ok", error=None, frames=video.n_frames, height=video.shape[0], width=video.shape[1],
                   spacing_row_mm=video.spacing[0] if video.spacing else None,
                   spacing_col_mm=video.spacing[1] if video.spacing else None, frame_time_ms=video.frame_time_ms,
                   view=video.view, ed=m.get("ed"), es=m.get("es"), edv_ml=m.get("edv_disks_ml"),
                   esv_ml=m.get("esv_disks_ml"), ef=m.get("ef"), fac=m.get("fac"), seconds=round(seg.seconds, 4),
                   labels=str(labels_path.relative_to(out)), note=m.get("reason"))
        row.update({k: m[k] for k in OPTIONAL_KEYS if k in m})
    except EchoForgeError as err:
        logger.warning(f"skipping {item.path}: {err.problem}")
        row.update(status="failed", error=err.problem)
    except (RuntimeError, ValueError, OSError, MemoryError) as err:  # a video that breaks the model or the disk
        logger.error(f"skipping {item.path}: {type(err).__name__}: {err}")
        row.update(status="failed", error=f"{type(err).__name__}: {err}")
    write_json_atomic(row_path, _finite(row))
    return row


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf (a failed EF) become null: the JSON stays standard."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def cmd_segment_archive(args: Any) -> int:
    """``echoforge segment FOLDER|LIST|CSV --out FOLDER``: the batch form of ``echoforge segment``."""
    from echoforge.weights import default_checkpoint

    single = [flag for flag, value in (("--labels", args.labels), ("--annotated", args.annotated),
                                       ("--report", args.report), ("--montage", args.montage)) if value]
    if single:
        raise EchoForgeError(f"{', '.join(single)} apply to one video; an archive gets every video's labels in "
                             "OUT/labels and one measurements table", args.input)
    out = Path(args.out)
    if compound_suffix(out) in VIDEO_SUFFIXES or (out.exists() and not out.is_dir()):
        raise EchoForgeError("for an archive, --out is a folder (labels/, videos/, measurements.csv go there)", out)
    items = collect_items(args.input, exclude=out)
    summary = run_archive(items, out, args.model or default_checkpoint(), device=args.device, chunk=args.chunk)
    if int(os.environ.get("RANK", "0")) == 0:
        rate = f", {summary['videos_per_minute']} videos/min" if summary["videos_per_minute"] else ""
        print(f"{summary['ok']} of {summary['videos']} videos segmented ({summary['failed']} failed, "
              f"{summary['resumed']} done before) in {summary['seconds']:.1f} s{rate}; table: {summary['table']}")
    return 0


def _write_table(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    extra = [k for k in OPTIONAL_KEYS if any(k in r for r in rows)] + ["note"]
    columns = [*COLUMNS, *extra]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(_finite(r) for r in rows)
    write_text_atomic(out / "measurements.csv", buffer.getvalue())
    write_json_atomic(out / "measurements.json", {"summary": summary, "videos": [_finite(r) for r in rows]})
