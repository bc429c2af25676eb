"""COCO-format keypoint datasets -> cache records (see cache/io.py for the record format).

Reads COCO 2014/2017 layouts and any COCO-format keypoint set (the synthetic one included): annotations
in <root>/annotations/person_keypoints_<split>.json, images in <root>/images/<split>/ or <root>/<split>/.
Keypoints map into the chosen layout with Skeleton.from_coco. Crowds and people without labelled
keypoints become one COCO RLE ignore mask per image. Missing or unreadable images are counted, reported
and skipped. A cache that is up to date with its source is not rebuilt unless forced.
"""

import concurrent.futures
import json
import os

import cv2
import numpy as np
from pycocotools import mask as maskutils
from tqdm import tqdm

from cache import io as cacheio
from pose import skeleton as skeletons
from utils.cli import UserError

_JPEG_TAIL = 1024  # bytes searched for the JPEG end-of-image marker
# OpenCV flag for dataset images: COCO-format annotations describe an image's stored pixels (its width and
# height in the annotations say so), so an EXIF orientation tag is not applied, as libjpeg-turbo does not
# (detect.py, on a user's own photos, does apply it)
AS_STORED = cv2.IMREAD_IGNORE_ORIENTATION


def annotation_path(root, split):
    return os.path.join(root, 'annotations', f'person_keypoints_{split}.json')


def image_folder(root, split):
    """<root>/images/<split> (2017 layout and the synthetic set) or <root>/<split> (2014 layout)."""
    candidates = [os.path.join(root, 'images', split), os.path.join(root, split)]
    for folder in candidates:
        if os.path.isdir(folder):
            return folder
    raise UserError(f'no image folder for split {split!r}: tried {" and ".join(candidates)}')


def load_json(file):
    if not os.path.isfile(file):
        raise UserError(f'annotation file not found: {file} (for the synthetic set run: '
                        f'python -m cache.synthetic)')
    try:
        with open(file, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f'cannot read annotation file {file}: {error}') from None
    missing = [key for key in ('images', 'annotations') if key not in data]
    if missing:
        raise UserError(f'{file} is not a COCO annotation file: no {" or ".join(missing)}')
    return data


def source_of(root, split):
    """What a cache of `split` is built from: paths, size and mtime of the annotation file."""
    file = os.path.abspath(annotation_path(root, split))
    stat = os.stat(file) if os.path.isfile(file) else None
    return {'annotations': file, 'images': os.path.abspath(image_folder(root, split)),
            'split': split, 'source_size': stat and stat.st_size, 'source_mtime': stat and stat.st_mtime_ns}


def up_to_date(file, source, skeleton):
    """True when the cache `file` exists, has this format version and layout, and `source` is unchanged."""
    try:
        header = cacheio.read_header(file)
        cacheio.check(header, file, skeleton)
    except cacheio.CacheError:
        return False
    return all(header.get(key) == value for key, value in source.items())


def check_image(file, size):
    """None when `file` decodes (at 1/8 scale: cheap) to the size (h, w) annotated, else why not."""
    if not os.path.isfile(file):
        return 'missing'
    if file.lower().endswith(('.jpg', '.jpeg')):
        with open(file, 'rb') as f:
            f.seek(max(0, os.path.getsize(file) - _JPEG_TAIL))
            if b'\xff\xd9' not in f.read():
                return 'unreadable'  # truncated: libjpeg would pad it with grey silently
    image = cv2.imread(file, cv2.IMREAD_REDUCED_GRAYSCALE_8 | AS_STORED)
    if image is None:
        return 'unreadable'
    h, w = size
    if image.shape[0] not in (h // 8, -(-h // 8)) or image.shape[1] not in (w // 8, -(-w // 8)):
        return 'unreadable'  # another image than the annotation describes (JPEG rounds up, others down)
    return None


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


def make_record(image, annotations, folder, skeleton):
    """The cache record of one COCO image entry and its person annotations."""
    h, w = int(image['height']), int(image['width'])
    people = [a for a in annotations if is_person(a)]
    ignored = [a for a in annotations if not is_person(a)]
    coco = np.array([a['keypoints'] for a in people], np.float32).reshape(len(people), 17, 3)
    return {
        'image': os.path.abspath(os.path.join(folder, image['file_name'])),
        'image_id': int(image['id']),
        'size': (h, w),
        'keypoints': skeleton.from_coco(coco),
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


def person_annotations(data):
    """{image id: [annotations of category person]}; COCO's person category is 1."""
    person = [c['id'] for c in data.get('categories', []) if c.get('name') == 'person'] or [1]
    by_image = {}
    for ann in data['annotations']:
        if ann.get('category_id', person[0]) in person:
            by_image.setdefault(ann['image_id'], []).append(ann)
    return by_image


def build_records(data, folder, skeleton, keep_empty=True, workers=None):
    """(records, skipped) for a loaded COCO json; skipped: {'missing': [paths], 'unreadable': [paths]}.
    keep_empty=False leaves out images without a person with labelled keypoints."""
    by_image = person_annotations(data)
    images = [im for im in data['images']
              if keep_empty or any(is_person(a) for a in by_image.get(im['id'], ()))]
    records, skipped = [], {'missing': [], 'unreadable': []}
    paths = [os.path.join(folder, im['file_name']) for im in images]
    sizes = [(int(im['height']), int(im['width'])) for im in images]
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count()) as pool:  # cv2 frees the GIL
        problems = pool.map(check_image, paths, sizes, chunksize=16)
        for image, file, problem in tqdm(zip(images, paths, problems), total=len(images),
                                         desc=f'caching {os.path.basename(folder)}', unit='img'):
            if problem:
                skipped[problem].append(file)
                continue
            records.append(make_record(image, by_image.get(image['id'], []), folder, skeleton))
    return records, skipped


def build(config, split, force=False, keep_empty=True, root=None):
    """Build the cache of `split` of [dataset] root (or of `root`, one of [dataset] extra) unless it is up to
    date (or `force`). Returns (path, report): report is None when nothing was built, else {'records': n,
    'people': n, 'missing': [path], 'unreadable': [path]}."""
    skeleton = skeletons.load(config.get('model', 'layout'))
    file = cacheio.path(config, split, root)
    root = root or config.get('dataset', 'root')
    source = source_of(root, split)
    if not force and up_to_date(file, source, skeleton):
        return file, None
    data = load_json(source['annotations'])
    records, skipped = build_records(data, source['images'], skeleton, keep_empty=keep_empty)
    if not records:
        raise UserError(f'no usable image in {source["annotations"]} ({len(skipped["missing"])} missing, '
                        f'{len(skipped["unreadable"])} unreadable, under {source["images"]})')
    header = dict(source, layout=skeleton.name, parts=skeleton.parts,
                  skipped={k: len(v) for k, v in skipped.items()})
    cacheio.write(file, header, records)
    people = sum(len(r['keypoints']) for r in records)
    return file, dict(records=len(records), people=people, **skipped)


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
