"""Where the real, human-annotated keypoint data for development lives: `../shared/data` beside the
repository (coco-mini/: 80 COCO 2017 train images with their official keypoints; keypoint-sets/: samples of
CrowdPose, AP-10K, COCO-WholeBody), or the folder in $POSE_REAL_DATA. A user's clone has none of it, so
tests and benchmarks that use it ask here and skip (or say so) when it is absent.
"""

import os

from utils.cli import UserError
from utils.config import ROOT


def root():
    """The real-data folder ($POSE_REAL_DATA, else ../shared/data beside the repository)."""
    return os.environ.get('POSE_REAL_DATA') or os.path.join(os.path.dirname(ROOT), 'shared', 'data')


def folder(name):
    """The path of `name` (e.g. 'coco-mini', 'keypoint-sets/crowdpose') under root(), or None if absent."""
    path = os.path.join(root(), name)
    return path if os.path.isdir(path) else None


def coco_folder(path):
    """(annotation file, image folder) of a COCO-format folder: <path>/annotations/person_keypoints_*.json
    (the only one) and the image folder of its split, <path>/<split>/ or <path>/images/<split>/; UserError
    when it is not such a folder."""
    import glob
    files = sorted(glob.glob(os.path.join(path, 'annotations', 'person_keypoints_*.json')))
    if len(files) != 1:
        raise UserError(f'{path}: expected one annotations/person_keypoints_<split>.json, found {len(files)}')
    split = os.path.basename(files[0])[len('person_keypoints_'):-len('.json')]
    for folder in (os.path.join(path, split), os.path.join(path, 'images', split)):
        if os.path.isdir(folder):
            return files[0], folder
    raise UserError(f'{path}: no image folder {split}/ or images/{split}/ beside its annotations')


def halves(annotations):
    """(tuning image ids, held-out image ids) of a COCO keypoint file: its images sorted by id, those with
    a labelled person and those without each dealt alternately, so both halves hold people. Tune (train,
    choose settings) on the first; report on the second."""
    import json
    with open(annotations, encoding='utf-8') as f:
        data = json.load(f)
    people = {a['image_id'] for a in data['annotations'] if a.get('num_keypoints', 0) > 0
              and not a.get('iscrowd')}
    ids = sorted(image['id'] for image in data['images'])
    with_people = [i for i in ids if i in people]
    without = [i for i in ids if i not in people]
    tune = set(with_people[0::2] + without[0::2])
    return sorted(tune), sorted(set(ids) - tune)
