"""Rebuild the shipped demo model: ``python -m echoforge.weights.build_demo`` (``make demo-model``).

Trains the ``light`` network exactly as ``echoforge train`` does (ED/ES labels only, CPR,
FlameRise) on phantom patients drawn from both scanner styles (one in four style-shifted, for
robustness), full cardiac cycles at 112×112 and 30 frames/s from random start phases, then stores
the best checkpoint with float16 weights (a few MB) as ``echoforge_light_phantom.pt``. Phantom
seeds 100000+ are used, so no sample-data or benchmark patient is ever seen.

On a 2-core CPU the default run takes about half an hour; on a GPU a minute or two.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from echoforge.engine.checkpoint import load_model, read_checkpoint, save_checkpoint
from echoforge.engine.clips import make_clip
from echoforge.engine.train import TrainConfig, Trainer
from echoforge.nets import get_config
from echoforge.phantom import make_patient
from echoforge.phantom_datasets import patient_seed
from echoforge.weights import DEMO_CHECKPOINT

SEED = 100


def phantom_clips(patients: int, size: tuple[int, int], seed: int = SEED) -> list:
    clips = []
    for i in range(patients):
        patient = make_patient(patient_seed(seed, i), shifted=i % 4 == 3)
        rng = np.random.default_rng(patient.seed)
        for view in ("2CH", "4CH"):
            n_frames = int(np.ceil(patient.period_s * 30.0 * 1.2))
            video = patient.render(view, size=size, fps=30.0, n_frames=n_frames,
                                   start_phase=-float(rng.uniform(0.0, 0.15)))
            clips.append(make_clip(video, size, 10, "ed-es", reference=video, video_id=f"demo{i}_{view}"))
    return clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=DEMO_CHECKPOINT)
    parser.add_argument("--run-dir", type=Path, help="keep the training run here (default: a temporary folder)")
    args = parser.parse_args()
    config = get_config("light")
    train = phantom_clips(args.patients, tuple(config.input_size))
    val = phantom_clips(4, tuple(config.input_size), seed=SEED + 1)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run_dir or Path(tmp) / "run"
        summary = Trainer(config, TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=2), run).fit(train, val)
        best = run / "checkpoints" / "best.pt"
        model, net_config, payload = load_model(best)
        stats = read_checkpoint(run / "checkpoints" / "last.pt").get("feature_stats")
        save_checkpoint(args.out, model, net_config, half=True, epoch=payload["epoch"], metrics=payload["metrics"],
                        train=payload["train"], feature_stats=stats,
                        provenance={"command": "python -m echoforge.weights.build_demo", "patients": args.patients,
                                    "phantom_seed": SEED, "epochs": args.epochs, "lr": args.lr})
    print(f"wrote {args.out} (best validation Dice {summary['best_val_dice']})")


if __name__ == "__main__":
    main()
