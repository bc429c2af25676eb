"""Limb candidates for pose/decode.py: the part affinity field's line integral between part peaks (Cao et
al., CVPR 2017), vectorised over every pair of peaks of every limb type.

A pair (a, b) of limb l is sampled at n points a + (i + 0.5)/n (b - a), i < n, where n grows with the
distance as in CMU's OpenPose (sqrt(5 * distance in input pixels), from 5 to 25; made odd so that the
midpoint is a sample), each read at its nearest cell of the network's resolution. The pair is a candidate
when at least `min_above` of the samples project onto the direction a -> b above `paf_threshold` and the
mean projection plus CMU's distance prior min(0, image_height / (2 distance) - 1) is positive. A few of
its own samples are tried first (the middle one, then up to PROBES more spread along it, each over all
the pairs still in while they are not FEW), so pairs that already fail on them (most pairs) never get the
rest.

A candidate's strength, which orders the assembly, is the mean over the samples of the projection minus
the size of the field's component across the segment (cos - |sin| of the angle between the field and
the segment), plus the distance prior: a segment that strays across two people's limbs reads fields
that are turned away from it, which a plain projection (cos) barely notices.
"""

import numpy as np

MIN_SAMPLES, MAX_SAMPLES = 5, 25
PROBES = 8  # samples tried, one at a time over all pairs left, after the middle one
FEW = 48  # pairs so few that the full test costs less than more probes


def _probe_order(n, count=PROBES):
    """The first `count` sample indices of n (the middle one excluded, each once, -1 when n has fewer)
    spread along the segment: a quarter, three quarters, an eighth, seven eighths, ... of the way."""
    order, seen = [], {n // 2}
    for depth in range(1, 6):
        for k in range(1, 2 ** depth, 2):
            for fraction in (k / 2 ** depth, 1 - k / 2 ** depth):
                i = min(int(fraction * n), n - 1)
                if i not in seen:
                    seen.add(i)
                    order.append(i)
    return (order + [-1] * count)[:count]


# _ORDER[n, j]: the j-th probed sample's index for a pair of n samples
_ORDER = np.array([_probe_order(n) for n in range(MAX_SAMPLES + 1)], np.intp)


def sample_count(distance):
    """Samples on a segment `distance` input pixels long (odd, MIN_SAMPLES to MAX_SAMPLES)."""
    count = np.clip(np.rint(np.sqrt(5 * np.asarray(distance, np.float32))), MIN_SAMPLES, MAX_SAMPLES)
    return count.astype(np.intp) | 1


def pairs(parts, limbs):
    """Every (limb, first peak, second peak) with the peaks of the limb's two parts; peaks ordered by part."""
    ends = np.asarray(limbs, np.intp).reshape(-1, 2)
    found = np.bincount(parts, minlength=ends.max(initial=-1) + 1)
    start = np.cumsum(found) - found
    na, nb = found[ends[:, 0]], found[ends[:, 1]]
    # each first peak of each limb, then each of those repeated once per second peak
    limb = np.repeat(np.arange(len(ends)), na)
    first = np.arange(na.sum()) + np.repeat(start[ends[:, 0]] - (np.cumsum(na) - na), na)
    across = nb[limb]
    offset = start[ends[limb, 1]] - (np.cumsum(across) - across)
    second = np.arange(across.sum()) + np.repeat(offset, across)
    return np.repeat(limb, across), np.repeat(first, across), second


def _project(flat, base, width, x, y, ux, uy, channel, across=False):
    """PAF samples at cells (x, y) (each rounded to the nearest cell) of the limbs whose x channel starts
    at `base` in the flat maps, projected on (ux, uy) (and, with across=True, the size of their
    component across it as well)."""
    at = base + (y + 0.5).astype(np.int32) * width + (x + 0.5).astype(np.int32)
    vx, vy = flat[at], flat[at + channel]
    if across:
        return vx * ux + vy * uy, np.abs(vy * ux - vx * uy)
    return vx * ux + vy * uy


def connect(pafs, parts, xy, limbs, stride, paf_threshold, min_above, image_height, keep=None):
    """Candidate connections (limb, first peak, second peak, strength), arrays, for peaks (parts, xy in
    cells, inside the map) of maps at `stride`; see the module docstring. keep(limb, first, second) ->
    bool array: which pairs to test (default all)."""
    limb, first, second = pairs(parts, limbs)
    if keep is not None:
        chosen = keep(limb, first, second)
        limb, first, second = limb[chosen], first[chosen], second[chosen]
    if not len(limb):
        return limb, first, second, np.zeros(0, np.float32)
    _, h, w = pafs.shape
    flat = pafs.reshape(-1)
    base = (2 * h * w * limb).astype(np.int32)
    x, y = xy[:, 0], xy[:, 1]
    sx, sy = x[first], y[first]
    dx, dy = x[second] - sx, y[second] - sy
    length = np.sqrt(dx * dx + dy * dy)
    count = sample_count(length * stride)
    misses = count - np.ceil(min_above * count - 1e-6).astype(np.int32)
    # cheap necessary tests first: a pair already missing more than it may on a few of its samples is
    # out. The midpoint (every pair's middle sample, n being odd) rules out most pairs.
    at = base + (sy + 0.5 * dy + 0.5).astype(np.int32) * w + (sx + 0.5 * dx + 0.5).astype(np.int32)
    missed = (flat[at] * dx + flat[at + h * w] * dy <= paf_threshold * length).astype(np.int32)
    pair = np.flatnonzero(missed <= misses)
    ux, uy = dx / np.maximum(length, 1e-6), dy / np.maximum(length, 1e-6)
    for probe in range(PROBES):
        if len(pair) < FEW:
            break
        index = _ORDER[count[pair], probe]
        tried = pair[index >= 0]
        t = (index[index >= 0] + 0.5) / count[tried]
        value = _project(flat, base[tried], w, sx[tried] + t * dx[tried], sy[tried] + t * dy[tried],
                         ux[tried], uy[tried], h * w)
        missed[tried] += value <= paf_threshold
        pair = pair[missed[pair] <= misses[pair]]
    # the full test on what is left, n samples per pair
    n = count[pair]
    each = np.repeat(np.arange(len(pair)), n)
    which = pair[each]
    t = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + 0.5) / n[each]
    value, off = _project(flat, base[which], w, sx[which] + t * dx[which], sy[which] + t * dy[which],
                          ux[which], uy[which], h * w, across=True)
    above = np.bincount(each, value > paf_threshold, minlength=len(pair))
    prior = np.minimum(image_height / (2 * np.maximum(length[pair] * stride, 1)) - 1, 0)
    cmu = np.bincount(each, value, minlength=len(pair)) / n + prior
    good = (above >= n - misses[pair]) & (cmu > 0) & (length[pair] > 1e-6)
    strength = np.bincount(each, value - off, minlength=len(pair))[good] / n[good] + prior[good]
    pair = pair[good]
    return limb[pair], first[pair], second[pair], strength.astype(np.float32)
