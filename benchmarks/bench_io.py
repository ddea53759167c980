"""Data layer throughput: DICOM decode, AVI read, NIfTI read, phantom generation (frames/s).

    python benchmarks/bench_io.py        # prints a table, writes benchmarks/results/io.{json,md}
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_time, table, write_results  # noqa: E402

from echoforge.io import load_video  # noqa: E402
from echoforge.io.avi import write_avi  # noqa: E402
from echoforge.io.dicom import read_dicom, write_dicom  # noqa: E402
from echoforge.io.volume import write_volume  # noqa: E402
from echoforge.phantom import make_patient, phantom_generation_speed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_A4C = REPO / "sample-data" / "real" / "pydicom-data-1.0.0__color3d_jpeg_baseline.dcm"


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if REAL_A4C.exists():
            n = read_dicom(REAL_A4C).n_frames
            seconds = best_time(lambda: read_dicom(REAL_A4C), repeats=3)
            rows.append({"what": "DICOM read, real A4C cine (YBR JPEG baseline, 480×640, sector detect + crop)",
                         "frames": n, "seconds": seconds, "fps": n / seconds})
        video = make_patient(1).render("4CH", size=(256, 256), n_frames=60)
        for compression in ("none", "rle", "jpeg-baseline"):
            path = tmp / f"phantom_{compression}.dcm"
            write_dicom(video, path, compression=compression)
            seconds = best_time(lambda p=path: read_dicom(p), repeats=3)
            rows.append({"what": f"DICOM read, phantom 256×256 MONOCHROME2 ({compression})", "frames": video.n_frames,
                         "seconds": seconds, "fps": video.n_frames / seconds})
        small = make_patient(2).render("4CH", size=(112, 112), n_frames=120, fps=50.0)
        write_avi(small, tmp / "echonet.avi")
        seconds = best_time(lambda: load_video(tmp / "echonet.avi"), repeats=5)
        rows.append({"what": "AVI read, EchoNet-style 112×112 MJPG", "frames": small.n_frames, "seconds": seconds,
                     "fps": small.n_frames / seconds})
        write_volume(video, tmp / "v.nii.gz")
        seconds = best_time(lambda: load_video(tmp / "v.nii.gz"), repeats=3)
        rows.append({"what": "NIfTI read (.nii.gz) 256×256", "frames": video.n_frames, "seconds": seconds,
                     "fps": video.n_frames / seconds})
    for size in ((112, 112), (256, 256)):
        fps = phantom_generation_speed(size=size, n_frames=10, repeats=5)
        rows.append({"what": f"phantom generation {size[0]}×{size[1]} (10-frame clip, labels included)",
                     "frames": 10, "seconds": 10 / fps, "fps": fps})
    columns = [("what", "operation"), ("frames", "frames"), ("seconds", "seconds"), ("fps", "frames/s")]
    md = "# Data layer throughput\n\n" + table(rows, columns)
    print(md)
    print("wrote", write_results("io", {"rows": rows}, md))


if __name__ == "__main__":
    main()
