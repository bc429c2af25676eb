"""pose/predict.py: input geometry, flip un-mirroring, map alignment across scales, flip and upsampling,
and people recovered in original image pixels from maps encoded from known people."""

import numpy as np
import pytest

from pose import encode, predict
from pose import skeleton as skeletons

PLAIN = {'channel_order': 'bgr', 'divisor': 255.0, 'mean': [0.0] * 3, 'std': [1.0] * 3}


def figure(skeleton, x, y, height, turn=0.0):
    """A standing person (K,3) in `skeleton`'s layout, feet at (x, y + height/2), leaning by `turn`: each
    dataset keypoint the layout derives from at a fixed place (an animal's where a person's would be)."""
    rows = {'nose': (0, -0.45), 'left_eye': (0.04, -0.47), 'right_eye': (-0.04, -0.47),
            'left_ear': (0.08, -0.45), 'right_ear': (-0.08, -0.45), 'left_shoulder': (0.15, -0.3),
            'right_shoulder': (-0.15, -0.3), 'left_elbow': (0.22, -0.1), 'right_elbow': (-0.2, -0.12),
            'left_wrist': (0.26, 0.08), 'right_wrist': (-0.3, 0.02), 'left_hip': (0.1, 0.05),
            'right_hip': (-0.1, 0.05), 'left_knee': (0.12, 0.27), 'right_knee': (-0.1, 0.28),
            'left_ankle': (0.13, 0.5), 'right_ankle': (-0.12, 0.5), 'head': (0.01, -0.52), 'neck': (0, -0.33),
            'left_big_toe': (0.2, 0.53), 'left_small_toe': (0.24, 0.52), 'left_heel': (0.11, 0.54),
            'right_big_toe': (-0.19, 0.53), 'right_small_toe': (-0.23, 0.52), 'right_heel': (-0.11, 0.54),
            'root_of_tail': (0, 0.0), 'left_front_paw': (0.26, 0.08), 'right_front_paw': (-0.3, 0.02),
            'left_back_paw': (0.13, 0.5), 'right_back_paw': (-0.12, 0.5)}
    names = tuple(dict.fromkeys(n for source in skeleton.sources for n in source))
    points = np.zeros((1, len(names), 3), np.float32)
    for j, name in enumerate(names):
        dx, dy = rows[name]
        points[0, j] = (x + (dx + turn * dy) * height, y + dy * height, 2)
    return skeleton.from_dataset(points, names)[0]


def scene_run(skeleton, people, shape, stride=8, sigma=4.0, paf_width=6.0):
    """A fake network that 'sees' `people` (P,K,3) of a grey_image of `shape`: from where the image content
    lies in the zero-padded batch (and which side its bright edge is on: a mirrored input has it on the
    right) it places them in input pixels by the cv2.resize mapping, and returns pose.encode's maps."""
    people = np.asarray(people, np.float32)

    def run(batch):
        heat, paf = [], []
        for x in batch:
            rows = np.flatnonzero(np.abs(x).sum(axis=(0, 2)))
            cols = np.flatnonzero(np.abs(x).sum(axis=(0, 1)))
            h, w = rows[-1] + 1, cols[-1] + 1 - cols[0]
            kp = people.copy()
            kp[..., 0] = (kp[..., 0] + 0.5) * w / shape[1] - 0.5
            kp[..., 1] = (kp[..., 1] + 0.5) * h / shape[0] - 0.5
            if x[0, :h, cols[-1]].mean() > x[0, :h, cols[0]].mean():  # the bright left edge is on the right
                kp = skeleton.flip_keypoints(kp, x.shape[2])
            maps = encode.encode(kp, skeleton, x.shape[1:], stride, sigma, paf_width)
            heat.append(maps[0])
            paf.append(maps[1])
        return np.stack(heat), np.stack(paf)
    return run


def grey_image(shape):
    """A grey image with a bright left edge, so that scene_run tells a mirrored input apart."""
    image = np.full(tuple(shape) + (3,), 150, np.uint8)
    image[:, :6] = 250
    return image


def test_input_size():
    assert predict.input_size((480, 640), 368, 8) == ((368, 491), (368, 496))
    assert predict.input_size((480, 640), 368, 8, scale=0.5) == ((184, 245), (184, 248))
    assert predict.input_size((100, 30), 64, 16) == ((64, 19), (64, 32))


@pytest.mark.parametrize('shape,size', [((300, 451), (184, 277)), ((901, 1353), (184, 276)),
                                        ((1080, 1920), (368, 654)), ((100, 150), (184, 276))])
def test_resize_maps_pixel_centres_by_the_overall_scale(shape, size):
    centre, sigma = (0.61 * shape[1], 0.37 * shape[0]), shape[0] / 20
    y, x = np.mgrid[:shape[0], :shape[1]]
    image = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma ** 2)) * 255
    resized = predict.resize(np.repeat(image[..., None], 3, 2).round().astype(np.uint8), size)[..., 0]
    assert resized.shape == size
    weights = resized / resized.sum()
    rows, cols = np.mgrid[:size[0], :size[1]]
    found = ((weights * cols).sum() + 0.5) * shape[1] / size[1] - 0.5, \
        ((weights * rows).sum() + 0.5) * shape[0] / size[0] - 0.5
    assert np.hypot(found[0] - centre[0], found[1] - centre[1]) < 0.02 * shape[0] / size[0]


@pytest.mark.parametrize('name', skeletons.available())
def test_unflip_twice_is_identity(name):
    skeleton = skeletons.load(name)
    rng = np.random.default_rng(0)
    heat = rng.random((2, len(skeleton.parts) + 1, 5, 7), dtype=np.float32)
    paf = rng.random((2, 2 * len(skeleton.limbs), 5, 7), dtype=np.float32) - 0.5
    once = predict.unflip(heat, paf, skeleton)
    assert not np.allclose(once[1], paf)
    twice = predict.unflip(*once, skeleton)
    assert np.array_equal(twice[0], heat) and np.array_equal(twice[1], paf)


@pytest.mark.parametrize('name', skeletons.available())
def test_unflip_of_mirrored_people_gives_their_maps(name):
    skeleton = skeletons.load(name)
    people = np.stack([figure(skeleton, 40, 60, 70), figure(skeleton, 90, 50, 60, turn=0.3)])
    size, stride = (128, 160), 8
    maps = encode.encode(people, skeleton, size, stride, 5, 6)
    mirrored = encode.encode(skeleton.flip_keypoints(people, size[1]), skeleton, size, stride, 5, 6)
    heat, paf = predict.unflip(*mirrored, skeleton)
    assert np.allclose(heat, maps[0], atol=1e-5)
    # cells exactly on a band's edge may fall either way after mirroring; everything else is exact
    assert np.mean(np.abs(paf - maps[1]) > 1e-4) < 0.002
    assert np.abs(paf).sum() > 10


def blob_run(batch):
    """A fake network whose part-0 heatmap is the input's brightness averaged over each 8x8 cell."""
    n, _, height, width = batch.shape
    cells = batch[:, 0].reshape(n, height // 8, 8, width // 8, 8).mean(axis=(2, 4))
    heat = np.zeros((n, 18, height // 8, width // 8), np.float32)
    heat[:, 0] = cells
    return heat, np.zeros((n, 36, height // 8, width // 8), np.float32)


@pytest.mark.parametrize('scales,flip', [((1,), False), ((1,), True), ((1, 0.6, 1.4), True),
                                         ((0.8, 1.25), False)])
def test_maps_line_up_with_the_original_image(scales, flip):
    skeleton = skeletons.load('coco17')
    shape, centre, sigma = (300, 451), (301.3, 102.7), 9.0
    y, x = np.mgrid[:shape[0], :shape[1]]
    image = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma ** 2)) * 255
    image = np.repeat(image[..., None], 3, axis=2).round().astype(np.uint8)
    heat, paf, geometry = predict.predict_maps(blob_run, image, skeleton, 8, PLAIN, 184, scales, flip)
    step = geometry['stride']
    assert heat.shape[1:] == (23, 35) and paf.shape[0] == 36 and step == 8
    weights = heat[0] / heat[0].sum()
    rows, cols = np.mgrid[:heat.shape[1], :heat.shape[2]]
    cell = np.array([(weights * cols).sum(), (weights * rows).sum()])
    person = {'keypoints': np.array([[*encode.cell_to_pixel(cell, step), 1.0]], np.float32), 'score': 1.0}
    found = predict.to_original([person], geometry)[0]['keypoints'][0]
    # resampling other scales' maps shifts a blob's centroid by a fraction of a pixel; a half-cell error
    # in the geometry would shift it by several pixels
    assert np.hypot(*(found[:2] - centre)) < (0.05 if scales == (1,) else 0.6)


def test_to_original_keeps_missing_parts_at_zero():
    people = [{'keypoints': np.array([[10, 20, 0.5], [3, 4, 0]], np.float32), 'score': 0.7}]
    out = predict.to_original(people, {'stride': 8, 'ratio': (2.0, 0.5)})
    assert out[0]['keypoints'].tolist() == [[4.75, 40.5, 0.5], [0, 0, 0]] and out[0]['score'] == 0.7
    assert people[0]['keypoints'][0, 0] == 10


def _match(found, truth):
    """Mean keypoint error of each true person's nearest found person."""
    errors = []
    for person in truth:
        seen = person[:, 2] > 0
        gaps = [np.linalg.norm(f['keypoints'][seen, :2] - person[seen, :2], axis=1).mean() for f in found]
        errors.append(min(gaps))
    return np.array(errors)


@pytest.mark.parametrize('name', skeletons.available())
@pytest.mark.parametrize('scales,flip', [((1,), False), ((1, 0.75), True)])
def test_predict_recovers_people_in_original_pixels(name, scales, flip):
    skeleton = skeletons.load(name)
    shape = (240, 330)
    truth = np.stack([figure(skeleton, 80, 120, 150), figure(skeleton, 230, 110, 120, turn=0.2)])
    run = scene_run(skeleton, truth, shape)
    people = predict.predict(run, grey_image(shape), skeleton, 8, PLAIN, 256, scales, flip)
    assert len(people) == 2
    for person in people:
        assert person['keypoints'].shape == (len(skeleton.parts), 3) and (person['keypoints'][:, 2] > 0).all()
    assert (_match(people, truth) < (0.1 if len(scales) == 1 else 1.0)).all(), _match(people, truth)


def test_flip_averaging_is_consistent_under_mirroring():
    skeleton = skeletons.load('cmu18')
    shape = (200, 280)
    truth = np.stack([figure(skeleton, 70, 100, 130, turn=0.25), figure(skeleton, 190, 105, 110)])
    mirrored_truth = skeleton.flip_keypoints(truth, shape[1])
    people = predict.predict(scene_run(skeleton, truth, shape), grey_image(shape), skeleton, 8, PLAIN, 200,
                             flip=True)
    mirrored = predict.predict(scene_run(skeleton, mirrored_truth, shape), grey_image(shape), skeleton, 8,
                               PLAIN, 200, flip=True)
    back = [{'keypoints': skeleton.flip_keypoints(p['keypoints'][None], shape[1])[0]} for p in mirrored]
    assert len(people) == len(back) == 2
    assert (_match(back, np.stack([p['keypoints'] for p in people])) < 0.05).all()
