"""How fast the server answers a light request (``GET /info/``) while the model works.

A real ``monailabel start_server`` (network ``light``, the shipped demo model) runs on 127.0.0.1
over a copy of the sample studies. ``/info/`` is polled every 0.25 s while

* ``idle``: nothing else runs;
* ``infer x4``: four clients segment the 120-frame real A4C cine back to back;
* ``adapt x2``: two clients "segment the rest" of a 10-frame 256² clip with adaptation on;

and the poll latencies (median, 95th percentile, maximum), the model requests completed per
second and the requests refused as busy (503) are recorded. Each scenario runs ``--repeats``
times (mean ± SD over the repeats). With ``--baseline REV`` the same runs against the app and
library of git revision ``REV`` (MONAI Label's own behaviour: one inference holds the event loop).

    python benchmarks/bench_security.py --baseline main   # writes benchmarks/results/security.{json,md}
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import requests  # noqa: E402
from common import table, write_results  # noqa: E402

from echoforge.engine.clips import restrict_labels  # noqa: E402
from echoforge.io.volume import write_labels, write_volume  # noqa: E402
from echoforge.phantom import make_patient  # noqa: E402
from tests.server import copy_app, start_server  # noqa: E402

REPO = HERE.parent
SAMPLE_STUDIES = REPO / "sample-data" / "studies"
POLL_S = 0.25


def checkout(revision: str, dest: Path) -> Path:
    """The ``apps/`` and ``lib/`` folders of ``revision`` (for the baseline server)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "apps", "lib"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run_scenario(url: str, work, clients: int, seconds: float) -> dict:
    """Poll /info/ while ``clients`` threads call ``work()`` back to back for ``seconds``."""
    stop = threading.Event()
    latencies: list[float] = []
    done: list[int] = []

    def poll():
        while not stop.is_set():
            start = time.perf_counter()
            requests.get(f"{url}/info/", timeout=600).raise_for_status()
            latencies.append(time.perf_counter() - start)
            time.sleep(max(0.0, POLL_S - (time.perf_counter() - start)))

    def load():
        while not stop.is_set():
            done.append(work().status_code)

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.0 if clients else 0.0)  # let the work start before measuring
    poller = threading.Thread(target=poll)
    started = time.perf_counter()
    poller.start()
    time.sleep(seconds)
    stop.set()
    poller.join()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"polls": len(latencies), "p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "completed_per_s": sum(c == 200 for c in done) / elapsed,
            "busy_503": sum(c == 503 for c in done), "errors": sum(c not in (200, 503) for c in done)}


def measure(label: str, studies: Path, app_source: Path | None, tmp: Path, repeats: int, seconds: float) -> list:
    app = copy_app(tmp / label.replace(" ", "_"))  # the monailabel launcher splits paths at spaces
    if app_source is not None:  # the baseline's app folder instead of this tree's
        shutil.rmtree(app)
        shutil.copytree(app_source / "apps" / "echoforge", app)
    env = {"PYTHONPATH": str(app_source / "lib")} if app_source is not None else None
    server = start_server(studies, {"network": "light", "auto_train_every": "0", "adapt_steps": "24"}, app, env=env)
    url = server.url
    drawn = tmp / "drawn.nii.gz"
    annotated = json.dumps({"annotated_frames": [0, 9], "adapt": "on"})

    def infer():
        return requests.post(f"{url}/infer/echoforge?image=real_a4c_sonosite&output=json", timeout=1200)

    def adapt():
        return requests.post(f"{url}/infer/echoforge?image=clip10&output=json", data={"params": annotated},
                             files={"label": (drawn.name, drawn.read_bytes())}, timeout=1200)

    rows = []
    try:
        infer().raise_for_status()  # warm up: the model is loaded on the first request
        for name, work, clients in (("idle", infer, 0), ("infer x4", infer, 4), ("adapt x2", adapt, 2)):
            runs = [run_scenario(url, work, clients, seconds) for _ in range(repeats)]
            row = {"server": label, "scenario": name, "repeats": repeats, "runs": runs}
            for key in ("p50_ms", "p95_ms", "max_ms", "completed_per_s"):
                values = [r[key] for r in runs]
                row[key] = statistics.mean(values)
                row[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
            row["busy_503"] = sum(r["busy_503"] for r in runs)
            row["errors"] = sum(r["errors"] for r in runs)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", help="git revision to compare with (e.g. main)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each measured run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = tmp / "studies"
        shutil.copytree(SAMPLE_STUDIES, studies)
        clip = make_patient(777).render("4CH", size=(256, 256), n_frames=10)
        write_volume(clip, studies / "clip10.nii.gz")
        write_labels(restrict_labels(clip, "ed-es"), tmp / "drawn.nii.gz")
        rows = measure("this tree", studies, None, tmp, args.repeats, args.seconds)
        if args.baseline:
            shutil.rmtree(studies)
            shutil.copytree(SAMPLE_STUDIES, studies)
            write_volume(clip, studies / "clip10.nii.gz")
            rows += measure(f"baseline {args.baseline}", studies, checkout(args.baseline, tmp / "baseline"), tmp,
                            args.repeats, args.seconds)

    shown = []
    for r in rows:
        out = dict(r)
        for key in ("p50_ms", "p95_ms", "max_ms"):
            out[key] = f"{r[key]:.0f} ± {r[key + '_sd']:.0f}"
        out["completed_per_s"] = f"{r['completed_per_s']:.2f} ± {r['completed_per_s_sd']:.2f}"
        shown.append(out)
    columns = [("server", "server"), ("scenario", "load"), ("p50_ms", "/info/ median (ms)"),
               ("p95_ms", "/info/ p95 (ms)"), ("max_ms", "/info/ max (ms)"),
               ("completed_per_s", "model requests done /s"), ("busy_503", "busy (503)"), ("errors", "errors")]
    md = ["# /info/ while the model works (CPU)", "",
          f"`GET /info/` polled every {POLL_S} s against a real `monailabel start_server` (network `light`, "
          "shipped demo model) on 127.0.0.1 of this machine, while clients keep the model busy: `infer x4` = four "
          "clients segmenting the 120-frame real A4C cine back to back, `adapt x2` = two clients running "
          "\"segment the rest\" with 24 adaptation steps on a 10-frame 256² clip. Mean ± SD over "
          f"{args.repeats} runs of {args.seconds:g} s each. `this tree` runs model work beside the event loop "
          "(`--conf infer_workers 1`, `infer_queue 4`); the baseline is MONAI Label's own way, where an inference "
          "holds the event loop.", "", table(shown, columns)]
    print("\n".join(md))
    write_results("security", {"rows": rows, "poll_s": POLL_S, "baseline": args.baseline}, "\n".join(md))


if __name__ == "__main__":
    main()
