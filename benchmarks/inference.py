"""Inference speed per shipped model config at a 368x368 input: milliseconds per frame for the network in
PyTorch and in ONNX Runtime (2 threads each), for the decoder, and for detect.py's own work around the
network (resize, normalise, decode, tracking, drawing) on a 640x480 frame, as a share of a whole frame.

The configs are the default one and every overlay config/*.ini that sets [model], plus the converted
models' configs (config/convert/*.ini [config] sections). Networks have random weights (speed does not
depend on them); the decoder and detect.py's work run on maps encoded from 6 synthetic people, so they
find real peaks and limbs. Figures are medians of several runs; other work on the machine slows them.
As a figure that load from other processes barely moves, ONNX Runtime also runs on one thread timed
in CPU time (`_ort1_cpu_ms`, close to one idle core's wall time). The last line is one JSON object with
`<config>_ort_ms` (and _torch_ms, _ort1_cpu_ms, _decode_ms, _overhead_ms, _overhead_cpu_ms,
_overhead_pct) per config.

Run: python benchmarks/inference.py [--configs default mobilenet_v2 ...] [--threads 2] [--size 368]
"""

import argparse
import configparser
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import model  # noqa: E402
from benchmarks.common import machine, median_ms  # noqa: E402
from benchmarks.decode import scene  # noqa: E402
from detect import annotate  # noqa: E402
from model import onnx_export  # noqa: E402
from model.runner import onnx_session, session_runner  # noqa: E402
from pose import decode, encode, predict  # noqa: E402
from pose.track import Tracker  # noqa: E402
from utils import config as configlib  # noqa: E402
from utils.cli import UserError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME = (480, 640)


def shipped_configs():
    """{name: (overlay files, -m mods)} for the default config, the model overlays and converted models."""
    found = {'default': ([], [])}
    for path in sorted(glob.glob(os.path.join(ROOT, 'config', '*.ini'))):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path)
        if os.path.basename(path) != 'default.ini' and parser.has_section('model'):
            found[os.path.splitext(os.path.basename(path))[0]] = ([path], [])
    for path in sorted(glob.glob(os.path.join(ROOT, 'config', 'convert', '*.ini'))):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(path)
        if parser.has_section('config'):
            mods = [f'{key}={value}' for key, value in parser.items('config')]
            found['convert_' + os.path.splitext(os.path.basename(path))[0]] = ([], mods)
    return found


def repeats(seconds_per_run, budget=20.0):
    """Runs to time: as many as fit in `budget` seconds, 3 to 9."""
    return int(min(9, max(3, budget / max(seconds_per_run, 1e-3))))


def time_torch(network, size, threads):
    import torch
    torch.set_num_threads(threads)
    x = torch.rand(1, 3, size, size)
    with torch.inference_mode():
        first = median_ms(lambda: network(x), repeat=1, warmup=1)
        return median_ms(lambda: network(x), repeat=repeats(first / 1000), warmup=0)


def export(network, config, path, size):
    """Write the network's last stage to ONNX with model.onnx_export (checked against PyTorch)."""
    onnx_export.export(network, config, path, all_stages=False, size=(size, size))
    return 'model.onnx_export.export'


def cpu_ms(fn, repeat=3):
    """Median CPU milliseconds (this process, all threads) of fn() after one warm-up: with one thread,
    an estimate of the wall time on an idle core that other work on the machine barely disturbs."""
    return median_ms(fn, repeat=repeat, warmup=1, clock=time.process_time)


def time_ort(path, size, threads, cpu=False):
    import onnxruntime
    try:
        session, _ = onnx_session(path, threads)
    except UserError:  # the torch.onnx fallback export carries no metadata
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    run = session_runner(session)
    x = np.random.rand(1, 3, size, size).astype(np.float32)
    if cpu:
        return cpu_ms(lambda: run(x))
    first = median_ms(lambda: run(x), repeat=1, warmup=1)
    return median_ms(lambda: run(x), repeat=repeats(first / 1000), warmup=0)


def scene_maps(config, skeleton, size, stride):
    """Maps at `stride` of 6 synthetic people in a `size` (H, W) input, and the people in COCO order."""
    people = scene(np.random.default_rng(0), 6, size=size)
    keypoints = skeleton.from_coco(people)
    return encode.encode(keypoints, skeleton, size, stride, **encode.params(config))


def time_decode(config, skeleton, size, stride):
    heatmaps, pafs = scene_maps(config, skeleton, (size, size), stride)
    params = decode.params(config)
    count = len(decode.decode(heatmaps, pafs, skeleton, stride, **params))
    return median_ms(lambda: decode.decode(heatmaps, pafs, skeleton, stride, **params), repeat=9), count


def time_overhead(config, skeleton, stride, size):
    """(wall ms, CPU ms) per 640x480 frame of detect.py's work without the network: resize, normalise,
    decode, tracking, drawing (the fake network returns precomputed maps of 6 people)."""
    options = predict.options(config)
    options['height'] = size
    (h, w), padded = predict.input_size(FRAME, size, stride)
    maps = scene_maps(config, skeleton, padded, stride)

    def run(batch):
        return np.repeat(maps[0][None], len(batch), 0), np.repeat(maps[1][None], len(batch), 0)
    frame = np.random.default_rng(1).integers(0, 255, FRAME + (3,), dtype=np.uint8)
    tracker = Tracker()

    def work():
        people = predict.predict(run, frame, skeleton, stride, **options)
        ids = tracker.update([p['keypoints'] for p in people])
        annotate(frame, people, ids, skeleton, 0.1, 10.0)

    def ten():
        for _ in range(10):
            work()
    return median_ms(work, repeat=9), cpu_ms(ten) / 10


def benchmark(name, files, mods, args, workdir):
    import torch
    config = configlib.load(files, mods)
    network = model.build(config, pretrained=False).eval()
    skeleton, stride = network.skeleton, network.stride
    figures = {'torch_ms': time_torch(network, args.size, args.threads)}
    path = os.path.join(workdir, f'{name}.onnx')
    with torch.inference_mode():
        how = export(network, config, path, args.size)
    figures['ort_ms'] = time_ort(path, args.size, args.threads)
    figures['ort1_cpu_ms'] = time_ort(path, args.size, 1, cpu=True)
    figures['decode_ms'], people = time_decode(config, skeleton, args.size, stride)
    figures['overhead_ms'], figures['overhead_cpu_ms'] = time_overhead(config, skeleton, stride, args.size)
    figures['overhead_pct'] = 100 * figures['overhead_ms'] / (figures['overhead_ms'] + figures['ort_ms'])
    network_name = '{}+{} x{}'.format(*(config.get('model', o) for o in ('backbone', 'stage', 'stages')))
    print(f'{name:24s} {network_name} {skeleton.name}: torch {figures["torch_ms"]:.1f} ms, ONNX Runtime '
          f'{figures["ort_ms"]:.1f} ms (1 thread: {figures["ort1_cpu_ms"]:.0f} CPU ms), decode '
          f'{figures["decode_ms"]:.1f} ms ({people} people), detect.py work {figures["overhead_ms"]:.1f} '
          f'ms ({figures["overhead_cpu_ms"]:.1f} CPU ms) = {figures["overhead_pct"]:.1f}% of an ORT frame '
          f'[exported with {how}]', flush=True)
    return {f'{name}_{key}': round(value, 2) for key, value in figures.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', nargs='+', help='config names to run (default: all shipped)')
    p.add_argument('--threads', type=int, default=2, help='PyTorch and ONNX Runtime threads')
    p.add_argument('--size', type=int, default=368, help='square input size in pixels')
    args = p.parse_args()
    configs = shipped_configs()
    unknown = set(args.configs or ()) - set(configs)
    if unknown:
        p.error(f'unknown configs {sorted(unknown)}; shipped: {", ".join(configs)}')
    import torch
    torch.set_num_threads(args.threads)
    print(f'machine: {machine()}')
    print(f'input {args.size}x{args.size}, {args.threads} threads, detect.py work on a {FRAME[1]}x{FRAME[0]} '
          f'frame; medians of 3-9 runs', flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.configs or configs:
            results.update(benchmark(name, *configs[name], args, workdir))
    print(json.dumps(results))


if __name__ == '__main__':
    main()
