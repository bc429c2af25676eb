"""cache.py on a real COCO set (a copy of ../shared/data/coco-mini) with one broken file or entry at a
time, then all at once: no traceback, a message naming the culprit and what is wrong, every good image
kept, and a training step runs on the result. Skips, saying why, without the data."""

import copy
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

import train
from cache import coco, dataset
from cache import io as cacheio
from utils import config as configlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLIT = 'train2017'


@pytest.fixture(scope='module')
def mini(tmp_path_factory, real_data):
    """A copy of coco-mini: (its folder, its annotations, the image names with people, those without)."""
    source = real_data('coco-mini')
    folder = tmp_path_factory.mktemp('coco-mini')
    shutil.copytree(source, folder, dirs_exist_ok=True)
    data = json.load(open(folder / 'annotations' / f'person_keypoints_{SPLIT}.json'))
    people = {a['image_id'] for a in data['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']}
    with_people = sorted(im['file_name'] for im in data['images'] if im['id'] in people)
    without = sorted(im['file_name'] for im in data['images'] if im['id'] not in people)
    return folder, data, with_people, without


def make_case(mini, where, change_data=None, change_images=None):
    """A dataset under `where`: coco-mini's annotations changed by change_data(data) and its images (links
    to the copy) changed by change_images(folder). Returns config mods pointing at it."""
    folder, data, _, _ = mini
    data = copy.deepcopy(data)
    images = where / 'images'
    images.mkdir(parents=True)
    for name in os.listdir(folder / SPLIT):
        os.symlink(folder / SPLIT / name, images / name)
    if change_data:
        change_data(data)
    if change_images:
        change_images(images)
    annotations = where / 'annotations.json'
    annotations.write_text(json.dumps(data))
    return [f'dataset/root={where}', f'dataset/cache={where / "cache"}', f'dataset/train={SPLIT}',
            f'dataset/train_annotations={annotations}', f'dataset/train_images={images}']


def person(data, n=0):
    return [a for a in data['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']][n]


def image_of(data, ann):
    return next(im for im in data['images'] if im['id'] == ann['image_id'])


def replace(images, name, content):
    os.remove(images / name)
    (images / name).write_bytes(content)


def read(images, name):
    return (images / name).read_bytes()


def encoded(extension, image):
    return cv2.imencode(extension, image)[1].tobytes()


def pixels(images, name, flags=cv2.IMREAD_COLOR):
    return cv2.imread(str(images / name), flags)


# Each annotation fault: (name, change of one person annotation, words of the message)
ANNOTATION_FAULTS = [
    ('wrong count', lambda a: a.update(keypoints=a['keypoints'][:-3]), 'has 48 values, not 51'),
    ('no keypoints', lambda a: a.pop('keypoints'), "no 'keypoints' field"),
    ('non-numeric', lambda a: a['keypoints'].__setitem__(4, 'abc'), "holds 'abc', not a finite number"),
    ('null value', lambda a: a['keypoints'].__setitem__(4, None), 'holds None, not a finite number'),
    ('nan', lambda a: a['keypoints'].__setitem__(0, float('nan')), 'holds nan, not a finite number'),
    ('far outside', lambda a: a['keypoints'].__setitem__(slice(0, 3), [1e6, 10, 2]), 'lies far outside'),
    ('negative box', lambda a: a['bbox'].__setitem__(2, -5.0), 'negative width or height'),
    ('no bbox', lambda a: a.pop('bbox'), 'no bbox'),
]


@pytest.mark.parametrize('name,change,words', ANNOTATION_FAULTS, ids=[f[0] for f in ANNOTATION_FAULTS])
def test_one_bad_annotation_is_reported_and_skipped(mini, tmp_path, name, change, words):
    _, data, _, _ = mini
    bad = person(data, 3)
    image = image_of(data, bad)

    def broken(d):
        change(next(a for a in d['annotations'] if a['id'] == bad['id']))
    config = configlib.load(mods=make_case(mini, tmp_path, broken))
    _, report = coco.build(config, SPLIT)
    assert len(report['annotations']) == 1
    line = report['annotations'][0]
    assert f'annotation {bad["id"]} (image {image["id"]})' in line and image['file_name'] in line
    assert words in line and line.endswith('skipped') and 'annotations.json' in line
    assert report['records'] == len(data['images'])  # every image kept, the bad person left out
    assert report['people'] == mini_people(data) - 1


def mini_people(data):
    return sum(1 for a in data['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd'])


def test_bad_crowd_rle_unknown_image_and_duplicate_id(mini, tmp_path):
    _, data, _, _ = mini
    crowd = next(a for a in data['annotations'] if a['iscrowd'])
    stray = dict(person(data, 0), id=999000001, image_id=123456789)
    first = data['images'][0]

    def broken(d):
        target = next(a for a in d['annotations'] if a['id'] == crowd['id'])
        target['segmentation']['counts'] = target['segmentation']['counts'][:-3]  # runs short of the image
        d['annotations'].append(stray)
        d['images'].append(dict(first, file_name='elsewhere.jpg'))
    config = configlib.load(mods=make_case(mini, tmp_path, broken))
    path, report = coco.build(config, SPLIT)
    lines = report['annotations']
    assert len(lines) == 3
    assert any(f'annotation {crowd["id"]}' in x and 'malformed crowd RLE' in x and 'box stands in' in x
               for x in lines)
    assert any('annotation 999000001 (image 123456789): no image entry has id 123456789' in x for x in lines)
    assert any(f'image id {first["id"]} is listed twice' in x and 'elsewhere.jpg' in x for x in lines)
    assert report['records'] == len(data['images']) and report['people'] == mini_people(data)
    _, records = cacheio.read(path)
    record = next(r for r in records if r['image_id'] == crowd['image_id'])
    assert record['ignore'] is not None  # the crowd's box still masks it out, and training reads it
    mask = dataset.warp_ignore(record, np.eye(3), record['size'])
    x, y, w, h = (int(v) for v in crowd['bbox'])
    assert mask.shape == record['size'] and mask[y + h // 2, x + w // 2] == 1


IMAGE_FAULTS = [  # (name, change of one image with people, words of the message or None: kept)
    ('missing', lambda images, n: os.remove(images / n), 'no such file'),
    ('zero bytes', lambda images, n: replace(images, n, b''), 'empty file (0 bytes)'),
    ('truncated', lambda images, n: replace(images, n, read(images, n)[:len(read(images, n)) // 2]),
     'truncated JPEG'),
    ('not an image', lambda images, n: replace(images, n, b'<html>not found</html>'), 'not a readable image'),
    ('other size', lambda images, n: replace(images, n, encoded('.jpg', pixels(images, n)[::2, ::2])),
     'pixels, but the annotation file says'),
    ('png under .jpg', lambda images, n: replace(images, n, encoded('.png', pixels(images, n))), None),
    ('4 channels', lambda images, n: replace(images, n, encoded('.png', cv2.cvtColor(
        pixels(images, n), cv2.COLOR_BGR2BGRA))), None),
    ('grayscale', lambda images, n: replace(images, n, encoded(
        '.jpg', pixels(images, n, cv2.IMREAD_GRAYSCALE))), None),
]


@pytest.mark.parametrize('name,change,words', IMAGE_FAULTS, ids=[f[0] for f in IMAGE_FAULTS])
def test_one_bad_image_is_reported_and_skipped(mini, tmp_path, name, change, words):
    _, data, with_people, _ = mini
    culprit = with_people[2]
    mods = make_case(mini, tmp_path, change_images=lambda images: change(images, culprit))
    config = configlib.load(mods=mods)
    path, report = coco.build(config, SPLIT)
    _, records = cacheio.read(path)
    kept = {os.path.basename(r['image']) for r in records}
    if words is None:  # read by its content, kept, and readable by the training pipeline
        assert kept == {im['file_name'] for im in data['images']} and not report['why']
        record = next(r for r in records if r['image'].endswith(culprit))
        image, _ = dataset.read_image(record['image'], np.eye(3))
        assert image.shape[:2] == record['size'] and image.shape[2] in (3, 4)
        return
    kind = 'missing' if name == 'missing' else 'unreadable'
    assert [os.path.basename(p) for p in report[kind]] == [culprit]
    assert words in report['why'][report[kind][0]]
    assert kept == {im['file_name'] for im in data['images']} - {culprit}


def run_cache(mods, *extra):
    args = [sys.executable, 'cache.py', '--split', SPLIT, *extra]
    for mod in mods:
        args += ['-m', mod]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))


JSON_FAULTS = [(b'', 'Expecting value'), (b'{"images": [', 'Expecting value'), (b'[1, 2]', 'not an object'),
               (b'{"images": []}', 'no annotations')]


@pytest.mark.parametrize('content,words', JSON_FAULTS)
def test_empty_or_invalid_json_is_a_one_line_error(mini, tmp_path, content, words):
    mods = make_case(mini, tmp_path)
    (tmp_path / 'annotations.json').write_bytes(content)
    result = run_cache(mods)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'annotations.json' in lines[0] and words in lines[0]


def test_every_fault_at_once_then_a_training_step(mini, tmp_path):
    _, data, with_people, _ = mini
    bad = {name: person(data, i + 1)['id'] for i, (name, _, _) in enumerate(ANNOTATION_FAULTS)}
    crowd = next(a for a in data['annotations'] if a['iscrowd'])

    def broken(d):
        for name, change, _ in ANNOTATION_FAULTS:
            change(next(a for a in d['annotations'] if a['id'] == bad[name]))
        target = next(a for a in d['annotations'] if a['id'] == crowd['id'])
        target['segmentation']['counts'] = [5, 7]
        d['annotations'].append(dict(person(d, 0), id=999000001, image_id=123456789))
        d['images'].append(dict(d['images'][0], file_name='elsewhere.jpg'))
    # the training split keeps the images with a person left; the broken images are among those
    still = {image_of(data, a)['file_name'] for a in data['annotations']
             if a['num_keypoints'] > 0 and not a['iscrowd'] and a['id'] not in bad.values()}
    culprits = dict(zip([f[0] for f in IMAGE_FAULTS], sorted(still)[-len(IMAGE_FAULTS):]))

    def broken_images(images):
        for name, change, _ in IMAGE_FAULTS:
            change(images, culprits[name])
    mods = make_case(mini, tmp_path, broken, broken_images)
    mods += ['dataset/val=none', 'input/height=64', 'input/width=64', 'model/stage_channels=16',
             'model/stages=1', 'train/batch_size=2', 'train/workers=0', 'train/threads=1', 'train/warmup=0',
             'train/steps=1', 'hooks/images=0', 'hooks/scalars=0']
    result = run_cache(mods)
    assert result.returncode == 0 and 'Traceback' not in result.stderr, result.stderr
    out = result.stdout
    print(out)
    for name, _, words in ANNOTATION_FAULTS:
        assert f'annotation {bad[name]} ' in out and words in out, name
    assert f'annotation {crowd["id"]} ' in out and 'malformed crowd RLE' in out
    assert 'no image entry has id 123456789' in out and 'is listed twice' in out
    for name, _, words in IMAGE_FAULTS:
        assert (culprits[name] in out) == (words is not None), name
        if words:
            assert words in out
    config = configlib.load(mods=mods)
    _, records = cacheio.read(cacheio.path(config, SPLIT))
    kept = {os.path.basename(r['image']) for r in records}
    dropped = {culprits[name] for name, _, words in IMAGE_FAULTS if words}
    assert kept == still - dropped and len(kept) >= len(with_people) - len(dropped) - len(bad)
    # the training pipeline reads the PNG, 4-channel and grayscale images the cache kept
    data_set = dataset.PoseDataset(config, SPLIT, train=True, stride=8)
    for name in ('png under .jpg', '4 channels', 'grayscale'):
        index = next(i for i, r in enumerate(records) if r['image'].endswith(culprits[name]))
        sample = data_set[(index, 64, 64, 0)]
        assert sample['image'].shape == (64, 64, 3) and sample['heatmaps'].shape[0] == 19
    summary = train.run(config, str(tmp_path / 'run'), progress=False)
    assert summary['step'] == 1
