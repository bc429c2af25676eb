"""The benchmark scripts of real-time detection start: --help, and the GPU benchmark's clear stop on a
machine without a CUDA GPU (the figures themselves are never asserted)."""

import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('script', ['benchmarks/realtime.py', 'benchmarks/gpu.py'])
def test_help(script):
    result = run(script, '--help')
    assert result.returncode == 0 and 'usage:' in result.stdout, result.stderr


def test_gpu_benchmark_says_why_it_stops_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip('this machine has a CUDA GPU: the benchmark would measure it')
    result = run('benchmarks/gpu.py')
    assert result.returncode == 0, result.stderr
    assert 'no CUDA GPU here' in result.stdout and len(result.stdout.strip().splitlines()) == 1
