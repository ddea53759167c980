"""Binary-mask primitives of the LV geometry, in numpy only.

Each function gives the same result as the library the measurements were first written with, and
the tests check it on random masks:

* :func:`largest_component_filled` = the largest 4-connected component (``scipy.ndimage.label``,
  the first in raster order on a tie) with its holes filled (``scipy.ndimage.binary_fill_holes``);
* :func:`outline` = the longest contour of ``skimage.measure.find_contours(padded mask, 0.5)``,
  the same points in the same order, from the same start;
* :func:`douglas_peucker_closed` = OpenCV's ``approxPolyDP(closed=True)`` on float32 points;
* :func:`nearest_exact_index` = the sampling of OpenCV's ``INTER_NEAREST_EXACT`` resize;
* :func:`gaussian_smooth` = ``scipy.ndimage.gaussian_filter1d(mode="nearest")``.

Masks are handled as runs of pixels along rows, so the cost grows with the outline, not the area.
"""

from __future__ import annotations

import numpy as np


# ----------------------------------------------------------------------------- runs and components
def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, first column and end column (exclusive) of every horizontal run of ``mask``, in raster order."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, ends = np.nonzero(step == -1)
    return rows, starts, ends


def _run_components(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Component index of every run (4-connectivity), components numbered by their first run.

    ``width`` bounds the columns (every end is at most ``width``).
    """
    n = rows.size
    # the runs of row r+1 touching run i of row r start before i ends and end after i starts;
    # rows and columns folded into one sorted key find them for all runs at once
    stride = width + 1
    below = (rows + 1) * stride
    first = np.searchsorted(rows * stride + ends, below + starts, side="right")
    last = np.searchsorted(rows * stride + starts, below + ends, side="left")
    count = np.maximum(last - first, 0)
    upper = np.repeat(np.arange(n), count)
    lower = np.repeat(first - np.cumsum(count) + count, count) + np.arange(int(count.sum()))
    # connected components of the run graph: hook every edge onto the smaller label, then jump
    # pointers until each run points at the smallest run of its component
    label = np.arange(n)
    while upper.size:
        low = np.minimum(label[upper], label[lower])
        hooked = label.copy()
        np.minimum.at(hooked, label[upper], low)
        np.minimum.at(hooked, label[lower], low)
        while True:
            jumped = hooked[hooked]
            if np.array_equal(jumped, hooked):
                break
            hooked = jumped
        if np.array_equal(hooked, label):
            break
        label = hooked
    return np.unique(label, return_inverse=True)[1].ravel()


def _paint(shape: tuple[int, int], rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The mask made of the given runs."""
    change = np.zeros((shape[0], shape[1] + 1), dtype=np.int32)
    np.add.at(change, (rows, starts), 1)
    np.add.at(change, (rows, ends), -1)
    return np.cumsum(change, axis=1)[:, :-1] > 0


def largest_component_filled(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of ``mask`` (the first in raster order on a tie), holes filled.

    A hole is background not 4-connected to the image border.
    """
    mask = np.asarray(mask, dtype=bool)
    rows, starts, ends = _runs(mask)
    if rows.size == 0:
        return mask.copy()
    per_row = np.bincount(rows)
    single = rows.size == 1 or (
        per_row[rows[0]:].max() == 1 and rows[-1] - rows[0] == rows.size - 1
        and bool(np.all((starts[1:] < ends[:-1]) & (starts[:-1] < ends[1:]))))
    if single:  # one run per row, consecutive rows overlapping: one component and no hole
        return mask.copy()
    component = _run_components(rows, starts, ends, mask.shape[1])
    sizes = np.bincount(component, weights=ends - starts)
    keep = component == int(np.argmax(sizes))
    largest = _paint(mask.shape, rows[keep], starts[keep], ends[keep])
    if np.bincount(rows[keep]).max() == 1:  # a hole needs a row crossing the component twice
        return largest
    # holes: background components of the padded complement, within the component's bounding box,
    # other than the one around the border
    r0, r1 = int(rows[keep][0]), int(rows[keep][-1]) + 1
    c0, c1 = int(starts[keep].min()), int(ends[keep].max())
    outside = ~np.pad(largest[r0:r1, c0:c1], 1)
    b_rows, b_starts, b_ends = _runs(outside)
    border = _run_components(b_rows, b_starts, b_ends, outside.shape[1]) == 0  # run 0 spans the padded first row
    largest[r0:r1, c0:c1] = ~_paint(outside.shape, b_rows[border], b_starts[border], b_ends[border])[1:-1, 1:-1]
    return largest


# ----------------------------------------------------------------------------- outline
# marching squares at level 0.5, low values 8-connected: for each square case (bit 1 upper-left,
# 2 upper-right, 4 lower-left, 8 lower-right pixel inside) its segments as (from, to) edges, in
# scikit-image's order, drawn with the outside on their left; edges 0 top, 1 bottom, 2 left, 3 right
_T, _B, _L, _R = range(4)
_SEGMENTS = {1: ((_T, _L),), 2: ((_R, _T),), 3: ((_R, _L),), 4: ((_L, _B),), 5: ((_T, _B),),
             6: ((_R, _T), (_L, _B)), 7: ((_R, _B),), 8: ((_B, _R),), 9: ((_T, _L), (_B, _R)), 10: ((_B, _T),),
             11: ((_B, _L),), 12: ((_L, _R),), 13: ((_T, _R),), 14: ((_L, _T),)}
_FROM = np.full((16, 2), -1, dtype=np.int64)
_TO = np.full((16, 2), -1, dtype=np.int64)
for _case, _pairs in _SEGMENTS.items():
    for _k, (_a, _b) in enumerate(_pairs):
        _FROM[_case, _k], _TO[_case, _k] = _a, _b


def outline(mask: np.ndarray) -> np.ndarray:
    """``N×2`` closed sub-pixel outline (row, col) of a one-component mask without holes.

    The points are the midpoints between inside and outside pixel centres, walked with the outside
    on the left from where scikit-image's ``find_contours`` on the mask padded by one pixel starts
    (the end of the last segment in raster order), without the repeated end point.
    """
    padded = np.pad(np.asarray(mask, dtype=bool), 1).astype(np.int8)
    rows, cols = padded.shape
    case = padded[:-1, :-1] + 2 * padded[:-1, 1:] + 4 * padded[1:, :-1] + 8 * padded[1:, 1:]
    r, c = np.nonzero((case != 0) & (case != 15))
    if r.size == 0:
        raise ValueError("the mask has no outline")
    kind = case[r, c]
    # an edge midpoint as one integer: horizontal edges (between vertically stacked pixels) first,
    # then vertical ones; top, bottom, left and right edges of square (r, c) are offsets from r·cols + c
    offsets = np.array([0, cols, rows * cols, rows * cols + 1], dtype=np.int64)
    square = r.astype(np.int64) * cols + c
    second = _FROM[kind, 1] >= 0  # the saddle squares hold two segments
    source = np.concatenate([square + offsets[_FROM[kind, 0]], (square + offsets[_FROM[kind, 1]])[second]])
    target = np.concatenate([square + offsets[_TO[kind, 0]], (square + offsets[_TO[kind, 1]])[second]])
    last = int(np.argmax(np.concatenate([2 * square, (2 * square + 1)[second]])))
    by_source = np.argsort(source)
    successor = by_source[np.searchsorted(source[by_source], target)].tolist()
    first = successor[last]
    walk = [first]
    nxt = successor[first]
    while nxt != first:
        walk.append(nxt)
        nxt = successor[nxt]
    points = source[np.array(walk)]
    vertical = points >= rows * cols
    index = points - vertical * (rows * cols)
    return np.stack([index // cols + 0.5 * vertical, index % cols + 0.5 * ~vertical], axis=1) - 1.0


# ----------------------------------------------------------------------------- resampling and smoothing
def nearest_exact_index(source: int, target: int) -> np.ndarray:
    """Source index of each target index in a nearest-neighbour resize sampled at pixel centres.

    The 16-bit fixed-point arithmetic of OpenCV's ``INTER_NEAREST_EXACT``.
    """
    step = ((source << 16) + target // 2) // target
    offset = step // 2 - source % 2
    return np.minimum((step * np.arange(target) + offset) >> 16, source - 1)


def gaussian_smooth(values: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """1-D Gaussian smoothing with edge values repeated beyond the ends (scipy's ``mode="nearest"``)."""
    values = np.asarray(values, dtype=np.float64)
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    weights /= weights.sum()
    padded = np.pad(values, radius, mode="edge")
    out = np.zeros(values.size, dtype=np.float64)
    for k, w in enumerate(weights):
        out += w * padded[k:k + values.size]
    return out


# ----------------------------------------------------------------------------- polygon simplification
def douglas_peucker_closed(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Vertices (``K×2`` float32) of the Douglas–Peucker simplification of a closed polygon.

    OpenCV's ``approxPolyDP(closed=True)`` on float32 points, step for step (its start points, its
    distance-to-line test and its final removal of nearly collinear vertices).
    """
    src = np.asarray(points, dtype=np.float32)
    count = len(src)
    eps = float(tolerance) ** 2

    def squared_distances(start: int, positions: np.ndarray) -> np.ndarray:
        delta = (src[positions] - src[start]).astype(np.float64)  # float32 differences, as in C++
        return delta[:, 0] * delta[:, 0] + delta[:, 1] * delta[:, 1]

    # 1. two roughly farthest points: three passes of "farthest from the current start"
    start, farthest, below_eps = 0, 0, False
    for _ in range(3):
        start = (start + farthest) % count
        dist = squared_distances(start, (start + np.arange(1, count)) % count)
        best = float(dist.max()) if dist.size else 0.0
        if best > 0:
            farthest = int(np.argmax(dist)) + 1
        below_eps = best <= eps
    stack: list[tuple[int, int]] = []
    out: list[int] = []
    if below_eps:
        out.append(start)
    else:
        second = (start + farthest) % count
        stack.append((second, start))
        stack.append((start, second))

    # 2. split every slice at its farthest point until all points lie within the tolerance
    while stack:
        slice_start, slice_end = stack.pop()
        inner = (slice_start + 1) % count
        if inner == slice_end:
            out.append(slice_start)
            continue
        s, e = src[slice_start], src[slice_end]
        dx, dy = float(e[0] - s[0]), float(e[1] - s[1])
        segment_len_2 = dx * dx + dy * dy
        positions = (inner + np.arange((slice_end - inner) % count)) % count
        # distance to the line through the slice ends (not to the segment), as OpenCV measures it:
        # point differences in float32, as OpenCV subtracts its points, products in double
        rel = (src[positions] - s).astype(np.float64)
        across = rel[:, 1] * dx - rel[:, 0] * dy
        dist = across * across
        best = float(dist.max())
        if best <= eps * segment_len_2:
            out.append(slice_start)
        else:
            split = int(positions[int(np.argmax(dist))])
            stack.append((split, slice_end))
            stack.append((slice_start, split))

    # 3. remove vertices on [almost] straight lines between their neighbours
    dst = [src[i].copy() for i in out]
    count = new_count = len(dst)
    pos = count - 1
    start_pt = dst[pos]
    pos = 0
    wpos = pos
    pt = dst[pos]
    pos = 1 % count
    i = 0
    while i < count and new_count > 2:
        end_pt = dst[pos]
        pos = (pos + 1) % count
        dx, dy = float(end_pt[0] - start_pt[0]), float(end_pt[1] - start_pt[1])
        dist = abs(float(pt[0] - start_pt[0]) * dy - float(pt[1] - start_pt[1]) * dx)
        inner_product = float((pt[0] - start_pt[0]) * (end_pt[0] - pt[0]) + (pt[1] - start_pt[1]) * (end_pt[1] - pt[1]))
        if dist * dist <= 0.5 * eps * (dx * dx + dy * dy) and dx != 0 and dy != 0 and inner_product >= 0:
            new_count -= 1
            dst[wpos] = start_pt = end_pt
            wpos = (wpos + 1) % count
            pt = dst[pos]
            pos = (pos + 1) % count
            i += 2
            continue
        dst[wpos] = start_pt = pt
        wpos = (wpos + 1) % count
        pt = end_pt
        i += 1
    return np.array(dst[:new_count], dtype=np.float32)
