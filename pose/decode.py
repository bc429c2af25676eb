"""Heatmaps + part affinity fields -> people: the bottom-up grouping of Cao et al., "Realtime Multi-Person
2D Pose Estimation using Part Affinity Fields" (CVPR 2017), in pure numpy (+ one cv2.dilate), working at
the network's resolution: the maps are never upsampled.

1. Peaks: maxima of each part heatmap over their 4-neighbours (so two people's peaks one cell apart
   diagonally both survive, while a lone Gaussian still gives exactly one) above `peak_threshold`,
   refined to sub-cell accuracy by a parabola through the log of the peak and its neighbours along each
   axis (exact for a Gaussian; the DARK refinement of Zhang et al., CVPR 2020, without its blur).
2. Limb candidates (pose/decode_limbs.py): CMU's PAF line integral between every pair of peaks of each
   limb's two parts, with CMU's adaptive sample count, distance prior and `min_above` test.
3. Assembly: candidates, strongest first, join the fragments (union-find over peaks) of their two peaks
   unless those fragments already hold a common part. So each person uses a peak once per limb type
   (a greedy matching by score), redundant limbs (CMU's ear-shoulder ones) close loops instead of making
   duplicates, and fragments of one person merge as soon as any limb joins them. Then the candidates that
   pass only the weaker test `join_above` (a fraction of supporting samples under min_above) join what
   is left the same way, strongest first: on real maps a limb's field often fails on a sample or two, which
   left a leg or an arm beyond it as a person of its own. Last, a part that the layout defines as the
   mean of others (cmu18's neck, the shoulders' midpoint) gets a stand-in peak there in each fragment that
   holds its sources but not it, and between each pair of its two sources' peaks in two fragments that
   hold one each, and the stand-ins' limbs join fragments too: a missing neck peak used to cut the hips
   and the head off the shoulders (and a person facing away into four pieces). Fragments with fewer
   than `min_parts` parts or a mean score below `min_score` (CMU's: summed part and connection scores
   over the number of parts) are dropped.
4. Merged peaks: where two people's same parts lie closer than the maps resolve, one peak stands for both;
   a person that lacks a part takes it from the strongest candidate joining one of its peaks to that
   part's peak in another person.

5. Duplicates: real maps now and then hold a second maximum beside a part, and the parts that take it make
   a ghost of a person beside the real one. A person with at least `duplicate_share` of its parts within
   DUPLICATE_CELLS of the same parts of a person ranked above it is dropped.

A person's score (for ranking) is its summed part and connection scores over their most, 2K - 1.
Keypoints come back in input pixels with the pixel <-> cell convention of pose/encode.py.
"""

import functools

import cv2
import numpy as np

from pose.decode_limbs import connect
from pose.encode import cell_to_pixel

_KERNEL = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
DUPLICATE_CELLS = 2.0  # parts of two people this close (in cells) count as the same for `duplicates`


def params(config):
    """The [decode] options as keyword arguments of `decode`."""
    return {'peak_threshold': config.getfloat('decode', 'peak_threshold'),
            'paf_threshold': config.getfloat('decode', 'paf_threshold'),
            'min_above': config.getfloat('decode', 'min_above'),
            'min_parts': config.getint('decode', 'min_parts'),
            'min_score': config.getfloat('decode', 'min_score'),
            'join_above': config.getfloat('decode', 'join_above'),
            'duplicate_share': config.getfloat('decode', 'duplicate_share')}


def decode(heatmaps, pafs, skeleton, stride, peak_threshold=0.05, paf_threshold=0.05, min_above=0.95,
           min_parts=3, min_score=0.4, join_above=0.8, duplicate_share=0.6):
    """People in maps at `stride`: heatmaps (K+1, h, w) (background last; K channels also do) and pafs
    (2L, h, w). Returns [{'keypoints': float32 (K, 3) as (x, y, score) in input pixels, score 0 =
    missing, 'score': float}], best first; see the module docstring for the score."""
    heatmaps, pafs = _check(heatmaps, pafs, skeleton)
    count = len(skeleton.parts)
    parts, xy, scores = find_peaks(heatmaps[:count], peak_threshold)
    inside = np.minimum(np.maximum(xy, 0), (heatmaps.shape[2] - 1, heatmaps.shape[1] - 1))
    height = heatmaps.shape[1] * stride
    _, first, second, strength = connect(pafs, parts, inside, skeleton.limbs, stride, paf_threshold,
                                         min_above, height)
    strict = first, second, strength
    owner, linked = assemble(parts, first, second, strength)
    rank = np.ones(len(first), np.intp)
    keep = _open(owner, parts, skeleton.limbs) if join_above < min_above and len(parts) else None
    if keep is not None:  # the weaker test, only where it can join two fragments
        _, *more = connect(pafs, parts, inside, skeleton.limbs, stride, paf_threshold, join_above, height,
                           keep=keep)
        first, second, strength, rank = _join((first, second, strength, rank), (*more, 2))
        owner, linked = assemble(parts, first, second, strength, rank)
    stand = stand_ins(owner, parts, inside, scores, derived_parts(skeleton))
    if len(stand[0]):  # again, with the stand-ins glued to their fragments first and their limbs last
        more = _stand_in_candidates(pafs, parts, inside, stand, skeleton, stride, paf_threshold,
                                    min(min_above, join_above), height)
        glued = np.flatnonzero(stand[3] >= 0)
        glue = (len(parts) + glued, stand[3][glued], np.zeros(len(glued), np.float32), 0)
        parts, inside = np.concatenate([parts, stand[0]]), np.concatenate([inside, stand[1]])
        xy, scores = np.concatenate([xy, stand[1]]), np.concatenate([scores, stand[2]])
        first, second, strength, rank = _join(glue, (first, second, strength, rank), (*more, 3))
        owner, linked = assemble(parts, first, second, strength, rank)
    first, second, strength = strict
    pixels = cell_to_pixel(xy, stride)
    keypoints, linked = gather(owner, linked, parts, pixels, scores, count)
    found = (keypoints[:, :, 2] > 0).sum(axis=1)
    good = (found >= max(min_parts, 1)) & (keypoints[:, :, 2].sum(axis=1) + linked >= min_score * found)
    keypoints, linked = keypoints[good], linked[good]
    lend(keypoints, owner_index(owner, good), parts, pixels, scores, first, second, strength)
    score = (keypoints[:, :, 2].sum(axis=1) + linked) / (2 * count - 1)
    order = np.argsort(-score, kind='stable')
    if duplicate_share < 1:
        order = order[~duplicates(keypoints[order], duplicate_share, DUPLICATE_CELLS * stride)]
    return [{'keypoints': keypoints[p], 'score': float(score[p])} for p in order]


def _check(heatmaps, pafs, skeleton):
    heatmaps = np.ascontiguousarray(heatmaps, np.float32)
    pafs = np.ascontiguousarray(pafs, np.float32)
    parts, limbs = len(skeleton.parts), len(skeleton.limbs)
    if heatmaps.ndim != 3 or heatmaps.shape[0] not in (parts, parts + 1):
        raise ValueError(f'heatmaps must be ({parts + 1}, h, w) for layout {skeleton.name!r}, '
                         f'got shape {heatmaps.shape}')
    if pafs.shape != (2 * limbs,) + heatmaps.shape[1:]:
        raise ValueError(f'pafs must be ({2 * limbs}, {heatmaps.shape[1]}, {heatmaps.shape[2]}) for layout '
                         f'{skeleton.name!r} and heatmaps {heatmaps.shape}, got shape {pafs.shape}')
    return heatmaps, pafs


def find_peaks(heatmaps, threshold):
    """Maxima over their 4-neighbours above `threshold` of (K, h, w) maps: (part (N,) int, xy (N, 2)
    float32 in cells, refined, score (N,) float32), ordered by part."""
    count, h, w = heatmaps.shape
    padded = np.full((count, h + 1, w), -np.inf, np.float32)  # a -inf row keeps the channels apart
    padded[:, :h] = heatmaps
    grown = cv2.dilate(padded.reshape(count * (h + 1), w), _KERNEL).reshape(-1)
    flat = padded.reshape(-1)
    at = np.flatnonzero(flat > threshold)
    at = at[flat[at] >= grown[at]]
    part, at = np.divmod(at, (h + 1) * w)
    y, x = np.divmod(at, w)
    return (part,) + _refine(heatmaps, part, y, x)


def _refine(heatmaps, part, y, x):
    """Sub-cell peak positions and values from a parabola through the log of each peak and its two
    neighbours along each axis (no shift along an axis at the map's border)."""
    count, h, w = heatmaps.shape
    flat = heatmaps.reshape(-1)
    at = (part * h + y) * w + x
    log = np.log(np.maximum(flat[at], 1e-6))
    xy = np.empty((len(at), 2), np.float32)
    gain = np.zeros(len(at), np.float32)
    for axis, (pos, size, step) in enumerate(((x, w, 1), (y, h, w))):
        inner = (pos > 0) & (pos < size - 1)
        before = np.log(np.maximum(flat[np.where(inner, at - step, at)], 1e-6))
        after = np.log(np.maximum(flat[np.where(inner, at + step, at)], 1e-6))
        slope, curve = (after - before) / 2, before - 2 * log + after
        shift = np.where(curve < 0, -slope / np.where(curve < 0, curve, -1), 0)
        shift = np.clip(shift, -0.5, 0.5)
        xy[:, axis] = pos + shift
        gain += slope * shift / 2
    score = np.exp(log + gain)
    return xy, np.minimum(score, np.maximum(flat[at], 1)).astype(np.float32)


def assemble(parts, first, second, strength, rank=None):
    """(owner (N,) int: the fragment each peak ends up in, linked (N,): per fragment, the summed strength
    of the connections that built it), joining connections (peak pairs) by increasing `rank` (default:
    all 0), then decreasing strength, unless the two fragments already share a part (union-find over
    peaks)."""
    parent = list(range(len(parts)))
    mask = [1 << int(p) for p in parts]
    linked = [0.0] * len(parts)
    order = np.lexsort((-strength, np.zeros(len(strength), np.intp) if rank is None else rank))
    for a, b, value in zip(first[order].tolist(), second[order].tolist(), strength[order].tolist()):
        while parent[a] != a:
            parent[a] = a = parent[parent[a]]
        while parent[b] != b:
            parent[b] = b = parent[parent[b]]
        if a != b and not mask[a] & mask[b]:
            parent[b] = a
            mask[a] |= mask[b]
            linked[a] += linked[b] + value
    owner = np.asarray(parent, np.intp)
    while True:
        up = owner[owner]
        if np.array_equal(up, owner):
            return owner, np.asarray(linked, np.float32)
        owner = up


def duplicates(keypoints, share, reach):
    """Which of the people (P, K, 3), best first, are duplicates: at least `share` of their found parts lie
    within `reach` pixels of the same parts of a person before them (the same peak lent to both, or a
    second peak beside it)."""
    found = keypoints[:, :, 2] > 0
    distance = np.linalg.norm(keypoints[:, None, :, :2] - keypoints[None, :, :, :2], axis=3)
    close = ((distance <= reach) & found[:, None] & found[None]).sum(axis=2)
    before = np.tri(len(keypoints), k=-1, dtype=bool)  # [p, q]: q is ranked before p
    return ((close >= share * found.sum(axis=1)[:, None]) & before).any(axis=1)


def _open(owner, parts, limbs):
    """keep(limb, first, second) for connect: the pairs of peaks in two fragments of `owner` that could
    still join along their limb (neither fragment holds the other peak's part); None when no limb could
    join any two fragments."""
    roots = np.flatnonzero(owner == np.arange(len(owner)))
    index = np.searchsorted(roots, owner)
    ends = np.asarray(limbs, np.intp).reshape(-1, 2)
    has = np.zeros((len(roots), max(int(parts.max(initial=0)), int(ends.max(initial=0))) + 1), bool)
    has[index, parts] = True
    a, b = has[:, ends[:, 0]], has[:, ends[:, 1]]
    if not ((a & ~b).any(axis=0) & (b & ~a).any(axis=0)).any():
        return None

    def keep(limb, first, second):
        a, b = index[first], index[second]
        return (a != b) & ~has[a, parts[second]] & ~has[b, parts[first]]
    return keep


def _join(*groups):
    """(first, second, strength, rank) concatenated over groups of them (a rank may be one number)."""
    first, second, strength, rank = zip(*groups)
    rank = [np.broadcast_to(np.asarray(r, np.intp), (len(f),)) for r, f in zip(rank, first)]
    return (np.concatenate(first).astype(np.intp), np.concatenate(second).astype(np.intp),
            np.concatenate(strength).astype(np.float32), np.concatenate(rank))


@functools.lru_cache(maxsize=16)
def derived_parts(skeleton):
    """[(part, [its source parts])] for the layout's parts that are the mean of several of its other parts
    (cmu18's neck: the midpoint of the shoulders)."""
    single = {source[0]: k for k, source in enumerate(skeleton.sources) if len(source) == 1}
    return [(part, [single[name] for name in source]) for part, source in enumerate(skeleton.sources)
            if len(source) > 1 and all(name in single for name in source)]


def stand_ins(owner, parts, xy, scores, derived):
    """Stand-in peaks (part (V,), xy (V, 2), score (V,), the source peak it is glued to (V,), -1 = none),
    with their sources' mean position and mean score: one for each fragment that lacks a derived part but
    holds all its sources, and, for a part derived from two, one for each pair of those two parts' peaks
    in two fragments lacking the part and the other source (a person facing away, with no neck peak, falls
    apart at the shoulders); those join only through their limbs."""
    found = ([], [], [], [])
    roots = np.flatnonzero(owner == np.arange(len(owner)))
    if not derived or not len(roots):
        return tuple(np.asarray(a) for a in found)
    index = np.searchsorted(roots, owner)
    size = max(int(parts.max()), max(max(part, *of) for part, of in derived)) + 1
    peak = np.full((len(roots), size), -1, np.intp)
    peak[index, parts] = np.arange(len(parts))
    for part, of in derived:
        sources = peak[:, of]
        lacking = peak[:, part] < 0
        same = sources[lacking & (sources >= 0).all(axis=1)]
        across = np.zeros((0, len(of)), np.intp)
        if len(of) == 2:
            alone = [sources[lacking & (sources[:, k] >= 0) & (sources[:, 1 - k] < 0), k] for k in (0, 1)]
            across = np.stack(np.meshgrid(*alone, indexing='ij'), axis=-1).reshape(-1, 2)
        chosen = np.concatenate([same, across])
        found[0].append(np.full(len(chosen), part))
        found[1].append(xy[chosen].mean(axis=1))
        found[2].append(scores[chosen].mean(axis=1))
        found[3].append(np.concatenate([same[:, 0], np.full(len(across), -1)]))
    part, xy, score, glue = (np.concatenate(a) for a in found)
    return part.astype(np.intp), xy.reshape(-1, 2).astype(np.float32), score.astype(np.float32), glue


def _stand_in_candidates(pafs, parts, xy, stand, skeleton, stride, paf_threshold, min_above, image_height):
    """(first, second, strength) of the candidate connections of the stand-in peaks `stand` (numbered after
    the N real ones) with the real peaks of their limbs' other parts."""
    kinds = set(stand[0].tolist())
    others = {b if a in kinds else a for a, b in skeleton.limbs if a in kinds or b in kinds} - kinds
    real = np.flatnonzero(np.isin(parts, list(others)))
    peaks = np.concatenate([real, len(parts) + np.arange(len(stand[0]))])
    kind = np.concatenate([parts[real], stand[0]])
    order = np.argsort(kind, kind='stable')
    peaks, kind = peaks[order], kind[order]
    where = np.concatenate([xy[real], stand[1]])[order]
    _, first, second, strength = connect(pafs, kind, where, skeleton.limbs, stride, paf_threshold, min_above,
                                         image_height)
    first, second = peaks[first], peaks[second]
    keep = (first >= len(parts)) | (second >= len(parts))
    return first[keep], second[keep], strength[keep]


def gather(owner, linked, parts, xy, scores, count):
    """Every fragment's keypoints (F, count, 3) as (x, y, score) and its summed connection strength (F,),
    fragments in the order of their root peak."""
    roots = np.flatnonzero(owner == np.arange(len(owner)))
    index = np.searchsorted(roots, owner)
    keypoints = np.zeros((len(roots), count, 3), np.float32)
    keypoints[index, parts, :2] = xy
    keypoints[index, parts, 2] = scores
    return keypoints, linked[roots]


def owner_index(owner, kept):
    """For each peak, the index of its fragment among the `kept` ones (bool per fragment), else -1."""
    roots = np.flatnonzero(owner == np.arange(len(owner)))
    number = np.where(kept, np.cumsum(kept) - 1, -1)
    return number[np.searchsorted(roots, owner)]


def lend(keypoints, person, parts, xy, scores, first, second, strength):
    """Give each person, in place, the part it lacks from the strongest connection that joins one of its
    peaks to that part's peak in another person: where two people's same parts merged into one peak, both
    get it. `person`: each peak's person (-1 = none)."""
    order = np.argsort(-strength, kind='stable')
    ends = np.concatenate([first[order], second[order]])
    other = np.concatenate([second[order], first[order]])
    rank = np.concatenate([np.arange(len(order))] * 2)
    taker, giver = person[ends], person[other]
    offer = (taker >= 0) & (giver >= 0) & (taker != giver)
    offer[offer] = keypoints[taker[offer], parts[other[offer]], 2] == 0
    taker, other, rank = taker[offer], other[offer], rank[offer]
    best = np.argsort(rank, kind='stable')
    _, first_offer = np.unique(taker[best] * keypoints.shape[1] + parts[other[best]], return_index=True)
    taker, other = taker[best][first_offer], other[best][first_offer]
    keypoints[taker, parts[other], :2] = xy[other]
    keypoints[taker, parts[other], 2] = scores[other]
