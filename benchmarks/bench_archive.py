"""Archive throughput of ``echoforge segment`` on this machine's CPU, and 2 gloo processes against 1.

EchoNet-Dynamic-style archive: ``--videos`` phantom AVIs of 112×112 at 50 frames/s with
``--frames`` frames each (EchoNet-Dynamic's videos average about 177), a FileList.csv, segmented with
the shipped ``light`` demo model. The same archive is run, ``--repeats`` times each, in three ways:

* 1 process, torch's default threads (all cores);
* 1 process, 1 thread;
* ``torchrun --standalone --nproc_per_node 2`` (gloo, 1 thread per process: torchrun's default).

Reported per way: wall time of the whole command (interpreter start, model load, every video, the
merged table) and videos per minute from it; mean ± SD over the repeats; the 1-minute load average
before each run (the machine is shared, so numbers are only comparable at similar loads).

    python benchmarks/bench_archive.py [--videos 24 --frames 177 --repeats 3]   # writes results/archive.{json,md}
    python benchmarks/bench_archive.py --name archive-loaded ...                 # another condition, another file
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import table, write_results  # noqa: E402

from echoforge.io.avi import write_avi  # noqa: E402
from echoforge.phantom import make_patient  # noqa: E402

REPO = HERE.parent
WAYS = {
    "1 process (default threads)": ([sys.executable, "-m"], {}),
    "1 process, 1 thread": ([sys.executable, "-m"], {"OMP_NUM_THREADS": "1"}),
    "2 gloo processes (torchrun), 1 thread each": (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"],
        {"OMP_NUM_THREADS": "1"}),
}


def make_archive(root: Path, videos: int, frames: int) -> Path:
    """EchoNet layout: Videos/*.avi and FileList.csv."""
    rows = []
    for i in range(videos):
        video = make_patient(70_000 + i).render("4CH", size=(112, 112), fps=50.0, n_frames=frames)
        name = f"0XBENCH{i:08X}"
        write_avi(video, root / "Videos" / f"{name}.avi")
        rows.append({"FileName": name, "FPS": 50, "NumberOfFrames": frames, "Split": "TEST"})
    with open(root / "FileList.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root / "FileList.csv"


def run(way: str, filelist: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, 1-min load average before) of one batch run."""
    launcher, extra_env = WAYS[way]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), str(REPO)]), **extra_env}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run([*launcher, "echoforge.cli", "segment", str(filelist), "--out", str(out), "--device", "cpu"],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started, load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=177)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="archive", help="results/NAME.{json,md} (e.g. one per machine load)")
    args = parser.parse_args()
    results: dict[str, dict] = {way: {"seconds": [], "load_before": []} for way in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        filelist = make_archive(Path(tmp) / "EchoNet", args.videos, args.frames)
        for repeat in range(args.repeats):
            for i, way in enumerate(WAYS):
                seconds, load = run(way, filelist, Path(tmp) / f"out{repeat}_{i}")
                results[way]["seconds"].append(round(seconds, 2))
                results[way]["load_before"].append(round(load, 2))
                print(f"{way}: {seconds:.1f} s (load {load:.2f})", flush=True)
    rows = []
    base = statistics.mean(results["1 process (default threads)"]["seconds"])
    for way, r in results.items():
        rates = [60.0 * args.videos / s for s in r["seconds"]]
        r.update(videos_per_minute_mean=statistics.mean(rates), videos_per_minute_sd=statistics.stdev(rates)
                 if len(rates) > 1 else 0.0, speedup_vs_1_process=base / statistics.mean(r["seconds"]))
        rows.append({"way": way, "wall": f"{statistics.mean(r['seconds']):.1f} ± {statistics.stdev(r['seconds']):.1f}"
                     if len(rates) > 1 else f"{r['seconds'][0]:.1f}",
                     "rate": f"{r['videos_per_minute_mean']:.1f} ± {r['videos_per_minute_sd']:.1f}",
                     "speedup": r["speedup_vs_1_process"], "load": ", ".join(f"{v:.1f}" for v in r["load_before"])})
    markdown = "\n".join([
        "# Archive throughput (CPU)",
        "",
        f"`echoforge segment FileList.csv --out DIR` over {args.videos} EchoNet-style phantom AVIs (112×112, "
        f"{args.frames} frames at 50 frames/s each, {args.videos * args.frames} frames in all) with the shipped "
        f"`light` demo model; {args.repeats} runs per way, mean ± SD. Wall time of the whole command: interpreter "
        "start, model load, every video (read, segment, labels written, measured) and the merged table.",
        "",
        table(rows, [("way", "way"), ("wall", "wall time (s)"), ("rate", "videos / min"),
                     ("speedup", "speed-up vs 1 process"), ("load", "1-min load before each run")]),
        "",
        f"Machine: {os.cpu_count()} CPU cores, shared with other work (load averages above).",
    ])
    print(markdown)
    write_results(args.name, {"videos": args.videos, "frames_per_video": args.frames, "repeats": args.repeats,
                              "model": "light (shipped demo weights)", "ways": results}, markdown)


if __name__ == "__main__":
    main()
