"""Training and validation batches from a cache file: read the JPEG, augment (one affine warp of image and
ignore mask, then colour), encode heatmaps, PAFs and the loss mask (pose/encode.py). The image stays uint8:
the training process normalises it on its device (transform/normalize.py, to_input).

Worker-safe: records are plain data, every sample opens its own image file, and each sample's random
stream is seeded by (seed, epoch, index), so results do not depend on the number of workers. Multi-scale
training draws one input size per batch: the batch sampler passes (index, height, width, epoch) keys.
"""

import cv2
import numpy as np
import simplejpeg
import torch

from cache import coco
from cache import io as cacheio
from cache.rle import rle_runs
from pose import draw, encode
from pose import skeleton as skeletons
from transform import augment
from utils.cli import UserError
from utils.config import ConfigError

_REDUCED = (2, 4, 8)


def reduction(matrix, enabled=True):
    """The largest JPEG decode reduction (1, 2, 4 or 8) that still leaves at least one source pixel per
    output pixel under `matrix`."""
    scale = np.sqrt(abs(np.linalg.det(matrix[:2, :2])))
    factors = [r for r in _REDUCED if enabled and scale * r <= 1]
    return max(factors, default=1)


def decode_jpeg(data, reduce=1, order='BGR'):
    """A uint8 image from JPEG bytes by libjpeg-turbo, channels in `order` ('BGR', or 'BGRX' with a fourth
    channel to ignore), scaled by 1/`reduce` (1, 2, 4 or 8) while decoding; None when libjpeg-turbo cannot
    make BGR of it (not a JPEG, CMYK, corrupt). The same pixels as OpenCV's decoder (the same library, the
    same accurate IDCT and chroma upsampling: the fast ones train on colours that evaluation never sees)."""
    try:
        height, width, *_ = simplejpeg.decode_jpeg_header(data)
        size = (-(-height // reduce), -(-width // reduce))
        image = simplejpeg.decode_jpeg(data, order, min_height=size[0], min_width=size[1])
    except ValueError:
        return None
    return image if image.shape[:2] == size else None


def read_image(file, matrix, fast=True):
    """(uint8 image, matrix from its pixels to the output). A JPEG is decoded by decode_jpeg into BGRX
    (augment.warp_image warps 4 channels faster than 3, and gives BGR); with `fast`, at 1/2, 1/4 or 1/8 size
    when the warp shrinks it by that much or more, and the matrix adjusted: reduced pixel i covers source
    pixels [r*i, r*i + r), so its centre is source pixel r*i + (r - 1)/2. OpenCV decodes what libjpeg-turbo
    cannot (other formats, CMYK), whole, as BGR, from the same bytes."""
    r = reduction(matrix, fast)
    try:
        with open(file, 'rb') as f:
            data = f.read()
    except OSError:
        data = b''
    image = decode_jpeg(data, r, order='BGRX') if data else None
    if image is None and data:
        r, image = 1, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | coco.AS_STORED)
    if image is None:
        raise UserError(f'cannot read image {file} (the cache lists it; rebuild the cache with cache.py '
                        f'--force if the dataset changed)')
    if r > 1:
        matrix = matrix @ np.array([[r, 0, (r - 1) / 2], [0, r, (r - 1) / 2], [0, 0, 1]])
    return image, matrix


def warp_ignore(record, matrix, size):
    """The record's ignore region warped by `matrix` into an output of size (H, W) (nearest neighbour), as
    uint8 0/1, or None when it has none. COCO's runs go down the columns, so the mask is decoded transposed
    (only the columns the warp reads) and warped with x and y swapped: the same pixels as decoding the
    whole mask with pycocotools and warping it, in about three quarters of the time."""
    rle = record.get('ignore')
    if rle is None:
        return None
    h, w = rle['size']
    x0, _, x1, _ = augment.sampled_region(matrix, size, (h, w))
    lo = min(x0, w) * h  # the span of those columns in the runs; zeros before and after it
    hi = max(lo, x1 * h)
    runs = rle_runs(rle)
    ends = np.cumsum(runs)
    inside = np.clip(ends, lo, hi) - np.clip(ends - runs, lo, hi)
    values = np.concatenate(([0], np.arange(len(runs)) & 1, [0])).astype(np.uint8)
    transposed = np.repeat(values, np.concatenate(([lo], inside, [w * h - hi]))).reshape(w, h)
    return augment.warp_mask(transposed, np.asarray(matrix, np.float64) @ _SWAP_XY, size)


_SWAP_XY = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], np.float64)


def load_sample(record, size, rng, plan, skeleton, fast=True):
    """An augmented sample before encoding: {'image': BGR uint8 (H,W,3), 'keypoints': (P,K,3) in output
    pixels (v = 0 outside), 'ignore': uint8 (H,W) 0/1 or None (nothing ignored), 'matrix': source ->
    output}."""
    matrix = augment.compose(record, size, rng, plan['geometric'])
    image, from_read = read_image(record['image'], matrix, fast)
    image = augment.warp_image(image, from_read, size)
    ignore = warp_ignore(record, matrix, size)
    keypoints = augment.transform_keypoints(record['keypoints'], matrix, size, skeleton.flip)
    image = augment.photometric(image, rng, plan)
    return {'image': image, 'keypoints': keypoints, 'ignore': ignore, 'matrix': matrix}


def input_sizes(config, stride):
    """[(H, W)]: the [input] height x width first, then each of [input] sizes as a square."""
    sizes = [(config.getint('input', 'height'), config.getint('input', 'width'))]
    sizes += [(s, s) for s in config.getintlist('input', 'sizes') if (s, s) not in sizes]
    for h, w in sizes:
        if h <= 0 or w <= 0 or h % stride or w % stride:
            raise ConfigError(f'[input] size {h}x{w}: sides must be positive multiples of the network '
                              f'stride {stride}')
    return sizes


class PoseDataset(torch.utils.data.Dataset):
    """Samples of a split's cache: dicts of tensors 'image' (H,W,3) uint8 BGR as augmented, 'heatmaps'
    (K+1,h,w), 'pafs' (2L,h,w), 'mask' (1,h,w), 'index', 'extra' (True for an image of a [dataset] extra
    set). The image stays uint8 until the training process has the batch on its device, where
    normalize.to_input makes the network input: a quarter of the bytes to hand over from the workers and to
    copy to the GPU. train=False: no augmentation, the whole image fitted into the input. Keys are an index,
    or (index, height, width, epoch) from MultiScaleBatchSampler.
    `stride` is the network's output stride (model.stride); `seed` defaults to [train] seed."""

    def __init__(self, config, split, train=True, stride=8, seed=None):
        self.skeleton = skeletons.load(config.get('model', 'layout'))
        self.file, *extra = cacheio.files(config, split) if train else [cacheio.path(config, split)]
        self.header, self.records = cacheio.read(self.file, self.skeleton)
        self.own = len(self.records)   # records from here on come from [dataset] extra sets
        repeat = config.getint('dataset', 'extra_repeat')
        if repeat < 1:
            raise ConfigError(f'[dataset] extra_repeat = {repeat}: must be at least 1')
        for file in extra:
            self.records = self.records + cacheio.read(file, self.skeleton)[1] * repeat
        self.train, self.stride = train, stride
        self.sizes = input_sizes(config, stride)
        self.plan = augment.plan(config, train)
        self.encode = encode.params(config)
        self.fast = config.getboolean('augment', 'fast_decode')
        self.seed = config.getint('train', 'seed') if seed is None else seed

    def __len__(self):
        return len(self.records)

    def sample(self, key):
        """The augmented sample of `key` before encoding (see load_sample), for inspection."""
        index, height, width, epoch = key if isinstance(key, tuple) else (key, *self.sizes[0], 0)
        rng = np.random.default_rng([self.seed, epoch, index])
        return load_sample(self.records[index], (height, width), rng, self.plan, self.skeleton, self.fast)

    def loss_mask(self, ignore, size):
        if ignore is None:  # nothing ignored: skip loss_mask's pass over every pixel
            return np.ones((1, *encode.map_size(size, self.stride)), np.float32)
        return encode.loss_mask(ignore, self.stride)

    def __getitem__(self, key):
        sample = self.sample(key)
        size = sample['image'].shape[:2]
        heatmaps, pafs = encode.encode(sample['keypoints'], self.skeleton, size, self.stride,
                                       self.encode['sigma'], self.encode['paf_width'])
        return {'image': torch.from_numpy(sample['image']),
                'heatmaps': torch.from_numpy(heatmaps), 'pafs': torch.from_numpy(pafs),
                'mask': torch.from_numpy(self.loss_mask(sample['ignore'], size)),
                'index': key[0] if isinstance(key, tuple) else key,
                'extra': (key[0] if isinstance(key, tuple) else key) >= self.own}


class MultiScaleBatchSampler(torch.utils.data.Sampler):
    """Batches of (index, height, width, epoch) keys, one input size per batch (drawn from `sizes` by a
    stream seeded with (seed, epoch), the same on every rank). With world_size > 1 each rank takes every
    world_size-th index of the epoch's order, padded to equal length (as DistributedSampler)."""

    def __init__(self, length, batch_size, sizes, shuffle=True, seed=0, rank=0, world_size=1,
                 drop_last=True):
        if batch_size < 1:
            raise ConfigError(f'[train] batch_size = {batch_size}: must be at least 1')
        self.length, self.batch_size, self.sizes = length, batch_size, list(sizes)
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.drop_last, self.epoch = drop_last, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def _indices(self):
        order = np.arange(self.length)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
        per_rank = -(-self.length // self.world_size)
        order = np.resize(order, per_rank * self.world_size)  # repeats the start to pad
        return order[self.rank::self.world_size]

    def __len__(self):
        per_rank = -(-self.length // self.world_size)
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self):
        indices = self._indices()
        pick = np.random.default_rng([self.seed, self.epoch, 1])
        for b in range(len(self)):
            height, width = self.sizes[pick.integers(len(self.sizes))]
            batch = indices[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(int(i), height, width, self.epoch) for i in batch]


def _worker_init(worker_id):
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism


def loader(config, split, stride, train=True, rank=0, world_size=1, seed=0):
    """A DataLoader of batches from the cache of `split` ([train] batch_size and workers). train: shuffled,
    augmented, multi-scale, incomplete last batch dropped; its batch_sampler has set_epoch(epoch)."""
    dataset = PoseDataset(config, split, train=train, stride=stride, seed=seed)
    sampler = MultiScaleBatchSampler(len(dataset), config.getint('train', 'batch_size'),
                                     dataset.sizes if train else dataset.sizes[:1], shuffle=train, seed=seed,
                                     rank=rank, world_size=world_size, drop_last=train)
    if train and len(sampler) == 0:
        raise UserError(f'{dataset.file} has {len(dataset)} images: too few for one batch of '
                        f'{sampler.batch_size} on each of {world_size} processes')
    workers = config.getint('train', 'workers')
    if workers > 0:
        # cv2's thread pool does not survive fork (a worker calling into it can hang): with 0 threads cv2
        # runs serially and never touches the pool, in the workers and in this process
        cv2.setNumThreads(0)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), worker_init_fn=_worker_init,
                                       persistent_workers=workers > 0)


def render(dataset, key):
    """A BGR picture of one training sample as the network sees it: the augmented input with its skeletons
    and ignored regions (red), the heatmaps, and the PAFs (one arrow per cell, coloured by limb)."""
    sample = dataset.sample(key)
    image, size = sample['image'], sample['image'].shape[:2]
    heatmaps, pafs = encode.encode(sample['keypoints'], dataset.skeleton, size, dataset.stride,
                                   dataset.encode['sigma'], dataset.encode['paf_width'])
    people = draw.draw_people(image, sample['keypoints'], dataset.skeleton)
    if sample['ignore'] is not None:
        red = people.copy()
        red[sample['ignore'] > 0] = (0, 0, 255)
        people = cv2.addWeighted(people, 0.6, red, 0.4, 0)
        outline, _ = cv2.findContours(sample['ignore'], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(people, outline, -1, (0, 0, 255), 1, cv2.LINE_AA)
    parts = draw.colorize(heatmaps[:-1], image)
    fields = draw.colorize(np.hypot(pafs[0::2], pafs[1::2]), image, alpha=0.3)
    for limb, colour in enumerate(draw.limb_colors(dataset.skeleton)):
        _arrows(fields, pafs[2 * limb], pafs[2 * limb + 1], dataset.stride, colour)
    return np.hstack([people, parts, fields])


def _arrows(canvas, fx, fy, stride, colour):
    """One arrow per cell where the field (fx, fy) is set, from the cell centre along the field."""
    for i, j in zip(*np.nonzero(np.hypot(fx, fy) > 0.1)):
        start = encode.cell_to_pixel(np.array([j, i], np.float32), stride)
        end = start + stride * 0.8 * np.array([fx[i, j], fy[i, j]])
        cv2.arrowedLine(canvas, tuple(np.round(start).astype(int).tolist()),
                        tuple(np.round(end).astype(int).tolist()), colour, 1, cv2.LINE_AA, tipLength=0.4)
