"""EchoForge against its ablations and the baselines users would pick instead, on phantom echo.

Train every method on the same phantom patients (ED/ES labels only, except the oracle that sees
every frame labelled), evaluate all of them on phantom patients from seeds never used in training,
and time them on this machine:

    python benchmarks/bench_methods.py               # full run (CPU: about 1.5 h on 2 cores)
    python benchmarks/bench_methods.py --quick       # a few minutes, for checking the script

Writes ``benchmarks/results/methods.{json,md}``; runs (checkpoints, logs, per-method reports) go to
``benchmarks/runs/`` (not committed). A finished run is reused when the script is run again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import table, write_results  # noqa: E402

from echoforge.engine.checkpoint import load_model  # noqa: E402
from echoforge.engine.clips import training_clips  # noqa: E402
from echoforge.engine.evaluate import evaluate_videos  # noqa: E402
from echoforge.engine.train import TrainConfig, Trainer  # noqa: E402
from echoforge.nets import get_config  # noqa: E402
from echoforge.phantom import make_patient  # noqa: E402
from echoforge.phantom_datasets import patient_seed  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "runs" / "methods"
SIZE = (112, 112)
SEEDS = {"train": 10, "validation": 11, "test": 12}

#: name → (network configuration + overrides, training overrides, description)
METHODS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "echoforge": ({"config": "light"}, {}, "EchoForge (ARC + TSF + CPR), ED/ES labels"),
    "oracle": ({"config": "light"}, {"labelled": "all"}, "EchoForge, every frame labelled (oracle)"),
    "no_cpr": ({"config": "light"}, {"use_cpr": False}, "EchoForge without CPR"),
    "no_arc": ({"config": "light", "use_arc": False}, {}, "EchoForge without ARC"),
    "no_tsf": ({"config": "light", "use_tsf": False}, {}, "EchoForge without TSF"),
    "unet": ({"config": "unet"}, {"use_cpr": False, "clip_frames": 2}, "2-D U-Net (MONAI), ED/ES labels"),
    "deeplabv3": ({"config": "deeplabv3"}, {"use_cpr": False, "clip_frames": 2},
                  "DeepLabV3-ResNet50 (EchoNet-Dynamic), ED/ES labels"),
    # a frame-wise U-Net step is much cheaper than a clip step: also give it 5× the epochs, so that a gap
    # cannot come from under-training alone
    "unet_5x": ({"config": "unet"}, {"use_cpr": False, "clip_frames": 2, "epochs_scale": 5},
                "2-D U-Net, ED/ES labels, 5× the epochs"),
    "echoforge_5x": ({"config": "light"}, {"epochs_scale": 5}, "EchoForge, ED/ES labels, 5× the epochs"),
}


def phantom_items(split: str, patients: int) -> list[tuple[str, Any, Any]]:
    """Half sequences (ED → ES) of both views at 112×112, 50 frames/s, full labels (the reference)."""
    items = []
    for i in range(patients):
        patient = make_patient(patient_seed(SEEDS[split], i))
        for view in ("2CH", "4CH"):
            video = patient.render_half_sequence(view, size=SIZE, fps=50.0)
            video = video.replace(meta={**video.meta, "patient": f"{split}{i:03d}"})
            items.append((f"{split}{i:03d}_{view}", video, video))
    return items


def train_method(name: str, epochs: int, train_items: list, val_items: list, lr: float) -> Path:
    net_spec, train_over, _ = METHODS[name]
    spec, train_over = dict(net_spec), dict(train_over)
    net = get_config(spec.pop("config"), **spec)
    epochs *= train_over.pop("epochs_scale", 1)
    cfg = TrainConfig(epochs=epochs, batch_size=2, lr=lr, seed=0, progress=True, **train_over)
    run = RUNS / name
    last = run / "checkpoints" / "last.pt"
    if last.exists() and torch.load(last, weights_only=True, map_location="cpu")["epoch"] >= epochs:
        return run
    clips = training_clips(train_items, net.input_size, cfg.clip_frames, cfg.labelled)
    val = training_clips(val_items, net.input_size, 10, "all")
    started = time.time()
    Trainer(net, cfg, run).fit(clips, val)
    (run / "train_seconds.txt").write_text(f"{time.time() - started:.1f}\n")
    return run


def speed(name: str) -> dict[str, Any]:
    """Streaming speed and peak memory, measured in a fresh process (so peak RSS belongs to this model)."""
    code = f"""
import json, resource, time, torch, numpy as np
torch.set_num_threads({torch.get_num_threads()})
from echoforge.nets import get_config, build_model
from echoforge.engine.inference import SegmentationCore
from echoforge.nets.echoforge_net import EchoForgeNet
from torch.utils.flop_counter import FlopCounterMode
spec = {METHODS[name][0]!r}
cfg = get_config(spec.pop("config"), **spec)
out = {{}}
for size in (112, 256):
    net = build_model(cfg, input_size=(size, size)).eval()
    with FlopCounterMode(display=False) as fc:
        net(torch.rand(1, 1, size, size))
    out[f"gflops_{{size}}"] = fc.get_total_flops() / 2e9  # multiply-accumulates, the usual "FLOPs" of papers
    frames = np.random.default_rng(0).random((60, size, size)).astype(np.float32)
    def run():
        if isinstance(net, EchoForgeNet):
            core = SegmentationCore(net)
            for f in frames: core.step(f)
        else:
            with torch.no_grad():
                for f in frames: net(torch.from_numpy(f)[None, None])
    run()
    times = []
    for _ in range(3):
        t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
    out[f"fps_{{size}}"] = len(frames) / min(times)
out["params_m"] = sum(p.numel() for p in build_model(cfg).parameters()) / 1e6
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def evaluate_method(name: str, args: argparse.Namespace, train_items: list, val_items: list,
                    test_items: list) -> dict[str, Any]:
    run = train_method(name, args.epochs, train_items, val_items, args.lr)
    model, config, payload = load_model(run / "checkpoints" / "last.pt")
    report = evaluate_videos(model, test_items, run / "evaluation", config.mode, progress=False,
                             title=f"{name} on phantom test patients")
    s = report["summary"]
    row = {"method": name, "description": METHODS[name][2], "epochs": payload["epoch"],
           "train_minutes": round(float((run / "train_seconds.txt").read_text()) / 60, 1)
           if (run / "train_seconds.txt").exists() else None}
    for scope in ("all", "ed_es"):
        for struct in ("LV", "myocardium", "LA", "mean"):
            value = s.get(f"{scope}_dice_{struct}")
            row[f"{scope}_dice_{struct}"] = None if value is None else round(100 * value, 2)
        row[f"{scope}_hd95"] = s.get(f"{scope}_hd95_mean")
    ef = s.get("ef_biplane") or s.get("ef_single_plane") or {}
    row.update({"ef_r": ef.get("pearson_r"), "ef_bias": ef.get("bias"), "ef_mae": ef.get("mae"),
                "ef_loa": [ef.get("loa_lower"), ef.get("loa_upper")]})
    (run / "result.json").write_text(json.dumps(row, indent=2))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny run to check the script")
    parser.add_argument("--only", nargs="*", choices=sorted(METHODS), help="methods to run (default: all)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-patients", type=int, default=24)
    parser.add_argument("--test-patients", type=int, default=12)
    parser.add_argument("--no-speed", action="store_true", help="train and evaluate only (time later, on a quiet machine)")
    parser.add_argument("--speed-only", action="store_true", help="only (re)measure speed; reuse stored results")
    parser.add_argument("--name", default="methods", help="name of the run folder and result files")
    args = parser.parse_args()
    global RUNS
    if args.quick:
        args.epochs, args.train_patients, args.test_patients, args.name = 2, 3, 2, "methods-quick"
    RUNS = HERE / "runs" / args.name
    torch.manual_seed(0)
    names = args.only or list(METHODS)
    if not args.speed_only:
        train_items = phantom_items("train", args.train_patients)
        val_items = phantom_items("validation", 2 if args.quick else 4)
        test_items = phantom_items("test", args.test_patients)
        for name in names:
            print(json.dumps(evaluate_method(name, args, train_items, val_items, test_items)), flush=True)
    if not args.no_speed:
        for name in names:
            (RUNS / name).mkdir(parents=True, exist_ok=True)
            (RUNS / name / "speed.json").write_text(json.dumps(speed(name)))
    rows = []
    for name in METHODS:
        result = RUNS / name / "result.json"
        if result.exists():
            row = json.loads(result.read_text())
            if (RUNS / name / "speed.json").exists():
                row.update(json.loads((RUNS / name / "speed.json").read_text()))
            rows.append(row)
    by = {r["method"]: r for r in rows}
    targets: dict[str, Any] = {}
    if {"echoforge", "unet", "oracle"} <= set(by):
        # compare like with like: the best EchoForge and the best U-Net over the epoch budgets that were run
        ef = max(by[k]["all_dice_mean"] for k in ("echoforge", "echoforge_5x") if k in by)
        unet = max(by[k]["all_dice_mean"] for k in ("unet", "unet_5x") if k in by)
        oracle = by["oracle"]["all_dice_mean"]
        targets = {"echoforge_best": ef, "unet_best": unet, "dice_gain_over_unet": round(ef - unet, 2),
                   "target_gain_over_unet": 2.0, "dice_gap_to_oracle": round(oracle - by["echoforge"]["all_dice_mean"], 2),
                   "target_gap_to_oracle": 1.5}
        targets["met"] = {"gain_over_unet": targets["dice_gain_over_unet"] >= 2.0,
                          "gap_to_oracle": targets["dice_gap_to_oracle"] <= 1.5}
        if "fps_112" in by["echoforge"]:
            targets["light_fps_112"] = round(by["echoforge"]["fps_112"], 1)
            targets["met"]["fps_112_at_least_30"] = targets["light_fps_112"] >= 30.0
    columns = [("method", "method"), ("epochs", "epochs"), ("all_dice_LV", "LV"), ("all_dice_myocardium", "myo"), ("all_dice_LA", "LA"),
               ("all_dice_mean", "all-frame mean"), ("ed_es_dice_mean", "ED/ES mean"), ("all_hd95", "HD95 mm"),
               ("ef_r", "EF r"), ("ef_bias", "EF bias"), ("params_m", "params M"), ("gflops_112", "GFLOPs 112²"),
               ("gflops_256", "GFLOPs 256²"), ("fps_112", "fps 112²"), ("fps_256", "fps 256²"),
               ("peak_rss_mb", "peak MB"), ("train_minutes", "train min")]
    md = [f"# EchoForge vs ablations and baselines (phantom, CPU): {args.name}", "",
          f"Train: {args.train_patients} phantom patients × 2 views (seed {SEEDS['train']}), ED/ES labels only "
          f"(oracle: all frames). Test: {args.test_patients} patients from seed {SEEDS['test']}, never seen in "
          f"training. 112×112, {args.epochs} epochs, Adam lr {args.lr}, poly decay, batch 2. Dice in %, all "
          "frames of the ED→ES half sequence and ED/ES alone; HD95 in mm; EF biplane (method of disks) against "
          "the reference labels. Speed: streaming one frame at a time on this CPU "
          f"({torch.get_num_threads()} threads), model weights untrained (speed does not depend on them); "
          "GFLOPs = multiply-accumulates per frame; peak MB = peak resident memory of the timing process.", "",
          table(rows, columns)]
    if targets:
        md += ["", "Targets: " + json.dumps(targets)]
    print("\n".join(md))
    write_results(args.name,
                  {"rows": rows, "targets": targets, "epochs": args.epochs, "lr": args.lr,
                   "train_patients": args.train_patients, "test_patients": args.test_patients,
                   "seeds": SEEDS, "size": SIZE}, "\n".join(md))


if __name__ == "__main__":
    main()
