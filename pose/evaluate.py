"""COCO keypoint evaluation: run a network over a validation set, write COCO's results JSON and score it
with pycocotools' COCOeval (the official OKS-based AP and AR of the COCO keypoint challenge, Lin et al.,
"Microsoft COCO: Common Objects in Context", ECCV 2014). Used by eval.py and by the trainer's timed
evaluation hook.

Any keypoint dataset scores with its own OKS: the ground truth is the dataset's annotation file read through
cache/annotations.py (the category with keypoints, the layout's extra keypoint fields appended, bad entries
skipped as the cache skips them), and the sigmas are the layout's (COCO's official ones for COCO's names).
Results are COCO's: one entry per person under the dataset's category id, keypoints in the dataset's order
(skeleton.to_dataset: parts mapped back onto the keypoints they are; derived parts such as a mean-neck are
not scored) as [x, y, part score] * N with missing points at 0, 0, 0 (COCOeval reads only x and y), and as
the person's 'score' the decoder's: the mean score of its found parts times the fraction of the layout's
parts found, so a confident fragment ranks below a confident whole person.
"""

import contextlib
import io
import json
import os

import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from cache import annotations as annotationlib
from cache import io as cacheio
from cache.images import AS_STORED
from model import layout
from model.runner import infer_stride
from pose import predict as predictor
from pose.skeleton import COCO_PARTS
from utils.cli import UserError
from utils.io import atomic_write_text

STATS = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')


def coco_results(people, image_id, skeleton, names=COCO_PARTS, category_id=1):
    """COCO keypoint results (list of dicts) for the people found in one image, keypoints over the dataset
    keypoint `names` (default COCO's 17) under `category_id`."""
    results = []
    for person in people:
        keypoints = skeleton.to_dataset(person['keypoints'], names)[0]
        keypoints[keypoints[:, 2] <= 0] = 0
        results.append({'image_id': int(image_id), 'category_id': int(category_id),
                        'keypoints': [round(float(v), 2) for v in keypoints.reshape(-1)],
                        'score': round(float(person['score']), 5)})
    return results


@contextlib.contextmanager
def _quiet(verbose):
    """pycocotools prints progress lines; keep them only when verbose."""
    if verbose:
        yield
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def load_coco(annotations, verbose=False):
    """A pycocotools COCO object for an annotation file (or the object itself)."""
    if isinstance(annotations, COCO):
        return annotations
    if not os.path.isfile(annotations):
        raise UserError(f'annotation file not found: {annotations}')
    try:
        with _quiet(verbose):
            return COCO(annotations)
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f'cannot read COCO annotation file {annotations}: {error}') from None


def ground_truth(annotations, skeleton, category='', verbose=False):
    """(pycocotools COCO, keypoint names, category id, OKS sigmas) of the annotation file `annotations`
    read for `skeleton` (cache/annotations.py: its category, its extra fields appended, bad entries
    skipped); UserError when the layout has no sigma for one of the keypoints."""
    dataset = annotationlib.read(annotations, skeleton, category)
    try:
        sigmas = skeleton.sigma_values(dataset.names)
    except ValueError as error:
        raise UserError(f'cannot score {annotations}: {error}') from None
    if dataset.problems and verbose:
        print(f'note: {len(dataset.problems)} bad entries of {annotations} are not scored '
              f'(cache.py lists them)')
    gt = COCO()
    gt.dataset = dataset.coco()
    with _quiet(verbose):
        gt.createIndex()
    return gt, dataset.names, dataset.category['id'], sigmas


def evaluate_results(annotations, results, image_ids=None, verbose=True, sigmas=None):
    """COCO keypoint AP/AR {name: float} of `results` (a list or a results JSON path) against
    `annotations` (a COCO json path or COCO object), over `image_ids` (default: every image of the
    annotations), with OKS `sigmas` (one per keypoint; default COCO's). Prints COCO's keypoint table when
    verbose. No detection at all scores 0."""
    gt = load_coco(annotations, verbose)
    if isinstance(results, str):
        try:
            with open(results, encoding='utf-8') as f:
                results = json.load(f)
        except (OSError, ValueError) as error:
            raise UserError(f'cannot read results file {results}: {error}') from None
    if not results:
        if verbose:
            print('no person detected: every AP and AR is 0')
        return dict.fromkeys(STATS, 0.0)
    try:
        with _quiet(verbose):
            dt = gt.loadRes(results)
    except (AssertionError, KeyError, IndexError) as error:
        raise UserError(f'results do not fit the annotations (unknown image ids or fields?): {error}') \
            from None
    coco_eval = COCOeval(gt, dt, 'keypoints')
    if sigmas is not None:
        coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
    if image_ids is not None:
        coco_eval.params.imgIds = sorted({int(i) for i in image_ids})
    with _quiet(verbose):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {name: float(value) for name, value in zip(STATS, coco_eval.stats)}


def bootstrap(gt, results, image_ids, resamples, seed=0, sigmas=None):
    """COCO keypoint AP of each results list of `results` ({label: [result]}, all on the same images) on
    `resamples` sets of `image_ids` drawn with replacement ({label: [AP per draw]}), every label scored on
    the same draws (paired): how much of a difference between networks on a few images is the images. An
    image drawn twice counts twice (it joins under a new id for each draw); `gt` a COCO object, the ground
    truth of every label's results."""
    rng = np.random.default_rng(seed)
    ids = sorted({int(i) for i in image_ids})
    by_image = {label: {} for label in results}
    for label, found in results.items():
        for result in found:
            by_image[label].setdefault(result['image_id'], []).append(result)
    draws = {label: [] for label in results}
    for _ in range(resamples):
        drawn = rng.choice(ids, len(ids))
        anns = [dict(a, id=len(drawn) * n + k + 1, image_id=k + 1)
                for k, i in enumerate(drawn) for n, a in enumerate(gt.imgToAnns[int(i)])]
        sample = COCO()
        sample.dataset = {'images': [dict(gt.imgs[int(i)], id=k + 1) for k, i in enumerate(drawn)],
                          'annotations': anns, 'categories': gt.dataset['categories']}
        with _quiet(False):
            sample.createIndex()
        for label in results:
            found = [dict(r, image_id=k + 1)
                     for k, i in enumerate(drawn) for r in by_image[label].get(int(i), ())]
            draws[label].append(evaluate_results(sample, found, verbose=False, sigmas=sigmas)['AP'])
    return draws


def coco_images(annotations, folder, skeleton=None, category=''):
    """[(image path, image id)] of every image of a COCO annotation file, images under `folder` (with a
    skeleton: the image entries cache/annotations.py keeps)."""
    if skeleton is None:
        entries = load_coco(annotations).imgs
    else:
        entries = {image['id']: image for image in annotationlib.read(annotations, skeleton, category).images}
    return [(os.path.join(folder, entries[i]['file_name']), i) for i in sorted(entries)]


def predict_images(run, config, skeleton, stride, images, progress=True, names=COCO_PARTS, category_id=1):
    """COCO results (list) of the network `run` on [(image path, image id)], keypoints over the dataset
    keypoint `names` under `category_id`."""
    options = predictor.options(config)
    results = []
    for path, image_id in tqdm(images, desc='evaluate', unit='image', disable=not progress, leave=False):
        image = cv2.imread(path, cv2.IMREAD_COLOR | AS_STORED)
        if image is None:
            raise UserError(f'cannot read image {path}')
        people = predictor.predict(run, image, skeleton, stride, **options)
        results += coco_results(people, image_id, skeleton, names, category_id)
    return results


def evaluate_images(run, config, skeleton, stride, images, annotations, results_path=None, progress=True):
    """Predict on [(image path, image id)], write the results JSON atomically when `results_path` is
    given, and return COCO's keypoint AP/AR over those images against the annotation file `annotations`
    (its people of [dataset] category, scored with the layout's sigmas)."""
    category = config.get('dataset', 'category', fallback='')
    gt, names, category_id, sigmas = ground_truth(annotations, skeleton, category, verbose=progress)
    results = predict_images(run, config, skeleton, stride, images, progress, names, category_id)
    if results_path:
        atomic_write_text(results_path, json.dumps(results))
    return evaluate_results(gt, results, [i for _, i in images], verbose=progress, sigmas=sigmas)


def cache_images(config, limit=0):
    """([(image path, image id)] of the validation cache of `config` ([dataset] val), its first `limit`
    when limit > 0, and the COCO annotation file the cache was built from)."""
    header, records = cacheio.read(cacheio.path(config, config.get('dataset', 'val')), layout=layout(config))
    images = [(record['image'], record['image_id']) for record in records]
    images = images[:limit] if limit > 0 else images
    if not images:
        raise UserError(f'the validation cache of split {config.get("dataset", "val")!r} holds no image')
    return images, header['annotations']


def evaluate(run, config, limit=0, results_path=None, progress=True, stride=None):
    """COCO keypoint AP/AR {'AP', 'AP50', ..., 'ARl'} of `run` over the validation cache of `config`
    ([dataset] val; its first `limit` images when limit > 0), against the COCO annotation file the cache
    was built from. progress: a progress bar and COCO's printed table. stride: the network's output
    stride (measured on a dummy input when None)."""
    images, annotations = cache_images(config, limit)
    stride = stride or infer_stride(run)
    return evaluate_images(run, config, layout(config), stride, images, annotations, results_path, progress)
