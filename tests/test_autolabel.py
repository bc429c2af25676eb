"""autolabel.py: a folder and a video in, a COCO keypoint file out that cache.py accepts; confident people
labelled, people and parts the network is unsure of written as ignore regions; bad input is a one-line error.

The "network" returns maps encoded from known people (one sure, one faint), so what it finds is known."""

import json
import os

import cv2
import numpy as np
import pytest

import autolabel as script
from cache import autolabel, coco
from cache import io as cacheio
from pose import encode
from pose import skeleton as skeletons
from utils import config as configlib

SKELETON = skeletons.load('cmu18')
SIZE = 256                                   # image side = [eval] height: the maps need no resizing


def figure(x0, height):
    """A standing person (cmu18 parts) at x0, its head at y = 40, `height` pixels tall."""
    parts = {'nose': (0, 0), 'neck': (0, .15), 'right_shoulder': (-.12, .15), 'left_shoulder': (.12, .15),
             'right_elbow': (-.15, .35), 'left_elbow': (.15, .35), 'right_wrist': (-.15, .5),
             'left_wrist': (.15, .5), 'right_hip': (-.08, .55), 'left_hip': (.08, .55),
             'right_knee': (-.08, .75), 'left_knee': (.08, .75), 'right_ankle': (-.08, .95),
             'left_ankle': (.08, .95), 'right_eye': (-.03, -.03), 'left_eye': (.03, -.03),
             'right_ear': (-.06, 0), 'left_ear': (.06, 0)}
    return np.array([[x0 + dx * height, 40 + dy * height, 2] for dx, dy in
                     (parts[p] for p in SKELETON.parts)], np.float32)


def fake_run(faint=0.25):
    """run(batch) -> maps of a sure person on the left and a faint one (peaks of `faint`) on the right."""
    sure, weak = figure(70, 200), figure(190, 200)
    h1, p1 = encode.encode(sure[None], SKELETON, (SIZE, SIZE), 8, 7, 8)
    h2, p2 = encode.encode(weak[None], SKELETON, (SIZE, SIZE), 8, 7, 8)
    heatmaps = np.maximum(h1[:-1], faint * h2[:-1])
    heatmaps = np.concatenate([heatmaps, 1 - heatmaps.max(0, keepdims=True)])
    pafs = p1 + faint * p2

    def run(batch):
        assert batch.shape[-2:] == (SIZE, SIZE)
        return np.repeat(heatmaps[None], len(batch), 0), np.repeat(pafs[None], len(batch), 0)
    return run


def config(tmp_path, *mods):
    return configlib.load([], [f'eval/height={SIZE}', 'eval/flip=false',
                               f'dataset/cache={tmp_path / "cache"}', *mods])


def inputs(tmp_path):
    """A folder of two images and a 4 fps video of 6 frames (every 2nd frame is labelled)."""
    folder = tmp_path / 'photos'
    folder.mkdir()
    image = np.full((SIZE, SIZE, 3), 90, np.uint8)
    for name in ('a.jpg', 'b.png'):
        cv2.imwrite(str(folder / name), image)
    video = tmp_path / 'clip.mp4'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'mp4v'), 4, (SIZE, SIZE))
    for _ in range(6):
        writer.write(image)
    writer.release()
    return [str(folder), str(video)]


def test_annotate_labels_sure_people_and_ignores_the_rest():
    sure = figure(70, 200).copy()
    sure[:, 2] = 0.9
    sure[SKELETON.parts.index('left_wrist'), 2] = 0.1                  # found, but unsure
    faint = figure(190, 200).copy()
    faint[:, 2] = 0.2
    people = [{'keypoints': sure, 'score': 0.8}, {'keypoints': faint, 'score': 0.2}]
    result = autolabel.annotate(people, SKELETON, (SIZE, SIZE), autolabel.thresholds())
    labelled = [a for a in result if a['num_keypoints'] > 0]
    ignored = [a for a in result if a['num_keypoints'] == 0]
    assert len(labelled) == 1 and labelled[0]['num_keypoints'] == 16      # 17 COCO points, one unsure
    keypoints = np.array(labelled[0]['keypoints']).reshape(17, 3)
    wrist = skeletons.COCO_PARTS.index('left_wrist')
    assert keypoints[wrist, 2] == 0 and (keypoints[np.arange(17) != wrist, 2] == 2).all()
    disc, box = ignored                                            # the unsure wrist, the faint person
    x, y = sure[SKELETON.parts.index('left_wrist'), :2]
    polygon = np.array(disc['segmentation'][0]).reshape(-1, 2)
    assert np.allclose(polygon.mean(0), (x, y), atol=0.5) and not box['segmentation']
    assert box['bbox'][0] < 190 - 0.15 * 200 and box['bbox'][0] + box['bbox'][2] > 190 + 0.15 * 200


def test_a_folder_and_a_video_become_a_dataset_that_cache_py_reads(tmp_path):
    out = tmp_path / 'labelled'
    counts = autolabel.label(fake_run(), config(tmp_path), SKELETON, 8, inputs(tmp_path), str(out),
                             progress=False)
    assert counts == {'images': 5, 'people': 5, 'ignored': 5}         # 2 photos + frames 0, 2, 4
    data = json.loads((out / 'annotations' / 'person_keypoints_train.json').read_text())
    assert [im['file_name'] for im in data['images']] == ['a.jpg', 'b.jpg', 'clip_000000.jpg',
                                                          'clip_000002.jpg', 'clip_000004.jpg']
    assert data['categories'][0]['keypoints'] == list(skeletons.COCO_PARTS)
    path, report = coco.build(config(tmp_path, f'dataset/root={out}'), 'train')
    _, records = cacheio.read(path, SKELETON)
    assert len(records) == 5 and all(len(r['keypoints']) == 1 and r['ignore'] is not None for r in records)
    truth = figure(70, 200)
    found = records[0]['keypoints'][0]
    assert np.abs(found[:, :2] - truth[:, :2]).max() < 3                # the sure person, where drawn


def test_the_extra_option_joins_the_labelled_set_to_training(tmp_path):
    out = tmp_path / 'labelled'
    autolabel.label(fake_run(), config(tmp_path), SKELETON, 8, inputs(tmp_path)[:1], str(out), progress=False)
    cfg = config(tmp_path, f'dataset/extra={out}', f'dataset/root={tmp_path / "none"}')
    path, _ = coco.build(cfg, 'train', root=str(out))
    assert path == cacheio.path(cfg, 'train', str(out)) and path.endswith('cmu18_train@labelled.pkl')
    assert cacheio.files(cfg, 'train')[1:] == [path]
    assert cacheio.files(cfg, 'val') == [cacheio.path(cfg, 'val')]


def test_extra_sets_keep_their_images_without_people(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location('cache_script', os.path.join(configlib.ROOT, 'cache.py'))
    cache_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cache_script)
    out = tmp_path / 'labelled'
    autolabel.label(fake_run(), config(tmp_path), SKELETON, 8, inputs(tmp_path)[:1], str(out), progress=False)
    file = out / 'annotations' / 'person_keypoints_train.json'
    data = json.loads(file.read_text())
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] != data['images'][0]['id']]
    file.write_text(json.dumps(data))
    # the same folder as the training split (images without people left out, [dataset] train_empty = false)
    # and as an extra set (kept: they show the network where nobody is)
    cfg = config(tmp_path, f'dataset/root={out}', f'dataset/extra={out}')
    cache_script.build(cfg, ['train'], force=False)
    main, extra = (len(cacheio.read(path, SKELETON)[1]) for path in cacheio.files(cfg, 'train'))
    assert (main, extra) == (1, 2)


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    for argv in (['missing.mp4', '-o', str(tmp_path / 'x')],
                 [str(tmp_path), '-o', str(tmp_path), '--keypoint-threshold', '2']):
        with pytest.raises(SystemExit) as exit:
            script.main(argv)
        error = capsys.readouterr().err
        assert exit.value.code == 2 and error.startswith('error: ') and len(error.strip().splitlines()) == 1
    out = tmp_path / 'exists'
    out.mkdir()
    with pytest.raises(autolabel.UserError, match='exists'):
        autolabel.label(fake_run(), config(tmp_path), SKELETON, 8, inputs(tmp_path)[:1], str(out))
    assert not list(tmp_path.glob('.autolabel-*'))                     # nothing half-written left behind


def test_a_folder_of_videos_and_images_is_read_as_both(tmp_path):
    folder, video = inputs(tmp_path)
    (tmp_path / 'photos' / 'clip.mp4').write_bytes(open(video, 'rb').read())
    assert autolabel.sources([folder, video]) == [str(tmp_path / 'photos' / 'clip.mp4'), folder, video]
    names = [name for name, _ in autolabel.frames([folder], every=3)]
    assert names == ['clip_000000', 'clip_000003', 'a', 'b']
