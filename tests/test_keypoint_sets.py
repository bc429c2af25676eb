"""Real keypoint datasets that are not COCO's 17 (../shared/data/keypoint-sets: CrowdPose, AP-10K,
COCO-WholeBody): each caches with its shipped layout, trains a few steps, evaluates, and eval's AP equals
pycocotools' own COCOeval with the layout's sigmas on the same detections. Skips, saying why, without the
data."""

import contextlib
import io
import json
import os

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from cache import coco
from cache import io as cacheio
from pose import evaluate
from pose import skeleton as skeletons
from utils import config as configlib

SETS = {  # folder, annotation file, layout, extra keypoint fields the reference appends
    'crowdpose': ('crowdpose', 'test_crowdpose.json', 'crowdpose14', ()),
    'ap10k': ('ap10k', 'test_ap10k.json', 'ap10k17', ()),
    'coco-wholebody': ('coco-wholebody', 'test_coco_wholebody.json', 'body25', ('foot_kpts',)),
}
TINY = ['input/height=64', 'input/width=64', 'eval/height=64', 'model/stage_channels=16', 'model/stages=1',
        'train/batch_size=2', 'train/workers=0', 'train/threads=1', 'train/warmup=0', 'train/scheduler=none',
        'train/steps=2', 'hooks/evaluate=1h', 'hooks/evaluate_limit=0', 'hooks/images=1h', 'hooks/scalars=0',
        # an untrained network's maps are flat: decode even weak people, so the evaluation scores some
        'decode/peak_threshold=0.001', 'decode/paf_threshold=-1', 'decode/min_above=0', 'decode/min_parts=1',
        'decode/min_score=0']


def mods(folder, name, tmp_path):
    sub, file, layout, _ = SETS[name]
    annotations = os.path.join(folder, file)
    return [f'dataset/root={folder}', f'dataset/cache={tmp_path / "cache"}', f'model/layout={layout}',
            'dataset/train=train', 'dataset/val=val', f'dataset/train_annotations={annotations}',
            f'dataset/train_images={folder}', f'dataset/val_annotations={annotations}',
            f'dataset/val_images={folder}']


def reference_stats(file, results, sigmas, fields, image_ids):
    """pycocotools' COCOeval on the dataset's own file: the extra fields appended to each annotation's
    keypoints, `area` from the box where the file has none (CrowdPose), every keypoint category as the first
    (AP-10K's species are one class; pycocotools' keypoint OKS ignores useCats = 0)."""
    data = json.load(open(file))
    for ann in data['annotations']:
        ann['category_id'] = data['categories'][0]['id']
        for field in fields:
            ann['keypoints'] = ann['keypoints'] + ann[field]
        ann['num_keypoints'] = sum(v > 0 for v in ann['keypoints'][2::3])
        ann.setdefault('area', ann['bbox'][2] * ann['bbox'][3])
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = data
        gt.createIndex()
        coco_eval = COCOeval(gt, gt.loadRes(results), 'keypoints')
        coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas)
        coco_eval.params.imgIds = sorted(image_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


def truth_results(records, skeleton, names, category_id, rng):
    """Detections from the cached ground truth in the layout's parts, a few pixels off, mapped back by
    the evaluation's own coco_results."""
    results = []
    for record in records:
        for keypoints in record['keypoints']:
            people = keypoints.copy()
            people[:, :2] += rng.normal(0, 3, people[:, :2].shape)
            people[:, 2] = np.where(people[:, 2] > 0, 0.9, 0)
            results += evaluate.coco_results([{'keypoints': people, 'score': float(rng.uniform(0.5, 1))}],
                                             record['image_id'], skeleton, names, category_id)
    return results


@pytest.mark.parametrize('name', sorted(SETS))
def test_cache_train_evaluate_on_real_sets(name, real_data, tmp_path):
    folder = real_data(os.path.join('keypoint-sets', SETS[name][0]))
    _, file, layout, fields = SETS[name]
    skeleton = skeletons.load(layout)
    config = configlib.load(mods=mods(folder, name, tmp_path) + TINY)
    for split in ('train', 'val'):
        _, report = coco.build(config, split)
        assert report['records'] >= 2 and report['people'] >= 2 and not report['annotations']
    header, records = cacheio.read(cacheio.path(config, 'val'), skeleton)
    assert all(r['keypoints'].shape[1:] == (len(skeleton.parts), 3) for r in records)
    assert sum((r['keypoints'][..., 2] > 0).sum() for r in records) > 10
    if name == 'coco-wholebody':  # the feet come from foot_kpts
        toe = skeleton.parts.index('left_big_toe')
        assert any((r['keypoints'][:, toe, 2] > 0).any() for r in records)

    # a few training steps, then the trainer's evaluation (the code eval.py runs) at the end
    run = tmp_path / 'run'
    summary = train.run(config, str(run), progress=False)
    assert summary['step'] == 2
    events = EventAccumulator(str(run), size_guidance={'images': 0})
    events.Reload()  # TensorBoard images drawn in the layout's own skeleton
    assert {'images/ground_truth', 'images/people'} <= set(events.Tags()['images'])
    results = json.load(open(run / 'eval' / 'results-00000002.json'))
    metrics = json.load(open(run / 'eval' / 'metrics-00000002.json'))
    names = skeleton.keypoint_names(json.load(open(os.path.join(folder, file)))['categories'][0]['keypoints'])
    sigmas = skeleton.sigma_values(names)
    image_ids = [r['image_id'] for r in records]
    assert results and all(len(r['keypoints']) == 3 * len(names) for r in results)
    reference = reference_stats(os.path.join(folder, file), results, sigmas, fields, image_ids)
    assert [metrics[k] for k in evaluate.STATS] == reference

    # detections close to the truth: a high AP, equal to pycocotools' on the same detections
    gt, eval_names, category_id, eval_sigmas = evaluate.ground_truth(header['annotations'], skeleton)
    assert eval_names == names and np.array_equal(eval_sigmas, sigmas)
    results = truth_results(records, skeleton, names, category_id, np.random.default_rng(0))
    ours = evaluate.evaluate_results(gt, results, image_ids, verbose=False, sigmas=eval_sigmas)
    reference = reference_stats(os.path.join(folder, file), results, sigmas, fields, image_ids)
    assert [ours[k] for k in evaluate.STATS] == reference
    assert 0.3 < ours['AP'] <= 1
    # a derived part (CMU's neck, BODY_25's mid-hip) is not scored: results hold the dataset's keypoints only
    assert all(len(r['keypoints']) == 3 * len(names) for r in results)


def test_detect_json_speaks_the_layouts_own_parts(tmp_path):
    import detect
    s = skeletons.load('crowdpose14')
    keypoints = np.zeros((len(s.parts), 3), np.float32)
    keypoints[s.parts.index('head')] = (10.5, 20.25, 0.9)
    keypoints[s.parts.index('neck')] = (11, 30, 0)  # missing: written as 0, 0, 0
    frames = [detect.frame_record(0, 'a.jpg', [{'keypoints': keypoints, 'score': 0.5}], [7], s)]
    detect.write_json(str(tmp_path / 'people.json'), frames, s, 'a.jpg')
    document = json.load(open(tmp_path / 'people.json'))
    assert document['layout'] == 'crowdpose14' and document['keypoint_names'] == list(s.parts)
    values = document['frames'][0]['people'][0]['keypoints']
    assert len(values) == 3 * 14 and values[36:42] == [10.5, 20.25, 0.9, 0, 0, 0]
