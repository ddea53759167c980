"""The numpy-only core (``echoforge.core``): what it may depend on, the Slicer module's copy of it,
and its numpy versions of the scipy / scikit-image / OpenCV primitives the measurements were
first written with."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage
from skimage.measure import find_contours

from echoforge import core_copy
from echoforge.core import contours as C

CORE = Path(core_copy.CORE)


def test_the_slicer_module_ships_an_identical_copy_of_the_core():
    assert core_copy.differences() == [], "run `python -m echoforge.core_copy`"
    assert core_copy.main(["--check"]) == 0


def test_the_copy_command_refreshes_a_stale_copy(tmp_path, capsys):
    copy = tmp_path / "EchoForgeCore"
    copy.mkdir()
    (copy / "old_module.py").write_text("# left over\n")
    (copy / "labels.py").write_text("# stale\n")
    assert core_copy.main(["--check", "--into", str(copy)]) == 1
    assert "labels.py: differs" in capsys.readouterr().out
    core_copy.main(["--into", str(copy)])
    assert sorted(p.name for p in copy.glob("*.py")) == core_copy.core_files()
    assert core_copy.differences(copy) == []


def test_the_core_needs_numpy_and_the_standard_library_only_on_python_3_9():
    allowed = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] in allowed for a in node.names), path.name
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] in allowed, f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "zip":
                assert not any(k.arg == "strict" for k in node.keywords), f"{path.name}: zip(strict=) is 3.10+"
            elif isinstance(node, ast.Attribute) and node.attr in ("pairwise", "removeprefix_", "kw_only"):
                raise AssertionError(f"{path.name} uses {node.attr}, which Python 3.9 lacks")
    code = "import sys, echoforge.core; print(sorted(m for m in ('torch', 'scipy', 'cv2', 'skimage') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_numpy_primitives_match_scipy_opencv_and_scikit_image():
    rng = np.random.default_rng(0)
    for trial in range(150):
        h, w = (int(v) for v in rng.integers(5, 60, 2))
        mask = rng.random((h, w)) > rng.uniform(0.2, 0.6)
        if trial % 3:
            mask = ndimage.binary_opening(mask, iterations=int(rng.integers(1, 3)))
        mask |= rng.random(mask.shape) > 0.95
        components, n = ndimage.label(mask)
        largest = components == 1 + int(np.argmax(np.bincount(components.ravel())[1:])) if n > 1 else mask
        cavity = C.largest_component_filled(mask)
        np.testing.assert_array_equal(cavity, ndimage.binary_fill_holes(largest))
        if cavity.sum() < 10:
            continue
        theirs = max(find_contours(np.pad(cavity, 1).astype(np.float64), 0.5), key=len)[:-1] - 1.0
        np.testing.assert_array_equal(C.outline(cavity), theirs)  # same points, same order, same start
        ring = C.outline(cavity) * rng.uniform(0.2, 2.0)
        tolerance = float(rng.uniform(0.2, 3.0))
        np.testing.assert_array_equal(
            C.douglas_peucker_closed(ring, tolerance),
            cv2.approxPolyDP(ring.astype(np.float32).reshape(-1, 1, 2), tolerance, True).reshape(-1, 2))
        nh, nw = (int(v) for v in rng.integers(5, 90, 2))
        image = (rng.random((h, w)) > 0.5).astype(np.uint8)
        np.testing.assert_array_equal(
            image[np.ix_(C.nearest_exact_index(h, nh), C.nearest_exact_index(w, nw))],
            cv2.resize(image, (nw, nh), interpolation=cv2.INTER_NEAREST_EXACT))
    curve = rng.random(17) * 10
    np.testing.assert_allclose(C.gaussian_smooth(curve, 1.0), ndimage.gaussian_filter1d(curve, 1.0, mode="nearest"),
                               rtol=1e-12)
