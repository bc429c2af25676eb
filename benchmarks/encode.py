"""Target encoding benchmark: samples per second of pose.encode.encode (heatmaps + PAFs) on one core, at a
368x368 input, stride 8, cmu18, 5 people per image (plausible random poses from benchmarks/decode.py).

Run: `python benchmarks/encode.py`; the last line is one JSON object {"samples_per_s": ..,
"cpu_samples_per_s": ..} (wall-clock, and this process's CPU time, which other processes on a shared
machine disturb less).
For reference: the original project's C++ encoder makes 922 samples/s, Lightweight OpenPose's Python 62.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine, median_ms, one_core  # noqa: E402
from benchmarks.decode import scene  # noqa: E402
from pose import encode  # noqa: E402
from pose.skeleton import load  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--samples', type=int, default=200, help='different samples encoded per run')
    parser.add_argument('--runs', type=int, default=7, help='timed runs (the median is reported)')
    parser.add_argument('--people', type=int, default=5)
    parser.add_argument('--size', type=int, default=368, help='square input side in pixels')
    parser.add_argument('--layout', default='cmu18')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    one_core()
    skeleton = load(args.layout)
    rng = np.random.default_rng(args.seed)
    size = (args.size, args.size)
    heights = (0.15 * args.size, 0.8 * args.size)
    samples = [skeleton.from_coco(scene(rng, args.people, size=size, heights=heights))
               for _ in range(args.samples)]

    def run():
        for keypoints in samples:
            encode.encode(keypoints, skeleton, size, 8, 7.0, 8.0)

    ms = median_ms(run, args.runs) / len(samples)
    cpu = median_ms(run, args.runs, clock=time.process_time) / len(samples)
    print(f'machine: {machine()}')
    print(f'{args.layout}, {args.size}x{args.size} input, stride 8, sigma 7, PAF width 8, {args.people} '
          f'people per sample, {args.samples} samples per run, median of {args.runs} runs: '
          f'{ms:.3f} ms per sample wall-clock, {cpu:.3f} ms CPU time')
    print(json.dumps({'samples_per_s': round(1000 / ms, 1), 'cpu_samples_per_s': round(1000 / cpu, 1)}))


if __name__ == '__main__':
    main()
