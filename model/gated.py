"""Two networks and a gate: a frozen copy of the network training starts from beside the copy that trains,
their maps mixed by a learnt per-image gate, `frozen + g x (tuned - frozen)` at every stage, each part's
heatmap then the larger of that mix's and the frozen half's (`union`); at inference (eval mode) the heatmaps
take the gate's choice whole (g rounded to 0 or 1; the PAFs keep the mix). The gate reads
the frozen trunk's features of the input scaled to `[model] gate_height` (in training and at any eval size
alike, so that it sees the same statistics), averaged over the image; [train] gate_weight trains it to tell
the training images (1) from the [dataset] extra images (0, the real anchors). Images like the anchors then
get the frozen network's maps, so fine-tuning on a new domain need not cost what the network knew, and an
image the gate mistakes for a training image still has every part the frozen network finds there. The
anchors' targets are the frozen half's own maps (unless a [train] teacher gives others), and [train]
anchor_weight also trains the tuned half alone towards them ("learning without forgetting" inside it), so
that an image the gate mistakes for a training image still gets maps close to the frozen network's. The
price is twice the network's work. The whole of it, gate and resize included, exports to ONNX
(export_onnx.py) and runs there at any input size. Experimental: see README, "Two networks and a gate".
"""

import torch
from torch import nn


class Gated(nn.Module):
    """forward(x) -> [(heatmaps, pafs)] per stage, as PoseNet's. Of the last call: `gate_logits` (N,1,1,1),
    and, for the training losses (only while autograd records, so inference holds no maps between calls),
    `frozen_maps` (the frozen half's last (heatmaps, pafs)) and `tuned_maps` (the tuned half's stages)."""

    def __init__(self, frozen, tuned, height):
        super().__init__()
        self.frozen, self.tuned, self.height = frozen, tuned, height
        self.frozen.requires_grad_(False)
        self.frozen.eval()                  # and its batch norms (if any) keep their statistics
        channels = frozen.backbone.channels
        self.gate = nn.Sequential(nn.BatchNorm2d(channels, affine=False), nn.AdaptiveAvgPool2d(1),
                                  nn.Conv2d(channels, 32, 1), nn.ReLU(), nn.Conv2d(32, 1, 1))
        nn.init.zeros_(self.gate[-1].weight)
        nn.init.zeros_(self.gate[-1].bias)
        self.gate_logits = self.frozen_maps = self.tuned_maps = None

    # the tuned network's: the optimizer's backbone group, equalize, the hooks, export_onnx
    backbone = property(lambda self: self.tuned.backbone)
    skeleton = property(lambda self: self.tuned.skeleton)
    stride = property(lambda self: self.tuned.stride)
    stages = property(lambda self: self.tuned.stages)

    def train(self, mode=True):
        super().train(mode)
        self.frozen.eval()
        return self

    def gate_size(self, x):
        """(H, W) the gate reads `x` (N,3,h,w) at: H = [model] gate_height, W = w at that scale rounded up to
        a multiple of the stride. Integer arithmetic on the shape alone, so that an ONNX export keeps it for
        every input size."""
        h, w, s = x.shape[2], x.shape[3], self.stride
        return self.height, (w * self.height + h * s - 1) // (h * s) * s

    def forward(self, x):
        with torch.no_grad():
            features = self.frozen.backbone(x)
            frozen = self.frozen.head(features)
            size = self.gate_size(x)
            # else the gate reads the features just computed (never while exporting: the size is traced)
            if torch.onnx.is_in_onnx_export() or tuple(x.shape[2:]) != size:
                features = self.frozen.backbone(resize(x, size))
        self.gate_logits = self.gate(features)
        g = torch.sigmoid(self.gate_logits)
        tuned = self.tuned(x)
        self.frozen_maps, self.tuned_maps = (frozen[-1], tuned) if torch.is_grad_enabled() else (None, None)
        # at inference an image's heatmaps are one half's, as the gate chooses: the decoder's peaks pass an
        # absolute threshold, so a tenth of the tuned half's peaks would be people the frozen half never saw
        h = g if self.training else (g > 0.5).to(g)
        mixed = [(fh + h * (th - fh), fp + g * (tp - fp)) for (fh, fp), (th, tp) in zip(frozen, tuned)]
        return [(union(fh, mh), mp) for (fh, _), (mh, mp) in zip(frozen, mixed)]


def union(frozen, mixed):
    """Heatmaps (N,K+1,h,w), background last: each part the larger of the frozen half's and the mix's,
    the background the smaller (1 - the parts' maximum, as the targets' is)."""
    parts = torch.maximum(frozen[:, :-1], mixed[:, :-1])
    return torch.cat([parts, torch.minimum(frozen[:, -1:], mixed[:, -1:])], 1)


def resize(x, size):
    """`x` (N,C,h,w) bilinearly resized to `size` (H, W), as nn.functional.interpolate(mode='bilinear',
    align_corners=False) does, but as two matrix products: ONNX Runtime's Resize computes its coordinates
    otherwise (1e-4 apart), while these few ops give the same numbers in PyTorch and in an ONNX export, at any
    input size."""
    def weights(out, n):       # (out, n): row i blends the two input pixels around (i + 0.5) n / out - 0.5
        position = ((torch.arange(out, device=x.device, dtype=x.dtype) + 0.5) * (n / out) - 0.5).clamp(min=0)
        low = position.floor()
        high = torch.clamp(low + 1, max=n - 1)
        pixels = torch.arange(n, device=x.device, dtype=x.dtype)
        return (1 - (position - low))[:, None] * (pixels == low[:, None]) + \
            (position - low)[:, None] * (pixels == high[:, None])
    return weights(size[0], x.shape[2]) @ x @ weights(size[1], x.shape[3]).T


def expand(weights):
    """A plain network's state_dict as both halves' (frozen.* and tuned.*), for --finetune."""
    return {f'{half}.{key}': value for half in ('frozen', 'tuned') for key, value in weights.items()}


def targets(model):
    """The Trainer's targets(batch), called after the forward: the [dataset] extra samples' targets become
    the frozen half's maps of the same input (as model.distill's teacher does, without running it again)."""
    from model import distill

    def apply(batch):
        chosen = batch['extra'].bool()
        if chosen.any():
            distill.replace(batch, *(maps[chosen] for maps in model.frozen_maps))
    return apply


def anchor_loss(model, batch, weight, params):
    """weight x the tuned half's map loss (model.loss.compute with `params`) against the targets, on the
    [dataset] extra samples alone."""
    from model import loss
    mask = batch['mask'] * batch['extra'].to(batch['mask']).view(-1, 1, 1, 1)
    return weight * loss.compute(model.tuned_maps, batch['heatmaps'], batch['pafs'], mask, params)[0]


def domain_loss(model, batch, weight):
    """weight x the gate's cross-entropy against 1 for training images and 0 for [dataset] extra ones."""
    logits = model.gate_logits.flatten().float()
    label = 1 - batch['extra'].float().to(logits.device)
    return weight * nn.functional.binary_cross_entropy_with_logits(logits, label)
