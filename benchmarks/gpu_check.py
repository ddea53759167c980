"""One prepared GPU run: correctness against the CPU, speed of both networks, AMP training, per-video
adaptation and archive throughput.

On a CUDA machine (a few minutes):

    python benchmarks/gpu_check.py [--steps 300] [--out DIR]

1. correctness: the ``paper`` network with the same weights on CPU (float32) and GPU (float32 and
   float16 autocast) on a 10-frame 256×256 phantom clip — max logit difference and mask agreement;
2. inference speed of ``paper`` and ``light``, both run at 256×256, float16: batched clips
   (4 × 10 frames) and streaming one frame at a time — frames/s next to the paper's reported 46 FPS
   (hardware not stated there);
3. training: ``--steps`` semi-supervised steps (CPR, FlameRise over the run) of ``paper`` with AMP and
   channels-last on phantom clips, batch 4 — steps/s and the loss going down;
4. per-video adaptation ("segment the rest" after two drawn frames): seconds for the default
   steps, ``paper`` and ``light``; two AMP training steps of every configuration and ablation
   (CUDA autocast refuses some ops: each one must train);
5. archive throughput: ``echoforge segment``'s batch engine over ``--archive-videos`` EchoNet-style
   112×112 AVIs with the shipped ``light`` model and with ``paper`` — videos/s and frames/s.

``--cpu-smoke`` runs every part on the CPU with the ``tiny`` network at 64×64 and a handful of
steps and videos: it checks that the script works end to end where no GPU is (its numbers mean
nothing). Writes ``gpu.json`` (``gpu-smoke.json`` for the smoke run) to ``--out`` (default
``benchmarks/results``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine  # noqa: E402

from echoforge.engine.adapt import AdaptConfig, adapt_to_video  # noqa: E402
from echoforge.engine.archive import ArchiveItem, run_archive  # noqa: E402
from echoforge.engine.checkpoint import save_checkpoint  # noqa: E402
from echoforge.engine.clips import make_clip  # noqa: E402
from echoforge.engine.inference import SegmentationCore  # noqa: E402
from echoforge.engine.train import TrainConfig, Trainer  # noqa: E402
from echoforge.io.avi import write_avi  # noqa: E402
from echoforge.nets import build_model, get_config  # noqa: E402
from echoforge.phantom import make_patient  # noqa: E402
from echoforge.weights import default_checkpoint  # noqa: E402

PAPER_FPS = 46.0


@dataclass(frozen=True)
class Plan:
    """What one run measures, and how hard."""

    device: torch.device
    networks: dict[str, str]  # label in the results → configuration
    size: tuple[int, int]
    steps: int
    batch: int = 4
    clip_frames: int = 10
    stream_frames: int = 200
    repeats: int = 10
    adapt_steps: int = AdaptConfig.steps
    archive_videos: int = 16
    archive_frames: int = 177
    smoke: bool = False

    @classmethod
    def gpu(cls, steps: int, archive_videos: int) -> Plan:
        return cls(torch.device("cuda"), {"paper": "paper", "light": "light"}, (256, 256), steps,
                   archive_videos=archive_videos)

    @classmethod
    def cpu_smoke(cls) -> Plan:
        return cls(torch.device("cpu"), {"paper": "tiny", "light": "tiny"}, (64, 64), steps=2, batch=2,
                   clip_frames=4, stream_frames=6, repeats=1, adapt_steps=2, archive_videos=2, archive_frames=8,
                   smoke=True)

    def network(self, label: str) -> torch.nn.Module:
        return build_model(get_config(self.networks[label], input_size=self.size))

    def autocast(self) -> Any:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def phantom_clips(n: int, size: tuple[int, int], frames: int) -> list:
    clips = []
    for i in range(n):
        video = make_patient(50_000 + i).render_half_sequence("4CH" if i % 2 else "2CH", size=size, fps=50.0)
        clips.append(make_clip(video, size, frames, "ed-es", reference=video, video_id=f"gpu{i}"))
    return clips


def correctness(plan: Plan) -> dict[str, float]:
    torch.manual_seed(0)
    cpu_model = plan.network("paper").eval()
    model = plan.network("paper").eval()
    model.load_state_dict(cpu_model.state_dict())
    model = model.to(plan.device)
    if plan.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    clip = torch.from_numpy(phantom_clips(1, plan.size, plan.clip_frames)[0].frames).float()[None] / 255
    with torch.no_grad():
        ref = cpu_model(clip)["logits"]
        fp32 = model(clip.to(plan.device))["logits"].cpu()
        with plan.autocast():
            amp = model(clip.to(plan.device))["logits"].float().cpu()
    return {"max_abs_logit_diff_fp32": float((fp32 - ref).abs().max()),
            "mask_agreement_fp32": float((fp32.argmax(2) == ref.argmax(2)).float().mean()),
            "mask_agreement_amp": float((amp.argmax(2) == ref.argmax(2)).float().mean())}


def inference_speed(plan: Plan, model: torch.nn.Module) -> dict[str, float]:
    """Batched and streaming frames/s of ``model`` (eval) at ``plan.size``, under autocast on a GPU."""
    model = model.to(plan.device).eval()
    batch = torch.rand(plan.batch, plan.clip_frames, *plan.size, device=plan.device)
    with torch.no_grad(), plan.autocast():
        for _ in range(min(3, plan.repeats)):
            model(batch)
        sync(plan.device)
        started = time.perf_counter()
        for _ in range(plan.repeats):
            model(batch)
        sync(plan.device)
    batched = plan.repeats * batch.shape[0] * batch.shape[1] / (time.perf_counter() - started)
    frames = torch.rand(plan.stream_frames, *plan.size, device=plan.device)
    core = SegmentationCore(model, device=plan.device)
    with plan.autocast():
        for f in frames[: max(1, plan.stream_frames // 10)]:
            core.step(f)
        sync(plan.device)
        started = time.perf_counter()
        for f in frames:
            core.step(f)
        sync(plan.device)
    streaming = len(frames) / (time.perf_counter() - started)
    return {"batched_fps": batched, "streaming_fps": streaming, "paper_reported_fps": PAPER_FPS}


def training(plan: Plan) -> tuple[dict[str, Any], torch.nn.Module]:
    clips = phantom_clips(max(2 * plan.batch, 24 if not plan.smoke else 4), plan.size, plan.clip_frames)
    steps_per_epoch = len(clips) // plan.batch
    epochs = max(1, plan.steps // steps_per_epoch)
    config = TrainConfig(epochs=epochs, batch_size=plan.batch, lr=1e-3, amp=True, channels_last=True,
                         clip_frames=plan.clip_frames, device=str(plan.device), progress=False)
    trainer = Trainer(get_config(plan.networks["paper"], input_size=plan.size), config, run_dir=None)
    sync(plan.device)
    started = time.perf_counter()
    summary = trainer.fit(clips)
    sync(plan.device)
    seconds = time.perf_counter() - started
    losses = [h["loss_total"] for h in summary["history"]]
    result = {"steps": epochs * steps_per_epoch, "seconds": seconds, "steps_per_s": epochs * steps_per_epoch / seconds,
              "amp": plan.device.type == "cuda", "loss_first_epoch": losses[0], "loss_last_epoch": losses[-1],
              "finite": bool(np.isfinite(losses).all())}
    if plan.device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result, trainer.model.net.eval()


#: every configuration a user can train, with the overrides of its ablations
CONFIGURATIONS = [("light", {}, {}), ("light", {"use_arc": False}, {}), ("light", {"use_tsf": False}, {}),
                  ("light", {"use_readout": False}, {}), ("light", {"use_flow_prior": False}, {}),
                  ("light", {"n_anchors": 1}, {}), ("light", {}, {"use_cpr": False}), ("paper", {}, {}),
                  ("unet", {}, {"use_cpr": False}), ("deeplabv3", {}, {"use_cpr": False})]


def amp_every_configuration(plan: Plan) -> dict[str, Any]:
    """Two AMP training steps of every configuration (on CUDA a loss that autocast refuses raises here)."""
    clips = phantom_clips(plan.batch, plan.size, plan.clip_frames)
    results = {}
    for name, net_overrides, train_overrides in CONFIGURATIONS:
        if plan.smoke and name != "light":
            continue  # the CPU smoke run checks the mechanism, not every network
        net = get_config("tiny" if plan.smoke else name, input_size=plan.size, **net_overrides)
        label = "+".join([name, *(f"{k}={v}" for k, v in {**net_overrides, **train_overrides}.items())])
        config = TrainConfig(epochs=2, batch_size=plan.batch, lr=1e-4, amp=True, clip_frames=plan.clip_frames,
                             device=str(plan.device), progress=False, burn_in=0.0, ramp_end=0.0,
                             max_steps_per_epoch=1, **train_overrides)
        try:
            history = Trainer(net, config, run_dir=None).fit(clips)["history"]
            results[label] = {"ok": bool(np.isfinite([h["loss_total"] for h in history]).all()),
                              "loss": history[-1]["loss_total"]}
        except Exception as err:  # a failure is what this check reports, with its message
            results[label] = {"ok": False, "error": f"{type(err).__name__}: {err}"[:300]}
    return {"configurations": results, "all_ok": all(r["ok"] for r in results.values())}


def adaptation(plan: Plan, model: torch.nn.Module) -> dict[str, float]:
    """Seconds to adapt ``model`` to one phantom video from its ED/ES frames."""
    video = make_patient(60_000).render_half_sequence("4CH", size=plan.size, fps=50.0)
    drawn = video.with_labels(video.labels, [video.ed, video.es])
    sync(plan.device)
    started = time.perf_counter()
    _, info = adapt_to_video(model.to(plan.device), drawn, AdaptConfig(steps=plan.adapt_steps), plan.device)
    sync(plan.device)
    return {"steps": plan.adapt_steps, "seconds": time.perf_counter() - started, "frames": video.n_frames,
            "loss_first": info.get("loss_first"), "loss_last": info.get("loss_last")}


def archive_throughput(plan: Plan, checkpoint: Path, root: Path) -> dict[str, float]:
    """The batch engine of ``echoforge segment`` over EchoNet-style 112×112 AVIs."""
    videos = root / "Videos"
    if not videos.exists():
        for i in range(plan.archive_videos):
            video = make_patient(70_000 + i).render("4CH", size=(112, 112), fps=50.0, n_frames=plan.archive_frames)
            write_avi(video, videos / f"v{i:03d}.avi")
    items = [ArchiveItem(p.stem, p) for p in sorted(videos.glob("*.avi"))]
    out = Path(tempfile.mkdtemp(dir=root))
    sync(plan.device)
    started = time.perf_counter()
    summary = run_archive(items, out, checkpoint, device=str(plan.device), chunk=16 if plan.device.type == "cpu"
                          else 64, progress=False)
    sync(plan.device)
    seconds = time.perf_counter() - started
    return {"videos": len(items), "ok": summary["ok"], "seconds": seconds, "videos_per_s": len(items) / seconds,
            "frames_per_s": len(items) * plan.archive_frames / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--archive-videos", type=int, default=16)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--cpu-smoke", action="store_true", help="every part, tiny, on the CPU (a script check)")
    args = parser.parse_args()
    if args.cpu_smoke:
        plan = Plan.cpu_smoke()
    elif torch.cuda.is_available():
        plan = Plan.gpu(args.steps, args.archive_videos)
        torch.backends.cudnn.benchmark = True
    else:
        raise SystemExit("no CUDA device: this script is for a GPU machine (--cpu-smoke checks it on a CPU)")
    result: dict[str, Any] = {"machine": machine(), "smoke": plan.smoke, "networks": plan.networks,
                              "gpu": torch.cuda.get_device_name(0) if plan.device.type == "cuda" else None}

    result["correctness"] = correctness(plan)
    print(json.dumps(result["correctness"]), flush=True)
    result["amp_every_configuration"] = amp_every_configuration(plan)
    print(json.dumps(result["amp_every_configuration"]), flush=True)
    result["training"], trained = training(plan)
    print(json.dumps(result["training"]), flush=True)
    result["inference"], result["adaptation"], result["archive"] = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for label in plan.networks:
            model = trained if label == "paper" else plan.network(label)
            result["inference"][label] = inference_speed(plan, model)
            result["adaptation"][label] = adaptation(plan, model)
            if label == "light" and not plan.smoke:
                checkpoint = default_checkpoint()
            else:
                checkpoint = Path(tmp) / f"{label}.pt"
                save_checkpoint(checkpoint, model, get_config(plan.networks[label], input_size=plan.size))
            result["archive"][label] = archive_throughput(plan, checkpoint, Path(tmp))
            print(label, json.dumps({k: result[k][label] for k in ("inference", "adaptation", "archive")}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "gpu-smoke.json" if plan.smoke else "gpu.json"
    (args.out / name).write_text(json.dumps(result, indent=2))
    lines = [f"| network | batched fps ({plan.size[0]}²) | streaming fps | paper reported | adaptation (s) | "
             "archive videos/s |",
             "|---|---|---|---|---|---|"]
    for label in plan.networks:
        inf, ada, arc = result["inference"][label], result["adaptation"][label], result["archive"][label]
        lines.append(f"| {label} | {inf['batched_fps']:.0f} | {inf['streaming_fps']:.0f} | {PAPER_FPS:.0f} | "
                     f"{ada['seconds']:.2f} | {arc['videos_per_s']:.2f} |")
    print(f"device: {result['gpu'] or 'cpu'}; training {result['training']['steps_per_s']:.2f} steps/s "
          f"(AMP {result['training']['amp']}); autocast mask agreement {100 * result['correctness']['mask_agreement_amp']:.2f} %")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
