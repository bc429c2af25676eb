"""Where the real, human-annotated keypoint data for development lives: `../shared/data` beside the
repository (coco-mini/: 80 COCO 2017 train images with their official keypoints; keypoint-sets/: samples of
CrowdPose, AP-10K, COCO-WholeBody), or the folder in $POSE_REAL_DATA. A user's clone has none of it, so
tests and benchmarks that use it ask here and skip (or say so) when it is absent.
"""

import os

from utils.config import ROOT


def root():
    """The real-data folder ($POSE_REAL_DATA, else ../shared/data beside the repository)."""
    return os.environ.get('POSE_REAL_DATA') or os.path.join(os.path.dirname(ROOT), 'shared', 'data')


def folder(name):
    """The path of `name` (e.g. 'coco-mini', 'keypoint-sets/crowdpose') under root(), or None if absent."""
    path = os.path.join(root(), name)
    return path if os.path.isdir(path) else None
