"""Clinical measurements the way echo labs report them, on multi-beat phantoms with exact truth.

Every beat of 2CH and 4CH clips of several beats (heart-rate variability, beat-to-beat EF
variation; some patients in an irregular, AF-like rhythm), from unseen phantom seeds, in each
phantom style (``--styles``; ``in-domain`` and ``shifted`` for now). The beats are found in the LV
volume curve alone (no ECG). Targets:

* per-beat EF (biplane method of disks) from the true masks within 1 point of the truth;
* beat-averaged biplane EF from predicted masks — the model segments the rest of each clip from the
  ED and ES of one beat drawn — with MAE ≤ 3 points and |bias| ≤ 1 against the truth;
* GLS from the true masks within 1 strain point; LA volume (at LV end-systole, biplane disks)
  within 5 %; LV mass (biplane area–length) within 10 %;
* the irregular-rhythm flag on every irregular clip and on no regular one.

    python benchmarks/bench_clinical.py [--model CKPT] [--seeds 71 72 73] [--regular 3] [--irregular 2]

Numbers are mean ± SD over the seed sets. Writes ``benchmarks/results/clinical.{json,md}`` and the
pictures of one clip (``clinical_curve.png``, ``clinical_montage.png``) and of the predicted
beat-averaged EF against the truth (``clinical_ef_bland_altman.png``, ``clinical_ef_regression.png``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import RESULTS, table, write_results  # noqa: E402
from tqdm import tqdm  # noqa: E402

from echoforge.core.agreement import agreement  # noqa: E402
from echoforge.core.clip import measure_clip, measure_pair  # noqa: E402
from echoforge.engine.checkpoint import load_model  # noqa: E402
from echoforge.engine.inference import segment_video  # noqa: E402
from echoforge.phantom import make_patient  # noqa: E402
from echoforge.phantom_datasets import patient_seed  # noqa: E402
from echoforge.weights import default_checkpoint  # noqa: E402

TRUE_SIZE = (256, 256)   # true masks at CAMUS resolution
VIDEO_SIZE = (112, 112)  # the light model's input size
FPS = 30.0
VIEWS = ("2CH", "4CH")
TARGETS = {"ef_true_mae": 1.0, "ef_pred_mae": 3.0, "ef_pred_bias": 1.0, "gls_mae": 1.0, "la_error_pct": 5.0,
           "mass_error_pct": 10.0}


def patient_for(style: str, seed: int) -> Any:
    """The phantom patient of a style family. The held-out style families will change: add them here."""
    styles = {"in-domain": False, "shifted": True}
    if style not in styles:
        raise SystemExit(f"unknown style {style!r}; choose from {sorted(styles)}")
    return make_patient(seed, shifted=styles[style])


def truth_beat(truth: list[dict], ed: int) -> dict | None:
    """The true beat whose ED frame is within two frames of ``ed``."""
    near = [t for t in truth if t["ed_frame"] is not None and abs(t["ed_frame"] - ed) <= 2]
    return min(near, key=lambda t: abs(t["ed_frame"] - ed)) if near else None


def measure_patient(patient: Any, irregular: bool, n_beats: int, model: Any) -> dict[str, Any]:
    beats = patient.beat_sequence(n_beats, irregular)
    times = patient.beat_clip_times(beats, FPS)
    truth = patient.beat_truth(beats, times)
    out: dict[str, Any] = {"seed": patient.seed, "irregular": irregular, "beats": [], "views": {}}
    true_clips, predicted_clips = {}, {}
    for view in VIEWS:
        labels = patient.beat_label_maps(view, beats, times, TRUE_SIZE)
        spacing = patient.spacing_mm(TRUE_SIZE)
        true_clips[view] = measure_clip(labels, spacing, 1000.0 / FPS)
        video = patient.render_beats(view, beats, VIDEO_SIZE, FPS, times)
        drawn_beat = next(t for t in truth if t["complete"])  # the clinician draws ED and ES of one beat
        frames = [drawn_beat["ed_frame"], drawn_beat["es_frame"]]
        drawn = np.zeros_like(video.labels)
        drawn[frames] = video.labels[frames]
        seg = segment_video(model, video.with_labels(drawn, frames))
        predicted_clips[view] = measure_clip(seg.labels, video.spacing, video.frame_time_ms, frames[0], frames[1],
                                             confidence=seg.confidence)
        out["views"][view] = {"irregular_flag": true_clips[view].result["rhythm"]["irregular"],
                              "n_beats": true_clips[view].result["n_beats"]}
        if view == "4CH":
            out["example"] = (video, seg.labels, predicted_clips[view].result)
    pair = measure_pair(true_clips["2CH"], true_clips["4CH"])
    for row in pair["beats"]:
        b2 = true_clips["2CH"].result["beats"][row["beat_2ch"]]
        b4 = true_clips["4CH"].result["beats"][row["beat_4ch"]]
        t = truth_beat(truth, b4["ed"])
        if t is None:
            continue
        out["beats"].append({"ef": row["ef"] - t["ef"], "ef_4ch_single": b4["ef"] - t["ef"],
                             "gls": [b4["gls"] - t["gls_4ch"], b2["gls"] - t["gls_2ch"]],
                             "la_pct": 100 * (row["la_volume_ml"] / t["la_volume_ml"] - 1),
                             "la_area_length_pct": 100 * (row["la_volume_area_length_ml"] / t["la_volume_ml"] - 1),
                             "mass_pct": 100 * (row["lv_mass_g"] / t["lv_mass_g"] - 1)})
    out["pairing"] = pair["pairing"]
    predicted = measure_pair(predicted_clips["2CH"], predicted_clips["4CH"])
    used = [truth_beat(truth, predicted_clips["4CH"].result["beats"][r["beat_4ch"]]["ed"]) for r in predicted["beats"]]
    used = [t for t in used if t is not None]
    out["ef_pred"] = predicted["ef_mean"]
    out["ef_pred_truth"] = float(np.mean([t["ef"] for t in used])) if used else None
    out["ef_pred_pairing"] = predicted["pairing"]
    out["ef_pred_beats"] = predicted["n_beats"]
    single = predicted_clips["4CH"].result["ef_mean"], true_clips["4CH"].result["ef_mean"]
    out["ef_single_pred_vs_true_masks"] = None if None in single else single[0] - single[1]
    return out


def summarise(patients: list[dict[str, Any]]) -> dict[str, Any]:
    beats = [b for p in patients for b in p["beats"]]
    ef = np.array([b["ef"] for b in beats])
    gls = np.array([g for b in beats for g in b["gls"]])
    la, la_al = np.array([b["la_pct"] for b in beats]), np.array([b["la_area_length_pct"] for b in beats])
    mass = np.array([b["mass_pct"] for b in beats])
    pred = [(p["ef_pred"], p["ef_pred_truth"]) for p in patients if p["ef_pred"] is not None and p["ef_pred_truth"]]
    stats = agreement([a for a, _ in pred], [b for _, b in pred])
    flags = [(p["irregular"], p["views"][v]["irregular_flag"]) for p in patients for v in VIEWS]
    single = [p["ef_single_pred_vs_true_masks"] for p in patients if p["ef_single_pred_vs_true_masks"] is not None]
    return {
        "patients": len(patients), "beats": len(beats),
        "ef_true_mae": float(np.abs(ef).mean()), "ef_true_max": float(np.abs(ef).max()),
        "ef_true_within_1": float(np.mean(np.abs(ef) <= 1.0)),
        "ef_4ch_single_plane_mae": float(np.mean([abs(b["ef_4ch_single"]) for b in beats])),
        "gls_mae": float(np.abs(gls).mean()), "gls_max": float(np.abs(gls).max()),
        "la_error_pct": float(np.abs(la).mean()), "la_max_pct": float(np.abs(la).max()),
        "la_area_length_error_pct": float(np.abs(la_al).mean()),
        "mass_error_pct": float(np.abs(mass).mean()), "mass_max_pct": float(np.abs(mass).max()),
        "ef_pred_mae": stats["mae"], "ef_pred_bias": stats["bias"], "ef_pred_n": stats["n"],
        "ef_single_pred_vs_true_masks_mae": float(np.mean(np.abs(single))) if single else None,
        "irregular_detected": sum(flag is True for truth, flag in flags if truth),
        "irregular_clips": sum(1 for truth, _ in flags if truth),
        "regular_flagged": sum(flag is True for truth, flag in flags if not truth),
        "regular_clips": sum(1 for truth, _ in flags if not truth),
        "beat_matched_pairs": float(np.mean([p["pairing"] == "beat-matched" for p in patients])),
    }


def mean_sd(values: list[float]) -> str:
    v = np.array([x for x in values if x is not None], dtype=float)
    return "—" if v.size == 0 else f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if v.size > 1 else f"{v.mean():.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="checkpoint (default: the shipped demo model)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[71, 72, 73], help="run seeds (unseen patients)")
    parser.add_argument("--styles", nargs="+", default=["in-domain", "shifted"], help="phantom style families")
    parser.add_argument("--regular", type=int, default=3, help="regular-rhythm patients per seed and style")
    parser.add_argument("--irregular", type=int, default=2, help="irregular-rhythm patients per seed and style")
    parser.add_argument("--beats", type=int, default=4, help="beats per clip (the first and last are cut)")
    args = parser.parse_args()
    model, config, _ = load_model(args.model or default_checkpoint())
    started, cpu_started = time.perf_counter(), time.process_time()
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {style: {} for style in args.styles}
    example = None
    total = len(args.styles) * len(args.seeds) * (args.regular + args.irregular)
    with tqdm(total=total, desc="patients", unit="patient") as bar:
        for style in args.styles:
            for seed in args.seeds:
                patients = []
                for i in range(args.regular + args.irregular):
                    irregular = i >= args.regular
                    result = measure_patient(patient_for(style, patient_seed(seed, i)), irregular,
                                             args.beats + 2 if irregular else args.beats, model)
                    if example is None and irregular:
                        example = result["example"]
                    del result["example"]
                    patients.append(result)
                    bar.update()
                runs[style][seed] = patients
    summaries = {style: {seed: summarise(p) for seed, p in by_seed.items()} for style, by_seed in runs.items()}
    pooled = {style: summarise([p for ps in by_seed.values() for p in ps]) for style, by_seed in runs.items()}
    rows = []
    for style, by_seed in summaries.items():
        per = list(by_seed.values())
        rows.append({"style": style, **{key: mean_sd([s[key] for s in per]) for key in per[0]
                                        if key not in ("irregular_detected", "irregular_clips", "regular_flagged",
                                                       "regular_clips")},
                     "irregular": f"{sum(s['irregular_detected'] for s in per)}/{sum(s['irregular_clips'] for s in per)}",
                     "false_irregular": f"{sum(s['regular_flagged'] for s in per)}/{sum(s['regular_clips'] for s in per)}"})
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    write_pictures(example, runs)
    columns = [("style", "style"), ("ef_true_mae", "EF true masks, MAE (pt)"), ("ef_true_max", "max"),
               ("ef_true_within_1", "share ≤ 1 pt"), ("ef_pred_mae", "EF predicted, MAE (pt)"),
               ("ef_pred_bias", "bias (pt)"), ("gls_mae", "GLS MAE (pt)"), ("la_error_pct", "LA |err| %"),
               ("la_max_pct", "LA max %"), ("mass_error_pct", "LV mass |err| %"), ("irregular", "irregular flagged"),
               ("false_irregular", "regular flagged")]
    extra = [("style", "style"), ("ef_4ch_single_plane_mae", "4CH single-plane EF MAE (pt, true masks)"),
             ("ef_single_pred_vs_true_masks_mae", "4CH single-plane EF, predicted vs true masks, MAE (pt)"),
             ("la_area_length_error_pct", "LA area–length |err| %"), ("gls_max", "GLS max (pt)"),
             ("mass_max_pct", "LV mass max %"), ("beat_matched_pairs", "beat-matched share"), ("beats", "beats")]
    pooled_columns = [("style", "style"), ("patients", "patients"), ("beats", "beats"),
                      ("ef_true_max", "EF true masks, max |err| (pt)"), ("ef_pred_mae", "EF predicted, MAE (pt)"),
                      ("ef_pred_bias", "bias (pt)"), ("ef_pred_n", "2CH/4CH pairs"), ("la_error_pct", "LA |err| %"),
                      ("la_max_pct", "LA max %"), ("mass_max_pct", "LV mass max %")]
    pooled_rows = [{"style": style, **stats} for style, stats in pooled.items()]
    md = [f"# Clinical measurements on multi-beat phantoms ({cpu_seconds / 60:.1f} CPU min, {seconds / 60:.1f} min wall)",
          "",
          f"Unseen phantom seeds {args.seeds} × styles {args.styles}; per seed and style {args.regular} regular and "
          f"{args.irregular} irregular (AF-like) patients, 2CH and 4CH clips of {args.beats} beats "
          f"({args.beats + 2} when irregular), first and last beats cut by the clip, {FPS:.0f} frames/s. "
          f"True masks at {TRUE_SIZE[0]}×{TRUE_SIZE[1]}; predicted masks from `{Path(args.model or default_checkpoint()).name}` "
          f"at {VIDEO_SIZE[0]}×{VIDEO_SIZE[1]}, ED and ES of one beat drawn (\"segment the rest\"). Beats are found in "
          "the LV volume curve only (no ECG). Mean ± SD over the seed sets.", "",
          "Targets: EF from true masks within 1 point; predicted beat-averaged EF MAE ≤ 3 and |bias| ≤ 1; GLS within "
          "1 point; LA volume within 5 %; LV mass within 10 %; irregular flag on every irregular clip, on no regular "
          "one. EF, LA volume and mass are biplane (CAMUS disks; LA disks at LV end-systole; mass by biplane "
          "area–length); GLS per view.", "",
          table(rows, columns), "", table(rows, extra), "", "All seeds pooled:", "",
          table(pooled_rows, pooled_columns), "",
          "![volume curve](clinical_curve.png)", "", "![ED/ES per beat](clinical_montage.png)", "",
          "![Bland–Altman](clinical_ef_bland_altman.png) ![regression](clinical_ef_regression.png)"]
    write_results("clinical", {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                               "seconds": seconds, "cpu_seconds": cpu_seconds, "targets": TARGETS, "summary": rows,
                               "pooled": pooled, "per_seed": summaries,
                               "patients": runs}, "\n".join(md))
    print("\n".join(md[:8]))


def write_pictures(example: Any, runs: dict[str, dict[int, list[dict[str, Any]]]]) -> None:
    from echoforge.plots import bland_altman_png, regression_png
    from echoforge.report import write_ed_es_montage, write_volume_curve

    if example is not None:
        video, labels, m = example
        write_volume_curve(m, video.frame_time_ms, RESULTS / "clinical_curve.png")
        write_ed_es_montage(video.frames, labels, m.get("ed"), m.get("es"), RESULTS / "clinical_montage.png",
                            beats=m.get("beats"))
    pairs = [(p["ef_pred"], p["ef_pred_truth"]) for by_seed in runs.values() for ps in by_seed.values() for p in ps
             if p["ef_pred"] is not None and p["ef_pred_truth"] is not None]
    pred, ref = [a for a, _ in pairs], [b for _, b in pairs]
    bland_altman_png(pred, ref, RESULTS / "clinical_ef_bland_altman.png", "Beat-averaged biplane EF, predicted vs truth")
    regression_png(pred, ref, RESULTS / "clinical_ef_regression.png", "Beat-averaged biplane EF, predicted vs truth")


if __name__ == "__main__":
    main()
