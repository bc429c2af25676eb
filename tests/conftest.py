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
