"""The ``echoforge`` command.

Each sub-command is one function ``cmd_<name>(args) -> int``; bad input surfaces as an
:class:`~echoforge.errors.EchoForgeError`, printed as one line (exit status 2), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from echoforge import __version__
from echoforge.errors import EchoForgeError

EXIT_BAD_INPUT = 2

DESCRIPTION = """\
EchoForge: echocardiography video segmentation from a few annotated frames.

Common tasks:
  echoforge inspect scan.dcm                      what is in a file (frames, spacing, timing, labels)
  echoforge measure labels_4ch.nii.gz --labels-2ch labels_2ch.nii.gz
                                                  ED/ES, LV volumes and EF from label maps
  echoforge phantom --out data --layout camus     synthetic echo patients with exact ground truth
  echoforge convert scan.dcm --out scan.nii.gz    any echo video to an H×W×T volume for MONAI Label / Slicer
  echoforge serve --studies sample-data/studies   start the MONAI Label server with the EchoForge app
"""


def _print_json(obj: Any) -> None:
    from echoforge.io.atomic import _json_default

    print(json.dumps(obj, indent=2, default=_json_default))


def _format_table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {'—' if v is None else v}" for k, v in rows)


# --------------------------------------------------------------------------- inspect
def cmd_inspect(args: argparse.Namespace) -> int:
    from echoforge.io import load_video

    path = Path(args.path)
    if path.is_dir():
        summary = _inspect_folder(path)
    else:
        summary = load_video(path, labels=args.labels).summary()
        if args.labels:
            summary["labels"] = str(args.labels)
    if args.json:
        _print_json(summary)
        return 0
    rows = []
    for key, value in summary.items():
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) if len(value) <= 12 else f"{len(value)} items: {value[:6]} …"
        rows.append((key.replace("_", " "), value))
    print(_format_table(rows))
    return 0


def _inspect_folder(path: Path) -> dict[str, Any]:
    from echoforge.io.camus import CamusDataset
    from echoforge.io.echonet import EchoNetDataset
    from echoforge.io.studies import StudiesDataset

    if (path / "FileList.csv").exists():
        ds = EchoNetDataset(path)
        return {"layout": "echonet", "root": str(path), "videos": len(ds.files),
                "split": {s: len(ds.split(s)) for s in ("TRAIN", "VAL", "TEST")},
                "traced_videos": sum(1 for f in ds.files if ds.tracings(f))}
    if (path / "database_nifti").is_dir() or any(path.glob("patient[0-9][0-9][0-9][0-9]/Info_*.cfg")):
        camus = CamusDataset(path)
        return {"layout": "camus", "release": camus.release, "root": str(path), "patients": len(camus.patients),
                "views": sum(len(camus.views(p)) for p in camus.patients)}
    studies = StudiesDataset(path)
    names = studies.names
    return {"layout": "nifti (studies)", "root": str(path), "videos": len(names),
            "labelled": sum(1 for n in names if studies.label_path(n) is not None),
            "with_reference": sum(1 for n in names if studies.reference_path(n) is not None)}


# --------------------------------------------------------------------------- measure
def cmd_measure(args: argparse.Namespace) -> int:
    from echoforge.core.clip import measure_clip, measure_pair
    from echoforge.io.volume import read_label_volume
    from echoforge.video import validate_labels

    def load(path: str) -> tuple[Any, tuple[float, float] | None, float | None]:
        volume = read_label_volume(path)
        checked, _ = validate_labels(volume.labels, volume.labels.shape, (), path)
        return checked, tuple(args.spacing) if args.spacing else volume.spacing, volume.frame_time_ms

    labels, spacing, frame_time = load(args.labels)
    clip = measure_clip(labels, spacing, frame_time, args.ed, args.es)
    if args.labels_2ch:
        labels_2ch, spacing_2ch, frame_time_2ch = load(args.labels_2ch)
        clip_2ch = measure_clip(labels_2ch, spacing_2ch, frame_time_2ch)
        result = {**measure_pair(clip_2ch, clip), "2CH": clip_2ch.result, "4CH": clip.result}
    else:
        result = clip.result
    if args.curve_png:
        from echoforge.report import write_volume_curve

        write_volume_curve(clip.result, frame_time, args.curve_png)
    if args.json:
        _print_json(result)
        return 0
    rows = [(k.replace("_", " "), v if not isinstance(v, float) else round(v, 2))
            for k, v in _flatten(result).items() if not isinstance(v, list)]
    print(_format_table(rows))
    return 0


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key} "))
        else:
            out[f"{prefix}{key}"] = value
    return out


# --------------------------------------------------------------------------- phantom / sample data
def cmd_phantom(args: argparse.Namespace) -> int:
    from echoforge.phantom_datasets import write_phantom_dataset

    if args.beats is not None and args.beats < 1 or not 0.0 <= args.irregular <= 1.0:
        raise EchoForgeError("--beats must be at least 1 and --irregular a fraction between 0 and 1")
    out = write_phantom_dataset(args.out, args.layout, patients=args.patients, seed=args.seed,
                                size=tuple(args.size) if args.size else None, labelled=args.labelled,
                                shifted=args.shifted, progress=not args.quiet, beats=args.beats,
                                irregular=args.irregular, family=args.family)
    print(f"wrote {args.patients} phantom patient(s) in the {args.layout} layout to {out}")
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from echoforge.sample_data import build_sample_data

    report = build_sample_data(Path(args.out), real_dicom=args.real_dicom, progress=not args.quiet)
    _print_json(report) if args.json else print(_format_table([(k, v) for k, v in report.items()
                                                                   if not isinstance(v, (dict, list))]))
    return 0


# --------------------------------------------------------------------------- convert
def cmd_convert(args: argparse.Namespace) -> int:
    from echoforge.io import load_video, save_video, write_labels

    video = load_video(args.input, labels=args.labels)
    out = save_video(video, args.out)
    print(f"wrote {out} ({video.n_frames} frames, {video.shape[0]}×{video.shape[1]}, spacing "
          f"{'unknown' if not video.spacing else f'{video.spacing[0]:.4f}×{video.spacing[1]:.4f} mm'})")
    if args.labels_out:
        if video.labels is None:
            raise EchoForgeError("--labels-out needs labels (give --labels, or a file that carries them)", args.input)
        print(f"wrote {write_labels(video, args.labels_out)}")
    return 0


# --------------------------------------------------------------------------- train / evaluate
def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from echoforge.engine.clips import training_clips
    from echoforge.engine.train import TrainConfig, Trainer
    from echoforge.nets import get_config

    overrides: dict[str, Any] = {"mode": args.mode, "use_arc": not args.no_arc, "use_tsf": not args.no_tsf}
    if args.encoder_weights:
        overrides["encoder_weights"] = args.encoder_weights
    if args.size:
        overrides["input_size"] = tuple(args.size)
    net = get_config(args.config, **overrides)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, labelled=args.labelled,
                            use_cpr=not args.no_cpr, clip_frames=args.clip_frames, seed=args.seed,
                            device=args.device, progress=not args.quiet)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_items = _subset_or_all(args.data, args.layout, "training")
    val_items = _subset_or_none(args.data, args.layout, "validation")
    clips = training_clips(train_items, net.input_size, train_cfg.clip_frames, train_cfg.labelled)
    val = training_clips(val_items, net.input_size, train_cfg.clip_frames, "all") if val_items else None
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"training {net.name} ({net.mode}) on {len(clips)} clips ({train_cfg.labelled} labels), "
              f"validating on {len(val) if val else 0}; run folder {args.out}", flush=True)
    summary = Trainer(net, train_cfg, args.out, resume=not args.no_resume).fit(clips, val)
    if int(os.environ.get("RANK", "0")) == 0:
        last = summary["history"][-1] if summary["history"] else {}
        print(f"done: {summary['epochs']} epochs, best validation Dice {summary['best_val_dice']}, "
              f"last epoch {last.get('val_dice_mean')}; checkpoints in {Path(args.out) / 'checkpoints'}")
    return 0


def _subset_or_all(data: str, layout: str, subset: str) -> list[Any]:
    from echoforge.engine.clips import load_dataset
    from echoforge.errors import DatasetLayoutError

    try:
        return load_dataset(data, layout, subset)
    except DatasetLayoutError:
        return load_dataset(data, layout, None)


def _subset_or_none(data: str, layout: str, subset: str) -> list[Any] | None:
    from echoforge.engine.clips import load_dataset
    from echoforge.errors import DatasetLayoutError

    try:
        return load_dataset(data, layout, subset)
    except DatasetLayoutError:
        return None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from echoforge.engine.checkpoint import load_model
    from echoforge.engine.evaluate import evaluate_videos
    from echoforge.engine.train import resolve_device

    device = resolve_device(args.device)
    model, config, _ = load_model(args.model, device=device)
    if args.subset:
        from echoforge.engine.clips import load_dataset

        items = load_dataset(args.data, args.layout, args.subset)
    else:
        items = _subset_or_all(args.data, args.layout, "testing")
    report = evaluate_videos(model, items, args.out, config.mode, device=device, progress=not args.quiet,
                             title=f"EchoForge {config.name} on {Path(args.data).name}")
    s = report["summary"]
    print(f"{s['videos']} videos: Dice all frames {100 * (s['all_dice_mean'] or 0):.2f}, "
          f"ED/ES {100 * (s['ed_es_dice_mean'] or 0):.2f}; report in {args.out}/report.md")
    return 0


# --------------------------------------------------------------------------- segment / export
def cmd_segment(args: argparse.Namespace) -> int:
    from echoforge.engine.archive import cmd_segment_archive, is_archive_input

    if is_archive_input(args.input):  # a folder, a file list or a CSV: the whole archive
        return cmd_segment_archive(args)
    import numpy as np

    from echoforge.engine.checkpoint import load_model
    from echoforge.engine.inference import PRIOR_BLEND, segment_video
    from echoforge.engine.train import resolve_device
    from echoforge.io import load_video
    from echoforge.io.volume import is_volume_path, write_labels, write_labels_like
    from echoforge.report import video_report
    from echoforge.weights import default_checkpoint

    blend = PRIOR_BLEND if args.prior_blend is None else args.prior_blend
    if not 0.0 <= blend <= 1.0:  # also NaN
        raise EchoForgeError(f"--prior-blend must lie between 0 and 1, not {blend}")
    device = resolve_device(args.device)
    model, config, _ = load_model(args.model or default_checkpoint(), device=device)
    video = load_video(args.input, labels=args.labels)
    if not args.labels:  # a dataset's own reference (e.g. CAMUS _gt) is not a drawing: only --labels is
        video = video.with_labels(None)
    if args.annotated:
        if video.labels is None:
            raise EchoForgeError("--annotated needs --labels (the frames you drew)", args.input)
        video = video.with_labels(video.labels, [int(a) for a in args.annotated.split(",")])
    seg = segment_video(model, video, use_annotations=True, chunk=args.chunk, device=device, prior_blend=blend)
    segmented = tuple(int(t) for t in np.flatnonzero(seg.labels.reshape(video.n_frames, -1).any(axis=1)))
    if is_volume_path(args.input):  # keep the input's own geometry (axis order, orientation)
        write_labels_like(seg.labels, args.input, args.out, annotated=segmented)
    else:
        write_labels(video, args.out, labels=seg.labels, annotated=segmented)
    montage = args.montage or str(Path(args.out).with_suffix("").with_suffix("")) + "_overlay.png"
    report = video_report(video, seg.labels, seg, report_path=args.report, montage_path=montage)
    print(f"wrote {args.out}: {video.n_frames} frames in {seg.seconds:.2f} s "
          f"({video.n_frames / seg.seconds:.1f} frames/s)")
    for warning in seg.extra.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if seg.extra.get("next_frame") is not None:
        print(f"the propagation is least certain at frame {seg.extra['next_frame']}: draw it next to help most")
    m = report["measurements"]
    rhythm = m.get("rhythm") or {}
    sd = f" ± {m['ef_sd']:.1f}" if m.get("ef_sd") is not None else ""
    print(_format_table([("ED frame", m.get("ed")), ("ES frame", m.get("es")),
                         ("EDV (ml)", _round(m.get("edv_disks_ml"))), ("ESV (ml)", _round(m.get("esv_disks_ml"))),
                         ("EF (%)", _round(m.get("ef"))),
                         ("beats (used)", f"{m.get('n_beats')} ({m.get('n_beats_used')})"),
                         ("EF over beats (%)", f"{m['ef_mean']:.1f}{sd}" if m.get("ef_mean") is not None else None),
                         ("GLS (%)", _round(m.get("gls_mean"))), ("LA volume (ml)", _round(m.get("la_volume_ml"))),
                         ("LV mass (g)", _round(m.get("lv_mass_g"))),
                         ("rhythm", "irregular" if rhythm.get("irregular") else "regular"
                          if rhythm.get("irregular") is False else None),
                         ("note", m.get("reason") or m.get("beats_note"))]))
    return 0


def _round(value: Any) -> Any:
    return round(value, 1) if isinstance(value, float) else value


def cmd_export(args: argparse.Namespace) -> int:
    from echoforge.engine.checkpoint import load_model
    from echoforge.engine.export import export_model

    model, config, _ = load_model(args.model)
    out = export_model(model, args.format, args.out, n_frames=args.frames)
    print(f"wrote {out} ({args.format}, {args.frames} frames of {config.input_size[0]}×{config.input_size[1]})")
    return 0


# --------------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    app = Path(args.app).resolve()
    remote = args.studies.startswith(("http://", "https://"))  # a DICOMweb PACS (QIDO/WADO/STOW-RS root)
    studies = args.studies.rstrip("/") if remote else Path(args.studies).resolve()
    if not (app / "main.py").exists():
        raise EchoForgeError("no MONAI Label app here (main.py missing)", app)
    if not remote and not studies.is_dir():
        raise EchoForgeError("studies folder not found", studies)
    if importlib.util.find_spec("monailabel") is None:
        raise EchoForgeError("MONAI Label is not installed in this environment; run `make install` first")
    conf: list[str] = []
    for key, value in args.conf or []:
        conf += ["--conf", key, value]
    env = dict(os.environ, **serve_environment())
    # what the `monailabel` launcher runs, with this interpreter rather than whatever `python` is on PATH
    cmd = [sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies", str(studies),
           "--host", args.host, "--port", str(args.port), *conf]
    print(" ".join(cmd), flush=True)
    os.execvpe(cmd[0], cmd, env)
    return 0  # not reached


def serve_environment() -> dict[str, str]:
    """MONAI Label settings for an offline server: no experiment tracking (mlflow), studies watched for new files."""
    return {"MONAI_LABEL_TRACKING_ENABLED": "false", "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "true"}


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="echoforge", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"echoforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="describe an echo file or dataset folder",
                       description="Frames, size, pixel spacing (mm), frame time, view, label values and annotated "
                                   "frames of a DICOM, AVI, NIfTI/NRRD, CAMUS or MetaImage file; for a folder, the "
                                   "dataset layout it holds.")
    p.add_argument("path", help="file or dataset folder")
    p.add_argument("--labels", help="label volume to check against the video")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("measure", help="every beat's ED/ES, LV volumes, EF, GLS, LA volume, LV mass from label maps",
                       description="Every beat of H×W×T label volumes: ED/ES frames, volumes (method of disks, "
                                   "area-length; biplane with --labels-2ch), EF, FAC, GLS, LA volume and LV mass, "
                                   "their means over the good beats, the rhythm and quality flags.")
    p.add_argument("labels", help="label volume (4CH when --labels-2ch is given)")
    p.add_argument("--labels-2ch", help="2CH label volume of the same patient, for biplane volumes")
    p.add_argument("--spacing", type=float, nargs=2, metavar=("ROW_MM", "COL_MM"),
                   help="pixel spacing when the file has none")
    p.add_argument("--ed", type=int, help="end-diastolic frame you marked (of the 4CH with --labels-2ch; default: "
                                          "detected)")
    p.add_argument("--es", type=int, help="end-systolic frame you marked (default: detected)")
    p.add_argument("--curve-png", help="write the LV volume curve with every beat's ED/ES and EF to this PNG")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_measure)

    from echoforge.phantom.families import FAMILIES, TEST_FAMILIES, TRAIN_FAMILIES
    from echoforge.phantom_datasets import LAYOUTS

    p = sub.add_parser("phantom", help="write synthetic echo patients with exact ground truth",
                       description="Realistic apical 2CH/4CH echo phantoms (speckle, attenuation, dropout, motion) "
                                   "with per-frame labels and true EDV/ESV/EF, in a real dataset layout.")
    p.add_argument("--out", required=True, help="destination folder")
    p.add_argument("--layout", choices=LAYOUTS, default="camus", help="dataset layout (default: camus)")
    p.add_argument("--patients", type=int, default=4, help="number of patients (default: 4)")
    p.add_argument("--seed", type=int, default=0, help="run seed; patient i uses seed*1000+i (default: 0)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="frame size (default per layout)")
    p.add_argument("--labelled", choices=("ed-es", "all", "none"), default="ed-es",
                   help="nifti layout: frames labelled in labels/final (default: ed-es)")
    p.add_argument("--shifted", action="store_true", help="draw from the style-shifted domain (another scanner)")
    p.add_argument("--beats", type=int, help="clips of this many different beats (heart-rate and EF variation; "
                                             "default: one cycle)")
    p.add_argument("--irregular", type=float, default=0.0,
                   help="with --beats: fraction of patients in an irregular rhythm, atrial-fibrillation-like")
    p.add_argument("--family", choices=sorted(FAMILIES),
                   help="phantom style family (anatomy, scanner style, acquisition): "
                        f"{', '.join(TRAIN_FAMILIES)} are trained on, {', '.join(TEST_FAMILIES)} held out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("sample-data", help="regenerate sample-data/ from seeds",
                       description="Rebuild the committed sample data: phantom CAMUS and EchoNet sets, MONAI Label "
                                   "studies, previews, and the converted real cine.")
    p.add_argument("--out", default="sample-data", help="destination (default: sample-data)")
    p.add_argument("--real-dicom", help="the real A4C cine to include (default: sample-data/real/…)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("convert", help="convert an echo video (DICOM, AVI, ...) to NIfTI/NRRD/AVI/DICOM",
                       description="Read any supported echo video (sector detected and cropped for DICOM) and write "
                                   "it as an H×W×T volume that 3D Slicer and MONAI Label read with correct spacing.")
    p.add_argument("input")
    p.add_argument("--out", required=True, help="output file (.nii.gz, .nrrd, .avi, .dcm)")
    p.add_argument("--labels", help="labels of the input video")
    p.add_argument("--labels-out", help="also write the labels to this file")
    p.set_defaults(func=cmd_convert)

    from echoforge.nets.config import CONFIGS

    p = sub.add_parser("train", help="semi-supervised training from ED/ES labels (ARC + TSF + CPR/FlameRise)",
                       description="Train an EchoForge network on a dataset folder. Only the annotated frames teach "
                                   "directly (ED/ES by default); CPR reforges pseudo-labels for the other frames. "
                                   "Checkpoints (atomic, resumable) go to RUN_DIR/checkpoints. Multi-GPU or multi-"
                                   "process: torchrun --nproc_per_node N -m echoforge.cli train ...")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--layout", choices=("camus", "echonet", "nifti"), required=True)
    p.add_argument("--config", choices=sorted(CONFIGS), default="light", help="network configuration")
    p.add_argument("--out", required=True, help="run folder (RUN_DIR)")
    p.add_argument("--labelled", choices=("ed-es", "all"), default="ed-es",
                   help="which annotated frames teach directly (all = the fully supervised oracle)")
    p.add_argument("--mode", choices=("camus", "lv"), default="camus", help="4 classes or binary LV")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--clip-frames", type=int, default=10)
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="network input size")
    p.add_argument("--encoder-weights", help="local ImageNet ResNet weights (nothing is downloaded)")
    p.add_argument("--no-cpr", action="store_true", help="ablation: no pseudo-labels (labelled frames only)")
    p.add_argument("--no-arc", action="store_true", help="ablation: no anchor recalibration")
    p.add_argument("--no-tsf", action="store_true", help="ablation: no temporal memory")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if RUN_DIR has a checkpoint")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="Dice/HD95/ASSD, EF agreement and plots on a dataset",
                       description="Segment every video of a dataset (its test split by default) and write "
                                   "report.json, report.md, EF Bland-Altman and regression PNGs to OUT.")
    p.add_argument("--model", required=True, help="checkpoint (.pt)")
    p.add_argument("--data", required=True)
    p.add_argument("--layout", choices=("camus", "echonet", "nifti"), required=True)
    p.add_argument("--subset", help="training, validation or testing (default: testing, else everything)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("segment", help="segment every frame of an echo video (or a whole archive), with volumes and EF",
                       description="Segment a DICOM cine, AVI, NIfTI/NRRD or CAMUS file. With --labels (a label "
                                   "volume holding the frames you drew) the drawn frames guide the rest and are "
                                   "kept exactly as drawn. Given a folder, a file list or a CSV (EchoNet's "
                                   "FileList.csv), segments every video into the --out folder with one measurements "
                                   "table, resumable; under torchrun each process takes its shard.")
    p.add_argument("input", help="a video, or a folder / file list / CSV of videos")
    p.add_argument("--model", help="checkpoint (default: the shipped demo model)")
    p.add_argument("--out", required=True, help="output label volume (.nii.gz or .nrrd); a folder for an archive")
    p.add_argument("--labels", help="partial labels: the frames you annotated")
    p.add_argument("--annotated", help="comma-separated annotated frame indices (default: frames with labels)")
    p.add_argument("--report", help="write a JSON report (every beat's ED/ES, EDV/ESV/EF, GLS, LA volume, LV mass, "
                                    "volume curve) and PNGs here")
    p.add_argument("--montage", help="overlay montage PNG (default: next to --out)")
    p.add_argument("--chunk", type=int, default=16, help="frames per batch (1 = streaming)")
    p.add_argument("--prior-blend", type=float, default=None,
                   help="with --labels: share of the drawn masks carried by optical flow in the result, 0 to 1 "
                        "(default 0.8; 0 = the network alone)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("export", help="export a model to TorchScript or ONNX",
                       description="Export the clip network (fixed number of frames) for deployment; the export is "
                                   "checked against the PyTorch model before it is written.")
    p.add_argument("--model", required=True)
    p.add_argument("--format", choices=("torchscript", "onnx"), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=10, help="frames per clip (default 10)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", help="start the MONAI Label server with the EchoForge app",
                       description="Run `monailabel start_server` with apps/echoforge on a studies folder or on a "
                                   "PACS's DICOMweb root (http://HOST:PORT/dicom-web).")
    p.add_argument("--studies", default="sample-data/studies", help="studies folder, or a DICOMweb URL")
    p.add_argument("--app", default=str(Path(__file__).resolve().parents[2] / "apps" / "echoforge"))
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only); any other address makes "
                        "every request need the server's API key (see apps/echoforge/README.md)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--conf", nargs=2, action="append", metavar=("KEY", "VALUE"), help="app configuration")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except EchoForgeError as err:
        if getattr(args, "json", False):
            _print_json(err.to_dict())
        print(f"echoforge {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
