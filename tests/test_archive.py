"""`echoforge segment` over a whole archive: inputs, outputs, bad videos, kill + resume, torchrun shards."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from echoforge.engine.archive import collect_items
from echoforge.engine.checkpoint import save_checkpoint
from echoforge.io.atomic import is_partial_file
from echoforge.io.volume import read_label_volume
from echoforge.nets import build_model, get_config
from echoforge.phantom_datasets import write_phantom_dataset
from tests.conftest import REPO

N_VIDEOS = 6


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """An EchoNet-style archive of small AVIs plus one corrupt video, and a small model."""
    root = tmp_path_factory.mktemp("archive")
    data = root / "EchoNet"
    write_phantom_dataset(data, "echonet", patients=N_VIDEOS, seed=12, size=(48, 48), progress=False)
    (data / "Videos" / "0XBROKEN.avi").write_bytes(b"RIFF not a movie at all")
    with open(data / "FileList.csv", "a", newline="") as f:
        csv.writer(f).writerow(["0XBROKEN", "55", "40", "90", "48", "48", "50", "30", "TEST"])
    torch.manual_seed(0)
    config = get_config("tiny")
    model = root / "tiny.pt"
    save_checkpoint(model, build_model(config).eval(), config)
    return {"root": root, "data": data, "model": model}


def _segment(archive, source, out, *extra, launcher=(sys.executable, "-m"), **kwargs):
    # one thread per process: on a shared 2-core machine two threads per process mostly wait for each other
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lib"), str(REPO)]), "OMP_NUM_THREADS": "1"}
    cmd = [*launcher, "echoforge.cli", "segment", str(source), "--out", str(out), "--model", str(archive["model"]),
           "--device", "cpu", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _table(out: Path) -> list[dict[str, str]]:
    with open(out / "measurements.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_inputs_folder_list_and_csv_name_the_same_videos(archive, tmp_path):
    data = archive["data"]
    from_csv = collect_items(data / "FileList.csv")
    assert [i.name for i in from_csv][-1] == "0XBROKEN" and len(from_csv) == N_VIDEOS + 1
    assert [i.path for i in collect_items(data)] == [i.path for i in from_csv]  # an EchoNet root = its FileList
    listing = tmp_path / "videos.txt"
    listing.write_text("# two of them\n" + "\n".join(str(i.path) for i in from_csv[:2]) + "\n\n")
    assert [i.path for i in collect_items(listing)] == [i.path for i in from_csv[:2]]
    folder = tmp_path / "mixed"
    (folder / "a").mkdir(parents=True)
    (folder / "b").mkdir()
    (folder / "labels" / "final").mkdir(parents=True)
    for rel in ("a/clip.avi", "b/clip.avi", "b/clip.dcm", "labels/final/clip.nii.gz", "notes.txt"):
        (folder / rel).write_bytes(b"x")
    names = [i.name for i in collect_items(folder)]
    assert names == ["a__clip", "b__clip", "b__clip_2"]  # labels/ skipped, names unique and file-safe
    generic = tmp_path / "list.csv"
    generic.write_text("patient,path\np1,a/clip.avi\n")
    (tmp_path / "a").mkdir()
    assert collect_items(generic)[0].path == tmp_path / "a" / "clip.avi"


@pytest.fixture(scope="module")
def one_process(archive):
    """One uninterrupted single-process run over the FileList."""
    out = archive["root"] / "one"
    proc = _segment(archive, archive["data"] / "FileList.csv", out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    return out, stdout, stderr


def test_archive_segments_every_video_and_skips_the_broken_one(archive, one_process):
    out, stdout, stderr = one_process
    assert "0XBROKEN" in stderr and f"{N_VIDEOS} of {N_VIDEOS + 1} videos segmented (1 failed" in stdout
    rows = _table(out)
    assert [r["name"] for r in rows] == [i.name for i in collect_items(archive["data"])]
    broken = rows[-1]
    assert broken["status"] == "failed" and "movie" in broken["error"]
    for row in rows[:-1]:
        labels = read_label_volume(out / row["labels"]).labels
        assert row["status"] == "ok" and labels.shape[0] == int(row["frames"]) and labels.shape[1:] == (48, 48)
        assert float(row["frame_time_ms"]) == pytest.approx(20.0)
        # measured, or unmeasurable with the reason (this untrained network need not find an LV)
        assert (row["ed"] != "" and row["ef"] != "") or row["note"], row
    summary = json.loads((out / "measurements.json").read_text())["summary"]
    assert summary["ok"] == N_VIDEOS and summary["failed"] == 1 and summary["world_size"] == 1
    assert "NaN" not in (out / "measurements.json").read_text()


def test_a_killed_run_resumes_without_redoing_finished_videos(archive, tmp_path):
    out = tmp_path / "out"
    proc = _segment(archive, archive["data"], out, start_new_session=True)
    deadline = time.time() + 300
    def rows() -> list[Path]:  # finished rows only: an unfinished write's temporary file is no row
        return [p for p in (out / "videos").glob("*.json") if not is_partial_file(p.name)]

    while time.time() < deadline and len(rows()) < 2 and proc.poll() is None:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in rows()}
    assert 2 <= len(done) < N_VIDEOS + 1, "the kill came too late to test resuming"
    assert not (out / "measurements.csv").exists()
    for path in rows():  # whatever is there is complete
        row = json.loads(path.read_text())
        assert row["status"] in ("ok", "failed")
        if row["status"] == "ok":
            read_label_volume(out / row["labels"])
    proc = _segment(archive, archive["data"], out)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    ok_before = sum(json.loads((out / "videos" / n).read_text())["status"] == "ok" for n in done)
    assert f"{ok_before} done before" in stdout
    for name, mtime in done.items():
        if json.loads((out / "videos" / name).read_text())["status"] == "ok":
            assert (out / "videos" / name).stat().st_mtime_ns == mtime  # not segmented again
    assert len(_table(out)) == N_VIDEOS + 1
    assert not [p for p in out.rglob(".*") if ".part" in p.name]  # no temporary file left behind


def test_two_gloo_processes_share_the_archive_and_write_one_table(archive, one_process, tmp_path):
    single, double = one_process[0], tmp_path / "two"
    launcher = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m")
    proc = _segment(archive, archive["data"], double, launcher=launcher)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert stdout.count("videos segmented") == 1  # rank 0 reports, once
    rows = _table(double)
    items = collect_items(archive["data"])
    assert [r["name"] for r in rows] == [i.name for i in items]
    assert [int(r["rank"]) for r in rows] == [i % 2 for i in range(len(items))]  # rank r took videos[r::2]
    assert json.loads((double / "measurements.json").read_text())["summary"]["world_size"] == 2
    for row, reference in zip(rows, _table(single), strict=True):
        assert row["status"] == reference["status"]
        if row["status"] == "ok":
            a = read_label_volume(double / row["labels"]).labels
            b = read_label_volume(single / reference["labels"]).labels
            assert np.mean(a == b) > 0.999  # same model, same frames: the same labels (up to float ties)
