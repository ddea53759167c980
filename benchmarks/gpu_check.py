"""One prepared GPU run: correctness against the CPU, AMP training, and ``paper`` inference speed.

On a CUDA machine (a few minutes):

    python benchmarks/gpu_check.py [--steps 300] [--out DIR]

1. correctness: the ``paper`` network with the same weights on CPU (float32) and GPU (float32 and
   float16 autocast) on a 10-frame 256×256 phantom clip — max logit difference and mask agreement;
2. training: ``--steps`` semi-supervised steps (CPR, FlameRise over the run) with AMP and
   channels-last on phantom clips, batch 4 — steps/s and the loss going down;
3. inference speed of ``paper`` at 256×256: batched clips (4 × 10 frames) and streaming one frame at a
   time, float16 — frames/s next to the paper's reported 46 FPS (hardware not stated there).

Writes ``gpu.json`` to ``--out`` (default ``benchmarks/results``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine  # noqa: E402

from echoforge.engine.clips import make_clip  # noqa: E402
from echoforge.engine.inference import SegmentationCore  # noqa: E402
from echoforge.engine.train import TrainConfig, Trainer  # noqa: E402
from echoforge.nets import build_model, get_config  # noqa: E402
from echoforge.phantom import make_patient  # noqa: E402

PAPER_FPS = 46.0


def phantom_clips(n: int, size: tuple[int, int]) -> list:
    clips = []
    for i in range(n):
        video = make_patient(50_000 + i).render_half_sequence("4CH" if i % 2 else "2CH", size=size, fps=50.0)
        clips.append(make_clip(video, size, 10, "ed-es", reference=video, video_id=f"gpu{i}"))
    return clips


def sync() -> None:
    torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script is for a GPU machine")
    torch.backends.cudnn.benchmark = True
    result: dict = {"machine": machine(), "gpu": torch.cuda.get_device_name(0)}
    size = (256, 256)

    # 1. correctness against the CPU
    torch.manual_seed(0)
    cpu_model = build_model("paper").eval()
    gpu_model = build_model("paper").eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model = gpu_model.cuda().to(memory_format=torch.channels_last)
    clip = torch.from_numpy(phantom_clips(1, size)[0].frames).float()[None] / 255
    with torch.no_grad():
        ref = cpu_model(clip)["logits"]
        fp32 = gpu_model(clip.cuda())["logits"].cpu()
        with torch.autocast("cuda", dtype=torch.float16):
            fp16 = gpu_model(clip.cuda())["logits"].float().cpu()
    result["correctness"] = {
        "max_abs_logit_diff_fp32": float((fp32 - ref).abs().max()),
        "mask_agreement_fp32": float((fp32.argmax(2) == ref.argmax(2)).float().mean()),
        "mask_agreement_amp": float((fp16.argmax(2) == ref.argmax(2)).float().mean()),
    }
    print(json.dumps(result["correctness"]), flush=True)

    # 2. AMP training
    clips = phantom_clips(24, size)
    steps_per_epoch = len(clips) // 4
    epochs = max(1, args.steps // steps_per_epoch)
    config = TrainConfig(epochs=epochs, batch_size=4, lr=1e-3, amp=True, channels_last=True, device="cuda",
                         progress=False)
    trainer = Trainer(get_config("paper"), config, run_dir=None)
    sync()
    started = time.perf_counter()
    summary = trainer.fit(clips)
    sync()
    seconds = time.perf_counter() - started
    losses = [h["loss_total"] for h in summary["history"]]
    result["training"] = {"steps": epochs * steps_per_epoch, "seconds": seconds,
                          "steps_per_s": epochs * steps_per_epoch / seconds, "loss_first_epoch": losses[0],
                          "loss_last_epoch": losses[-1], "finite": bool(np.isfinite(losses).all()),
                          "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}
    print(json.dumps(result["training"]), flush=True)

    # 3. inference speed (float16)
    model = trainer.model.net.eval()
    batch = torch.rand(4, 10, *size, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        for _ in range(3):
            model(batch)
        sync()
        started = time.perf_counter()
        repeats = 10
        for _ in range(repeats):
            model(batch)
        sync()
    batched_fps = repeats * batch.shape[0] * batch.shape[1] / (time.perf_counter() - started)
    frames = torch.rand(200, *size, device="cuda")
    core = SegmentationCore(model, device="cuda")
    for f in frames[:20]:
        core.step(f)
    sync()
    started = time.perf_counter()
    for f in frames:
        core.step(f)
    sync()
    streaming_fps = len(frames) / (time.perf_counter() - started)
    result["inference"] = {"batched_fps_256": batched_fps, "streaming_fps_256": streaming_fps,
                           "paper_reported_fps": PAPER_FPS}
    print(json.dumps(result["inference"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2))
    print(f"| GPU | fp32 max |Δlogit| | AMP mask agreement | train steps/s (AMP, batch 4×10 frames) | "
          f"paper fps batched | paper fps streaming | paper (reported) |\n|---|---|---|---|---|---|---|\n"
          f"| {result['gpu']} | {result['correctness']['max_abs_logit_diff_fp32']:.2e} | "
          f"{100 * result['correctness']['mask_agreement_amp']:.2f} % | {result['training']['steps_per_s']:.2f} | "
          f"{batched_fps:.0f} | {streaming_fps:.0f} | {PAPER_FPS:.0f} |")


if __name__ == "__main__":
    main()
