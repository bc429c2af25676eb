import cv2
import numpy as np
import pytest

from pose import skeleton as skeletons
from transform import augment, hue, normalize
from utils import config as configlib
from utils.config import ConfigError

SKELETON = skeletons.load('cmu18')
PART = {name: k for k, name in enumerate(SKELETON.parts)}
SIZE = (64, 64)
# every geometric operator forced on, scaling up so that bilinear sampling keeps a single pixel's peak
FORCED = ['augment/flip=1', 'augment/rotate=40', 'augment/scale_min=1.2', 'augment/scale_max=1.6',
          'augment/shift=0.15', 'eval/height=96']


def record(points, size=(64, 64), box=(20, 16, 14, 30)):
    keypoints = np.zeros((1, len(SKELETON.parts), 3), np.float32)
    for name, (x, y) in points.items():
        keypoints[0, PART[name]] = (x, y, 2)
    return {'size': size, 'keypoints': keypoints, 'boxes': np.array([box], np.float32)}


def bright_pixel_image(size, x, y):
    image = np.zeros(size + (3,), np.uint8)
    image[y, x] = 255
    return image


@pytest.mark.parametrize('names', [[n] for n in augment.available('geometric')] +
                         [['crop', 'scale', 'rotate', 'shift', 'flip']])
@pytest.mark.parametrize('seed', range(4))
def test_bright_pixel_stays_at_keypoint(names, seed):
    config = configlib.load(mods=FORCED + [f'augment/geometric={" ".join(names)}'])
    ops = augment.operators(config, 'geometric')
    x, y = 27, 35
    rec = record({'nose': (x, y), 'left_wrist': (x, y)})
    matrix = augment.compose(rec, SIZE, np.random.default_rng(seed), ops)
    warped = augment.warp_image(bright_pixel_image(rec['size'], x, y), matrix, SIZE)[..., 0].astype(float)
    warped -= augment.warp_image(np.zeros(rec['size'] + (3,), np.uint8), matrix, SIZE)[..., 0]  # the border
    keypoints = augment.transform_keypoints(rec['keypoints'], matrix, SIZE, SKELETON.flip)
    nose = keypoints[0, PART['nose']]
    assert nose[2] == 2
    assert warped.sum() > 0
    peak = np.unravel_index(np.argmax(warped), warped.shape)
    assert abs(peak[1] - nose[0]) <= 1 and abs(peak[0] - nose[1]) <= 1
    rows, cols = np.mgrid[0:SIZE[0], 0:SIZE[1]]
    centroid = np.array([(cols * warped).sum(), (rows * warped).sum()]) / warped.sum()
    assert np.abs(centroid - nose[:2]).max() < 0.3, (centroid, nose)
    # the left wrist sits on the same pixel; a mirrored matrix turns it into the right wrist
    wrist = 'right_wrist' if augment.mirrored(matrix) else 'left_wrist'
    assert np.allclose(keypoints[0, PART[wrist], :2], nose[:2], atol=1e-4)
    assert keypoints[0, PART[wrist], 2] == 2


def test_flip_swaps_left_and_right():
    config = configlib.load(mods=['augment/geometric=flip', 'augment/flip=1'])
    rec = record({'left_wrist': (10, 30), 'right_ankle': (50, 60), 'nose': (32, 5)})
    matrix = augment.compose(rec, SIZE, np.random.default_rng(0), augment.operators(config, 'geometric'))
    out = augment.transform_keypoints(rec['keypoints'], matrix, SIZE, SKELETON.flip)
    assert out[0, PART['right_wrist']].tolist() == [53, 30, 2]
    assert out[0, PART['left_ankle']].tolist() == [13, 60, 2]
    assert out[0, PART['nose']].tolist() == [31, 5, 2]
    assert out[0, PART['left_wrist'], 2] == 0 and out[0, PART['right_ankle'], 2] == 0
    never = configlib.load(mods=['augment/geometric=flip', 'augment/flip=0'])
    matrix = augment.compose(rec, SIZE, np.random.default_rng(0), augment.operators(never, 'geometric'))
    assert np.allclose(matrix, np.eye(3))


def test_points_leaving_the_crop_become_invisible():
    rec = record({'nose': (2, 2), 'neck': (32, 32)})
    matrix = np.array([[2.0, 0, 0], [0, 2, 0], [0, 0, 1]])
    out = augment.transform_keypoints(rec['keypoints'], matrix, (32, 32), SKELETON.flip)
    assert out[0, PART['nose']].tolist() == [4, 4, 2]
    assert out[0, PART['neck'], 2] == 0


def test_fit_and_crop_scale():
    matrix = augment.fit((100, 200), (64, 64))
    corners = augment.apply_matrix(matrix, [[-0.5, -0.5], [199.5, 99.5]])
    assert np.allclose(corners, [[-0.5, 15.5], [63.5, 47.5]])


def test_crop_keeps_people_the_size_evaluation_sees():
    config = configlib.load(mods=['augment/geometric=crop', 'eval/height=50'])
    ops = augment.operators(config, 'geometric')
    rec = record({}, size=(100, 200), box=(40, 20, 10, 40))
    matrix = augment.compose(rec, SIZE, np.random.default_rng(0), ops)
    top, bottom = augment.apply_matrix(matrix, [[44, 19.5], [45, 59.5]])  # box edges
    # the image is scaled to 50 px high (the person's 40 px become 20), the person centred
    assert np.isclose(bottom[1] - top[1], 20) and np.allclose((top + bottom) / 2, [31.5, 31.5])
    # nobody annotated: the same scale, about a point of the image
    rec['boxes'] = np.zeros((0, 4), np.float32)
    for seed in range(5):
        matrix = augment.compose(rec, SIZE, np.random.default_rng(seed), ops)
        assert np.isclose(np.sqrt(np.linalg.det(matrix[:2, :2])), 0.5)
        centre = np.linalg.solve(matrix[:2, :2], np.array([31.5, 31.5]) - matrix[:2, 2])
        assert (centre >= 0).all() and (centre <= [199, 99]).all()
    bad = configlib.load(mods=['augment/geometric=crop', 'eval/height=-1'])
    with pytest.raises(ConfigError, match='height = -1'):
        augment.operators(bad, 'geometric')


def test_mask_follows_the_image():
    config = configlib.load(mods=FORCED)
    rec = record({'nose': (30, 30)})
    image = np.zeros((64, 64, 3), np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    image[20:40, 10:30] = 255
    mask[20:40, 10:30] = 1
    ops = augment.operators(config, 'geometric')
    for seed in range(3):
        matrix = augment.compose(rec, SIZE, np.random.default_rng(seed), ops)
        bright = augment.warp_image(image, matrix, SIZE)[..., 0] > 127
        ignored = augment.warp_mask(mask, matrix, SIZE) > 0
        assert (bright & ignored).sum() / (bright | ignored).sum() > 0.9


def test_unknown_operator_lists_available():
    with pytest.raises(ConfigError, match=r"unknown operator 'zoom'; available: crop, flip, rotate"):
        augment.operators(configlib.load(mods=['augment/geometric=crop zoom']), 'geometric')
    with pytest.raises(ConfigError, match='available: blur, brightness'):
        augment.operators(configlib.load(mods=['augment/photometric=crop']), 'photometric')
    with pytest.raises(ConfigError, match='scale_min'):
        augment.operators(configlib.load(mods=['augment/scale_min=2']), 'geometric')


@pytest.mark.parametrize('name', augment.available('photometric'))
def test_photometric_operator(name):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    config = configlib.load(mods=[f'augment/photometric={name}'])
    (_, module, options), = augment.operators(config, 'photometric')
    out = module.apply(image.copy(), np.random.default_rng(1), options)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, module.apply(image.copy(), np.random.default_rng(1), options))
    assert any(not np.array_equal(module.apply(image.copy(), np.random.default_rng(s), options), image)
               for s in range(5))
    zero = configlib.load(mods=[f'augment/photometric={name}', f'augment/{name}=0'])
    (_, module, options), = augment.operators(zero, 'photometric')
    assert np.abs(module.apply(image.copy(), rng, options).astype(int) - image).max() <= 1


def test_hue_rotation_keeps_grey_and_turns_full_circle():
    grey = np.full((2, 2, 3), 100, np.uint8)
    colour = np.array([[[200, 50, 20]]], np.uint8)
    assert np.array_equal(cv2.transform(grey, hue.rotation(37)), grey)
    assert np.abs(cv2.transform(colour, hue.rotation(360)).astype(int) - colour).max() <= 1
    cycled = colour[..., [2, 0, 1]]  # a third of a turn permutes the channels
    assert np.abs(cv2.transform(colour, hue.rotation(120)).astype(int) - cycled).max() <= 1


def test_normalize_cmu_and_imagenet():
    image = np.array([[[0, 128, 255]]], np.uint8)  # B, G, R
    cmu = normalize.params(configlib.load(mods=['input/channel_order=bgr', 'input/divisor=256',
                                                'input/mean=0.5', 'input/std=1']))
    assert np.allclose(normalize.normalize(image, cmu)[:, 0, 0], [-0.5, 0, 255 / 256 - 0.5])
    imagenet = normalize.params(configlib.load(mods=['input/channel_order=rgb', 'input/divisor=255',
                                                     'input/mean=0.485 0.456 0.406',
                                                     'input/std=0.229 0.224 0.225']))
    out = normalize.normalize(image, imagenet)
    assert out.shape == (3, 1, 1) and out.dtype == np.float32
    assert np.allclose(out[:, 0, 0], [(1 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, -0.406 / 0.225])
    assert np.array_equal(normalize.denormalize(out, imagenet), image)
    with pytest.raises(ConfigError, match='channel_order'):
        normalize.params(configlib.load(mods=['input/channel_order=rbg']))
    with pytest.raises(ConfigError, match='std'):
        normalize.params(configlib.load(mods=['input/std=1 0 1']))


def random_matrix(rng):
    """A random similarity (sometimes mirrored) that may put the source partly or wholly outside."""
    angle, scale = rng.uniform(-np.pi, np.pi), np.exp(rng.uniform(-1.5, 1.5))
    mirror = rng.choice([-1, 1])
    dx, dy = rng.uniform(-100, 100, 2)
    return np.array([[mirror * scale * np.cos(angle), -scale * np.sin(angle), dx],
                     [mirror * scale * np.sin(angle), scale * np.cos(angle), dy], [0, 0, 1]])


def test_sampled_region_holds_every_pixel_the_warp_reads():
    rng = np.random.default_rng(0)
    for _ in range(60):
        source = rng.integers(0, 256, tuple(rng.integers(1, 90, 2)) + (3,), dtype=np.uint8)
        size = tuple(int(s) for s in rng.integers(1, 70, 2))
        matrix = random_matrix(rng)
        x0, y0, x1, y1 = augment.sampled_region(matrix, size, source.shape[:2])
        outside = rng.integers(0, 256, source.shape, dtype=np.uint8)  # anything but the source
        outside[y0:y1, x0:x1] = source[y0:y1, x0:x1]
        assert np.array_equal(augment.warp_image(outside, matrix, size),
                              augment.warp_image(source, matrix, size))
        assert np.array_equal(augment.warp_mask(outside[..., 0], matrix, size),
                              augment.warp_mask(source[..., 0], matrix, size))


def one_by_one(image, rng, plan):
    """What augment.photometric does, one operator after the other."""
    for _, module, options in plan['photometric']:
        if rng.random() < plan['p']:
            image = module.apply(image, rng, options)
    return image


@pytest.mark.parametrize('order', ['brightness contrast saturation hue gamma blur',
                                   'gamma contrast brightness contrast', 'contrast blur brightness gamma'])
def test_lookup_tables_compose_into_the_same_image(order):
    config = configlib.load(mods=[f'augment/photometric={order}', 'augment/photometric_p=0.7',
                                  'augment/brightness=0.4', 'augment/contrast=0.6'])
    plan = augment.plan(config)
    noise = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(noise, (0, 0), 3)
    for seed in range(12):
        expected = one_by_one(image, np.random.default_rng(seed), plan)
        assert np.array_equal(augment.photometric(image, np.random.default_rng(seed), plan), expected)


def test_mean_grey_through_a_table_is_the_mean_of_the_looked_up_image():
    image = np.random.default_rng(1).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    table = np.clip(np.arange(256) * 1.7 - 40, 0, 255).astype(np.uint8)
    assert np.isclose(augment.mean_grey(image, table), augment.mean_grey(cv2.LUT(image, table)), rtol=1e-12)
