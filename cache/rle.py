"""COCO's run-length encoded masks (RLE) read without pycocotools, for the training loader (cache/dataset.py)
and the annotation checks (cache/annotations.py): one decoder, so what passes the checks trains."""

import numpy as np


def rle_runs(rle):
    """The run lengths of a COCO RLE dict (0s and 1s in turn, column-major, 0s first): its counts list, or
    its compressed string decoded as pycocotools' rleFrString does (5-bit groups with a continuation bit,
    a sign bit in each value's last group; each value from the fourth on is a difference to the one two
    places before)."""
    counts = rle['counts']
    if isinstance(counts, list):
        return np.asarray(counts, np.int64)
    text = counts.encode('ascii') if isinstance(counts, str) else counts
    c = np.frombuffer(text, np.uint8).astype(np.int64) - 48
    if not len(c):
        return np.zeros(0, np.int64)
    last = np.flatnonzero((c & 0x20) == 0)  # the last group of each value
    first = np.concatenate(([0], last[:-1] + 1))
    groups = last - first + 1
    shift = 5 * (np.arange(len(c)) - np.repeat(first, groups))
    runs = np.add.reduceat((c & 0x1F) << shift, first)
    runs -= ((c[last] & 0x10) != 0) << (5 * groups)  # the sign bit: a negative difference
    runs[1::2] = np.cumsum(runs[1::2])
    runs[2::2] = np.cumsum(runs[2::2])
    return runs
