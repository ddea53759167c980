"""Write the phantom-versus-real preview montage (``sample-data/previews/phantom_vs_real.png``).

Regenerate it with::

    python -m echoforge.phantom.preview --real /path/to/color3d_jpeg_baseline.dcm \\
        --out sample-data/previews/phantom_vs_real.png

The real cine (an apical 4-chamber clip from the MIT-licensed ``pydicom-data`` package) is read with
pydicom directly and cropped to its ultrasound region; only its luma is shown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from echoforge.phantom.patient import make_patient
from echoforge.viz import save_phantom_vs_real_png


def read_real_cine(path: str | Path, max_frames: int = 60) -> np.ndarray:
    """``T×H×W`` uint8 luma of an ultrasound DICOM cine, cropped to its first ultrasound region."""
    import pydicom

    dataset = pydicom.dcmread(str(path))
    pixels = dataset.pixel_array[:max_frames]
    if pixels.ndim == 4:                               # colour: YBR keeps luma in channel 0
        pixels = pixels[..., 0] if dataset.PhotometricInterpretation.startswith("YBR") else pixels.mean(-1)
    regions = getattr(dataset, "SequenceOfUltrasoundRegions", None)
    if regions:
        region = regions[0]
        pixels = pixels[:, region.RegionLocationMinY0: region.RegionLocationMaxY1 + 1,
                        region.RegionLocationMinX0: region.RegionLocationMaxX1 + 1]
    return np.asarray(pixels, dtype=np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", required=True, help="a real apical 4-chamber DICOM cine")
    parser.add_argument("--out", default="sample-data/previews/phantom_vs_real.png")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    patient = make_patient(args.seed)
    size = (args.size, args.size)
    videos = [patient.render(view, size=size) for view in ("4CH", "2CH")]
    real = read_real_cine(args.real)
    path = save_phantom_vs_real_png(args.out, videos, real,
                                    real_title="real A4C", tile_height=args.size)
    print(f"{path}: {patient}")


if __name__ == "__main__":
    main()
