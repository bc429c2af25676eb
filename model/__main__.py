"""Model summary: `python -m model -c CONFIG [--size 368]` prints the layer table, the parameter count and
the multiply-accumulates (GMACs) of one forward pass at a square input, and as its last line one JSON
object {"params": .., "gmacs": ..}.

MACs are counted with forward hooks on every Conv2d, ConvTranspose2d and Linear (a multiply-add is one
MAC; 1 MAC = 2 FLOPs); BatchNorm, activations, pooling, interpolation and concatenation are not counted.
Lightweight OpenPose's "9 GFLOPs" and CMU's 136 "GFLOPs" in the literature are MACs in this sense. The
forward pass runs on the meta device, so no memory or time goes into real arithmetic.
"""

import json

import torch
from torch import nn

import model as models
from utils import cli

COUNTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def _macs(module, inputs, output):
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    if isinstance(module, nn.ConvTranspose2d):  # every input position scatters into a full kernel
        per_input = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        return inputs[0].numel() * per_input
    per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
    return output.numel() * per_output


def _kernel(module):
    if isinstance(module, nn.Linear):
        return 'linear'
    text = 'x'.join(map(str, module.kernel_size))
    for label, value in (('s', module.stride[0]), ('d', module.dilation[0]), ('g', module.groups)):
        text += f' {label}{value}' if value != 1 else ''
    return text


def profile(network, size=368):
    """(rows, params, macs) of `network` on one (1, 3, size, size) input: a row per counted layer,
    (name, kernel, output shape, params, macs), in call order. Runs on the network's device (build it on
    the meta device, as build_meta does, for a pass that costs nothing)."""
    rows = []

    def hook(module, inputs, output):
        rows.append((names[module], _kernel(module), tuple(output.shape),
                     sum(p.numel() for p in module.parameters()), _macs(module, inputs, output)))

    names = {module: name for name, module in network.named_modules()}
    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, COUNTED)]
    try:
        with torch.no_grad():
            network(torch.zeros(1, 3, size, size, device=next(network.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return rows, sum(p.numel() for p in network.parameters()), sum(row[4] for row in rows)


def build_meta(config):
    """The network of `config` on the meta device (no weights, no pretrained download)."""
    with torch.device('meta'):
        return models.build(config, pretrained=False)


def table(rows):
    width = max([len(row[0]) for row in rows] + [5])
    lines = [f'{"layer":<{width}}  {"kernel":<12} {"output":<18} {"params":>11} {"MMACs":>10}']
    for name, kernel, shape, params, macs in rows:
        lines.append(f'{name:<{width}}  {kernel:<12} {"x".join(map(str, shape[1:])):<18} '
                     f'{params:>11,} {macs / 1e6:>10.1f}')
    return '\n'.join(lines)


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split('\n\n')[0])
    p.add_argument('--size', type=int, default=368, help='square input size in pixels')
    args = p.parse_args(argv)
    config = cli.load_config(args)
    network = build_meta(config)
    if args.size < network.stride or args.size % network.stride:
        raise cli.UserError(f'--size {args.size}: use a positive multiple of the stride {network.stride}')
    rows, params, macs = profile(network, args.size)
    print(table(rows))
    print(f'{config.get("model", "backbone")} + {config.get("model", "first_stage")} + '
          f'{config.getint("model", "stages") - 1} x {config.get("model", "stage")}, '
          f'layout {config.get("model", "layout")}, stride {network.stride}, input {args.size}x{args.size}: '
          f'{params / 1e6:.2f} M parameters, {macs / 1e9:.2f} GMACs')
    print(json.dumps({'params': params, 'gmacs': round(macs / 1e9, 3)}))


if __name__ == '__main__':
    main()
