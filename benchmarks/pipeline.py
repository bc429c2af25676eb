"""Data pipeline speed per worker: read JPEG, augment (one warp + colour), encode heatmaps/PAFs/loss mask,
for 368x368 inputs at stride 8 in the cmu18 layout with 5 people per image, on one core. (The uint8 image
is normalised by the training process on its device, see transform.normalize.to_input.)

Images are synthetic people (cache/synthetic.py) of COCO's typical size (480..640 pixels a side), with
crowds and unannotated people so the ignore-mask path runs; each record gets exactly 5 people (its own
people repeated with an offset where it has fewer). Prints the median of several passes over the set
(one batch of [train] batch_size samples alive at a time, as in a loader worker), in wall-clock and in
CPU time (which other processes on a shared machine disturb less), a per-stage breakdown, and as its
last line one JSON object {"samples_per_s_per_worker": ..}. With --workers N it also times the training
loader itself (cache.dataset.loader: N worker processes, batches collated and handed to this process) over
several epochs, as samples per second delivered.

  python -m benchmarks.pipeline [--images 40] [--repeat 5] [--workers N]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

if __package__ in (None, ''):  # run as a script: python benchmarks/pipeline.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from cache import coco, dataset, synthetic  # noqa: E402
from cache import io as cacheio  # noqa: E402
from pose import encode  # noqa: E402
from transform import augment  # noqa: E402
from utils import config as configlib  # noqa: E402

PEOPLE = 5


def make_data(folder, images):
    """A synthetic COCO-format set and its cmu18 cache under `folder`; every record holds PEOPLE people."""
    opts = dict(min_size=480, max_size=640, max_people=PEOPLE, seed=0, unannotated=0.1, crowd=0.3,
                person_min=0.25, person_max=0.9)
    synthetic.write_split(folder, 'train', images, opts)
    config = configlib.load(mods=[f'dataset/root={folder}', f'dataset/cache={folder}/cache',
                                  'model/layout=cmu18', 'input/height=368', 'input/width=368'])
    path, _ = coco.build(config, 'train', force=True, keep_empty=False)
    header, records = cacheio.read(path)
    rng = np.random.default_rng(0)
    for record in records:
        count = len(record['keypoints'])
        if count < PEOPLE:
            repeat = np.resize(np.arange(count), PEOPLE)
            shift = np.where(np.arange(PEOPLE) < count, 0, 1)[:, None] * rng.uniform(-40, 40, (PEOPLE, 2))
            record['keypoints'] = record['keypoints'][repeat].copy()
            record['keypoints'][..., :2] += shift[:, None, :].astype(np.float32)
            record['boxes'] = record['boxes'][repeat].copy()
        record['keypoints'], record['boxes'] = record['keypoints'][:PEOPLE], record['boxes'][:PEOPLE]
    cacheio.write(path, header, records)
    return config


def stages(data, keys, repeat=3):
    """(wall, CPU) median milliseconds per sample of each stage, timed separately over `keys` (each result
    dropped at once); the ignore mask's figure is per sample of the whole set, most have none."""
    def timed(fn):
        def each():
            for k in keys:
                fn(k)
        return tuple(common.median_ms(each, repeat=repeat, clock=clock) / len(keys)
                     for clock in (time.perf_counter, time.process_time))
    samples = {k: data.sample(k) for k in keys}
    records = {k: data.records[k[0]] for k in keys}
    plan, rng = data.plan, np.random.default_rng(0)
    decoded = {k: dataset.read_image(records[k]['image'], samples[k]['matrix'], data.fast) for k in keys}
    matrix = {k: samples[k]['matrix'] for k in keys}
    return {
        'augmentation matrix': timed(lambda k: augment.compose(records[k], k[1:3], rng, plan['geometric'])),
        'JPEG decode': timed(lambda k: dataset.read_image(records[k]['image'], matrix[k], data.fast)),
        'warp image': timed(lambda k: augment.warp_image(*decoded[k], k[1:3])),
        'ignore mask: RLE decode + warp': timed(lambda k: dataset.warp_ignore(records[k], matrix[k], k[1:3])),
        'keypoints': timed(lambda k: augment.transform_keypoints(records[k]['keypoints'], matrix[k], k[1:3],
                                                                 data.skeleton.flip)),
        'photometric': timed(lambda k: augment.photometric(samples[k]['image'], rng, plan)),
        'encode heatmaps, PAFs': timed(lambda k: encode.encode(samples[k]['keypoints'], data.skeleton, k[1:3],
                                                               data.stride, **data.encode)),
        'loss mask': timed(lambda k: data.loss_mask(samples[k]['ignore'], k[1:3])),
    }


def one_pass(data, keys, batch):
    """Every sample of `keys`, `batch` at a time: a loader worker holds one batch before collating it."""
    for start in range(0, len(keys), batch):
        [data[k] for k in keys[start:start + batch]]


def run(config, repeat, fast):
    """(dataset, keys, wall ms per sample, CPU ms per sample): medians of `repeat` passes over the set."""
    data = dataset.PoseDataset(config, 'train', train=True, stride=8, seed=0)
    data.fast = fast
    keys = [(i, 368, 368, 0) for i in range(len(data))]
    batch = config.getint('train', 'batch_size')
    one_pass(data, keys, batch)  # warm-up: page cache, lazy imports
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        one_pass(data, keys, batch)
        wall.append((time.perf_counter() - start) * 1000 / len(keys))
        cpu.append((time.process_time() - start_cpu) * 1000 / len(keys))
    return data, keys, statistics.median(wall), statistics.median(cpu)


def loader_rate(config, workers, epochs=4):
    """Samples per second that the training loader with `workers` processes delivers to this process,
    timed from its first batch (worker start-up excluded) over `epochs` passes."""
    config.set('train', 'workers', str(workers))
    loader = dataset.loader(config, 'train', stride=8)
    count, start = 0, None
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        for batch in loader:
            if start is None:
                start = time.perf_counter()
            else:
                count += len(batch['index'])
    return count / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--images', type=int, default=40, help='images in the generated set')
    p.add_argument('--repeat', type=int, default=5, help='timed passes over the set (median reported)')
    p.add_argument('--workers', type=int, default=0,
                   help='also time the training loader with this many worker processes (0: skip)')
    args = p.parse_args()
    common.one_core()
    cv2.setNumThreads(0)  # as in a DataLoader worker
    print(f'machine: {common.machine()}')
    print('one core; other processes may share the machine: re-run if the figures look noisy')
    with tempfile.TemporaryDirectory() as folder:
        config = make_data(folder, args.images)
        _, _, full, full_cpu = run(config, args.repeat, fast=False)
        data, keys, ms, cpu = run(config, args.repeat, fast=True)
        print(f'{len(keys)} images of 480..640 px, {PEOPLE} people each, 368x368 input, stride 8, '
              f'layout cmu18, augment: {" ".join(n for n, *_ in data.plan["geometric"])} + '
              f'{" ".join(n for n, *_ in data.plan["photometric"])}; median of {args.repeat} passes')
        for name, wall, busy in (('on ', ms, cpu), ('off', full, full_cpu)):
            print(f'full pipeline, fast_decode {name}: {wall:6.2f} ms/sample wall = {1000 / wall:6.1f} '
                  f'samples/s per worker ({busy:.2f} ms CPU = {1000 / busy:.1f} samples/s per busy core)')
        reduced = np.mean([dataset.reduction(data.sample(k)['matrix']) > 1 for k in keys])
        print(f'fast_decode decodes {100 * reduced:.0f}% of these samples at 1/2 size or less')
        print('stages, ms per sample:                                 wall      CPU')
        for name, (wall, busy) in stages(data, keys, args.repeat).items():
            print(f'  {name:50s} {wall:6.2f}   {busy:6.2f}')
        figures = {'samples_per_s_per_worker': round(1000 / ms, 1),
                   'samples_per_s_per_worker_cpu_time': round(1000 / cpu, 1),
                   'samples_per_s_per_worker_no_fast_decode': round(1000 / full, 1)}
        if args.workers:
            rate = loader_rate(config, args.workers)
            batch = config.getint('train', 'batch_size')
            print(f'training loader, {args.workers} workers, batches of {batch}: {rate:.1f} samples/s '
                  f'delivered (collation and hand-over included)')
            figures[f'loader_samples_per_s_{args.workers}_workers'] = round(rate, 1)
    print(json.dumps(figures))


if __name__ == '__main__':
    main()
