"""Semi-supervised training, checkpoints, streaming inference, export — on small phantom data."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from echoforge.engine.checkpoint import load_model, save_checkpoint
from echoforge.engine.clips import clip_indices, load_dataset, make_clip, restrict_labels, training_clips
from echoforge.engine.inference import SegmentationCore, segment_video
from echoforge.engine.train import TrainConfig, Trainer
from echoforge.errors import CheckpointError, EmptyLabelError, TrainingError
from echoforge.nets import build_model, get_config
from echoforge.phantom import make_patient
from echoforge.phantom_datasets import write_phantom_dataset

SIZE = (64, 64)


@pytest.fixture(scope="module")
def clips():
    out = []
    for seed in range(3):
        patient = make_patient(9000 + seed)
        for view in ("2CH", "4CH"):
            video = patient.render_half_sequence(view, size=SIZE, fps=40.0)
            out.append(make_clip(video, SIZE, 6, "ed-es", reference=video, video_id=f"p{seed}_{view}"))
    return out


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    write_phantom_dataset(root, "nifti", patients=3, seed=91, size=SIZE, progress=False)
    return root


def _tiny_train(run_dir, epochs=2, **kw):
    cfg = TrainConfig(epochs=epochs, batch_size=2, lr=1e-3, clip_frames=6, progress=False, **kw)
    return Trainer(get_config("tiny"), cfg, run_dir)


def test_clip_spans_ed_to_es_and_keeps_annotated_frames(clips):
    video = make_patient(9100).render("4CH", size=SIZE, fps=30.0)
    idx = clip_indices(video, 10)
    assert idx[0] == video.ed and idx[-1] == video.es and len(idx) == 10
    sparse = restrict_labels(video, "ed-es")
    assert sparse.annotated == tuple(sorted((video.ed, video.es)))
    clip = clips[0]
    assert clip.labelled.tolist() == [True, False, False, False, False, True]
    assert clip.labels[1:5].max() == 0 and clip.labels[0].max() > 0  # unlabelled frames carry no label
    assert clip.reference is not None and clip.reference[1:5].max() > 0


def test_no_annotated_video_is_a_clear_error(clips):
    video = make_patient(9101).render("4CH", size=SIZE, n_frames=4)
    with pytest.raises(EmptyLabelError, match="nothing to train on"):
        training_clips([("v", video.replace(labels=None, annotated=()), None)], SIZE, 6)


def test_training_writes_logs_and_checkpoints(clips, tmp_path):
    summary = _tiny_train(tmp_path / "run").fit(clips[:4], clips[4:])
    assert len(summary["history"]) == 2
    history = summary["history"][-1]
    for key in ("loss_labelled", "loss_cpr", "loss_aux16", "loss_arc", "val_dice_mean", "bank"):
        assert key in history
    assert history["bank"] > 0  # CPR reforged the unlabelled frames
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert list((tmp_path / "run" / "logs").glob("events.out.tfevents.*"))
    model, config, payload = load_model(tmp_path / "run" / "checkpoints" / "best.pt")
    assert config.name == "tiny" and payload["epoch"] >= 1 and not model.training


def test_resume_continues_where_it_stopped(clips, tmp_path):
    _tiny_train(tmp_path / "run", epochs=1).fit(clips[:4])
    resumed = _tiny_train(tmp_path / "run", epochs=3)
    assert resumed.start_epoch == 1 and len(resumed.bank) > 0
    summary = resumed.fit(clips[:4])
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3]


def test_resume_after_a_kill(studies, tmp_path):
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "echoforge.cli", "train", "--data", str(studies), "--layout", "nifti",
           "--config", "tiny", "--out", str(run), "--epochs", "40", "--clip-frames", "6", "--lr", "1e-3",
           "--threads", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run / "checkpoints" / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert last.exists(), "no checkpoint before the kill"
    epoch_at_kill = torch.load(last, weights_only=True)["epoch"]  # what is there is whole
    for name in ("last.pt", "best.pt"):
        if (run / "checkpoints" / name).exists():
            load_model(run / "checkpoints" / name)
    done = subprocess.run(cmd[:-5] + ["--epochs", str(epoch_at_kill + 1), "--clip-frames", "6", "--lr", "1e-3",
                                      "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not list(run.rglob(".*part*"))  # a write the kill cut short is cleared when the run resumes
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs[-1] == epoch_at_kill + 1 and sorted(set(epochs)) == list(range(1, epoch_at_kill + 2))


def test_nan_loss_stops_with_a_clear_message(clips, tmp_path):
    trainer = _tiny_train(tmp_path / "nan", epochs=3)
    with torch.no_grad():  # a network whose weights have blown up, as after a divergent step
        for p in trainer.model.net.decoder.head.parameters():
            p.fill_(float("inf"))
    with pytest.raises(TrainingError, match="became nan|became inf"):
        trainer.fit(clips[:2])


def test_checkpoint_from_another_configuration(tmp_path):
    net = build_model("tiny")
    save_checkpoint(tmp_path / "tiny.pt", net, net.config)
    with pytest.raises(CheckpointError, match="'tiny', not 'light'"):
        load_model(tmp_path / "tiny.pt", expect="light")
    payload = torch.load(tmp_path / "tiny.pt", weights_only=True)
    payload["net"]["name"], payload["net"]["dim"] = "light", 96
    torch.save(payload, tmp_path / "mislabelled.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "mislabelled.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable model file"):
        load_model(tmp_path / "junk.pt")


@pytest.mark.parametrize("with_references", [False, True])
def test_streaming_gives_the_same_masks_as_clip_inference(clips, with_references):
    torch.manual_seed(0)
    net = build_model("tiny").eval()
    clip = clips[1]
    frames = torch.from_numpy(clip.frames).float()[None] / 255
    labels = torch.from_numpy(clip.labels.astype(np.int64))[None]
    valid = torch.from_numpy(clip.labelled)[None] if with_references else None
    with torch.no_grad():
        clip_probs = net(frames, labels if with_references else None, valid)["logits"][0].softmax(1)
    refs = {int(t): (clip.frames[t] / 255.0, clip.labels[t]) for t in np.flatnonzero(clip.labelled)} \
        if with_references else None
    core = SegmentationCore(net, refs, amp=False)  # float32, as the clip forward
    streamed = torch.stack([core.step(frames[0, t]) for t in range(frames.shape[1])])
    drawn = clip.labelled if with_references else np.zeros(len(clip.labelled), bool)
    assert torch.equal(streamed[~drawn].argmax(1), clip_probs[~drawn].argmax(1))
    assert torch.allclose(streamed[~drawn], clip_probs[~drawn], atol=1e-4)
    for t in np.flatnonzero(drawn):  # a drawn frame comes back exactly as drawn
        assert torch.equal(streamed[t].argmax(0), torch.from_numpy(clip.labels[t].astype(np.int64)))


def test_a_frame_drawn_while_streaming_joins_the_memory(clips):
    torch.manual_seed(0)
    net = build_model("tiny").eval()
    clip = clips[1]
    frames = torch.from_numpy(clip.frames).float() / 255
    drawn = torch.from_numpy(clip.labels[0].astype(np.int64))
    plain, guided = SegmentationCore(net), SegmentationCore(net)
    first = guided.step(frames[0], mask=drawn)
    plain.step(frames[0])
    assert torch.equal(first.argmax(0), drawn) and 0 in guided.memory.references
    later_plain = torch.stack([plain.step(f) for f in frames[1:]])
    later_guided = torch.stack([guided.step(f) for f in frames[1:]])
    assert not torch.allclose(later_plain, later_guided, atol=1e-4)  # the drawing steers what follows


def test_segment_the_rest_keeps_drawn_frames_exactly():
    net = build_model("tiny").eval()
    video = make_patient(9200).render("4CH", size=(70, 90), n_frames=7)
    drawn = restrict_labels(video, "ed-es")
    seg = segment_video(net, drawn, chunk=3)
    assert seg.labels.shape == video.labels.shape and seg.labels.dtype == np.uint8
    for t in drawn.annotated:
        np.testing.assert_array_equal(seg.labels[t], video.labels[t])
    single = segment_video(net, video.select([0]).replace(labels=None, annotated=()))
    assert single.labels.shape == (1, 70, 90)


def test_segment_the_rest_propagates_both_ways_and_names_the_next_frame():
    torch.manual_seed(0)
    net = build_model("tiny").eval()
    video = make_patient(9201).render("4CH", size=(64, 64), n_frames=12)
    drawn = video.with_labels(video.labels, annotated=[6])  # frames before the drawn one exist too
    both = segment_video(net, drawn, chunk=5)
    forward = segment_video(net, drawn, chunk=5, bidirectional=False)
    assert not np.allclose(both.probabilities[:6], forward.probabilities[:6], atol=1e-3)
    assert len(both.extra["disagreement"]) == 12 and both.extra["disagreement"][6] == 0.0
    assert both.extra["next_frame"] is not None and abs(both.extra["next_frame"] - 6) > 2
    np.testing.assert_array_equal(both.labels[6], video.labels[6])


def test_both_directions_walked_together_give_what_each_gives_alone(clips):
    # "segment the rest" walks the forward and the backward pass in one batch; each must be its own walk
    from echoforge.engine.inference import propagate_both_ways

    torch.manual_seed(0)
    net = build_model("tiny").eval()
    clip = clips[1]
    frames = clip.frames.astype(np.float32) / 255
    drawn = [int(t) for t in np.flatnonzero(clip.labelled)][:2]
    refs = {t: (frames[t], clip.labels[t]) for t in drawn}
    prior = torch.rand(len(frames), net.config.n_classes, *frames.shape[1:]).softmax(1)
    core = SegmentationCore(net, refs, amp=False)
    enc, pad = core.encode(frames)
    order = list(range(len(frames)))
    alone_forward = core.run_encoded(enc, pad, order, prior)
    alone_backward = SegmentationCore(net, refs, amp=False).run_encoded(
        enc[torch.tensor(order[::-1])], pad, order[::-1], prior.flip(0)).flip(0)
    for piece in (None, 64):  # one piece: the whole video each way
        forward, backward = propagate_both_ways(core, enc, pad, prior, piece=piece)
        assert torch.allclose(forward, alone_forward, atol=1e-5)
        assert torch.allclose(backward, alone_backward, atol=1e-5)
    assert not torch.allclose(forward, backward, atol=1e-3)  # and the two directions do differ
    for t in drawn:
        assert torch.equal(forward[t].argmax(0), torch.from_numpy(clip.labels[t].astype(np.int64)))


def test_walk_windows_cover_every_frame_once_each_way_with_a_warm_up():
    from echoforge.engine.inference import walk_windows

    assert walk_windows(30, piece=32, warmup=4) == [(list(range(30)), range(30)), (list(range(29, -1, -1)), range(30))]
    for n in (37, 64, 100, 201):
        walks = walk_windows(n, piece=16, warmup=4)
        assert {len(order) for order, _ in walks} == {20}  # one batch: all walks of piece + warm-up frames
        for direction in (0, 1):
            kept = sorted(t for order, frames in walks[direction::2] for t in frames)
            assert kept == list(range(n))  # every frame kept by exactly one walk of each direction
            for order, frames in walks[direction::2]:
                step = 1 if direction == 0 else -1
                assert order == list(range(order[0], order[-1] + step, step)) and set(frames) <= set(order)
                first_kept = frames[0] if direction == 0 else frames[-1]
                # a piece warms up on at least 4 frames before its first kept one, unless the video starts sooner
                assert order.index(first_kept) >= min(4, first_kept if direction == 0 else n - 1 - first_kept)


def test_walking_in_pieces_gives_the_masks_of_whole_walks():
    # pieces start from the references alone, as the first frame does; after a short warm-up their
    # memory holds only their own predictions, and the masks are those of two whole walks
    from echoforge.engine.inference import propagate_both_ways

    torch.manual_seed(0)
    net = build_model("tiny").eval()
    video = make_patient(9203).render("4CH", size=SIZE, n_frames=60)
    frames = video.frames.astype(np.float32)
    refs = {t: (frames[t], video.labels[t]) for t in (video.ed, video.es)}
    core = SegmentationCore(net, refs, amp=False)
    enc, pad = core.encode(frames)
    whole = propagate_both_ways(core, enc, pad, piece=None)
    pieces = propagate_both_ways(core, enc, pad, piece=12, warmup=4)
    for a, b in zip(whole, pieces, strict=True):
        assert (a.argmax(1) == b.argmax(1)).float().mean() > 0.99


def test_bfloat16_inference_gives_the_float32_masks():
    from echoforge.engine.precision import autocast_dtype

    assert autocast_dtype(torch.device("cuda")) == torch.float16
    assert autocast_dtype(torch.device("cuda"), enabled=False) is None
    assert autocast_dtype(torch.device("cpu")) in (None, torch.bfloat16)  # bfloat16 only where native
    torch.manual_seed(0)
    net = build_model("tiny").eval()
    video = make_patient(9204).render("4CH", size=SIZE, n_frames=20)
    drawn = video.with_labels(video.labels, annotated=[video.ed, video.es])
    exact = segment_video(net, drawn, amp=False)
    core = SegmentationCore(net, amp=False)
    core.dtype = torch.bfloat16  # what amp gives on a CPU with native bfloat16 (emulated elsewhere)
    probs = core.run(video.frames.astype(np.float32))
    assert core.encode(video.frames[:1].astype(np.float32))[0].x16.dtype == torch.bfloat16
    assert probs.dtype == torch.float32 and torch.isfinite(probs).all()
    plain = SegmentationCore(net, amp=False).run(video.frames.astype(np.float32))
    assert (probs.argmax(1) == plain.argmax(1)).float().mean() > 0.98
    assert exact.probabilities.dtype == np.float16


def test_drawn_frames_that_cannot_be_right_are_refused_or_flagged():
    from echoforge.engine.inference import check_drawn_frames

    video = make_patient(9202).render("4CH", size=(64, 64), n_frames=12)
    ed, es = video.ed, video.es
    assert check_drawn_frames(video.with_labels(video.labels, annotated=[ed, es])) == []
    only = check_drawn_frames(video.with_labels(video.labels, annotated=[ed]))
    assert len(only) == 1 and "only frame" in only[0]
    no_la = video.labels.copy()
    no_la[es][no_la[es] == 3] = 0
    assert any("left atrium" in w and str(es) in w for w in check_drawn_frames(
        video.with_labels(no_la, annotated=[ed, es])))
    moved = video.labels.copy()
    moved[es] = np.roll(moved[es], 30, axis=1)  # drawn on the wrong place
    assert any("disagree" in w for w in check_drawn_frames(video.with_labels(moved, annotated=[ed, es])))
    empty = video.labels.copy()
    empty[es][empty[es] == 1] = 0
    net = build_model("tiny").eval()
    with pytest.raises(EmptyLabelError, match=f"frames? {es} hold no LV"):
        segment_video(net, video.with_labels(empty, annotated=[ed, es]))
    seg = segment_video(net, video.with_labels(moved, annotated=[ed, es]))
    assert any("disagree" in w for w in seg.extra["warnings"])


def test_load_dataset_layouts(studies, tmp_path):
    items = load_dataset(studies, "nifti", "training")
    assert items and all(ref is not None for _, _, ref in items)
    assert all(video.annotated == tuple(sorted((ref.ed, ref.es))) for _, video, ref in items
               if video.has_labels)
    write_phantom_dataset(tmp_path / "camus", "camus", patients=2, seed=92, size=SIZE, progress=False)
    camus = load_dataset(tmp_path / "camus", "camus")
    assert len(camus) == 4 and camus[0][1].annotated == tuple(range(camus[0][1].n_frames))


def test_export_matches_pytorch(tmp_path):
    from echoforge.engine.export import export_model

    torch.manual_seed(0)
    net = build_model("tiny").eval()
    frames = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(frames)["logits"].numpy()
    script = torch.jit.load(str(export_model(net, "torchscript", tmp_path / "m.ts", n_frames=3)))
    np.testing.assert_allclose(script(frames).detach().numpy(), expected, atol=1e-4)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(export_model(net, "onnx", tmp_path / "m.onnx", n_frames=3)))
    np.testing.assert_allclose(session.run(["logits"], {"frames": frames.numpy()})[0], expected, atol=1e-3)


def test_distributed_training_with_gloo_and_two_processes(studies, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(29500 + os.getpid() % 1000), "-m", "echoforge.cli", "train", "--data", str(studies),
                "--layout", "nifti", "--config", "tiny", "--out", str(tmp_path / "ddp"), "--epochs", "1",
                "--clip-frames", "6", "--device", "cpu", "--threads", "1", "--quiet"]
    done = subprocess.run(torchrun, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "ddp" / "checkpoints" / "last.pt").exists()
    assert len((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()) == 1
