import json
import os
import subprocess
import sys

import numpy as np
import pytest
from pycocotools.coco import COCO

from cache import synthetic
from pose.skeleton import COCO_PARTS
from utils import config as configlib
from utils import video

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTS = dict(min_size=96, max_size=144, max_people=4, seed=3, unannotated=0.3, crowd=0.5, person_min=0.3,
            person_max=0.9)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic'))
    synthetic.write_split(root, 'train', 12, OPTS)
    return root


def test_is_valid_coco(dataset):
    coco = COCO(os.path.join(dataset, 'annotations', 'person_keypoints_train.json'))
    assert len(coco.getImgIds()) == 12
    cat = coco.loadCats(1)[0]
    assert cat['name'] == 'person' and cat['keypoints'] == list(COCO_PARTS)
    for image in coco.loadImgs(coco.getImgIds()):
        path = os.path.join(dataset, 'images', 'train', image['file_name'])
        assert os.path.isfile(path)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image['id'], iscrowd=None)):
            mask = coco.annToMask(ann)
            assert mask.shape == (image['height'], image['width'])
            assert ann['area'] > 0 and mask.sum() > 0
            x, y, w, h = ann['bbox']
            assert 0 <= x and x + w <= image['width'] and 0 <= y and y + h <= image['height']
            kp = np.array(ann['keypoints']).reshape(17, 3)
            assert ann['num_keypoints'] == int((kp[:, 2] > 0).sum())
            assert set(kp[:, 2].tolist()) <= {0, 1, 2}
            labelled = kp[kp[:, 2] > 0]
            assert (labelled[:, :2] >= 0).all()
            assert (labelled[:, :2] <= [image['width'] - 1, image['height'] - 1]).all()
            assert (kp[kp[:, 2] == 0, :2] == 0).all()


def test_has_crowds_unannotated_and_both_facings(dataset):
    data = json.load(open(os.path.join(dataset, 'annotations', 'person_keypoints_train.json')))
    anns = data['annotations']
    assert any(a['iscrowd'] == 1 and isinstance(a['segmentation'], dict) for a in anns)
    assert any(a['iscrowd'] == 0 and a['num_keypoints'] == 0 and a['segmentation'] for a in anns)
    annotated = [np.array(a['keypoints']).reshape(17, 3) for a in anns if a['num_keypoints'] > 0]
    assert len(annotated) >= 5
    ls, rs = COCO_PARTS.index('left_shoulder'), COCO_PARTS.index('right_shoulder')
    both = [k for k in annotated if k[ls, 2] > 0 and k[rs, 2] > 0]
    # facing the camera puts the left shoulder on the image's right; from behind, on its left
    assert any(k[ls, 0] > k[rs, 0] for k in both) and any(k[ls, 0] < k[rs, 0] for k in both)
    assert any(1 in k[:, 2] for k in annotated), 'no occluded (v=1) keypoint'


def test_deterministic_by_seed_and_splits_differ(dataset, tmp_path):
    synthetic.write_split(str(tmp_path), 'train', 3, OPTS)
    synthetic.write_split(str(tmp_path), 'val', 3, OPTS)
    again = json.load(open(tmp_path / 'annotations' / 'person_keypoints_train.json'))
    first = json.load(open(os.path.join(dataset, 'annotations', 'person_keypoints_train.json')))
    assert again['images'] == first['images'][:3]
    assert again['annotations'] == [a for a in first['annotations'] if a['image_id'] in
                                    {im['id'] for im in again['images']}]
    name = again['images'][0]['file_name']
    assert (tmp_path / 'images' / 'train' / name).read_bytes() == \
        open(os.path.join(dataset, 'images', 'train', name), 'rb').read()
    val = json.load(open(tmp_path / 'annotations' / 'person_keypoints_val.json'))
    assert not {im['id'] for im in val['images']} & {im['id'] for im in again['images']}
    assert not {im['file_name'] for im in val['images']} & {im['file_name'] for im in again['images']}
    other = dict(OPTS, seed=4)
    synthetic.write_split(str(tmp_path / 'other'), 'train', 1, other)
    assert (tmp_path / 'other' / 'images' / 'train' / name).read_bytes() != \
        (tmp_path / 'images' / 'train' / name).read_bytes()


def test_rle_counts_round_trip():
    from pycocotools import mask as maskutils
    mask = np.zeros((7, 5), np.uint8)
    mask[0, 0] = mask[2:5, 1:4] = mask[6, 4] = 1
    rle = maskutils.frPyObjects({'counts': synthetic.rle_counts(mask), 'size': [7, 5]}, 7, 5)
    assert np.array_equal(maskutils.decode(rle), mask)


def test_bad_options_are_named():
    config = configlib.load(mods=['synthetic/min_size=300', 'synthetic/max_size=200'])
    with pytest.raises(synthetic.cli.UserError, match='min_size = 300'):
        synthetic.options(config)


def test_command_writes_and_skips_up_to_date(tmp_path):
    args = [sys.executable, '-m', 'cache.synthetic', '--root', str(tmp_path), '--images', '2',
            '--workers', '1', '-m', 'synthetic/min_size=64', '-m', 'synthetic/max_size=80']
    first = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert len(os.listdir(tmp_path / 'images' / 'train')) == 2
    second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0 and 'up to date' in second.stdout


def test_help():
    result = subprocess.run([sys.executable, '-m', 'cache.synthetic', '--help'], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and '--images' in result.stdout


def _read_video(path):
    return [frame for _, frame in video.open_source(path)['frames']]


def test_video_people_walk_smoothly(tmp_path):
    path = tmp_path / 'walk.mp4'
    tracks = synthetic.write_video(str(path), frames=8, fps=10, size=(160, 120), people=2, seed=1)
    frames = _read_video(path)
    assert len(frames) == 8 and frames[0].shape == (120, 160, 3)
    assert all(np.abs(a.astype(int) - b).mean() > 0.2 for a, b in zip(frames, frames[1:]))
    assert tracks.shape == (8, 2, 17, 3) and set(np.unique(tracks[..., 2])) <= {0, 1, 2}
    hips = tracks[:, :, COCO_PARTS.index('left_hip')]
    assert (hips[..., 2] > 0).all(), 'the walkers stay in the frame'
    steps = np.linalg.norm(np.diff(hips[..., :2], axis=0), axis=-1)
    assert (steps > 0.2).all() and (steps < 8).all(), 'each person moves a little every frame'
    ls, le = COCO_PARTS.index('left_shoulder'), COCO_PARTS.index('left_elbow')
    arm = tracks[:, :, le, :2] - tracks[:, :, ls, :2]
    assert np.ptp(np.arctan2(arm[..., 0], arm[..., 1]), axis=0).min() > 0.2, 'arms swing'
    again = synthetic.write_video(str(tmp_path / 'again.avi'), frames=8, fps=10, size=(160, 120), people=2,
                                  seed=1)
    assert np.array_equal(again, tracks)
    assert len(_read_video(tmp_path / 'again.avi')) == 8


def test_video_command_and_its_errors(tmp_path, capsys):
    synthetic.main(['--video', str(tmp_path / 'v.mp4'), '--frames', '3', '--size', '64', '48', '--people',
                    '1'])
    assert len(_read_video(tmp_path / 'v.mp4')) == 3
    for args, message in ((['--video', str(tmp_path / 'v.mkv')], 'must end in .mp4 or .avi'),
                          (['--video', str(tmp_path / 'w.mp4'), '--frames', '0'], 'frames = 0')):
        with pytest.raises(SystemExit):
            synthetic.main(args)
        assert message in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ['v.mp4']
