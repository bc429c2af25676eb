"""Training speed per shipped model config: samples per second of the training step (forward, masked L2
loss over every stage, backward, optimizer step; the trainer's own step, utils.trainer.Trainer.run_step)
at a 368x368 input on synthetic batches, on CUDA when present (with the config's AMP) else on the CPU.

The configs are those of benchmarks/inference.py (the default, every overlay config/*.ini that sets
[model], the converted models' configs). Data loading is not included (it runs in parallel workers).
Figures are medians over the timed steps after warm-up; other work on the machine slows them.
The last line is one JSON object with `<config>_samples_per_s` per config.

Run: python benchmarks/train.py [--configs default mobilenet_v2 ...] [--batch 8] [--threads 2]
"""

import argparse
import json
import os
import statistics
import sys
import time

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import model  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from benchmarks.inference import shipped_configs  # noqa: E402
from model import loss  # noqa: E402
from utils import config as configlib  # noqa: E402
from utils import distributed, optim  # noqa: E402
from utils.trainer import Trainer  # noqa: E402


def synthetic_batch(network, batch, size):
    """A batch with the contract's keys and shapes: random input, target maps in [0, 1], a full mask."""
    import torch
    k, limbs, s = len(network.skeleton.parts) + 1, len(network.skeleton.limbs), size // network.stride
    return {'image': torch.randn(batch, 3, size, size), 'heatmaps': torch.rand(batch, k, s, s),
            'pafs': torch.rand(batch, 2 * limbs, s, s) * 2 - 1, 'mask': torch.ones(batch, 1, s, s),
            'index': torch.arange(batch)}


def benchmark(name, files, mods, args, device):
    import functools

    import torch
    config = configlib.load(files, mods + ['train/warmup=0', 'train/scheduler=none', 'train/scheduler_args='])
    network = model.build(config, pretrained=False).to(device)
    batch_size = args.batch or config.getint('train', 'batch_size')
    batch = synthetic_batch(network, batch_size, args.size)
    optimizer = optim.build_optimizer(network, config)
    trainer = Trainer(network, optimizer, optim.build_scheduler(optimizer, config), [batch],
                      functools.partial(loss.compute, params=loss.weights(config)), device,
                      amp=config.getboolean('train', 'amp'), progress=False)
    trainer.started = time.monotonic()
    times = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        trainer.run_step(batch)  # ends with loss.item(), which waits for the device
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    network_name = '{}+{} x{}'.format(*(config.get('model', o) for o in ('backbone', 'stage', 'stages')))
    amp = ' AMP' if trainer.amp else ''
    print(f'{name:24s} {network_name} {network.skeleton.name}: {batch_size / seconds:.2f} samples/s '
          f'({seconds * 1000:.0f} ms per step of {batch_size}{amp}; median of {len(times)} after '
          f'{args.warmup} warm-up)', flush=True)
    del trainer, optimizer, network
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return {f'{name}_samples_per_s': round(batch_size / seconds, 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--configs', nargs='+', help='config names to run (default: all shipped)')
    p.add_argument('--batch', type=int, default=0, help='samples per step (default: [train] batch_size)')
    p.add_argument('--size', type=int, default=368, help='square input size in pixels')
    p.add_argument('--steps', type=int, default=5, help='timed steps')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0 = torch default)')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    args = p.parse_args()
    configs = shipped_configs()
    unknown = set(args.configs or ()) - set(configs)
    if unknown:
        p.error(f'unknown configs {sorted(unknown)}; shipped: {", ".join(configs)}')
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    device = distributed.select_device(args.device)
    gpu = f', {torch.cuda.get_device_name(device)}' if device.type == 'cuda' else ''
    print(f'machine: {machine()}{gpu}')
    print(f'training step on {device}, input {args.size}x{args.size}, synthetic batches', flush=True)
    torch.manual_seed(0)
    results = {}
    for name in args.configs or configs:
        results.update(benchmark(name, *configs[name], args, device))
    print(json.dumps(results))


if __name__ == '__main__':
    main()
