"""Reading a COCO-format keypoint annotation file whatever its dataset: the category that has keypoints
(or the one [dataset] category names), the dataset's own keypoint names (plus the extra keypoint fields a
layout draws from, such as COCO-WholeBody's `foot_kpts`), and every image entry and annotation checked.

A bad entry never stops the reading: it is reported (file, annotation id, image, what is wrong) and
skipped, and the rest is kept. Only a file that is not a COCO annotation file at all (missing, empty,
invalid JSON, no images or annotations) is an error. The cache (cache/coco.py) and the evaluation
(pose/evaluate.py) read annotations through here, so both see the same people.
"""

import dataclasses
import json
import math
import os

from cache.rle import rle_runs
from utils.cli import UserError

MAIN_FIELD = 'keypoints'


@dataclasses.dataclass
class Annotations:
    file: str
    names: tuple          # keypoint vocabulary: the category's names, then the layout's extra fields'
    category: dict        # the category the people are scored under: {'id', 'name', 'keypoints'}
    category_ids: tuple   # the file's categories read as that one
    images: list          # image entries (dicts with int id, file_name, width, height), ids unique
    by_image: dict        # {image id: [clean annotations]}: keypoints over `names`, bbox, area, ...
    problems: list        # one line per skipped or repaired entry

    def coco(self):
        """A COCO-format dict of the clean images and annotations under one category (for pycocotools)."""
        category = dict(self.category, keypoints=list(self.names))
        annotations = [a for image in self.images for a in self.by_image.get(image['id'], ())]
        return {'images': self.images, 'annotations': annotations, 'categories': [category]}


def load_json(file):
    """The dict in a COCO annotation file; UserError (one line) when it is not one."""
    if not os.path.isfile(file):
        raise UserError(f'annotation file not found: {file} (for the synthetic set run: '
                        f'python -m cache.synthetic)')
    try:
        with open(file, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f'cannot read annotation file {file}: {error}') from None
    if not isinstance(data, dict):
        raise UserError(f'{file} is not a COCO annotation file: it holds a JSON {type(data).__name__}, '
                        f'not an object')
    missing = [key for key in ('images', 'annotations') if not isinstance(data.get(key), list)]
    if missing:
        raise UserError(f'{file} is not a COCO annotation file: no {" or ".join(missing)} list')
    return data


def choose_categories(data, file, choice=''):
    """The categories whose people to read: the one named or numbered `choice`, else the ones that declare
    keypoints (several only when they declare the same names, as AP-10K's species do)."""
    categories = [c for c in data.get('categories') or [] if isinstance(c, dict)]
    keyed = [c for c in categories if isinstance(c.get('keypoints'), list) and c['keypoints']]
    listing = ', '.join(f'{c.get("id")} ({c.get("name")!r})' for c in keyed) or 'none'
    if choice:
        chosen = [c for c in keyed if str(c.get('id')) == choice or c.get('name') == choice]
        if not chosen:
            raise UserError(f'[dataset] category = {choice!r}: {file} has no such category with keypoints; '
                            f'its categories with keypoints: {listing}')
        return chosen[:1]
    if not keyed:
        raise UserError(f'{file} declares no category with keypoints (categories[...]["keypoints"])')
    if any(c['keypoints'] != keyed[0]['keypoints'] for c in keyed):
        raise UserError(f'{file} has categories with different keypoints: {listing}; choose one with '
                        f'[dataset] category = <name or id>')
    return keyed


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value, count, what):
    """(list of floats, None) or (None, why) for a list that must hold `count` finite numbers."""
    if not isinstance(value, list):
        return None, f'{what} is {type(value).__name__}, not a list'
    if count is not None and len(value) != count:
        return None, f'{what} has {len(value)} values, not {count}'
    bad = [v for v in value if not _is_number(v)]
    if bad:
        return None, f'{what} holds {bad[0]!r}, not a finite number'
    return [float(v) for v in value], None


def _image_entry(entry, index):
    """(clean image dict, None) or (None, why)."""
    if not isinstance(entry, dict):
        return None, f'image entry {index} is not an object'
    image_id, name = entry.get('id'), entry.get('file_name')
    if not isinstance(image_id, int) or isinstance(image_id, bool):
        return None, f'image entry {index} has id {image_id!r}, not an integer'
    if not isinstance(name, str) or not name:
        return None, f'image {image_id}: file_name {name!r} is not a file name'
    size = (entry.get('height'), entry.get('width'))
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        return None, f'image {image_id} ({name}): height and width {size} are not positive integers'
    return dict(entry), None


def read_images(data, file):
    """([clean image entries], problems): entries with a valid id, file name and size; an id listed twice
    keeps its first entry."""
    images, seen, problems = [], {}, []
    for index, entry in enumerate(data['images']):
        image, why = _image_entry(entry, index)
        if why:
            problems.append(f'{file}: {why}; skipped')
        elif image['id'] in seen:
            problems.append(f'{file}: image id {image["id"]} is listed twice ({seen[image["id"]]} and '
                            f'{image["file_name"]}); the second entry is skipped')
        else:
            seen[image['id']] = image['file_name']
            images.append(image)
    return images, problems


def check_rle(rle, h, w):
    """None when `rle` is a COCO RLE of an h x w mask whose runs cover it exactly, else why not."""
    size, counts = rle.get('size'), rle.get('counts')
    if size != [h, w]:
        return f'RLE size {size!r} is not the image\'s [{h}, {w}]'
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            return 'RLE counts are not all integers'
    elif not isinstance(counts, str) or not all(48 <= ord(c) < 112 for c in counts):
        return 'RLE counts are neither a list of integers nor a compressed RLE string'
    try:
        runs = rle_runs(rle)
    except (ValueError, TypeError, OverflowError) as error:
        return f'RLE counts do not decode ({error})'
    if (runs < 0).any() or int(runs.sum()) != h * w:
        return f'RLE runs cover {int(runs.sum())} pixels with {int((runs < 0).sum())} negative runs, ' \
               f'not the image\'s {h * w}'
    return None


def _segmentation(value, h, w):
    """(clean segmentation, None) or ([], why)."""
    if value is None or value == []:
        return [], None
    if isinstance(value, dict):
        why = check_rle(value, h, w)
        return (value, None) if why is None else ([], f'malformed crowd RLE: {why}')
    if isinstance(value, list):
        for polygon in value:
            points, why = _numbers(polygon, None, 'a polygon')
            if why or len(points) % 2:
                return [], f'malformed polygon segmentation: {why or "an odd number of coordinates"}'
        return value, None
    return [], f'segmentation is {type(value).__name__}, neither polygons nor an RLE'


def _keypoints(ann, names, fields, h, w):
    """(keypoint values over `names`, None) or (None, why)."""
    values = []
    for field, count in fields:
        if field not in ann:
            if field == MAIN_FIELD and ann.get('iscrowd'):
                values += [0.0] * 3 * count  # a crowd region needs no keypoints
                continue
            return None, f'no {field!r} field'
        points, why = _numbers(ann[field], 3 * count, f'{field!r}')
        if why:
            return None, why
        values += points
    for j, name in enumerate(names):
        x, y, v = values[3 * j:3 * j + 3]
        if v not in (0, 1, 2):
            return None, f'keypoint {name!r} has visibility {v:g}, not 0, 1 or 2'
        if v > 0 and not (-w <= x <= 2 * w and -h <= y <= 2 * h):
            return None, f'keypoint {name!r} at ({x:g}, {y:g}) lies far outside the {w}x{h} image'
    return values, None


def clean_annotation(ann, image, names, fields):
    """(clean annotation, note, None) or (None, None, why). note: a repaired part worth reporting."""
    h, w = image['height'], image['width']
    box, why = _numbers(ann.get('bbox'), 4, 'bbox') if 'bbox' in ann else (None, 'no bbox')
    if why:
        return None, None, why
    if box[2] < 0 or box[3] < 0:
        return None, None, f'bbox {ann["bbox"]} has a negative width or height'
    values, why = _keypoints(ann, names, fields, h, w)
    if why:
        return None, None, why
    segmentation, note = _segmentation(ann.get('segmentation'), h, w)
    area = ann.get('area')
    clean = {'id': ann['id'], 'image_id': image['id'], 'iscrowd': int(bool(ann.get('iscrowd'))),
             'bbox': box, 'area': float(area) if _is_number(area) else box[2] * box[3],
             'keypoints': values, 'num_keypoints': sum(v > 0 for v in values[2::3]),
             'segmentation': segmentation}
    return clean, note and f'{note}; its box stands in for it', None


def read(file, skeleton, category=''):
    """The Annotations of `file` for `skeleton` (its [fields] join the category's keypoint names), people of
    the categories choose_categories picks by `category`."""
    data = load_json(file)
    chosen = choose_categories(data, file, category)
    declared = chosen[0]['keypoints']
    if not all(isinstance(n, str) for n in declared):
        raise UserError(f'{file}: category {chosen[0].get("id")} lists keypoint names that are not strings')
    try:
        names = skeleton.keypoint_names(declared)
        skeleton.source_index(names)
    except ValueError as error:
        raise UserError(f'{file}: {error}') from None
    fields = [(MAIN_FIELD, len(declared))] + [(f, len(n)) for f, n in skeleton.fields]
    ids = tuple(c.get('id') for c in chosen)
    images, problems = read_images(data, file)
    known = {image['id']: image for image in images}
    by_image, seen = {}, set()
    for index, ann in enumerate(data['annotations']):
        if not isinstance(ann, dict):
            problems.append(f'{file}: annotation entry {index} is not an object; skipped')
            continue
        if ann.get('category_id', ids[0]) not in ids:
            continue
        ann_id, image_id = ann.get('id'), ann.get('image_id')
        where = f'{file}: annotation {ann_id} (image {image_id})'
        if not isinstance(ann_id, int) or isinstance(ann_id, bool) or ann_id in seen:
            why = 'its id is listed twice' if ann_id in seen else 'its id is not an integer'
            problems.append(f'{where}: {why}; skipped')
            continue
        seen.add(ann_id)
        image = known.get(image_id) if isinstance(image_id, int) else None
        if image is None:
            problems.append(f'{where}: no image entry has id {image_id!r}; skipped')
            continue
        clean, note, why = clean_annotation(ann, image, names, fields)
        if why:
            problems.append(f'{where} {image["file_name"]}: {why}; skipped')
            continue
        clean['category_id'] = ids[0]
        if note:
            problems.append(f'{where} {image["file_name"]}: {note}')
        by_image.setdefault(image_id, []).append(clean)
    category = {'id': ids[0], 'name': chosen[0].get('name'), 'keypoints': list(names)}
    return Annotations(file, names, category, ids, images, by_image, problems)
