"""Latency through a running EchoForge MONAI Label server on this machine.

For each network (``light``, ``paper``) a real ``monailabel start_server`` is started on 127.0.0.1
over a copy of the sample studies plus a 10-frame 256×256 phantom clip, and timed over HTTP:

* segmenting the 10-frame 256×256 clip and the 120-frame real A4C cine (358×512 after sector crop);
* "segment the rest" on the clip with two drawn frames (adaptation off and on);
* one training epoch on the sample studies (the annotated phantom videos), synchronous;
* the server's peak resident memory.

    python benchmarks/bench_server.py      # writes benchmarks/results/server.{json,md}
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import requests  # noqa: E402
from common import table, write_results  # noqa: E402

from echoforge.engine.clips import restrict_labels  # noqa: E402
from echoforge.io.volume import write_labels, write_volume  # noqa: E402
from echoforge.phantom import make_patient  # noqa: E402
from tests.server import copy_app, monailabel_server  # noqa: E402

SAMPLE_STUDIES = HERE.parent / "sample-data" / "studies"


def timed(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        response = fn()
        response.raise_for_status()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb(url: str) -> float | None:
    """Peak resident memory of the process listening at ``url`` (Linux /proc)."""
    import psutil

    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
            for line in Path(f"/proc/{conn.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    return None


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = tmp / "studies"
        shutil.copytree(SAMPLE_STUDIES, studies)
        clip = make_patient(777).render("4CH", size=(256, 256), n_frames=10)
        write_volume(clip, studies / "clip10.nii.gz")
        drawn = restrict_labels(clip, "ed-es")
        write_labels(drawn, tmp / "drawn.nii.gz")
        annotated = {"annotated_frames": list(drawn.annotated)}
        for network in ("light", "paper"):
            app = copy_app(tmp / network)
            conf = {"network": network, "auto_train_every": "0", "adapt_steps": "24"}
            with monailabel_server(studies, conf, app) as url:
                def infer(image: str, label: Path | None = None, params: dict | None = None):
                    files = {"label": (label.name, open(label, "rb"))} if label else None
                    return requests.post(f"{url}/infer/echoforge?image={image}&output=image", files=files,
                                         data={"params": json.dumps(params or {})}, timeout=1200)

                weights = requests.get(f"{url}/info/", timeout=30).json()["echoforge"]["weights"]
                row = {"network": network, "weights": Path(weights).name}
                row["clip10_256_s"] = timed(lambda: infer("clip10"))
                row["real_cine_120_s"] = timed(lambda: infer("real_a4c_sonosite"), repeats=2)
                row["rest_clip10_s"] = timed(
                    lambda: infer("clip10", tmp / "drawn.nii.gz", {**annotated, "adapt": "off"}))
                row["rest_adapt_clip10_s"] = timed(
                    lambda: infer("clip10", tmp / "drawn.nii.gz", {**annotated, "adapt": "on"}), repeats=1)
                started = time.perf_counter()
                r = requests.post(f"{url}/train/echoforge?run_sync=true", json={"max_epochs": 2}, timeout=3600)
                r.raise_for_status()
                row["train_epoch_s"] = (time.perf_counter() - started) / 2
                row["peak_rss_mb"] = peak_rss_mb(url)
                rows.append(row)
                print(json.dumps(row), flush=True)
    columns = [("network", "network"), ("weights", "weights"), ("clip10_256_s", "10 frames 256² (s)"),
               ("real_cine_120_s", "real cine 120 frames (s)"), ("rest_clip10_s", "segment the rest (s)"),
               ("rest_adapt_clip10_s", "+ adaptation (s)"), ("train_epoch_s", "train epoch (s)"),
               ("peak_rss_mb", "server peak MB")]
    md = ["# Through the server (CPU)", "",
          "Median of repeated HTTP requests to a real `monailabel start_server` on 127.0.0.1 (this machine's CPU); "
          "the latencies include upload, NIfTI I/O and the JSON report. Training epoch: the annotated sample "
          "studies (2 phantom videos with ED/ES drawn), synchronous, CPR on.", "", table(rows, columns)]
    print("\n".join(md))
    write_results("server", {"rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
