"""Every beat of a clip and the indices echo labs report (echoforge.core.beats / clip / ecg), against the
multi-beat phantom's exact truth, plus the bad input a clinic produces."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from echoforge.cli import main as cli_main
from echoforge.core.beats import IRREGULAR_RMSSD, detect_beats, rhythm
from echoforge.core.clip import measure_clip, measure_pair, report_measurements
from echoforge.core.ecg import detect_r_waves, synthetic_ecg
from echoforge.core.pairing import VideoRecord, find_partner
from echoforge.io.dicom import read_dicom, write_dicom
from echoforge.io.volume import read_volume, write_labels, write_volume
from echoforge.phantom import make_patient
from echoforge.phantom_datasets import BEATS_SIDECAR, write_phantom_dataset
from echoforge.report import video_report

FT = 1000.0 / 30.0
SIZE = (256, 256)


def cosine_curve(n: int, period: float, start: float, depth: float = 0.4, noise: float = 0.0, seed: int = 0):
    """A volume curve: 100 at ED (phase 0), 100·(1 − depth) at ES (half a period later)."""
    t = np.arange(n)
    curve = 100.0 * (1 - depth * (1 - np.cos(2 * np.pi * (t - start) / period)) / 2)
    return curve + np.random.default_rng(seed).normal(0, noise, n)


# ---------------------------------------------------------------------- beats on curves
def test_every_complete_beat_and_never_a_clip_end():
    beats, source = detect_beats(cosine_curve(75, 20.0, start=7.0, noise=0.3))  # starts mid-systole
    assert source == "curve"
    assert [f for b in beats for f in (b.ed, b.es)] == pytest.approx([7, 17, 27, 37, 47, 57], abs=1)
    assert all(0 < b.ed < 74 and 0 < b.es < 74 for b in beats)
    assert beats[0].next_ed == beats[1].ed and beats[-1].next_ed == 67
    ed_first, _ = detect_beats(cosine_curve(50, 20.0, start=0.0))  # ED on frame 0: cut by the clip
    assert [b.ed for b in ed_first] == [20]  # (and the last ES would be frame 50, after the clip)
    marked, _ = detect_beats(cosine_curve(50, 20.0, start=0.0), ed=0)  # the clinician's mark makes it a beat
    assert [(b.ed, b.ed_source) for b in marked] == [(0, "given"), (20, "curve")]
    es_marked, _ = detect_beats(cosine_curve(50, 20.0, start=0.0), es=31)
    assert [(b.es, b.es_source) for b in es_marked if b.ed == 20] == [(31, "given")]


def test_rhythm_regular_and_irregular():
    regular = np.concatenate([cosine_curve(int(p), p, 0.0)[:int(p)] for p in (24, 25, 24, 23, 24, 25)])
    rng = np.random.default_rng(3)
    irregular = np.concatenate([cosine_curve(int(p), p, 0.0)[:int(p)] for p in rng.uniform(13, 35, 7)])
    for curve, expected in ((regular, False), (irregular, True)):
        beats, _ = detect_beats(np.concatenate([curve, [100.0, 100.0, 99.0]]))
        info = rhythm(beats, None, FT)
        assert info["irregular"] is expected, info
        assert (info["rmssd_fraction"] > IRREGULAR_RMSSD) is expected
    short, _ = detect_beats(cosine_curve(35, 20.0, start=5.0))
    assert rhythm(short, None, FT)["irregular"] is None  # one cycle: nothing to say about the rhythm


def test_ecg_r_waves_are_found_in_a_synthetic_trace():
    for atrial, r_waves in ((True, [100.0, 930.0, 1770.0, 2580.0]), (False, [150.0, 610.0, 1390.0, 1810.0])):
        trace = synthetic_ecg(r_waves, 3000.0, atrial_waves=atrial, seed=1)
        np.testing.assert_allclose(detect_r_waves(trace, 500.0), r_waves, atol=4.0)
    assert detect_r_waves(np.zeros(100), 500.0).size == 0


# ---------------------------------------------------------------------- the phantom's truth
@pytest.fixture(scope="module")
def pairs():
    """True masks of both views of three multi-beat patients (the last one AF-like), measured."""
    out = []
    for seed, irregular in ((41, False), (42, False), (43, True)):
        patient = make_patient(seed)
        beats = patient.beat_sequence(6 if irregular else 4, irregular)
        times = patient.beat_clip_times(beats)
        clips = {view: measure_clip(patient.beat_label_maps(view, beats, times, SIZE), patient.spacing_mm(SIZE), FT)
                 for view in ("2CH", "4CH")}
        out.append((patient, beats, patient.beat_truth(beats, times), clips))
    return out


def _truth_of(truth, ed):
    return min((t for t in truth if t["ed_frame"] is not None), key=lambda t: abs(t["ed_frame"] - ed))


def test_every_beat_from_true_masks_meets_the_truth(pairs):
    for patient, _, truth, clips in pairs:
        pair = measure_pair(clips["2CH"], clips["4CH"])
        assert pair["pairing"] == "beat-matched", patient.seed
        assert pair["n_beats"] == sum(t["complete"] for t in truth), patient.seed
        la, mass = [], []
        for row in pair["beats"]:
            b4, b2 = clips["4CH"].result["beats"][row["beat_4ch"]], clips["2CH"].result["beats"][row["beat_2ch"]]
            t = _truth_of(truth, b4["ed"])
            assert abs(b4["ed"] - t["ed_frame"]) <= 1 and abs(b4["es"] - t["es_frame"]) <= 1
            assert row["ef"] == pytest.approx(t["ef"], abs=1.0), (patient.seed, row["ef"], t["ef"])
            assert b4["gls"] == pytest.approx(t["gls_4ch"], abs=1.0) and b2["gls"] == pytest.approx(t["gls_2ch"], abs=1.0)
            assert b4["gls"] < 0
            la.append(row["la_volume_ml"] / t["la_volume_ml"] - 1)
            mass.append(row["lv_mass_g"] / t["lv_mass_g"] - 1)
        assert np.mean(np.abs(la)) <= 0.05 and max(np.abs(la)) <= 0.08, np.round(la, 3)
        assert max(np.abs(mass)) <= 0.10, np.round(mass, 3)
        efs = [t["ef"] for t in truth]
        assert max(efs) - min(efs) > 0.5  # the beats differ


def test_the_irregular_flag_marks_the_irregular_clip_only(pairs):
    for _, beats, _, clips in pairs:
        for clip in clips.values():
            assert clip.result["rhythm"]["irregular"] is beats.irregular
            wanted = 5 if beats.irregular else 3
            if clip.result["n_beats_used"] < wanted:
                assert f"guidelines average {wanted}" in clip.result["beats_note"]


def test_report_keys_means_and_pictures(pairs, tmp_path):
    patient, beats, truth, clips = pairs[2]
    m = clips["4CH"].result
    for key in ("beats", "ef_mean", "ef_sd", "n_beats", "ed", "es", "ef", "edv_disks_ml", "gls_mean", "la_volume_ml",
                "lv_mass_g", "rhythm", "quality", "methods"):
        assert key in m, key
    assert {"ed", "es", "edv_ml", "esv_ml", "ef", "gls", "flags", "included"} <= set(m["beats"][0])
    used = [b["ef"] for b in m["beats"] if b["included"]]
    assert m["ef_mean"] == pytest.approx(np.mean(used)) and m["ef_sd"] == pytest.approx(np.std(used, ddof=1))
    video = patient.render_beats("4CH", beats, size=(96, 96))
    report = video_report(video, video.labels, report_path=tmp_path / "r.json", montage_path=tmp_path / "m.png")
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["measurements"]["n_beats"] >= 3 and written["measurements"]["beat_source"] == "ecg"
    assert Image.open(report["curve_png"]).size[0] > 800 and Image.open(tmp_path / "m.png").size[1] > 150


# ---------------------------------------------------------------------- ECG through DICOM and NIfTI
def test_the_phantom_dicom_carries_an_ecg_that_times_the_beats(tmp_path):
    patient = make_patient(44)
    beats = patient.beat_sequence(5, irregular=True)
    video = patient.render_beats("4CH", beats, size=(80, 80))
    write_dicom(video, tmp_path / "cine.dcm")
    back = read_dicom(tmp_path / "cine.dcm")
    assert back.meta["ecg_source"] == "waveform"
    np.testing.assert_allclose(back.meta["r_waves_ms"], video.meta["r_waves_ms"], atol=4.0)
    write_volume(back, tmp_path / "cine.nii.gz")  # what the server's ingest does
    nifti = read_volume(tmp_path / "cine.nii.gz")
    np.testing.assert_allclose(nifti.meta["r_waves_ms"], back.meta["r_waves_ms"], atol=0.1)
    m = report_measurements(video.labels, video.spacing, video.frame_time_ms, r_waves_ms=nifti.meta["r_waves_ms"])
    assert m["beat_source"] == "ecg" and m["rhythm"]["source"] == "ecg" and m["rhythm"]["irregular"]
    assert len(m["beats"]) >= sum(t["complete"] for t in video.meta["beats"])
    for beat in m["beats"]:
        truth = _truth_of(video.meta["beats"], beat["ed"])
        assert abs(beat["ed"] - truth["ed_frame"]) <= 1 and abs(beat["es"] - truth["es_frame"]) <= 1


# ---------------------------------------------------------------------- bad input
def test_a_clip_shorter_than_a_beat_gives_single_beat_values_and_no_mean():
    half = make_patient(45).render_half_sequence("4CH", size=(128, 128))  # ED → ES, as CAMUS stores it
    m = report_measurements(half.labels, half.spacing, half.frame_time_ms)
    assert m["n_beats"] == 0 and m["ef_mean"] is None and m["ef_sd"] is None
    assert "no complete beat" in m["beats_note"] and m["available"] and 0 < m["ef"] < 100


def test_flat_curve_missing_lv_and_low_quality_beats_are_reported():
    patient = make_patient(41)
    beats = patient.beat_sequence(6)
    labels = patient.beat_label_maps("4CH", beats, patient.beat_clip_times(beats), (128, 128))
    spacing = patient.spacing_mm((128, 128))
    flat = report_measurements(np.repeat(labels[:1], 40, axis=0), spacing, FT)
    assert flat["n_beats"] == 0 and any(f["code"] == "flat_curve" for f in flat["quality"])
    assert "no beat" in flat["beats_note"] and flat["ef_mean"] is None
    good = report_measurements(labels, spacing, FT)["beats"]
    holed = labels.copy()
    holed[good[0]["ed"] + 2] = 0  # no LV on a frame of the first beat
    confidence = np.ones(len(labels))
    confidence[good[1]["es"]] = 0.3  # the model was unsure on the second beat
    m = report_measurements(holed, spacing, FT, confidence=confidence)
    codes = [[f["code"] for f in b["flags"]] for b in m["beats"]]
    assert "lv_missing" in codes[0] and "confidence_drop" in codes[1]
    assert not m["beats"][0]["included"] and not m["beats"][1]["included"] and m["n_beats_used"] == len(codes) - 2
    assert m["ef_mean"] == pytest.approx(np.mean([b["ef"] for b in m["beats"] if b["included"]]))
    assert any(f["code"] == "lv_missing" for f in m["quality"])


def test_foreshortened_beats_are_left_out():
    patient = make_patient(46)
    beats = patient.beat_sequence(5)
    labels = patient.beat_label_maps("4CH", beats, patient.beat_clip_times(beats), (128, 128))
    m = report_measurements(labels, patient.spacing_mm((128, 128)), FT)
    ed = m["beats"][1]["ed"]
    short = labels.copy()
    for t in range(ed - 3, ed + 4):  # the apex cut off around the second beat's ED: foreshortened frames
        apex_row = int(np.flatnonzero((labels[t] == 1).any(axis=1))[0])
        top = short[t, : apex_row + 12]
        top[top == 1] = 2
    flagged = report_measurements(short, patient.spacing_mm((128, 128)), FT)
    beat = next(b for b in flagged["beats"] if abs(b["ed"] - ed) <= 3)
    assert [f["code"] for f in beat["flags"]] == ["foreshortened"] and not beat["included"]


def test_an_uncalibrated_video_gives_ratios_and_says_why_volumes_are_missing(pairs):
    patient, beats, truth, clips = pairs[1]
    labels = patient.beat_label_maps("4CH", beats, patient.beat_clip_times(beats), (128, 128))
    m = report_measurements(labels, None, FT)
    assert m["n_beats"] == clips["4CH"].result["n_beats"]
    assert m["edv_mean_ml"] is None and m["la_volume_ml"] is None and m["lv_mass_g"] is None
    assert "pixel spacing" in m["volume_reason"]
    for beat in m["beats"]:
        assert beat["edv_ml"] is None and beat["lv_mass_g"] is None and beat["la_volume_ml"] is None
        assert 0 < beat["ef"] < 100 and beat["gls"] < 0 and 0 < beat["fac"] < 100
    pair = measure_pair(measure_clip(labels, None, FT), measure_clip(labels, None, FT))
    assert pair["edv_mean_ml"] is None and pair["ef_mean"] is not None and "spacing" in pair["reason"]


# ---------------------------------------------------------------------- pairing and layouts
def test_partners_by_link_dicom_ids_and_name():
    videos = [VideoRecord("p1_4CH", "4CH"), VideoRecord("p1_2CH", "2CH"), VideoRecord("scan_a", "2CH", "P7", "S1"),
              VideoRecord("scan_b", "4CH", "P7", "S1"), VideoRecord("loop3", "unknown", partner="loop9"),
              VideoRecord("loop9", "4CH")]
    assert find_partner(videos[0], videos).record.id == "p1_2CH" and find_partner(videos[0], videos).found_by == "name"
    assert find_partner(videos[3], videos).record.id == "scan_a" and find_partner(videos[3], videos).found_by == "dicom"
    linked = find_partner(videos[5], videos)
    assert linked.record.id == "loop3" and linked.found_by == "link"
    assert find_partner(VideoRecord("p2_4CH", "4CH"), videos) is None


def test_per_view_means_when_beats_do_not_correspond():
    patient = make_patient(47)
    clips = []
    for view, irregular in (("2CH", False), ("4CH", True)):  # two acquisitions with different rhythms
        beats = patient.beat_sequence(4 if not irregular else 6, irregular)
        times = patient.beat_clip_times(beats)
        clips.append(measure_clip(patient.beat_label_maps(view, beats, times, (128, 128)),
                                  patient.spacing_mm((128, 128)), FT))
    pair = measure_pair(*clips)
    n2, n4 = (c.result["n_beats_used"] for c in clips)
    assert pair["pairing"] == "per-view means" and pair["n_beats"] == n2 * n4 and pair["ef_sd"] is None
    assert "every usable 2CH beat" in pair["pairing_note"] and math.isfinite(pair["ef_mean"])


def test_every_layout_carries_the_truth_of_every_beat(tmp_path):
    for layout in ("nifti", "echonet", "dicom"):
        write_phantom_dataset(tmp_path / layout, layout, patients=2, seed=48, size=(48, 48), beats=3, irregular=0.5,
                              progress=False)
    manifest = json.loads((tmp_path / "nifti" / "dataset.json").read_text())["videos"]
    assert [e["meta"]["rhythm"] for e in manifest] == ["sinus", "sinus", "irregular", "irregular"]
    beat = manifest[0]["meta"]["beats"][0]
    assert {"ed_frame", "es_frame", "ef", "rr_ms", "gls_4ch", "la_volume_ml", "lv_mass_g"} <= set(beat)
    rows = (tmp_path / "echonet" / BEATS_SIDECAR).read_text().splitlines()
    assert rows[0].startswith("FileName,Rhythm,beat,ed_frame,es_frame") and len(rows) > 4
    dicom = json.loads((tmp_path / "dicom" / "dataset.json").read_text())["videos"]
    videos = [read_dicom(tmp_path / "dicom" / e["file"]) for e in dicom[:2]]
    assert videos[0].meta["r_waves_ms"] and videos[0].meta["study_instance_uid"] == videos[1].meta["study_instance_uid"]
    one_cycle = make_patient(48).render("4CH", size=(48, 48))  # the one-cycle clips keep their frames
    assert one_cycle.meta["beats"][0]["ed_frame"] == one_cycle.ed == 0


def test_measure_command_reports_every_beat(pairs, tmp_path, capsys):
    patient, beats, _, _ = pairs[0]
    video = patient.render_beats("4CH", beats, size=(96, 96))
    write_labels(video, tmp_path / "labels.nii.gz")
    assert cli_main(["measure", str(tmp_path / "labels.nii.gz"), "--json", "--curve-png", str(tmp_path / "c.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_beats"] >= 2 and out["ef_mean"] is not None and "ef_sd" in out and len(out["beats"]) == out["n_beats"]
    assert (tmp_path / "c.png").stat().st_size > 1000
