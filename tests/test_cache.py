import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as maskutils

from cache import coco, synthetic
from cache import io as cacheio
from pose import skeleton as skeletons
from utils import config as configlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTS = dict(min_size=80, max_size=120, max_people=3, seed=1, unannotated=0.3, crowd=0.5, person_min=0.4,
            person_max=0.9)


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp('coco')
    synthetic.write_split(str(root), 'train', 10, OPTS)
    synthetic.write_split(str(root), 'val', 4, OPTS)
    return root


def make_config(root, cache, layout='cmu18'):
    return configlib.load(mods=[f'dataset/root={root}', f'dataset/cache={cache}', f'model/layout={layout}'])


def load_json(root, split):
    return json.load(open(os.path.join(root, 'annotations', f'person_keypoints_{split}.json')))


def test_round_trip_preserves_records(source, tmp_path):
    config = make_config(source, tmp_path)
    path, report = coco.build(config, 'train')
    header, records = cacheio.read(path, skeletons.load('cmu18'))
    assert header['layout'] == 'cmu18' and header['split'] == 'train' and header['count'] == len(records)
    assert header['annotations'].endswith('person_keypoints_train.json') and os.path.isdir(header['images'])
    copy = str(tmp_path / 'copy.pkl')
    cacheio.write(copy, header, records)
    again_header, again = cacheio.read(copy, 'cmu18')
    assert again_header == header
    assert len(again) == len(records) == report['records'] == 10
    for a, b in zip(records, again):
        assert a.keys() == b.keys() == {'image', 'image_id', 'size', 'keypoints', 'boxes', 'ignore'}
        assert a['image'] == b['image'] and a['image_id'] == b['image_id'] and a['size'] == b['size']
        assert np.array_equal(a['keypoints'], b['keypoints']) and a['keypoints'].dtype == np.float32
        assert np.array_equal(a['boxes'], b['boxes']) and a['boxes'].shape == (len(a['keypoints']), 4)
        assert a['ignore'] == b['ignore']


def test_records_follow_the_annotations(source, tmp_path):
    skeleton = skeletons.load('cmu18')
    _, records = cacheio.read(coco.build(make_config(source, tmp_path), 'train')[0])
    data = load_json(source, 'train')
    anns = {}
    for a in data['annotations']:
        anns.setdefault(a['image_id'], []).append(a)
    with_ignore = 0
    for record in records:
        image_anns = anns[record['image_id']]
        people = [a for a in image_anns if a['num_keypoints'] > 0 and not a['iscrowd']]
        expected = skeleton.from_coco(np.array([a['keypoints'] for a in people], np.float32))
        assert np.array_equal(record['keypoints'], expected)
        ignored = [a for a in image_anns if a['num_keypoints'] == 0 or a['iscrowd']]
        if not ignored:
            assert record['ignore'] is None
            continue
        with_ignore += 1
        mask = maskutils.decode(record['ignore'])
        assert mask.shape == record['size']
        for a in ignored:
            h, w = record['size']
            seg = a['segmentation']
            rle = maskutils.merge(maskutils.frPyObjects(seg, h, w)) if isinstance(seg, list) else \
                maskutils.frPyObjects(seg, h, w)
            own = maskutils.decode(rle)
            assert (mask[own > 0] == 1).all()
    assert with_ignore > 0


def test_corrupt_and_missing_images_are_skipped(source, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(source, root)
    names = sorted(os.listdir(root / 'images' / 'train'))
    os.remove(root / 'images' / 'train' / names[0])
    (root / 'images' / 'train' / names[1]).write_bytes(b'not a jpeg at all')
    jpeg = (root / 'images' / 'train' / names[2]).read_bytes()
    (root / 'images' / 'train' / names[2]).write_bytes(jpeg[:len(jpeg) // 2])
    config = make_config(root, tmp_path / 'cache')
    path, report = coco.build(config, 'train')
    assert [os.path.basename(p) for p in report['missing']] == [names[0]]
    assert sorted(os.path.basename(p) for p in report['unreadable']) == sorted(names[1:3])
    _, records = cacheio.read(path)
    assert len(records) == 7 and not {os.path.basename(r['image']) for r in records} & set(names[:3])
    result = subprocess.run([sys.executable, 'cache.py', '--force', '--split', 'train',
                             '-m', f'dataset/root={root}', '-m', f'dataset/cache={tmp_path / "cache"}'],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'skipped 1 missing' in result.stdout and 'skipped 2 unreadable' in result.stdout


def test_up_to_date_cache_is_not_rebuilt(source, tmp_path):
    root = tmp_path / 'data'
    shutil.copytree(source, root)
    config = make_config(root, tmp_path / 'cache')
    assert coco.build(config, 'val')[1] is not None
    assert coco.build(config, 'val')[1] is None
    assert coco.build(config, 'val', force=True)[1] is not None
    json_file = root / 'annotations' / 'person_keypoints_val.json'
    json_file.write_text(json_file.read_text() + ' ')
    assert coco.build(config, 'val')[1] is not None
    other = make_config(root, tmp_path / 'cache', layout='coco17')
    assert coco.build(other, 'val')[1] is not None  # another layout, another file
    assert cacheio.path(other, 'val').endswith('coco17_val.pkl')


def test_other_version_or_layout_is_a_clear_error(source, tmp_path, monkeypatch):
    path, _ = coco.build(make_config(source, tmp_path), 'val')
    with pytest.raises(cacheio.CacheError, match=r"layout 'cmu18', not 'coco17'.*model/layout=coco17"):
        cacheio.read(path, 'coco17')
    monkeypatch.setattr(cacheio, 'VERSION', cacheio.VERSION + 1)
    with pytest.raises(cacheio.CacheError, match='format version 1, this code reads version 2'):
        cacheio.read(path)
    with pytest.raises(cacheio.CacheError, match='not found'):
        cacheio.read(str(tmp_path / 'nothing.pkl'))
    (tmp_path / 'junk.pkl').write_bytes(b'junk')
    with pytest.raises(cacheio.CacheError, match='cannot read'):
        cacheio.read(str(tmp_path / 'junk.pkl'))


def test_coco_2014_layout_and_empty_images(source, tmp_path):
    root = tmp_path / 'coco2014'
    shutil.copytree(source / 'annotations', root / 'annotations')
    shutil.copytree(source / 'images' / 'val', root / 'val')
    data = load_json(root, 'val')
    data['images'].append(dict(data['images'][0], id=1, file_name='empty.jpg'))
    shutil.copy(root / 'val' / data['images'][0]['file_name'], root / 'val' / 'empty.jpg')
    (root / 'annotations' / 'person_keypoints_val.json').write_text(json.dumps(data))
    config = make_config(root, tmp_path / 'cache')
    _, report = coco.build(config, 'val')
    assert report['records'] == 5
    _, report = coco.build(config, 'val', force=True, keep_empty=False)
    assert report['records'] == 4


def test_train_and_val_must_not_share_images(source, tmp_path):
    config = make_config(source, tmp_path)
    coco.build(config, 'train')
    coco.build(config, 'val')
    coco.check_disjoint(config)
    same = configlib.load(mods=[f'dataset/root={source}', f'dataset/cache={tmp_path}', 'dataset/val=train'])
    with pytest.raises(coco.UserError, match="share 10 images"):
        coco.check_disjoint(same)


def test_missing_annotations_is_a_clear_error(tmp_path):
    (tmp_path / 'images' / 'train').mkdir(parents=True)
    with pytest.raises(coco.UserError, match=r'annotation file not found: .*person_keypoints_train.json'):
        coco.build(make_config(tmp_path, tmp_path / 'cache'), 'train')
    with pytest.raises(coco.UserError, match='no image folder'):
        coco.build(make_config(tmp_path, tmp_path / 'cache'), 'val')


def test_show_renders_an_augmented_sample(source, tmp_path):
    mods = ['-m', f'dataset/root={source}', '-m', f'dataset/cache={tmp_path}', '-m', 'input/height=96',
            '-m', 'input/width=128']
    built = subprocess.run([sys.executable, 'cache.py'] + mods, cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert built.returncode == 0, built.stderr
    out = str(tmp_path / 'sample.png')
    shown = subprocess.run([sys.executable, 'cache.py', '--show', '2', '-o', out] + mods, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    picture = cv2.imread(out)
    assert picture.shape == (96, 3 * 128, 3) and picture.std() > 10
    bad = subprocess.run([sys.executable, 'cache.py', '--show', '99'] + mods, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and 'records 0..9' in bad.stderr


def test_check_image_accepts_other_formats_and_rejects_wrong_sizes(tmp_path):
    path = str(tmp_path / 'image.png')
    cv2.imwrite(path, np.zeros((77, 101, 3), np.uint8))
    assert coco.check_image(path, (77, 101)) is None
    assert coco.check_image(path, (200, 300)) == 'unreadable'
    assert coco.check_image(str(tmp_path / 'nothing.jpg'), (77, 101)) == 'missing'


def test_ignore_rle_from_polygons_rle_and_boxes():
    h, w = 20, 30
    crowd = np.zeros((h, w), np.uint8)
    crowd[2:5, 3:9] = 1
    anns = [{'segmentation': {'counts': synthetic.rle_counts(crowd), 'size': [h, w]}, 'iscrowd': 1},
            {'segmentation': [[20, 10, 25, 10, 25, 15, 20, 15], [1, 1]], 'num_keypoints': 0},
            {'segmentation': [], 'bbox': [0, 15, 4, 3], 'num_keypoints': 0}]
    mask = maskutils.decode(coco.ignore_rle(anns, h, w))
    assert (mask[crowd > 0] == 1).all() and mask[12, 22] == 1 and mask[16, 1] == 1
    assert mask.sum() < crowd.sum() + 6 * 6 + 5 * 4 and mask[0, 29] == 0
    assert coco.ignore_rle([], h, w) is None


SPELLED = '''[parts]
nose = Nose
neck = "Left Shoulder" "Right Shoulder"
Left Shoulder = "Left Shoulder"
Right Shoulder = "Right Shoulder"
[limbs]
limbs =
    neck nose
    neck "Left Shoulder"
    neck "Right Shoulder"
[flip]
pairs =
    "Left Shoulder" "Right Shoulder"
'''


def test_any_category_spelling_and_file_names(source, tmp_path):
    data = load_json(source, 'train')
    spelled = [n.replace('_', ' ').title() for n in skeletons.COCO_PARTS]
    data['categories'] = [dict(data['categories'][0], name='Human', keypoints=spelled)]
    (tmp_path / 'labels').mkdir()
    export = tmp_path / 'labels' / 'my_export.json'
    export.write_text(json.dumps(data))
    layout = tmp_path / 'spelled.ini'
    layout.write_text(SPELLED)
    mods = [f'dataset/root={tmp_path / "nowhere"}', f'dataset/cache={tmp_path / "cache"}',
            f'model/layout={layout}', f'dataset/train_annotations={export}',
            f'dataset/train_images={source / "images" / "train"}']
    path, report = coco.build(configlib.load(mods=mods), 'train')
    assert report['records'] == 10 and not report['annotations']
    header, records = cacheio.read(path, skeletons.load(str(layout)))
    assert header['annotations'] == str(export) and header['keypoint_names'][5] == 'Left Shoulder'
    cmu = skeletons.load('cmu18')
    _, expected = cacheio.read(coco.build(make_config(source, tmp_path / 'cmu'), 'train')[0])
    for mine, theirs in zip(records, expected):
        columns = [cmu.parts.index(p) for p in ('nose', 'neck', 'left_shoulder', 'right_shoulder')]
        assert np.array_equal(mine['keypoints'], theirs['keypoints'][:, columns])

    # several categories with keypoints: the same names read as one, different ones need [dataset] category
    data['categories'].append(dict(data['categories'][0], id=2, name='Robot', keypoints=['antenna']))
    export.write_text(json.dumps(data))
    with pytest.raises(coco.UserError, match=r"different keypoints: 1 \('Human'\), 2 \('Robot'\); choose one "
                                             r"with \[dataset\] category"):
        coco.build(configlib.load(mods=mods), 'train', force=True)
    for choice in ('Human', '1'):
        config = configlib.load(mods=mods + [f'dataset/category={choice}'])
        _, report = coco.build(config, 'train', force=True)
        assert report['records'] == 10
    with pytest.raises(coco.UserError, match=r"'Robots'.*categories with keypoints: 1 \('Human'\)"):
        coco.build(configlib.load(mods=mods + ['dataset/category=Robots']), 'train', force=True)
    # a layout naming a keypoint the dataset lacks: one line listing the dataset's own names
    with pytest.raises(coco.UserError, match=r"part 'nose' derives from keypoint 'nose', which the dataset "
                                             r"lacks; its keypoints: Nose, Left Eye"):
        coco.build(configlib.load(mods=mods[:2] + ['model/layout=coco17'] + mods[3:]
                                  + ['dataset/category=Human']), 'train')


def test_cache_py_names_a_broken_layout_file_in_one_line(source, tmp_path):
    layout = tmp_path / 'broken.ini'
    layout.write_text('[parts]\nnose = nose\n[limbs]\nlimbs =\n    nose neck\n')
    result = subprocess.run([sys.executable, 'cache.py', '-m', f'dataset/root={source}', '-m',
                             f'dataset/cache={tmp_path}', '-m', f'model/layout={layout}'],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert result.stderr.strip().count('\n') == 0 and 'broken.ini, line 5' in result.stderr


def test_check_rle_catches_what_would_crash_a_loader_worker():
    from cache import annotations
    h, w = 20, 30
    mask = np.zeros((h, w), np.uint8, order='F')
    mask[3:9, 4:12] = 1
    compressed = maskutils.encode(mask)
    compressed = dict(compressed, counts=compressed['counts'].decode('ascii'))
    listed = {'counts': synthetic.rle_counts(mask), 'size': [h, w]}
    assert annotations.check_rle(compressed, h, w) is None and annotations.check_rle(listed, h, w) is None
    assert 'not the image' in annotations.check_rle(dict(listed, counts=listed['counts'][:-1]), h, w)
    assert 'not the image' in annotations.check_rle(dict(compressed, counts=compressed['counts'][:-2]), h, w)
    assert 'neither a list' in annotations.check_rle(dict(compressed, counts='~~ \x00'), h, w)
    swapped = annotations.check_rle(dict(listed, size=[w, h]), h, w)
    assert "RLE size [30, 20] is not the image's [20, 30]" in swapped
    assert 'not all integers' in annotations.check_rle(dict(listed, counts=[1.5, 2]), h, w)
