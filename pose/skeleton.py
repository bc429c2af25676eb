"""Keypoint layouts: part names in channel order, limbs in PAF channel order, flip pairs, and how each
part derives from COCO's 17 keypoints.

A layout is a data file `config/skeleton/<name>.ini` (see cmu18.ini for the format); adding a file adds
a layout. Every other module reads skeleton facts from here and nowhere else.
"""

import configparser
import dataclasses
import functools
import os

import numpy as np

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'config', 'skeleton')

# COCO's keypoint names in COCO's order (person_keypoints_*.json "keypoints" of category 1).
COCO_PARTS = (
    'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
    'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee',
    'right_knee', 'left_ankle', 'right_ankle')
# The "skeleton" of COCO's person category as COCO's own json files give it (1-based keypoint pairs):
# metadata for COCO tools only; the framework's limbs are the layouts' (config/skeleton/*.ini).
COCO_SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8),
                 (7, 9), (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))


@dataclasses.dataclass(frozen=True)
class Skeleton:
    name: str
    parts: tuple          # part names, heatmap channel order (background channel follows)
    limbs: tuple          # (from, to) part indices, PAF channel order: x at 2l, y at 2l+1
    flip: tuple           # flip[k]: the part that k becomes under a horizontal flip
    sources: tuple        # sources[k]: COCO-17 indices whose mean is part k

    @property
    def limb_flip(self):
        """For each limb l, (m, reversed): under a horizontal flip limb l's PAF comes from limb m,
        with both components negated when m runs the other way (and x negated by the mirror)."""
        index = {limb: m for m, limb in enumerate(self.limbs)}
        result = []
        for a, b in self.limbs:
            fa, fb = self.flip[a], self.flip[b]
            if (fa, fb) in index:
                result.append((index[(fa, fb)], False))
            else:
                result.append((index[(fb, fa)], True))
        return tuple(result)

    @property
    def coco_index(self):
        """coco_index[j]: the part that is COCO keypoint j itself, or -1 if no part is."""
        index = [-1] * len(COCO_PARTS)
        for k, source in enumerate(self.sources):
            if len(source) == 1:
                index[source[0]] = k
        return tuple(index)

    def from_coco(self, keypoints):
        """COCO keypoints (P,17,3) as (x, y, v) -> this layout's (P,K,3); a derived part is the mean
        of its sources, visible (v = the smallest of theirs) only when every source is labelled."""
        keypoints = np.asarray(keypoints, np.float32).reshape(-1, len(COCO_PARTS), 3)
        out = np.zeros((len(keypoints), len(self.parts), 3), np.float32)
        for k, source in enumerate(self.sources):
            points = keypoints[:, list(source)]
            v = points[:, :, 2].min(axis=1)
            labelled = v > 0
            out[labelled, k, :2] = points[labelled, :, :2].mean(axis=1)
            out[labelled, k, 2] = v[labelled]
        return out

    def to_coco(self, keypoints):
        """This layout's (P,K,3) -> COCO's (P,17,3); COCO points no part stands for are zero."""
        keypoints = np.asarray(keypoints, np.float32).reshape(-1, len(self.parts), 3)
        out = np.zeros((len(keypoints), len(COCO_PARTS), 3), np.float32)
        for j, k in enumerate(self.coco_index):
            if k >= 0:
                out[:, j] = keypoints[:, k]
        return out

    def flip_keypoints(self, keypoints, width):
        """Mirror keypoints (P,K,3) horizontally in an image `width` pixels wide and swap left/right.

        Pixel centres are at integer coordinates, so x maps to width - 1 - x."""
        out = np.asarray(keypoints, np.float32)[:, list(self.flip)].copy()
        out[..., 0] = width - 1 - out[..., 0]
        return out


def available():
    """Names of the shipped layouts."""
    return sorted(os.path.splitext(f)[0] for f in os.listdir(FOLDER) if f.endswith('.ini'))


def _names(text):
    return [line.split() for line in text.strip().splitlines() if line.strip()]


@functools.cache
def load(name):
    """The layout `name` (a file under config/skeleton/) or at a path to such a file."""
    path = name if os.path.sep in name or name.endswith('.ini') else os.path.join(FOLDER, name + '.ini')
    if not os.path.isfile(path):
        raise ValueError(f'unknown keypoint layout {name!r}; available: {", ".join(available())} '
                         f'(or a path to a layout .ini file)')
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding='utf-8')
    try:
        parts = list(parser['parts'].keys())
        sources = []
        for part in parts:
            names = parser['parts'][part].split()
            unknown = [n for n in names if n not in COCO_PARTS]
            if not names or unknown:
                raise ValueError(f'part {part!r}: unknown COCO keypoints {unknown or names}')
            sources.append(tuple(COCO_PARTS.index(n) for n in names))
        limbs = []
        for pair in _names(parser['limbs']['limbs']):
            if len(pair) != 2 or any(p not in parts for p in pair):
                raise ValueError(f'limb {" ".join(pair)!r} must name two parts of [parts]')
            limbs.append((parts.index(pair[0]), parts.index(pair[1])))
        flip = list(range(len(parts)))
        for pair in _names(parser['flip']['pairs']) if parser.has_section('flip') else []:
            if len(pair) != 2 or any(p not in parts for p in pair):
                raise ValueError(f'flip pair {" ".join(pair)!r} must name two parts of [parts]')
            a, b = parts.index(pair[0]), parts.index(pair[1])
            flip[a], flip[b] = b, a
    except (KeyError, ValueError) as error:
        raise ValueError(f'layout file {path}: {error}') from None
    skeleton = Skeleton(os.path.splitext(os.path.basename(path))[0], tuple(parts), tuple(limbs),
                        tuple(flip), tuple(sources))
    try:
        _ = skeleton.limb_flip
    except KeyError:
        raise ValueError(f'layout file {path}: the mirror image of some limb is not a limb') from None
    return skeleton
