"""Rebuild the shipped demo model: ``python -m echoforge.weights.build_demo`` (``make demo-model``).

Trains the ``light`` network exactly as ``echoforge train`` does (ED/ES labels only, CPR,
FlameRise, flow priors) on the domain-randomised phantom's *training* style families
(:data:`echoforge.phantom.families.TRAIN_FAMILIES`; the held-out families stay unseen, so
``benchmarks/bench_new_scanner.py`` measures the shipped model on a "new scanner"): one and a
quarter cardiac cycles per video at each patient's frame rate, 112×112, both views, cut into
systole and diastole clips. The best checkpoint is stored with float16 weights (a few MB) as
``echoforge_light_phantom.pt``. Phantom seeds 1000+ are used, the benchmark's training seeds.

The benchmark trains the same recipe as its ``echoforge`` run (seed 0); ``--checkpoint`` packages
such a finished run instead of training again. On a 2-core CPU a run takes about an hour.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tqdm import tqdm

from echoforge.engine.checkpoint import load_model, read_checkpoint, save_checkpoint
from echoforge.engine.clips import cycle_clips
from echoforge.engine.train import TrainConfig, Trainer
from echoforge.nets import get_config
from echoforge.phantom.families import TRAIN_FAMILIES, family_cine
from echoforge.weights import DEMO_CHECKPOINT

SEED = 1000
SIZE = (112, 112)


def phantom_videos(patients: int, seed: int = SEED) -> list:
    """The training videos: ``patients`` phantom patients of the training families, both views."""
    return [family_cine(seed + i, TRAIN_FAMILIES[i % len(TRAIN_FAMILIES)], view, 1.25, SIZE, random_start=False)
            for i in tqdm(range(patients), desc="phantom patients") for view in ("2CH", "4CH")]


def package(checkpoint: Path, out: Path, provenance: dict) -> None:
    """Store ``checkpoint`` as the demo model: float16 weights and the training data's feature statistics."""
    model, net_config, payload = load_model(checkpoint)
    stats = payload.get("feature_stats") or read_checkpoint(checkpoint.parent / "last.pt").get("feature_stats")
    save_checkpoint(out, model, net_config, half=True, epoch=payload["epoch"], metrics=payload["metrics"],
                    train=payload["train"], feature_stats=stats, provenance=provenance)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=DEMO_CHECKPOINT)
    parser.add_argument("--run-dir", type=Path, help="keep the training run here (default: a temporary folder)")
    parser.add_argument("--checkpoint", type=Path, help="package this finished run's checkpoint instead of training")
    args = parser.parse_args()
    provenance = {"command": "python -m echoforge.weights.build_demo", "patients": args.patients,
                  "families": list(TRAIN_FAMILIES), "phantom_seed": SEED, "epochs": args.epochs, "lr": args.lr}
    if args.checkpoint:
        package(args.checkpoint, args.out, {**provenance, "packaged_from": args.checkpoint.name})
        print(f"wrote {args.out} from {args.checkpoint}")
        return
    config = get_config("light")
    train = cycle_clips(phantom_videos(args.patients), SIZE)
    val = cycle_clips(phantom_videos(4, seed=SEED + 1000), SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run_dir or Path(tmp) / "run"
        summary = Trainer(config, TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=2), run).fit(train, val)
        package(run / "checkpoints" / "best.pt", args.out, provenance)
    print(f"wrote {args.out} (best validation score {summary['best_val_dice']})")


if __name__ == "__main__":
    main()
