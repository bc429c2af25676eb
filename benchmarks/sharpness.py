"""How large an optimizer step a network can take: the training loss of a few batches after one step of each
size along the sign of the gradient (the shape of Adam's first steps: every weight moves by the step size)
and along the gradient itself, from the network training would start from, on the config's own training
samples and targets (labels, or the [train] teacher's maps).

A step that raises the loss is past what the network tolerates; Adam moves every weight by about
0.5 x lr per step, so an lr whose sign step raises the loss makes training wander above the loss it
started from, and the maps of every image get worse. --tensors N also lists the N tensors whose sign step
alone raises the loss most (the sharp layers).

    python benchmarks/sharpness.py -c config/quick_start.ini
    python benchmarks/sharpness.py -c config/tf_mobilenet_thin.ini --finetune downloads/tf_mobilenet_thin.pt \
        --steps 1e-6 1e-5 5e-5 --tensors 10

The training data, augmentation, targets and [train] equalize are the config's, as train.py prepares them;
it runs on the CPU.
"""

import json
import os
import sys

import torch

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from model import loss as losslib  # noqa: E402
from transform import normalize  # noqa: E402
from utils import cli  # noqa: E402
from utils.io import atomic_write_text  # noqa: E402


def arguments():
    p = cli.parser(__doc__.split('\n\n')[0])
    p.add_argument('--finetune', help='weights to start from (default: [train] finetune)')
    p.add_argument('--steps', type=float, nargs='+', default=[1e-7, 1e-6, 3e-6, 1e-5, 5e-5],
                   help='step sizes: how far a sign step moves each weight (an Adam lr moves it ~half that)')
    p.add_argument('--batches', type=int, default=3, help='training batches the loss is measured on')
    p.add_argument('--tensors', type=int, default=0,
                   help='list the N tensors whose sign step of the largest --steps alone hurts most')
    p.add_argument('--threads', type=int, default=2, help='torch threads')
    p.add_argument('--json', help='write the figures to this file too')
    return p


def prepare(config, finetune, count):
    """(network, [batch]) as train.py starts: the finetune weights (equalized when [train] equalize says so)
    and `count` training batches with their targets."""
    device = torch.device('cpu')
    network = train.build_model(config)
    if finetune:
        train.load_finetune(network, finetune, config)
    loader = train.build_loader(config, network.stride, 0, 1, config.getint('train', 'seed'))
    if finetune and config.getboolean('train', 'equalize'):
        train.equalize_on_training_data(network, loader.dataset, config)
    targets = train.targets(config, device)
    batches, params = [], normalize.params(config)
    for batch in loader:
        batch['image'] = normalize.to_input(batch['image'], params)
        if targets is not None:
            targets(batch)
        batches.append(batch)
        if len(batches) == count:
            break
    return network.eval(), batches


def loss_of(network, batch, weights):
    """model.loss.compute of the network on one batch, as the trainer computes it."""
    return losslib.compute(network(batch['image']), batch['heatmaps'], batch['pafs'], batch['mask'], weights)


def measure_loss(network, batches, weights):
    """(total loss, last stage's loss) averaged over `batches`."""
    total = last = 0.0
    with torch.no_grad():
        for batch in batches:
            value, terms = loss_of(network, batch, weights)
            stages = len(terms) // 2
            total += float(value)
            last += float(terms[f'stage{stages}/heatmap'] + terms[f'stage{stages}/paf'])
    return total / len(batches), last / len(batches)


def gradients(network, batches, weights):
    network.zero_grad()
    for batch in batches:
        value, _ = loss_of(network, batch, weights)
        (value / len(batches)).backward()
    return {name: p.grad.detach().clone() for name, p in network.named_parameters() if p.grad is not None}


def stepped(network, start, direction, size, names=None):
    """Set the weights to start - size * direction (only the tensors `names`, when given)."""
    with torch.no_grad():
        for name, p in network.named_parameters():
            if name in direction and (names is None or name in names):
                p.copy_(start[name] - size * direction[name])
            else:
                p.copy_(start[name])


@cli.main
def main(argv=None):
    parser = arguments()
    args = parser.parse_args(argv)
    if args.batches < 1 or args.tensors < 0 or min(args.steps) < 0:
        parser.error('--batches must be >= 1, --tensors >= 0 and every --steps >= 0')
    torch.set_num_threads(args.threads)
    config = cli.load_config(args)
    finetune = args.finetune if args.finetune is not None else config.get('train', 'finetune').strip()
    network, batches = prepare(config, finetune, args.batches)
    weights = losslib.weights(config)
    start = {name: p.detach().clone() for name, p in network.named_parameters()}
    base = measure_loss(network, batches, weights)
    grads = gradients(network, batches, weights)
    signs = {name: g.sign() for name, g in grads.items()}
    norm = sum(float(g.abs().sum()) for g in grads.values()) / sum(g.numel() for g in grads.values())
    print(f'machine: {machine()}')
    print(f'start: loss {base[0]:.4f} (last stage {base[1]:.4f}) on {len(batches)} batches; '
          f'mean |gradient| {norm:.3g}')
    print('| step | loss after a sign step | last stage | loss after a gradient step of the same mean size '
          '| last stage |\n|---|---|---|---|---|')
    rows = []
    for size in args.steps:
        stepped(network, start, signs, size)
        sign = measure_loss(network, batches, weights)
        stepped(network, start, grads, size / norm)
        plain = measure_loss(network, batches, weights)
        rows.append({'step': size, 'sign': sign, 'gradient': plain})
        print(f'| {size:g} | {sign[0]:.4f} ({sign[0] - base[0]:+.4f}) | {sign[1]:.4f} | '
              f'{plain[0]:.4f} ({plain[0] - base[0]:+.4f}) | {plain[1]:.4f} |', flush=True)
    tensors = []
    if args.tensors:
        size = args.steps[-1]
        for name in signs:
            stepped(network, start, signs, size, {name})
            tensors.append((measure_loss(network, batches, weights)[0] - base[0], name))
        tensors.sort(reverse=True)
        print(f'\nthe {args.tensors} tensors whose sign step of {size:g} alone raises the loss most:')
        for change, name in tensors[:args.tensors]:
            print(f'  {change:+.4f}  {name} {tuple(start[name].shape)} mean |w| '
                  f'{float(start[name].abs().mean()):.3g}')
    if args.json:
        atomic_write_text(args.json, json.dumps({'start': base, 'steps': rows, 'tensors': tensors}) + '\n')


if __name__ == '__main__':
    main()
