import os

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as maskutils

from cache import dataset, synthetic
from cache import io as cacheio
from pose import skeleton as skeletons
from transform import augment
from utils import config as configlib

SKELETON = skeletons.load('cmu18')
PART = {name: k for k, name in enumerate(SKELETON.parts)}
PLAIN = ['augment/photometric=', 'input/height=64', 'input/width=64', 'train/batch_size=2', 'train/workers=0']


def write_cache(folder, records, split='train'):
    config = configlib.load(mods=[f'dataset/cache={folder}'])
    cacheio.write(cacheio.path(config, split), {'layout': 'cmu18', 'parts': SKELETON.parts, 'split': split},
                  records)
    return config


def config_for(folder, *mods):
    return configlib.load(mods=[f'dataset/cache={folder}'] + PLAIN + list(mods))


def person_record(tmp_path, ignore_block=None):
    """A 64x64 image with one person whose left wrist and left hip sit in the left half."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 2)
    path = str(tmp_path / 'person.png')
    cv2.imwrite(path, image)
    keypoints = np.zeros((1, len(SKELETON.parts), 3), np.float32)
    for name, xy in {'neck': (30, 12), 'left_shoulder': (22, 14), 'left_elbow': (14, 24),
                     'left_wrist': (10, 36), 'left_hip': (25, 40), 'right_hip': (37, 40),
                     'nose': (31, 6)}.items():
        keypoints[0, PART[name]] = (*xy, 2)
    ignore = None
    if ignore_block is not None:
        mask = np.zeros((64, 64), np.uint8, order='F')
        mask[ignore_block] = 1
        ignore = maskutils.encode(mask)
    return {'image': path, 'image_id': 1, 'size': (64, 64), 'keypoints': keypoints,
            'boxes': np.array([[8, 4, 34, 40]], np.float32), 'ignore': ignore}


def test_batches_have_the_contract_shapes(tmp_path):
    root = str(tmp_path / 'data')
    synthetic.write_split(root, 'train', 5, dict(min_size=64, max_size=96, max_people=3, seed=0,
                                                 unannotated=0.2, crowd=0.3, person_min=0.4, person_max=0.9))
    config = config_for(tmp_path / 'cache', f'dataset/root={root}')
    from cache import coco
    coco.build(config, 'train')
    batches = list(dataset.loader(config, 'train', stride=8, seed=3))
    assert len(batches) == 2  # 5 images, batches of 2, the incomplete one dropped
    batch = batches[0]
    assert batch['image'].shape == (2, 64, 64, 3) and batch['image'].dtype == torch.uint8
    assert batch['heatmaps'].shape == (2, 19, 8, 8) and batch['pafs'].shape == (2, 38, 8, 8)
    assert batch['mask'].shape == (2, 1, 8, 8) and batch['index'].shape == (2,)
    again = next(iter(dataset.loader(config, 'train', stride=8, seed=3)))
    assert all(torch.equal(batch[k], again[k]) for k in batch)
    workers = config_for(tmp_path / 'cache', f'dataset/root={root}', 'train/workers=1')
    threaded = next(iter(dataset.loader(workers, 'train', stride=8, seed=3)))
    assert all(torch.equal(batch[k], threaded[k]) for k in batch), 'a worker process changed the samples'
    val = list(dataset.loader(config, 'train', stride=8, train=False))
    assert len(val) == 3 and val[-1]['image'].shape[0] == 1


def test_ignore_regions_zero_the_loss_mask(tmp_path):
    write_cache(tmp_path, [person_record(tmp_path, (slice(16, 48), slice(8, 32)))])
    item = dataset.PoseDataset(config_for(tmp_path), 'train', train=False)[0]
    expected = np.ones((8, 8), np.float32)
    expected[2:6, 1:4] = 0
    assert np.array_equal(item['mask'][0].numpy(), expected)
    flip = config_for(tmp_path, 'augment/geometric=flip', 'augment/flip=1')
    flipped = dataset.PoseDataset(flip, 'train')[0]
    assert np.array_equal(flipped['mask'][0].numpy(), expected[:, ::-1])
    half = dataset.PoseDataset(config_for(tmp_path), 'train', train=False)
    half.records[0]['ignore'] = maskutils.encode(np.asfortranarray(np.pad(np.ones((64, 4), np.uint8),
                                                                          ((0, 0), (0, 60)))))
    assert np.allclose(half[0]['mask'][0, :, 0].numpy(), 0.5)


def test_flip_swaps_left_and_right_channels(tmp_path):
    write_cache(tmp_path, [person_record(tmp_path)])
    plain = dataset.PoseDataset(config_for(tmp_path, 'augment/geometric=flip', 'augment/flip=0'), 'train')[0]
    flip = dataset.PoseDataset(config_for(tmp_path, 'augment/geometric=flip', 'augment/flip=1'), 'train')[0]
    assert torch.equal(flip['image'], plain['image'].flip(1))  # (H, W, 3): mirrored along W
    heat, heat_plain = flip['heatmaps'].numpy(), plain['heatmaps'].numpy()
    assert heat[PART['left_wrist']].max() == 0 and heat_plain[PART['right_wrist']].max() == 0
    for k, f in enumerate(SKELETON.flip):
        assert np.allclose(heat[k], heat_plain[f][:, ::-1], atol=1e-6)
    assert np.allclose(heat[-1], heat_plain[-1][:, ::-1], atol=1e-6)
    paf, paf_plain = flip['pafs'].numpy(), plain['pafs'].numpy()
    for l, (m, reverse) in enumerate(SKELETON.limb_flip):
        sign = -1 if reverse else 1
        assert np.allclose(paf[2 * l], -sign * paf_plain[2 * m][:, ::-1], atol=1e-6)
        assert np.allclose(paf[2 * l + 1], sign * paf_plain[2 * m + 1][:, ::-1], atol=1e-6)
    assert np.abs(paf).max() > 0.5


def test_reduced_jpeg_decode_keeps_points_in_place(tmp_path):
    size = 256
    rows, cols = np.mgrid[0:size, 0:size]
    x0, y0 = 101.0, 150.0
    # a blob on grey, the colour of the warp's border
    blob = 128 + 127 * np.exp(-((cols - x0) ** 2 + (rows - y0) ** 2) / (2 * 10.0 ** 2))
    path = str(tmp_path / 'blob.jpg')
    cv2.imwrite(path, np.repeat(blob[..., None], 3, axis=2).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 98])
    out = (96, 96)
    for scale in (0.15, 0.3, 0.45):
        matrix = np.array([[scale, 0, 3.2], [0, scale, -1.7], [0, 0, 1]])
        expected = augment.apply_matrix(matrix, [[x0, y0]])[0]
        results = []
        for fast in (False, True):
            image, adjusted = dataset.read_image(path, matrix, fast)
            assert (image.shape[0] < size) == fast and image.shape[2] == 4
            warped = augment.warp_image(image, adjusted, out)[..., 0].astype(float) - 128
            r, c = np.mgrid[0:out[0], 0:out[1]]
            centroid = np.array([(c * warped).sum(), (r * warped).sum()]) / warped.sum()
            assert np.abs(centroid - expected).max() < 0.2, (scale, fast, centroid, expected)
            results.append(warped)
        assert np.abs(results[0] - results[1]).mean() < 2


def test_jpeg_decode_is_opencvs_and_falls_back_to_it(tmp_path):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (97, 131, 3), np.uint8), (0, 0), 3)  # smooth, like photos
    data = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
    for r, flag in ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                    (8, cv2.IMREAD_REDUCED_COLOR_8)):
        expected = cv2.imdecode(data, flag)
        assert np.array_equal(dataset.decode_jpeg(data.tobytes(), r), expected)  # exact: the same libjpeg
    grey = cv2.imencode('.jpg', image[..., 0])[1].tobytes()
    assert dataset.decode_jpeg(grey).shape == (97, 131, 3)
    png = cv2.imencode('.png', image)[1].tobytes()
    assert dataset.decode_jpeg(png) is None and dataset.decode_jpeg(b'\xff\xd8 cut short') is None
    path = str(tmp_path / 'named.jpg')  # a PNG with a JPEG's name: OpenCV reads it, whole
    with open(path, 'wb') as f:
        f.write(png)
    matrix = np.diag([0.2, 0.2, 1.0])
    decoded, adjusted = dataset.read_image(path, matrix, fast=True)
    assert np.array_equal(decoded, image) and np.array_equal(adjusted, matrix)
    bgrx = dataset.decode_jpeg(data.tobytes(), order='BGRX')  # the fast path's layout: warped, it is BGR
    matrix = np.array([[0.7, 0.3, -5], [-0.3, 0.7, 20], [0, 0, 1]])
    assert np.array_equal(augment.warp_image(bgrx, matrix, (40, 50)),
                          augment.warp_image(np.ascontiguousarray(bgrx[..., :3]), matrix, (40, 50)))


def test_dataset_images_are_read_as_stored_whatever_their_exif_orientation(tmp_path):
    from PIL import Image

    from cache import coco
    image = np.zeros((40, 100, 3), np.uint8)
    image[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = str(tmp_path / 'turned.jpg')
    Image.fromarray(image).save(path, exif=exif.tobytes(), quality=95)
    assert cv2.imread(path).shape == (100, 40, 3)  # as a viewer shows it; annotations describe the stored
    assert coco.check_image(path, (40, 100)) is None and coco.check_image(path, (100, 40)) == 'unreadable'
    for fast in (False, True):
        decoded, _ = dataset.read_image(path, np.eye(3), fast)
        decoded = decoded[..., :3]  # BGR of BGRX
        assert decoded.shape[:2] == (40, 100) and decoded[:, :20].mean() > 200 and decoded[:, 30:].mean() < 50


def test_multi_scale_batches_and_sharding(tmp_path):
    sampler = dataset.MultiScaleBatchSampler(11, 2, [(64, 64), (96, 96), (128, 128)], seed=5)
    sizes = set()
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len({(h, w) for _, h, w, _ in batch}) == 1 and all(e == epoch for *_, e in batch)
            sizes.add(batch[0][1:3])
    assert sizes == {(64, 64), (96, 96), (128, 128)}
    shards = [dataset.MultiScaleBatchSampler(11, 2, [(64, 64)], seed=5, rank=r, world_size=2, drop_last=False)
              for r in range(2)]
    seen = [[i for batch in s for i, *_ in batch] for s in shards]
    assert len(seen[0]) == len(seen[1]) == 6 and set(seen[0]) | set(seen[1]) == set(range(11))
    first = [i for batch in shards[0] for i, *_ in batch]
    shards[0].set_epoch(1)
    assert [i for batch in shards[0] for i, *_ in batch] != first
    with pytest.raises(configlib.ConfigError, match='multiples of the network stride 8'):
        dataset.input_sizes(configlib.load(mods=['input/sizes=64 100']), 8)


def test_missing_cache_and_image_are_clear_errors(tmp_path):
    with pytest.raises(cacheio.CacheError, match='cache file not found.*cache.py'):
        dataset.PoseDataset(config_for(tmp_path), 'train')
    record = person_record(tmp_path)
    os.remove(record['image'])
    write_cache(tmp_path, [record])
    with pytest.raises(dataset.UserError, match='cannot read image .*person.png'):
        dataset.PoseDataset(config_for(tmp_path), 'train')[0]


def test_warp_ignore_is_pycocotools_decode_then_warp():
    from test_transform import random_matrix
    rng = np.random.default_rng(0)
    for trial in range(80):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        mask = np.zeros((h, w), np.uint8, order='F')
        for _ in range(rng.integers(0, 5)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            mask[y:y + rng.integers(1, 40), x:x + rng.integers(1, 40)] = 1
        if trial % 7 == 0:
            mask[:] = rng.random((h, w)) < 0.5  # many short runs
        rle = maskutils.encode(mask)
        counts = [rle['counts'], rle['counts'].decode('ascii'), synthetic.rle_counts(mask)][trial % 3]
        size = tuple(int(s) for s in rng.integers(1, 60, 2))
        matrix = random_matrix(rng)
        expected = augment.warp_mask(np.ascontiguousarray(maskutils.decode(rle)), matrix, size)
        record = {'ignore': {'size': [h, w], 'counts': counts}}
        assert np.array_equal(dataset.warp_ignore(record, matrix, size), expected)
    assert dataset.warp_ignore({'ignore': None}, np.eye(3), (8, 8)) is None


@pytest.mark.parametrize('order, mean, std', [('rgb', '0.485 0.456 0.406', '0.229 0.224 0.225'),
                                              ('bgr', '0.5', '1')])
def test_batches_become_the_normalised_network_input_on_the_device(tmp_path, order, mean, std):
    write_cache(tmp_path, [person_record(tmp_path, ignore_block=np.s_[40:, :20])] * 2)
    config = config_for(tmp_path, 'augment/photometric=brightness contrast gamma', 'augment/photometric_p=1',
                        f'input/channel_order={order}', f'input/mean={mean}', f'input/std={std}',
                        'input/divisor=256' if order == 'bgr' else 'input/divisor=255')
    data = dataset.PoseDataset(config, 'train')
    from transform import normalize
    params = normalize.params(config)
    keys = [(0, 64, 64, 1), (1, 64, 64, 1)]
    batch = torch.utils.data.default_collate([data[k] for k in keys])
    network_input = normalize.to_input(batch['image'], params)
    assert network_input.shape == (2, 3, 64, 64) and network_input.dtype == torch.float32
    for i, key in enumerate(keys):  # the same float32 arithmetic as normalising each augmented image
        expected = normalize.normalize(data.sample(key)['image'], params)
        assert np.array_equal(network_input[i].numpy(), expected)
    assert normalize.to_input(network_input, params) is network_input  # network input already
    with pytest.raises(ValueError, match='uint8 BGR batch'):
        normalize.to_input(batch['image'][0], params)
