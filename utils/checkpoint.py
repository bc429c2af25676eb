"""Checkpoints: plain dicts of state_dicts, step, epoch, RNG states and the merged config text.

Files are `checkpoint-<step>.pt` in the model directory, written atomically and read with
`torch.load(weights_only=True)`, so a checkpoint never runs code and a crash never leaves half a file.
"""

import glob
import os
import re
import warnings

import torch

from utils.io import atomic_path

_NAME = re.compile(r'checkpoint-(\d+)\.pt$')


class CheckpointError(Exception):
    """A checkpoint file is missing, unreadable or does not fit the model."""


def path_for(folder, step):
    return os.path.join(folder, f'checkpoint-{step:08d}.pt')


def checkpoints(folder):
    """Checkpoint paths in `folder`, oldest first."""
    found = [(int(_NAME.search(p).group(1)), p) for p in glob.glob(os.path.join(folder, 'checkpoint-*.pt'))
             if _NAME.search(p)]
    return [p for _, p in sorted(found)]


# model.backends caches a checkpoint's ONNX export beside it as <checkpoint><ONNX_SUFFIX>
ONNX_SUFFIX = '.onnx'


def save(folder, state, step, keep=0):
    """Write `state` as the checkpoint of `step`, then delete all but the newest `keep` (0 = keep all)."""
    path = path_for(folder, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    if keep > 0:
        for old in checkpoints(folder)[:-keep]:
            os.remove(old)
            if os.path.exists(old + ONNX_SUFFIX):   # its ONNX export (model.backends), stale with it
                os.remove(old + ONNX_SUFFIX)
    return path


def load(path, map_location='cpu'):
    """The dict saved in `path`; CheckpointError when it is missing or unreadable."""
    if not os.path.isfile(path):
        raise CheckpointError(f'checkpoint not found: {path}')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a damaged file can fail in zipfile, pickle or torch
        raise CheckpointError(f'cannot read checkpoint {path}: {error}') from None


def load_latest(folder, map_location='cpu'):
    """(state, path) of the newest readable checkpoint in `folder`, or (None, None) when there is none.

    An unreadable newest checkpoint is skipped with a warning, falling back to the one before."""
    for path in reversed(checkpoints(folder)):
        try:
            return load(path, map_location), path
        except CheckpointError as error:
            warnings.warn(f'{error}; falling back to the previous checkpoint', stacklevel=2)
    return None, None


def load_weights(model, state_dict, strict=True):
    """Load `state_dict` into `model`. strict: CheckpointError listing every missing, unexpected or
    wrongly shaped key. Not strict: skip those and return (missing, unexpected) for the caller to list."""
    own = model.state_dict()
    shape = [f'{k} {tuple(v.shape)} vs model {tuple(own[k].shape)}' for k, v in state_dict.items()
             if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if strict and (missing or unexpected or shape):
        lines = [f'{title} ({len(keys)}): {", ".join(keys[:20])}{" ..." if len(keys) > 20 else ""}'
                 for title, keys in (('missing', missing), ('unexpected', unexpected), ('shape', shape))
                 if keys]
        raise CheckpointError('checkpoint does not fit the model: ' + '; '.join(lines))
    model.load_state_dict({k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape},
                          strict=False)
    return missing + [s.split()[0] for s in shape], unexpected
