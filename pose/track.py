"""Person ids that persist across video frames (detect.py).

Each frame's people are matched to the people of earlier frames greedily, closest pair first, by the mean
distance between their parts found in both, divided by the earlier person's size (the longer side of the
box around its found parts). A pair further apart than `max_distance` is no match. An id that finds no
match survives `patience` frames (matched against its last position), then is dropped; a person without
a match gets a new id. Ids are never reused.
"""

import numpy as np


def person_size(keypoints):
    """Longer side (pixels, at least 1) of the box around each person's found parts; (P,K,3) -> (P,)."""
    keypoints = np.asarray(keypoints, np.float32)
    found = keypoints[..., 2] > 0
    big = np.where(found[..., None], keypoints[..., :2], np.inf)
    small = np.where(found[..., None], keypoints[..., :2], -np.inf)
    extent = np.max(small, axis=-2) - np.min(big, axis=-2)
    side = np.max(np.where(np.isfinite(extent), extent, 0), axis=-1)
    return np.maximum(side, 1.0)


def distances(previous, current):
    """(T, P) mean distance between the parts found in both of previous (T,K,3) and current (P,K,3)
    people, relative to the previous person's size; inf where they share no found part."""
    previous = np.asarray(previous, np.float32).reshape(len(previous), -1, 3)
    current = np.asarray(current, np.float32).reshape(len(current), previous.shape[1], 3)
    both = (previous[:, None, :, 2] > 0) & (current[None, :, :, 2] > 0)
    gap = np.linalg.norm(previous[:, None, :, :2] - current[None, :, :, :2], axis=-1)
    count = both.sum(axis=-1)
    mean = np.where(both, gap, 0).sum(axis=-1) / np.maximum(count, 1)
    return np.where(count > 0, mean / person_size(previous)[:, None], np.inf)


def greedy_match(cost, limit):
    """[(row, col)] pairs of a cost matrix, cheapest first, each row and column used once, cost <= limit."""
    pairs, rows, cols = [], set(), set()
    order = np.argsort(cost, axis=None, kind='stable')
    for flat in order:
        row, col = divmod(int(flat), cost.shape[1])
        if cost[row, col] > limit:
            break
        if row not in rows and col not in cols:
            pairs.append((row, col))
            rows.add(row)
            cols.add(col)
    return pairs


class Tracker:
    """Assigns ids to the people of consecutive frames: `ids = tracker.update(keypoints (P,K,3))`."""

    def __init__(self, patience=5, max_distance=0.5):
        self.patience, self.max_distance = patience, max_distance
        self.tracks = []  # [id, keypoints (K,3), frames since last matched]
        self.next_id = 0

    def update(self, keypoints):
        """Ids (list of int) of this frame's people, keypoints (P,K,3) as (x, y, score)."""
        keypoints = np.asarray(keypoints, np.float32)
        ids = [None] * len(keypoints)
        if self.tracks and len(keypoints):
            cost = distances(np.stack([t[1] for t in self.tracks]), keypoints)
            for t, p in greedy_match(cost, self.max_distance):
                ids[p] = self.tracks[t][0]
                self.tracks[t][1:] = [keypoints[p], -1]
        for p, found in enumerate(ids):
            if found is None:
                ids[p] = self.next_id
                self.tracks.append([self.next_id, keypoints[p], -1])
                self.next_id += 1
        for track in self.tracks:
            track[2] += 1
        self.tracks = [t for t in self.tracks if t[2] <= self.patience]
        return ids
