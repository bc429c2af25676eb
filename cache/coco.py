"""COCO-format keypoint datasets -> cache records (see cache/io.py for the record format).

Reads COCO 2014/2017 and any COCO-format keypoint set (the synthetic one, CrowdPose, AP-10K,
COCO-WholeBody, a labelling tool's export): by default annotations in
<root>/annotations/person_keypoints_<split>.json and images in <root>/images/<split>/ or <root>/<split>/;
[dataset] <split>_annotations and <split>_images name any other file and folder. Annotations are read and
checked by cache/annotations.py (bad ones are reported and skipped) and keypoints map into the chosen
layout with Skeleton.from_dataset. Crowds and people without labelled keypoints become one COCO RLE
ignore mask per image. Missing or unusable images are reported, with why, and skipped. A cache that is up
to date with its source is not rebuilt unless forced.
"""

import concurrent.futures
import os

import numpy as np
from pycocotools import mask as maskutils
from tqdm import tqdm

from cache import annotations as annotationlib
from cache import images as imagelib
from cache import io as cacheio
from model import layout  # not pose.skeleton.load: the layout's ConfigError names the option
from pose import skeleton as skeletons
from utils.cli import UserError

AS_STORED = imagelib.AS_STORED
load_json = annotationlib.load_json


def _option(config, split, what):
    """[dataset] <split>_<what> when `split` is the train or val split and the option is set, else ''."""
    for role in ('train', 'val'):
        if config is not None and config.get('dataset', role) == split:
            return config.get('dataset', f'{role}_{what}')
    return ''


def annotation_path(root, split, config=None):
    """[dataset] <split>_annotations, or <root>/annotations/person_keypoints_<split>.json."""
    return _option(config, split, 'annotations') or os.path.join(root, 'annotations',
                                                                 f'person_keypoints_{split}.json')


def image_folder(root, split, config=None):
    """[dataset] <split>_images, or <root>/images/<split> (2017 layout and the synthetic set) or
    <root>/<split> (2014 layout)."""
    named = _option(config, split, 'images')
    candidates = [named] if named else [os.path.join(root, 'images', split), os.path.join(root, split)]
    for folder in candidates:
        if os.path.isdir(folder):
            return folder
    raise UserError(f'no image folder for split {split!r}: tried {" and ".join(candidates)}')


def source_of(root, split, config=None):
    """What a cache of `split` is built from: paths, size and mtime of the annotation file, category."""
    file = os.path.abspath(annotation_path(root, split, config))
    stat = os.stat(file) if os.path.isfile(file) else None
    return {'annotations': file, 'images': os.path.abspath(image_folder(root, split, config)),
            'split': split, 'source_size': stat and stat.st_size, 'source_mtime': stat and stat.st_mtime_ns,
            'category': config.get('dataset', 'category') if config is not None else ''}


def up_to_date(file, source, skeleton):
    """True when the cache `file` exists, has this format version and layout, and `source` is unchanged."""
    try:
        header = cacheio.read_header(file)
        cacheio.check(header, file, skeleton)
    except cacheio.CacheError:
        return False
    return all(header.get(key) == value for key, value in source.items())


def check_image(file, size):
    """None when `file` decodes to the size (h, w) annotated, else 'missing' or 'unreadable'."""
    found = imagelib.problem(file, size)
    return found and found[0]


def ignore_rle(annotations, h, w):
    """One COCO RLE covering `annotations` (their segmentation, or their box when they have none)."""
    rles = []
    for ann in annotations:
        segmentation = ann.get('segmentation')
        polygons = [p for p in segmentation if len(p) >= 6] if isinstance(segmentation, list) else []
        if isinstance(segmentation, dict):
            rle = segmentation
            if isinstance(rle.get('counts'), list):
                rle = maskutils.frPyObjects(rle, h, w)
            rles.append(rle)
        elif polygons:
            rles.extend(maskutils.frPyObjects(polygons, h, w))
        elif ann.get('bbox'):
            x, y, bw, bh = ann['bbox']
            rles.extend(maskutils.frPyObjects([[x, y, x + bw, y, x + bw, y + bh, x, y + bh]], h, w))
    return maskutils.merge(rles) if rles else None


def make_record(image, annotations, folder, skeleton, names=skeletons.COCO_PARTS):
    """The cache record of one image entry and its annotations (keypoints over `names`)."""
    h, w = int(image['height']), int(image['width'])
    people = [a for a in annotations if is_person(a)]
    ignored = [a for a in annotations if not is_person(a)]
    keypoints = np.array([a['keypoints'] for a in people], np.float32).reshape(len(people), len(names), 3)
    return {
        'image': os.path.abspath(os.path.join(folder, image['file_name'])),
        'image_id': int(image['id']),
        'size': (h, w),
        'keypoints': skeleton.from_dataset(keypoints, names),
        'boxes': np.array([a['bbox'] for a in people], np.float32).reshape(len(people), 4),
        'ignore': ignore_rle(ignored, h, w),
    }


def is_person(ann):
    """A person to learn from: not a crowd and with at least one labelled keypoint."""
    if ann.get('iscrowd'):
        return False
    if 'num_keypoints' in ann:
        return ann['num_keypoints'] > 0
    return any(v > 0 for v in ann.get('keypoints', [])[2::3])


def build_records(dataset, folder, skeleton, keep_empty=True, workers=None):
    """(records, skipped) for Annotations `dataset`; skipped: {'missing': [paths], 'unreadable': [paths],
    'why': {path: what is wrong}}. keep_empty=False leaves out images without a person with labelled
    keypoints."""
    by_image = dataset.by_image
    images = [im for im in dataset.images
              if keep_empty or any(is_person(a) for a in by_image.get(im['id'], ()))]
    records, skipped = [], {'missing': [], 'unreadable': [], 'why': {}}
    paths = [os.path.join(folder, im['file_name']) for im in images]
    sizes = [(im['height'], im['width']) for im in images]
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count()) as pool:  # cv2 frees the GIL
        problems = pool.map(imagelib.problem, paths, sizes, chunksize=16)
        for image, file, problem in tqdm(zip(images, paths, problems), total=len(images),
                                         desc=f'caching {os.path.basename(folder)}', unit='img'):
            if problem:
                skipped[problem[0]].append(file)
                skipped['why'][file] = problem[1]
                continue
            records.append(make_record(image, by_image.get(image['id'], []), folder, skeleton,
                                       dataset.names))
    return records, skipped


def build(config, split, force=False, keep_empty=True, root=None):
    """Build the cache of `split` of [dataset] root (or of `root`, one of [dataset] extra, in COCO's folder
    layout) unless it is up to date (or `force`). Returns (path, report): report is None when nothing was
    built, else {'records': n, 'people': n, 'missing': [path], 'unreadable': [path], 'why': {path: what is
    wrong}, 'annotations': [one line per bad annotation or image entry]}."""
    skeleton = layout(config)
    file = cacheio.path(config, split, root)
    source = source_of(root, split) if root else source_of(config.get('dataset', 'root'), split, config)
    if not force and up_to_date(file, source, skeleton):
        return file, None
    dataset = annotationlib.read(source['annotations'], skeleton, source['category'])
    records, skipped = build_records(dataset, source['images'], skeleton, keep_empty=keep_empty)
    if not records:
        raise UserError(f'no usable image in {source["annotations"]} ({len(skipped["missing"])} missing, '
                        f'{len(skipped["unreadable"])} unreadable, under {source["images"]})')
    counts = {k: len(skipped[k]) for k in ('missing', 'unreadable')}
    header = dict(source, layout=skeleton.name, parts=skeleton.parts, keypoint_names=dataset.names,
                  category_ids=dataset.category_ids, skipped=counts, problems=len(dataset.problems))
    cacheio.write(file, header, records)
    people = sum(len(r['keypoints']) for r in records)
    return file, dict(records=len(records), people=people, annotations=dataset.problems, **skipped)


def shared_images(records_a, records_b):
    """Images two record lists share: the same file, or the same COCO id under the same file name."""
    real = {os.path.realpath(r['image']) for r in records_a}
    named = {(r['image_id'], os.path.basename(r['image'])) for r in records_a}
    return [r['image'] for r in records_b
            if os.path.realpath(r['image']) in real or (r['image_id'], os.path.basename(r['image'])) in named]


def check_disjoint(config):
    """UserError when the training caches ([dataset] extra included) and the validation cache share an
    image."""
    skeleton = skeletons.load(config.get('model', 'layout'))
    train, val = config.get('dataset', 'train'), config.get('dataset', 'val')
    a = [r for file in cacheio.files(config, train) for r in cacheio.read(file, skeleton)[1]]
    _, b = cacheio.read(cacheio.path(config, val), skeleton)
    shared = shared_images(a, b)
    if shared:
        raise UserError(f'the {train!r} and {val!r} caches share {len(shared)} images (e.g. {shared[0]}); '
                        f'a model must not be validated on its training images: set [dataset] train/val '
                        f'to disjoint splits')
