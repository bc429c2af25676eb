"""Auto-labelling: a network's confident people on a user's images and videos become a COCO-format keypoint
dataset that cache.py and train.py read like any other (self-training / knowledge distillation through
pseudo-labels: a slow accurate network teaches a fast one, or a network adapts to a user's own camera
without labelling by hand).

Per image (or sampled video frame) the network runs at [eval] height, scales and flip; each decoded person
becomes one of:

- a **labelled person** when its score reaches `person_threshold` and at least `min_keypoints` of its parts
  score `keypoint_threshold` or more: those keypoints are labelled (v = 2); its parts that scored lower but
  were found are wrapped in small ignore discs, so training neither learns them nor punishes the network for
  seeing them;
- an **ignored person** otherwise (the network is unsure): an annotation without keypoints whose box, the
  box of its found parts with a margin, becomes an ignore region in the cache, as COCO's unlabelled people do.

The dataset is written to a temporary folder beside the output and renamed into place at the end, so an
interrupted run leaves nothing half-written.
"""

import json
import os
import shutil
import tempfile

import cv2
import numpy as np
from tqdm import tqdm

from pose import predict as predictor
from pose import skeleton as skeletons
from utils.cli import UserError
from utils.video import is_image, open_source

DISC_SIDES = 8          # ignore discs as octagons (COCO polygons)
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v')


def thresholds(keypoint=0.3, person=0.3, min_keypoints=5):
    """The labelling thresholds as one dict (the defaults of autolabel.py)."""
    return {'keypoint': keypoint, 'person': person, 'min_keypoints': min_keypoints}


def _box(points, margin):
    """COCO xywh of `points` (n,2) grown by `margin` times its larger side on every side."""
    low, high = points.min(0), points.max(0)
    pad = margin * max(float((high - low).max()), 1.0)
    low, high = low - pad, high + pad
    return [float(low[0]), float(low[1]), float(high[0] - low[0]), float(high[1] - low[1])]


def _disc(x, y, radius):
    angles = np.arange(DISC_SIDES) * 2 * np.pi / DISC_SIDES
    return [round(float(v), 2) for a in angles for v in (x + radius * np.cos(a), y + radius * np.sin(a))]


def clip_box(box, width, height):
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    return [x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0)]


def vocabulary(skeleton):
    """The keypoint names the written dataset declares: COCO's 17 in COCO's order when the layout's parts
    are made of them, else the layout's own source keypoints in part order (so the layout reads it back)."""
    if skeleton.fields:
        raise UserError(f'layout {skeleton.name!r} draws parts from extra annotation fields '
                        f'({", ".join(f for f, _ in skeleton.fields)}); autolabel.py writes only "keypoints"')
    names = list(dict.fromkeys(n for source in skeleton.sources for n in source))
    return skeletons.COCO_PARTS if set(names) <= set(skeletons.COCO_PARTS) else tuple(names)


def annotate(people, skeleton, size, limits, names=skeletons.COCO_PARTS):
    """COCO annotations (without ids) of one image's decoded `people` (pose.decode's dicts in input
    pixels) in an image of `size` (h, w), keypoints in the order of `names` (vocabulary()): labelled people
    and ignore regions, as the module text says."""
    height, width = size
    result = []
    for person in people:
        keypoints = np.asarray(person['keypoints'], np.float32)
        found = keypoints[:, 2] > 0
        if not found.any():
            continue
        sure = keypoints[:, 2] >= limits['keypoint']
        box = clip_box(_box(keypoints[found, :2], 0.15), width, height)
        if person['score'] >= limits['person'] and sure.sum() >= limits['min_keypoints']:
            labelled = keypoints.copy()
            labelled[:, 2] = np.where(sure, 2, 0)
            labelled[~sure, :2] = 0
            coco = skeleton.to_dataset(labelled, names)[0]
            radius = max(4.0, 0.08 * max(box[2], box[3]))
            discs = [_disc(x, y, radius) for x, y, _ in keypoints[found & ~sure]]
            result.append({'category_id': 1, 'iscrowd': 0,
                           'keypoints': [round(float(v), 2) for v in coco.reshape(-1)],
                           'num_keypoints': int((coco[:, 2] > 0).sum()), 'bbox': box, 'area': box[2] * box[3],
                           'segmentation': [], 'score': round(float(person['score']), 4)})
            if discs:   # unsure parts of a labelled person: ignored, neither learnt nor punished
                result.append(_ignored(discs, clip_box(_box(keypoints[found & ~sure, :2], 0), width, height),
                                       len(names)))
        else:
            result.append(_ignored([], box, len(names)))
    return result


def _ignored(polygons, box, count):
    """An annotation with `count` unlabelled keypoints: the cache turns its polygons (or, without any, its
    box) into an ignore region, as it does for COCO's unlabelled people."""
    return {'category_id': 1, 'iscrowd': 0, 'keypoints': [0] * (3 * count), 'num_keypoints': 0, 'bbox': box,
            'area': box[2] * box[3], 'segmentation': polygons}


def sources(inputs):
    """`inputs` with each folder that holds videos replaced by its videos (and the folder itself when it
    also holds images), in name order."""
    result = []
    for spec in map(str, inputs):
        files = sorted(os.listdir(spec)) if os.path.isdir(spec) else []
        videos = [os.path.join(spec, f) for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
        result += videos + ([spec] if not videos or any(is_image(f) for f in files) else [])
    return result


def frames(inputs, every):
    """(name, BGR image) of every image and of every `every`-th frame of every video among `inputs` (paths,
    folders of images or videos, globs); every = 0: two frames per second of each video."""
    for spec in sources(inputs):
        source = open_source(spec)
        step = every or max(1, int(round((source['fps'] or 2) / 2)))
        for index, (name, image) in enumerate(source['frames']):
            if source['kind'] == 'images':
                yield os.path.splitext(name)[0], image
            elif index % step == 0:
                yield f'{source["name"]}_{index:06d}', image


def label(run, config, skeleton, stride, inputs, output, split='train', every=0, limits=None, force=False,
          progress=True):
    """Write the COCO-format dataset <output>/annotations/person_keypoints_<split>.json + images/<split>/ of
    the network `run` over `inputs`; returns {'images', 'people', 'ignored'} counts."""
    limits = limits or thresholds()
    if os.path.exists(output) and not force:
        raise UserError(f'{output} exists: choose another --output or pass --force to replace it')
    options = predictor.options(config)
    names = vocabulary(skeleton)
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.autolabel-', dir=parent)
    try:
        images_dir = os.path.join(tmp, 'images', split)
        os.makedirs(images_dir)
        os.makedirs(os.path.join(tmp, 'annotations'))
        images, annotations, taken = [], [], set()
        for name, image in tqdm(frames(inputs, every), desc='auto-labelling', unit='image',
                                disable=not progress):
            file_name = _unique(name, taken) + '.jpg'
            if not cv2.imwrite(os.path.join(images_dir, file_name), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise UserError(f'cannot write {os.path.join(images_dir, file_name)}')
            image_id = len(images) + 1
            images.append({'id': image_id, 'file_name': file_name, 'height': image.shape[0],
                           'width': image.shape[1]})
            people = predictor.predict(run, image, skeleton, stride, **options)
            for ann in annotate(people, skeleton, image.shape[:2], limits, names):
                annotations.append(dict(ann, id=len(annotations) + 1, image_id=image_id))
        if not images:
            raise UserError(f'no image or video frame in {" ".join(map(str, inputs))}')
        data = {'info': {'description': 'auto-labelled by autolabel.py', 'thresholds': limits},
                'images': images, 'annotations': annotations,
                'categories': [{'id': 1, 'name': 'person', 'supercategory': 'person',
                                'keypoints': list(names), 'skeleton': _limbs(skeleton, names)}]}
        path = os.path.join(tmp, 'annotations', f'person_keypoints_{split}.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(data, f)
        if os.path.exists(output):
            shutil.rmtree(output)
        os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    labelled = sum(1 for a in annotations if a['num_keypoints'] > 0)
    return {'images': len(images), 'people': labelled, 'ignored': len(annotations) - labelled}


def _limbs(skeleton, names):
    """The layout's limbs between keypoints of `names` as COCO's 1-based "skeleton" pairs."""
    if tuple(names) == skeletons.COCO_PARTS:
        return [list(pair) for pair in skeletons.COCO_SKELETON]
    index = skeleton.dataset_index(names)
    where = {k: j + 1 for j, k in enumerate(index) if k >= 0}
    return [[where[a], where[b]] for a, b in skeleton.limbs if a in where and b in where]


def _unique(name, taken):
    base, n = name, 1
    while name in taken:
        n += 1
        name = f'{base}_{n}'
    taken.add(name)
    return name
