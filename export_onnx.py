"""Export a network to ONNX with dynamic batch, height and width, checked against PyTorch with ONNX Runtime.

The file's outputs (the last stage's `heatmaps` and `pafs`, or every stage's with --all-stages) and its
metadata (the network's config, layout, stride and input normalisation, so eval.py and detect.py need no
other file) are described in model/onnx_export.py. An export that differs from PyTorch by more than 1e-4
fails and leaves no file behind.

    python export_onnx.py --checkpoint tf_mobilenet_thin.pt -o tf_mobilenet_thin.onnx
"""

import os

import model as models
from model import runner
from model.onnx_export import ExportError, export  # noqa: F401  (ExportError: what a failed export raises)
from utils import checkpoint as checkpoints
from utils import cli
from utils import config as configlib


def load_network(args):
    """(network, config) of the checkpoint the arguments name (the newest in the experiment folder by
    default); the checkpoint's [model] and [input] sections override the user's."""
    config = cli.load_config(args)
    state, path = runner.read_checkpoint(args.checkpoint, cli.model_dir(args, config))
    if not isinstance(state, dict) or 'model' not in state:
        raise cli.UserError(f'{path} holds no model weights (no "model" entry)')
    if state.get('config'):
        config, _ = runner.merge(config, configlib.loads(state['config']))
    network = models.build(config, pretrained=False)
    try:
        checkpoints.load_weights(network, state['model'], strict=True)
    except checkpoints.CheckpointError as error:
        raise cli.UserError(f'{path}: {error}') from None
    return network, config, path


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split('\n')[0])
    p.add_argument('--checkpoint', help='checkpoint to export (default: the newest of the experiment)')
    p.add_argument('-o', '--output', help='ONNX file to write (default: the checkpoint with .onnx)')
    p.add_argument('--all-stages', action='store_true', help="output every stage's maps, not just the last")
    p.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'), help='tracing input size (multiples of '
                   'the stride; default 8 x 12 output cells); the file accepts any size')
    args = p.parse_args(argv)
    network, config, path = load_network(args)
    output = args.output or os.path.splitext(path)[0] + '.onnx'
    difference = export(network, config, output, args.all_stages, args.size)
    print(f'{output}: largest difference between ONNX Runtime and PyTorch: {difference:.2e}')


if __name__ == '__main__':
    main()
