"""Shared fixtures."""

import os

import pytest

from utils import realdata


@pytest.fixture(scope='session')
def real_data():
    """real_data('coco-mini') -> the folder of that real dataset, or the test skips saying why."""
    def find(name):
        path = realdata.folder(name)
        if path is None:
            pytest.skip(f'real data {os.path.join(realdata.root(), name)} is absent (it lives in '
                        f'../shared/data of a development checkout, or set POSE_REAL_DATA)')
        return path
    return find


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one thread avoids OpenMP start-up and contention costs on a shared machine."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
