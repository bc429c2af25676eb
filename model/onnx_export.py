"""ONNX export of a network with dynamic batch, height and width, checked against PyTorch with ONNX Runtime
(export_onnx.py is its command line; model.backends caches exports of checkpoints with it).

The file's outputs are the last stage's `heatmaps` (N,K+1,h,w) and `pafs` (N,2L,h,w), or with
--all-stages every stage's, `stage1_heatmaps`, `stage1_pafs`, ... with the last stage still last and
still named `heatmaps` and `pafs`. Its metadata (metadata_props) carries what eval.py and detect.py need
to run it with no other file: the config text of its [model], [input] and [decode] sections (`config`;
utils.config.loads() fills in the rest) and explicit keys `layout`, `parts`, `limbs`, `stride`,
`channel_order`, `divisor`, `mean`, `std`, `outputs`. The input, `image` (N,3,H,W) with H and W
multiples of `stride`, is normalised as `(pixel / divisor - mean) / std` per channel in `channel_order`.

After writing, the file runs in ONNX Runtime on two random images (the export size and a different batch
and size) and the largest absolute difference from PyTorch is reported; above 1e-4 the export fails and
no file is left behind.
"""

import copy
import io
import warnings

import numpy as np
import torch
from torch import nn

from transform import normalize
from utils import cli
from utils.config import config_text
from utils.io import atomic_path

TOLERANCE = 1e-4
OPSET = 17
SECTIONS = ('model', 'input', 'decode')       # the config text in the file's metadata


class ExportError(cli.UserError):
    """The ONNX file cannot be written or does not compute what the network computes."""


class Outputs(nn.Module):
    """The network with its [(heatmaps, pafs)] per stage flattened into a tuple (last stage only, or all)."""

    def __init__(self, network, all_stages):
        super().__init__()
        self.network, self.all_stages = network, all_stages

    def forward(self, image):
        stages = self.network(image)
        return tuple(t for pair in (stages if self.all_stages else stages[-1:]) for t in pair)


def output_names(stages, all_stages=False):
    """ONNX output names: the last stage's are `heatmaps`, `pafs`; earlier ones `stage<t>_heatmaps`, ..."""
    earlier = range(1, stages) if all_stages else ()
    return [f'stage{t}_{kind}' for t in earlier for kind in ('heatmaps', 'pafs')] + ['heatmaps', 'pafs']


def metadata(config, network, names):
    """{key: text} for the file's metadata_props."""
    params = normalize.params(config)
    skeleton = network.skeleton
    return {
        'config': config_text(config, SECTIONS),
        'layout': config.get('model', 'layout'),
        'parts': ' '.join(skeleton.parts),
        'limbs': ' '.join(f'{a}-{b}' for a, b in skeleton.limbs),
        'stride': str(int(network.stride)),
        'channel_order': params['channel_order'],
        'divisor': repr(float(params['divisor'])),
        'mean': ' '.join(repr(float(v)) for v in params['mean']),
        'std': ' '.join(repr(float(v)) for v in params['std']),
        'outputs': ' '.join(names),
    }


def sample_images(config, shape, seed):
    """Random BGR images (N,H,W) normalised as the network's input wants: realistic magnitudes."""
    params = normalize.params(config)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (shape[0], shape[1], shape[2], 3), dtype=np.uint8)
    return np.stack([normalize.normalize(image, params) for image in images])


def to_onnx(network, names, size):
    """The serialised ONNX model of `network` (a CPU module in eval mode), traced at `size` (H, W)."""
    dynamic = {'image': {0: 'batch', 2: 'height', 3: 'width'}}
    dynamic.update({name: {0: 'batch', 2: 'map_height', 3: 'map_width'} for name in names})
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter('ignore')            # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(network, (torch.zeros(1, 3, *size),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=['image'], output_names=names, dynamic_axes=dynamic)
    return buffer.getvalue()


def largest_difference(path, network, inputs):
    """Largest absolute difference between ONNX Runtime running `path` and `network`, over `inputs`."""
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    difference = 0.0
    with torch.no_grad():
        for x in inputs:
            ours = network(torch.from_numpy(x))
            theirs = session.run(None, {'image': x})
            for a, b in zip(ours, theirs):
                if tuple(a.shape) != b.shape:
                    raise ExportError(f'{path}: ONNX Runtime gives an output of shape {b.shape}, '
                                      f'PyTorch {tuple(a.shape)}')
                difference = max(difference, float(np.abs(a.numpy() - b).max()))
    return difference


def export(model, config, path, all_stages=False, size=None, tolerance=TOLERANCE, extra_metadata=None):
    """Write `model` (a network from model.build) to the ONNX file `path`; return the largest absolute
    difference between ONNX Runtime and PyTorch on two random inputs.

    `size` (H, W) is the tracing size (default 8 x 12 output cells); with `tolerance`, a larger difference
    raises ExportError and leaves no file. `extra_metadata` {key: text} joins the file's metadata."""
    import onnx
    # eval() on the wrapper too: the exporter restores the wrapper's mode, recursively, when it is done
    network = Outputs(copy.deepcopy(model).cpu(), all_stages).eval()
    stride = int(model.stride)
    size = tuple(size or (8 * stride, 12 * stride))
    if size[0] % stride or size[1] % stride:
        raise ExportError(f'export size {size[0]}x{size[1]} is not a multiple of the stride {stride}')
    names = output_names(len(model.stages), all_stages)
    proto = onnx.load_from_string(to_onnx(network, names, size))
    onnx.helper.set_model_props(proto, {**metadata(config, model, names), **(extra_metadata or {})})
    onnx.checker.check_model(proto)
    inputs = [sample_images(config, (1, *size), 0),
              sample_images(config, (2, size[0] + 2 * stride, size[1] + stride), 1)]
    with atomic_path(path) as tmp:
        onnx.save(proto, tmp)
        difference = largest_difference(tmp, network, inputs)
        if tolerance is not None and difference > tolerance:
            raise ExportError(f'ONNX Runtime differs from PyTorch by {difference:.2e} > {tolerance:g}; '
                              f'{path} not written')
    return difference
