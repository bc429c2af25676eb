"""Convert CMU's original OpenPose COCO body model (Caffe) into a checkpoint of this framework.

Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields", CVPR 2017:
`pose_iter_440000.caffemodel` (18 parts, 19 limbs) becomes a `vgg19` + 6 `openpose` stages checkpoint
with the `cmu18` layout and CMU's input normalisation (BGR, x / 256 - 0.5), which eval.py, detect.py
and export_onnx.py read directly.

No Caffe is needed: the caffemodel's protobuf is decoded here from the wire format (NetParameter with
the current `layer` = 100 or the legacy `layers` = 2 field; BlobProto `data` = 5 packed floats,
`shape` = 7 or the legacy num/channels/height/width = 1..4). Which Caffe layer fills which parameter is
data, config/convert/cmu_coco.ini; every Convolution layer must be used exactly once and every
parameter filled with the right shape, or the conversion stops and lists what is wrong.

    python convert_caffe_torch.py pose_iter_440000.caffemodel -o cmu_coco.pt
"""

import configparser
import os
import time

import numpy as np
import torch

import model as models
from model import equalize
from transform import normalize
from utils import cli, fetch
from utils import config as configlib
from utils.config import config_text
from utils.io import atomic_path

MAPPING = os.path.join(configlib.ROOT, 'config', 'convert', 'cmu_coco.ini')
CONV_BLOBS = ('weight', 'bias')          # Caffe's Convolution blobs, in order; weights are (out, in, kh, kw)
V1_TYPES = {4: 'Convolution', 14: 'InnerProduct', 39: 'Deconvolution'}  # V1LayerParameter.LayerType


class CaffeError(cli.UserError):
    """A caffemodel cannot be read, or does not fit the network."""


# --- protobuf wire format -------------------------------------------------------------------------------

def _varint(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def fields(buf, start=0, end=None):
    """Yield (field number, wire type, value) of the protobuf message in buf[start:end].

    Varints are ints, fixed 32/64-bit values are their bytes, length-delimited values (start, end)."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = (pos, pos + size), pos + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f'unsupported protobuf wire type {wire} at byte {pos}')
        yield number, wire, value
    if pos != end:
        raise ValueError(f'message runs past its end at byte {end}')


def _packed_varints(buf, span):
    values, pos = [], span[0]
    while pos < span[1]:
        value, pos = _varint(buf, pos)
        values.append(value)
    return values


def _string(buf, span):
    return bytes(buf[span[0]:span[1]]).decode('utf-8', errors='replace')


def read_blob(buf, start, end):
    """A BlobProto as a float32 array in its shape (`shape`, or the legacy 4-D num/channels/height/width)."""
    chunks, dims, legacy = [], None, [0, 0, 0, 0]
    for number, wire, value in fields(buf, start, end):
        if number == 5 and wire == 2:                 # data, packed floats
            chunks.append(np.frombuffer(buf, '<f4', (value[1] - value[0]) // 4, value[0]))
        elif number == 5 and wire == 5:               # data, one unpacked float
            chunks.append(np.frombuffer(value, '<f4'))
        elif number == 8 and wire == 2:               # double_data, packed
            chunks.append(np.frombuffer(buf, '<f8', (value[1] - value[0]) // 8, value[0]).astype(np.float32))
        elif number == 7 and wire == 2:               # shape: BlobShape, dim = 1 (packed or not)
            dims = []
            for n, w, v in fields(buf, *value):
                if n == 1:
                    dims.extend(_packed_varints(buf, v) if w == 2 else [v])
        elif 1 <= number <= 4 and wire == 0:          # legacy num, channels, height, width
            legacy[number - 1] = value
    data = chunks[0] if len(chunks) == 1 else np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    shape = tuple(dims) if dims is not None else tuple(legacy)
    if int(np.prod(shape)) != data.size:
        raise ValueError(f'blob of shape {shape} holds {data.size} values')
    return data.reshape(shape)


def read_caffemodel(path):
    """[(layer name, layer type, [blob arrays])] of the layers with blobs, in file order.

    Reads NetParameter.layer (LayerParameter: name 1, type 2, blobs 7) and the legacy
    NetParameter.layers (V1LayerParameter: name 4, type 5 as an enum, blobs 6)."""
    if not os.path.isfile(path):
        raise CaffeError(f'caffemodel not found: {path}')
    buf = bytearray(os.path.getsize(path))         # writable, so the arrays viewing it are too
    with open(path, 'rb') as f:
        f.readinto(buf)
    layers = []
    try:
        for number, wire, value in fields(buf):
            if wire == 2 and number in (100, 2):
                layers.append(_read_layer(buf, value, legacy=number == 2))
    except (ValueError, IndexError) as error:
        raise CaffeError(f'{path} is not a readable caffemodel: {error}') from None
    if not layers:
        raise CaffeError(f'{path} is not a caffemodel: it has no layers')
    return [layer for layer in layers if layer[2]]


def _read_layer(buf, span, legacy):
    name_field, type_field, blob_field = (4, 5, 6) if legacy else (1, 2, 7)
    name, kind, blobs = '', '', []
    for number, wire, value in fields(buf, *span):
        if number == name_field and wire == 2:
            name = _string(buf, value)
        elif number == type_field:
            kind = V1_TYPES.get(value, f'V1 type {value}') if legacy else _string(buf, value)
        elif number == blob_field and wire == 2:
            try:
                blobs.append(read_blob(buf, *value))
            except ValueError as error:
                raise ValueError(f'layer {name or "?"}: {error}') from None
    return name, kind, blobs


# --- mapping and conversion ------------------------------------------------------------------------------

def read_mapping(path=MAPPING):
    """(layers {Caffe layer name: parameter prefix}, path of the network's config overlay) of a mapping."""
    if not os.path.isfile(path):
        raise CaffeError(f'mapping file not found: {path}')
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str                          # Caffe layer names are case-sensitive
    try:
        parser.read(path, encoding='utf-8')
        layers = dict(parser['layers'])
        overlay = os.path.join(configlib.ROOT, 'config', parser['network']['overlay'])
    except (configparser.Error, KeyError) as error:
        raise CaffeError(f'mapping file {path}: {error}') from None
    return layers, overlay


def model_shapes(config):
    """{parameter name: shape} of the network `config` describes, built on the meta device (no memory)."""
    with torch.device('meta'):
        network = models.build(config, pretrained=False)
    return {name: tuple(t.shape) for name, t in network.state_dict().items()}


def state_dict(layers, mapping, shapes):
    """Fill `shapes`' parameters from caffemodel `layers` via `mapping`; CaffeError lists every problem."""
    result, problems, seen = {}, [], set()
    for name, kind, blobs in layers:
        if name in seen:
            problems.append(f'layer {name} appears twice')
            continue
        seen.add(name)
        prefix = mapping.get(name)
        if prefix is None or kind != 'Convolution' or len(blobs) != len(CONV_BLOBS):
            why = ('not in the mapping' if prefix is None else f'type {kind}' if kind != 'Convolution'
                   else f'{len(blobs)} blobs, expected {len(CONV_BLOBS)}')
            problems.append(f'left over: layer {name} ({why})')
            continue
        for suffix, blob in zip(CONV_BLOBS, blobs):
            key = f'{prefix}.{suffix}'
            if key not in shapes:
                problems.append(f'left over: layer {name} -> {key}, which the network does not have')
            elif blob.shape != shapes[key] and blob.size == int(np.prod(shapes[key])) \
                    and _squeeze_leading(blob.shape) == _squeeze_leading(shapes[key]):
                result[key] = torch.from_numpy(blob.reshape(shapes[key]))    # legacy 4-D bias (1, 1, 1, n)
            elif blob.shape != shapes[key]:
                problems.append(f'shape: layer {name} blob {suffix} {blob.shape}, '
                                f'network {key} {shapes[key]}')
            else:
                result[key] = torch.from_numpy(blob)
    problems += [f'missing: {key} {shape}' for key, shape in shapes.items() if key not in result]
    if problems:
        shown = problems[:30] + ([f'... {len(problems) - 30} more'] if len(problems) > 30 else [])
        raise CaffeError(f'the caffemodel does not fit the network ({len(problems)} problems): '
                         + '; '.join(shown))
    return result


def _squeeze_leading(shape):
    shape = list(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape.pop(0)
    return tuple(shape)


def network_config(overlay, files=(), mods=()):
    """The config of a converted network: config/default.ini overlaid by the network's `overlay`, then by
    `files`, then `mods`; `[model] pretrained = none`, since every weight comes from the converted file."""
    return configlib.load([overlay, *files], ['model/pretrained=none', *mods])


def convert(caffemodel, mapping=MAPPING, files=(), mods=()):
    """The checkpoint {'model': state_dict, 'config': config text of [model] and [input]} of `caffemodel`,
    for the network of the mapping's overlay (with `files` and `mods` on top, see network_config)."""
    layers_map, overlay = read_mapping(mapping)
    config = network_config(overlay, files, mods)
    layers = read_caffemodel(caffemodel)
    weights = state_dict(layers, layers_map, model_shapes(config))
    return {'model': weights, 'config': config_text(config)}


def condition(checkpoint, source_norm=None, calibration=None):
    """`checkpoint` with well-conditioned weights for fine-tuning (model/equalize.py): the first convolution
    takes input normalised as the checkpoint's [input] says instead of `source_norm` (how the source file's
    network reads pixels; None: the same), and every hidden channel is rescaled to unit size on the
    `calibration` images (default: the fetched photos, else noise). The maps stay the same."""
    config = configlib.loads(checkpoint['config'])
    network = models.build(config, pretrained=False)
    network.load_state_dict(checkpoint['model'])
    network.eval()
    norm = normalize.params(config)
    if source_norm is not None and source_norm != norm:
        if source_norm['channel_order'] != norm['channel_order']:
            raise ValueError('changing the channel order of a converted network is not supported')
        first = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
        equalize.renormalize_input(first, source_norm, norm)
    if calibration is None:
        calibration = sorted((fetch.photos(download=False) or {}).values())
    images = equalize.calibration_batch(calibration, norm)
    try:
        network = equalize.equalize(network, images)
    except ValueError as error:
        raise cli.UserError(f'cannot rescale the converted network: {error} (--folded keeps it as it is)') \
            from None
    return dict(checkpoint, model={k: v.contiguous() for k, v in network.state_dict().items()})


def calibration_arguments(p):
    """The converters' options for condition()."""
    p.add_argument('--calibration', nargs='+', metavar='IMAGE',
                   help='real images on which hidden channels are rescaled to unit size for fine-tuning '
                        '(default: the photos of python -m utils.fetch photos, else noise)')
    p.add_argument('--folded', action='store_true',
                   help="keep the file's own weight scales (fine-tuning them is ill-conditioned)")


def save(checkpoint, path):
    """Write a converted checkpoint atomically."""
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split('\n')[0])
    p.add_argument('caffemodel', help="CMU's pose_iter_440000.caffemodel (or another model the mapping fits)")
    p.add_argument('-o', '--output', help='checkpoint to write (default: the caffemodel with .pt)')
    p.add_argument('--mapping', default=MAPPING, help='Caffe layer name -> parameter name mapping file')
    calibration_arguments(p)
    args = p.parse_args(argv)
    output = args.output or os.path.splitext(args.caffemodel)[0] + '.pt'
    start = time.perf_counter()
    checkpoint = convert(args.caffemodel, args.mapping, args.config, args.modify)
    if not args.folded:
        checkpoint = condition(checkpoint, calibration=args.calibration)
    save(checkpoint, output)
    count = sum(t.numel() for t in checkpoint['model'].values())
    print(f'{output}: {len(checkpoint["model"])} tensors, {count / 1e6:.1f}M parameters, '
          f'{time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    main()
