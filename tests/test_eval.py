"""pose/evaluate.py and eval.py: our COCO keypoint AP equals pycocotools' own COCOeval on the same files,
a perfect prediction scores AP 1, the whole pipeline on known people scores near 1, and eval.py's errors."""

import contextlib
import io
import json
import os
import sys

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from test_predict import figure, grey_image, scene_run

from pose import evaluate
from pose import skeleton as skeletons
from utils import config as configlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO17 = skeletons.load('coco17')
PLAIN = ['input/channel_order=bgr', 'input/divisor=255', 'input/mean=0 0 0', 'input/std=1 1 1']
# (height, width, grey level, people as (x, y, height, lean))
SCENES = [(240, 330, 100, [(80, 120, 150, 0.0), (230, 110, 120, 0.2)]),
          (200, 180, 130, [(90, 100, 140, -0.1)]),
          (260, 400, 160, [(70, 130, 170, 0.1), (200, 120, 90, 0.0), (320, 140, 120, -0.2)])]


def write_dataset(root, split='val'):
    """A COCO-format keypoint set of SCENES under root (images/<split>, annotations/...json); returns
    the annotation path and {image id: people (P,17,3) in COCO order}."""
    images, annotations, truth = [], [], {}
    os.makedirs(os.path.join(root, 'images', split), exist_ok=True)
    for index, (h, w, level, people) in enumerate(SCENES):
        image_id, name = 100 + index, f'{index:03d}.jpg'
        image = grey_image((h, w))
        image[image == 150] = level
        cv2.imwrite(os.path.join(root, 'images', split, name), image, [cv2.IMWRITE_JPEG_QUALITY, 98])
        images.append({'id': image_id, 'file_name': name, 'height': h, 'width': w})
        truth[image_id] = np.stack([figure(COCO17, *person) for person in people])
        for kp in truth[image_id]:
            x0, y0 = kp[:, :2].min(0)
            x1, y1 = kp[:, :2].max(0)
            box = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
            annotations.append({'id': len(annotations) + 1, 'image_id': image_id, 'category_id': 1,
                                'iscrowd': 0, 'keypoints': kp.reshape(-1).round(2).tolist(),
                                'num_keypoints': 17, 'bbox': box, 'area': box[2] * box[3] * 0.6})
    path = os.path.join(root, 'annotations', f'person_keypoints_{split}.json')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump({'images': images, 'annotations': annotations,
                   'categories': [{'id': 1, 'name': 'person', 'keypoints': list(skeletons.COCO_PARTS)}]}, f)
    return path, truth


def results_from(truth, noise, seed=0, extra=True):
    """COCO results: the true people with Gaussian noise of `noise` pixels, random scores, and a false
    positive per image when `extra`."""
    rng = np.random.default_rng(seed)
    results = []
    for image_id, people in truth.items():
        for kp in people:
            kp = kp.copy()
            kp[:, :2] += rng.normal(0, noise, (17, 2)) if noise else 0
            results.append({'image_id': image_id, 'category_id': 1, 'keypoints': kp.reshape(-1).tolist(),
                            'score': float(rng.uniform(0.3, 1))})
        if extra:
            fake = figure(COCO17, 40, 60, 50)
            results.append({'image_id': image_id, 'category_id': 1, 'keypoints': fake.reshape(-1).tolist(),
                            'score': float(rng.uniform(0, 1))})
    return results


def cocoeval_stats(annotations, results_path, image_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(annotations)
        coco_eval = COCOeval(gt, gt.loadRes(results_path), 'keypoints')
        if image_ids:
            coco_eval.params.imgIds = image_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


@pytest.mark.parametrize('noise,image_ids', [(2.0, None), (6.0, None), (4.0, [100, 102])])
def test_ap_equals_pycocotools_cocoeval(tmp_path, noise, image_ids, capsys):
    annotations, truth = write_dataset(str(tmp_path))
    path = str(tmp_path / 'results.json')
    with open(path, 'w') as f:
        json.dump(results_from(truth, noise), f)
    ours = evaluate.evaluate_results(annotations, path, image_ids)
    assert 'Average Precision' in capsys.readouterr().out
    reference = cocoeval_stats(annotations, path, image_ids)
    assert [ours[name] for name in evaluate.STATS] == reference
    assert 0 < ours['AP'] < 1


def test_perfect_prediction_gives_ap_1(tmp_path):
    annotations, truth = write_dataset(str(tmp_path))
    stats = evaluate.evaluate_results(annotations, results_from(truth, 0, extra=False), verbose=False)
    assert stats['AP'] == 1.0 and stats['AR'] == 1.0 and stats['AP50'] == 1.0


def test_bootstrap_draws_images_with_replacement_and_scores_every_network_on_the_same_draws(tmp_path):
    annotations, truth = write_dataset(str(tmp_path))
    gt = evaluate.load_coco(annotations)
    noisy = results_from(truth, 4.0)
    results = {'perfect': results_from(truth, 0, extra=False), 'noisy': noisy, 'same': list(noisy)}
    draws = evaluate.bootstrap(gt, results, list(truth), 30, seed=1)
    assert draws['perfect'] == [1.0] * 30 and draws['noisy'] == draws['same']
    full = evaluate.evaluate_results(annotations, noisy, verbose=False)['AP']
    assert min(draws['noisy']) < full < max(draws['noisy'])     # the images drawn move the figure
    assert evaluate.bootstrap(gt, {'noisy': noisy}, list(truth), 30, seed=1)['noisy'] == draws['noisy']


def test_no_detection_scores_0_and_bad_results_are_one_line_errors(tmp_path):
    annotations, truth = write_dataset(str(tmp_path))
    assert evaluate.evaluate_results(annotations, [], verbose=False)['AP'] == 0.0
    wrong = results_from(truth, 0)
    wrong[0]['image_id'] = 999
    with pytest.raises(evaluate.UserError, match='do not fit'):
        evaluate.evaluate_results(annotations, wrong, verbose=False)
    with pytest.raises(evaluate.UserError, match='not found'):
        evaluate.evaluate_results(str(tmp_path / 'nope.json'), [], verbose=False)


def test_coco_results_are_coco17_with_missing_points_at_zero():
    cmu = skeletons.load('cmu18')
    keypoints = cmu.from_coco(figure(COCO17, 50, 60, 80)[None])[0]
    keypoints[:, 2] = 0.5
    keypoints[cmu.parts.index('left_wrist'), 2] = 0
    results = evaluate.coco_results([{'keypoints': keypoints, 'score': 3.0}], 7, cmu)
    assert len(results) == 1 and results[0]['image_id'] == 7 and results[0]['category_id'] == 1
    values = np.array(results[0]['keypoints']).reshape(17, 3)
    wrist = skeletons.COCO_PARTS.index('left_wrist')
    assert values[wrist].tolist() == [0, 0, 0]
    nose = skeletons.COCO_PARTS.index('nose')
    assert values[nose].tolist() == pytest.approx(keypoints[cmu.parts.index('nose')].tolist(), abs=0.01)
    assert results[0]['score'] == 3.0


def level_run(truth, scenes):
    """A fake network for the images of write_dataset: the grey level tells the image, scene_run draws
    its true people."""
    runs = {level: scene_run(COCO17, truth[100 + i], (h, w)) for i, (h, w, level, _) in enumerate(scenes)}

    def run(batch):
        content = batch[0, 0][batch[0, 0] > 0]
        level = int(round(float(np.median(content)) * 255))
        return runs[min(runs, key=lambda known: abs(known - level))](batch)
    return run


@pytest.mark.parametrize('flip,scales', [(False, ''), (True, '0.75')])
def test_pipeline_on_known_people_scores_near_1(tmp_path, flip, scales):
    from cache import coco
    annotations, truth = write_dataset(str(tmp_path / 'data'))
    config = configlib.load(mods=PLAIN + [f'dataset/root={tmp_path / "data"}', f'dataset/cache={tmp_path}',
                                          'model/layout=coco17', 'eval/height=256', f'eval/flip={flip}',
                                          f'eval/scales={scales}'])
    coco.build(config, 'val')
    results = str(tmp_path / 'out' / 'results.json')
    run = level_run(truth, SCENES)
    stats = evaluate.evaluate(run, config, results_path=results, progress=False, stride=8)
    assert stats['AP50'] == 1.0 and stats['AP'] > (0.99 if not scales else 0.9), stats
    written = json.load(open(results))
    assert {r['image_id'] for r in written} == set(truth) and len(written) == 6
    stats = evaluate.evaluate(level_run(truth, SCENES), config, limit=1, progress=False, stride=8)
    assert stats['AR'] == 1.0


def run_main(main, args, monkeypatch, capsys):
    """(exit status, stdout, stderr) of a script's main() called with `args`."""
    monkeypatch.setattr(sys, 'argv', ['script'] + [str(a) for a in args])
    try:
        main()
        status = 0
    except SystemExit as exit:
        status = exit.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize('args,message', [(['--checkpoint', 'missing.pt'], 'not found'),
                                          (['--onnx', 'missing.onnx'], 'not found'),
                                          (['--onnx', 'garbage.onnx'], 'cannot load ONNX file'),
                                          (['--checkpoint', 'garbage.pt'], 'cannot read checkpoint'),
                                          (['-m', 'train/root=.'], 'no checkpoint'),
                                          (['--annotations', 'x.json'], '--images')])
def test_eval_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    import eval as script
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'garbage.onnx').write_bytes(b'not a model')
    (tmp_path / 'garbage.pt').write_bytes(b'not a checkpoint')
    status, _, err = run_main(script.main, args, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith('error:') and message in lines[0], err


# ---- end to end: a real network trained for a few steps, from its checkpoint and from ONNX ----------
def tiny_mods(root):
    """Options of a small real network (the default backbone and stages, narrow) and its data."""
    return ['model/layout=coco17', 'model/stage_channels=16', 'synthetic/min_size=80',
            'synthetic/max_size=112', f'dataset/root={root}/data', f'dataset/cache={root}/cache',
            f'train/root={root}/runs',
            'eval/height=96', 'eval/threads=1', 'decode/peak_threshold=0.02', 'decode/min_score=0',
            'decode/min_parts=2', 'decode/paf_threshold=0.01', 'decode/min_above=0.5']


def train_tiny(root, steps=6):
    """Generate 4 synthetic validation images, cache them, train the network on them (a plain loop) and
    save checkpoint-<steps> in <root>/runs/exp and an ONNX export in <root>/tiny.onnx; returns the mods."""
    import torch

    import model
    from cache import coco, synthetic
    from cache import io as cacheio
    from model import onnx_export
    from pose import encode
    from transform import normalize
    from utils import checkpoint
    torch.manual_seed(0)
    mods = tiny_mods(root)
    config = configlib.load(mods=mods)
    synthetic.write_split(f'{root}/data', 'val', 4, synthetic.options(config))
    coco.build(config, 'val')
    _, records = cacheio.read(cacheio.path(config, 'val'))
    network = model.build(config, pretrained=False)
    size, norm = 64, normalize.params(config)
    images, heatmaps, pafs = [], [], []
    for record in records:
        h, w = record['size']
        image = cv2.resize(cv2.imread(record['image']), (size, size), interpolation=cv2.INTER_AREA)
        keypoints = record['keypoints'].copy()
        keypoints[..., 0] = (keypoints[..., 0] + 0.5) * size / w - 0.5
        keypoints[..., 1] = (keypoints[..., 1] + 0.5) * size / h - 0.5
        maps = encode.encode(keypoints, network.skeleton, (size, size), network.stride, 7, 8)
        images.append(normalize.normalize(image, norm))
        heatmaps.append(maps[0])
        pafs.append(maps[1])
    x, heatmaps, pafs = (torch.from_numpy(np.stack(a)) for a in (images, heatmaps, pafs))
    optimizer = torch.optim.Adam(network.parameters(), 3e-3)
    for _ in range(steps):
        loss = sum(((h - heatmaps) ** 2).mean() + ((p - pafs) ** 2).mean() for h, p in network(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    network.eval()
    state = {'model': network.state_dict(), 'config': configlib.dumps(config), 'step': steps}
    checkpoint.save(f'{root}/runs/exp', state, steps)
    torch.save({'model': network.state_dict()}, f'{root}/bare.pt')  # no config: the user's must fit
    onnx_export.export(network, config, f'{root}/tiny.onnx')
    return mods


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on 2 busy cores, 2 threads of tiny convolutions are 10x slower than 1
    try:
        root = str(tmp_path_factory.mktemp('trained'))
        yield root, train_tiny(root)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """eval.py and detect.py set torch's thread count from [eval] threads; restore it after each test."""
    import torch
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def data_mods(root):
    """The user's options when the network comes from a file: only where the data is."""
    return [a for m in (f'dataset/root={root}/data', f'dataset/cache={root}/cache', 'eval/height=96',
                        'eval/threads=1') for a in ('-m', m)]


def check_results(path, ids):
    results = json.load(open(path))
    assert isinstance(results, list) and {r['image_id'] for r in results} <= set(ids)
    for r in results:
        assert r['category_id'] == 1 and len(r['keypoints']) == 51 and 0 <= r['score'] <= 1
    folder, name = os.path.split(path)
    stats = json.load(open(os.path.join(folder, 'metrics' + name[len('results'):])))
    assert set(evaluate.STATS) <= set(stats) and all(-1 <= stats[k] <= 1 for k in evaluate.STATS)
    return stats


def test_eval_script_on_a_trained_network(trained, monkeypatch, capsys):
    import eval as script
    root, mods = trained
    ids = [r['id'] for r in json.load(open(f'{root}/data/annotations/person_keypoints_val.json'))['images']]
    args = [a for m in mods for a in ('-m', m)] + ['--name', 'exp']
    status, out, err = run_main(script.main, args, monkeypatch, capsys)
    assert status == 0, err
    assert 'AP50' in out and 'Average Precision' in out
    stats = check_results(f'{root}/runs/exp/eval/results-00000006.json', ids)
    assert stats['images'] == 4 and stats['eval']['height'] == '96' and stats['step'] == 6
    # the ONNX file on the COCO json and images directly, first 2 images; the layout comes with the file
    args = data_mods(root) + ['--onnx', f'{root}/tiny.onnx', '--annotations',
                              f'{root}/data/annotations/person_keypoints_val.json', '--images',
                              f'{root}/data/images/val', '--limit', '2']
    status, out, err = run_main(script.main, args, monkeypatch, capsys)
    assert status == 0, err
    assert 'layout = coco17 comes with the network' in out
    check_results(f'{root}/eval/results-tiny-person_keypoints_val.json', sorted(ids)[:2])


def test_checkpoint_that_does_not_fit_lists_the_keys(trained, monkeypatch, capsys):
    import eval as script
    root, _ = trained
    status, _, err = run_main(script.main, data_mods(root) + ['--checkpoint', f'{root}/bare.pt'], monkeypatch,
                              capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and 'does not fit the model' in lines[0], err
    assert 'bare.pt' in lines[0] and 'shape' in lines[0] and 'vs model' in lines[0]


def test_onnx_without_metadata_is_refused(trained, tmp_path, monkeypatch, capsys):
    import onnx

    import eval as script
    root, _ = trained
    proto = onnx.load(f'{root}/tiny.onnx')
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / 'bare.onnx'))
    status, _, err = run_main(script.main, ['--onnx', str(tmp_path / 'bare.onnx')], monkeypatch, capsys)
    assert status == 2 and "has no 'config' or 'stride' metadata" in err
    assert len(err.strip().splitlines()) == 1


def shipped_configs():
    import benchmarks.inference
    return benchmarks.inference.shipped_configs()


@pytest.mark.parametrize('name', sorted(shipped_configs()))
def test_every_shipped_config_runs_from_a_converted_style_checkpoint(name, tmp_path, monkeypatch, capsys):
    """A checkpoint with only 'model' and 'config' (as converters write) rebuilds its network with the
    user's default config, and eval.py's predictor runs it."""
    import torch

    import model
    from model import runner
    from pose import predict
    torch.manual_seed(0)
    files, mods = shipped_configs()[name]
    config = configlib.load(files, mods)
    network = model.build(config, pretrained=False)
    path = str(tmp_path / f'{name}.pt')
    torch.save({'model': network.state_dict(), 'config': configlib.dumps(config)}, path)
    loaded = runner.load(configlib.load(), checkpoint=path, threads=1, backend='torch')  # see test_backends
    assert loaded['config'].get('model', 'backbone') == config.get('model', 'backbone')
    assert loaded['stride'] == network.stride and loaded['step'] is None
    assert loaded['skeleton'].name == config.get('model', 'layout')
    options = predict.options(loaded['config'])
    options['height'] = 64
    people = predict.predict(loaded['run'], grey_image((70, 90)), loaded['skeleton'], loaded['stride'],
                             **options)
    assert isinstance(people, list)
    import eval as script
    assert script.output_paths(loaded)[0] == str(tmp_path / 'eval' / f'results-{name}.json')
