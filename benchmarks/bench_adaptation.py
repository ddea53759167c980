"""Per-video adaptation on videos from an unseen "scanner": does it make two drawn frames enough?

A model (the ``echoforge`` run of ``bench_methods.py``, trained on in-domain phantom patients, or
else the shipped demo model, trained on the domain-randomised style families) meets phantom
patients of the original phantom's scanner and of its style-shifted domain (other speckle, gain,
depth, sector and heart shapes).
For each video, ED and ES are "drawn" (taken from the reference), and the undrawn frames are scored
three ways: automatic (no drawn frames), segment-the-rest without adaptation, and with adaptation.
Also measured: the adaptation time, and how well the shift score separates shifted videos from
in-domain ones (so ``adapt=auto`` knows when to adapt).

    python benchmarks/bench_adaptation.py [--model CKPT] [--patients 6] [--steps 24]

Writes ``benchmarks/results/adaptation.{json,md}`` and ``benchmarks/results/adaptation_real_a4c.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import RESULTS, table, write_results  # noqa: E402

from echoforge.engine.adapt import AdaptConfig, adapt_to_video, shift_score  # noqa: E402
from echoforge.engine.checkpoint import load_model  # noqa: E402
from echoforge.engine.clips import restrict_labels  # noqa: E402
from echoforge.engine.inference import segment_video  # noqa: E402
from echoforge.metrics.overlap import overlap_metrics  # noqa: E402
from echoforge.phantom import make_patient  # noqa: E402
from echoforge.phantom_datasets import patient_seed  # noqa: E402
from echoforge.weights import DEMO_CHECKPOINT  # noqa: E402

HERE = Path(__file__).resolve().parent
METHODS_MODEL = HERE / "runs" / "methods" / "echoforge" / "checkpoints" / "last.pt"
DEFAULT_MODEL = METHODS_MODEL if METHODS_MODEL.exists() else DEMO_CHECKPOINT
REAL_A4C = HERE.parent / "sample-data" / "real" / "pydicom-data-1.0.0__color3d_jpeg_baseline.dcm"
SIZE = (112, 112)


def undrawn_dice(pred: np.ndarray, ref, drawn: tuple[int, ...]) -> float:
    frames = [t for t in range(ref.n_frames) if t not in drawn]
    return 100 * overlap_metrics(pred, ref.labels, ref.spacing, frames=frames)["mean"]["dice"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--steps", type=int, default=AdaptConfig.steps)
    args = parser.parse_args()
    model, config, payload = load_model(args.model)
    stats = payload.get("feature_stats")
    rows, scores = [], {"in-domain": [], "shifted": []}
    for domain, seed, shifted in (("in-domain", 12, False), ("shifted", 13, True)):
        for i in range(args.patients):
            patient = make_patient(patient_seed(seed, i), shifted=shifted)
            for view in ("2CH", "4CH"):
                ref = patient.render(view, size=SIZE, fps=30.0)
                drawn = restrict_labels(ref, "ed-es")
                scores[domain].append(shift_score(model, ref, stats) if stats else float("nan"))
                auto = segment_video(model, ref.replace(labels=None, annotated=()), use_annotations=False)
                rest = segment_video(model, drawn)
                started = time.perf_counter()
                adapted, info = adapt_to_video(model, drawn, AdaptConfig(steps=args.steps))
                adapt_seconds = time.perf_counter() - started
                after = segment_video(adapted, drawn)
                rows.append({"domain": domain, "video": f"{i}_{view}", "frames": ref.n_frames,
                             "auto": undrawn_dice(auto.labels, ref, drawn.annotated),
                             "rest": undrawn_dice(rest.labels, ref, drawn.annotated),
                             "adapted": undrawn_dice(after.labels, ref, drawn.annotated),
                             "adapt_seconds": adapt_seconds, "shift_score": scores[domain][-1]})
                print(rows[-1], flush=True)
    summary = []
    for domain in ("in-domain", "shifted"):
        sel = [r for r in rows if r["domain"] == domain]
        summary.append({"domain": domain, "videos": len(sel),
                        **{k: float(np.mean([r[k] for r in sel])) for k in ("auto", "rest", "adapted",
                                                                           "adapt_seconds", "shift_score")}})
    threshold = stats["threshold"] if stats else float("nan")
    inside, outside = np.array(scores["in-domain"]), np.array(scores["shifted"])
    auc = float(np.mean([[o > i for i in inside] for o in outside]))  # P(shifted scores higher)
    detection = {"threshold": threshold, "auc": auc, "shifted_flagged": float(np.mean(outside > threshold)),
                 "in_domain_flagged": float(np.mean(inside > threshold))}
    trained = {METHODS_MODEL: "trained on in-domain phantoms",
               DEMO_CHECKPOINT: "the shipped demo model, trained on the domain-randomised style families"}
    columns = [("domain", "videos from"), ("videos", "n"), ("auto", "automatic"), ("rest", "segment the rest"),
               ("adapted", "+ adaptation"), ("adapt_seconds", "adaptation s"), ("shift_score", "shift score")]
    md = ["# Per-video adaptation (phantom, CPU)", "",
          f"Model: `{args.model.relative_to(HERE.parent) if args.model.is_relative_to(HERE.parent) else args.model}` "
          f"({config.name}; {trained.get(args.model, 'given with --model')}). Mean Dice (%) of the undrawn frames (all structures) "
          f"of full-cycle videos at 112×112 with ED and ES drawn; adaptation {args.steps} steps on this CPU.", "",
          table(summary, columns), "",
          f"Shift detection: AUC {auc:.3f}; threshold {threshold:.3f} flags {100 * detection['shifted_flagged']:.0f} % "
          f"of shifted and {100 * detection['in_domain_flagged']:.0f} % of in-domain videos."]
    md += ["", "Per video:", "", table(rows, [("domain", "domain"), ("video", "video"), ("auto", "auto"),
                                              ("rest", "rest"), ("adapted", "adapted"),
                                              ("adapt_seconds", "s"), ("shift_score", "shift")])]
    if REAL_A4C.exists():
        md += ["", real_a4c_preview(model)]
    print("\n".join(md))
    write_results("adaptation", {"summary": summary, "rows": rows, "detection": detection, "steps": args.steps,
                                 "model": str(args.model)}, "\n".join(md))


def real_a4c_preview(model) -> str:
    """Automatic segmentation of the real cine, as a montage to look at (no reference exists)."""
    from echoforge.io.dicom import read_dicom
    from echoforge.viz import montage, overlay, save_png

    video = read_dicom(REAL_A4C)
    seg = segment_video(model, video, use_annotations=False)
    picks = np.linspace(0, video.n_frames - 1, 8).round().astype(int)
    tiles = [overlay(video.frames[t], seg.labels[t]) for t in picks]
    path = RESULTS / "adaptation_real_a4c.png"
    save_png(path, montage(tiles, ncols=4, titles=[f"real A4C frame {t}" for t in picks]))
    return f"Real A4C cine, automatic segmentation by the phantom-trained model: `{path.name}`."


if __name__ == "__main__":
    main()
