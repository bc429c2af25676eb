"""convert_caffe_torch: caffemodels written here in Caffe's format (serialised by the protobuf package from
a minimal copy of caffe.proto's messages, so the reader is checked against real protobuf encoding) with
CMU's layer names convert into the vgg19 + openpose network, which then computes what a forward pass
written directly from the caffemodel's arrays computes."""

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import convert_caffe_torch as caffe
import model as models
from utils import config as configlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['model/stage_channels=8', 'model/stages=3']        # the real VGG trunk, narrow stages
Field = descriptor_pb2.FieldDescriptorProto


# The messages (fields: name number [repeated] type) of caffe.proto that a caffemodel's weights use.
CAFFE_PROTO = {
    'BlobShape': 'dim 1 repeated int64',
    'BlobProto': 'num 1 int32, channels 2 int32, height 3 int32, width 4 int32, data 5 repeated float, '
                 'shape 7 BlobShape',
    'LayerParameter': 'name 1 string, type 2 string, bottom 3 repeated string, blobs 7 repeated BlobProto',
    'V1LayerParameter': 'name 4 string, type 5 int32, blobs 6 repeated BlobProto',    # type: an enum
    'NetParameter': 'name 1 string, layers 2 repeated V1LayerParameter, layer 100 repeated LayerParameter',
}


def caffe_messages():
    """Protobuf message classes built from CAFFE_PROTO (packed numbers, as caffe.proto declares them)."""
    proto = descriptor_pb2.FileDescriptorProto(name='caffe_subset.proto', package='caffe', syntax='proto2')
    for name, spec in CAFFE_PROTO.items():
        message = proto.message_type.add(name=name)
        for text in spec.split(', '):
            words = text.split()
            field, number, kind = words[0], int(words[1]), words[-1]
            f = message.field.add(name=field, number=number,
                                  label=Field.LABEL_REPEATED if 'repeated' in words else Field.LABEL_OPTIONAL)
            if kind in CAFFE_PROTO:
                f.type, f.type_name = Field.TYPE_MESSAGE, f'.caffe.{kind}'
            else:
                f.type = getattr(Field, f'TYPE_{kind.upper()}')
                f.options.packed = 'repeated' in words and kind != 'string'
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f'caffe.{name}'))
            for name in CAFFE_PROTO}


MESSAGES = caffe_messages()


def write_caffemodel(path, layers, legacy=False):
    """layers: [(name, type, [arrays])]; legacy writes V1 `layers` (type enum, 4-D num/channels/h/w)."""
    net = MESSAGES['NetParameter'](name='test')
    for name, kind, blobs in layers:
        if legacy:
            layer = net.layers.add(name=name, type={'Convolution': 4, 'ReLU': 18}[kind])
        else:
            layer = net.layer.add(name=name, type=kind, bottom=['data'])
        for array in blobs:
            blob = layer.blobs.add()
            if legacy:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().tolist())
    with open(path, 'wb') as f:
        f.write(net.SerializeToString())
    return str(path)


def random_layers(mapping, shapes, seed=0):
    """CMU's conv layers with random blobs of the shapes `shapes` asks for, in the mapping's order."""
    rng = np.random.default_rng(seed)
    layers = []
    for name, prefix in mapping.items():
        if f'{prefix}.weight' in shapes:
            weight = rng.normal(0, 0.05, shapes[f'{prefix}.weight']).astype(np.float32)
            bias = rng.normal(0, 0.05, shapes[f'{prefix}.bias']).astype(np.float32)
            layers.append((name, 'Convolution', [weight, bias]))
    return layers


def reference_forward(arrays, x, stages):
    """CMU's network computed straight from the caffemodel's arrays {layer name: (weight, bias)}."""
    def conv(name, x, relu=True):
        weight, bias = (torch.from_numpy(a) for a in arrays[name])
        y = F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)
        return F.relu(y) if relu else y

    for name in ('conv1_1', 'conv1_2', 'pool', 'conv2_1', 'conv2_2', 'pool', 'conv3_1', 'conv3_2', 'conv3_3',
                 'conv3_4', 'pool', 'conv4_1', 'conv4_2', 'conv4_3_CPM', 'conv4_4_CPM'):
        x = F.max_pool2d(x, 2, 2) if name == 'pool' else conv(name, x)
    features, inputs, outputs = x, x, []
    for t in range(1, stages + 1):
        branches = []
        for branch in ('L1', 'L2'):
            names = ([f'conv5_{i}_CPM_{branch}' for i in range(1, 6)] if t == 1
                     else [f'Mconv{i}_stage{t}_{branch}' for i in range(1, 8)])
            y = inputs
            for i, name in enumerate(names):
                y = conv(name, y, relu=i < len(names) - 1)
            branches.append(y)
        pafs, heatmaps = branches
        outputs.append((heatmaps, pafs))
        inputs = torch.cat([pafs, heatmaps, features], 1)
    return outputs


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    """(caffemodel path, layers, converted checkpoint) of a narrow 3-stage CMU network."""
    mapping, overlay = caffe.read_mapping()
    shapes = caffe.model_shapes(caffe.network_config(overlay, mods=SMALL))
    layers = random_layers(mapping, shapes)
    path = write_caffemodel(tmp_path_factory.mktemp('caffe') / 'small.caffemodel', layers)
    return path, layers, caffe.convert(path, mods=SMALL)


def test_mapping_is_cmus_full_layer_list():
    mapping, overlay = caffe.read_mapping()
    expected = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3', 'conv3_4',
                'conv4_1', 'conv4_2', 'conv4_3_CPM', 'conv4_4_CPM']
    expected += [f'conv5_{i}_CPM_L{b}' for b in (1, 2) for i in range(1, 6)]
    expected += [f'Mconv{i}_stage{t}_L{b}' for t in range(2, 7) for b in (1, 2) for i in range(1, 8)]
    assert sorted(mapping) == sorted(expected) and len(mapping) == 92
    config = caffe.network_config(overlay)
    with torch.device('meta'):
        network = models.build(config, pretrained=False)
    assert mapping == models.cmu_layers(network)      # the full-size network's convolutions, by CMU's names
    shapes = caffe.model_shapes(config)
    assert {f'{p}.{s}' for p in mapping.values() for s in caffe.CONV_BLOBS} == set(shapes)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 52_311_446     # CMU's COCO model


def test_every_weight_lands_where_it_belongs(small):
    _, layers, checkpoint = small
    mapping, _ = caffe.read_mapping()
    weights = checkpoint['model']
    assert len(weights) == 2 * len(layers)
    for name, _, (weight, bias) in layers:
        assert np.array_equal(weights[f'{mapping[name]}.weight'].numpy(), weight), name
        assert np.array_equal(weights[f'{mapping[name]}.bias'].numpy(), bias), name
    config = configlib.loads(checkpoint['config'])
    assert config.get('model', 'backbone') == 'vgg19' and config.get('model', 'layout') == 'cmu18'
    assert config.get('input', 'channel_order') == 'bgr' and config.getfloat('input', 'divisor') == 256
    assert config.getfloatlist('input', 'mean') == [0.5] * 3
    assert config.getfloatlist('input', 'std') == [1] * 3
    assert config.get('model', 'pretrained') == 'none' and config.getint('model', 'stages') == 3


def test_network_computes_the_caffemodels_forward(small, tmp_path):
    path, layers, checkpoint = small
    caffe.save(checkpoint, tmp_path / 'converted.pt')
    saved = torch.load(tmp_path / 'converted.pt', weights_only=True)
    network = models.build(configlib.loads(saved['config']), pretrained=False).eval()
    network.load_state_dict(saved['model'])
    x = torch.randn(2, 3, 32, 48)
    arrays = {name: blobs for name, _, blobs in layers}
    with torch.no_grad():
        ours, reference = network(x), reference_forward(arrays, x, stages=3)
    assert len(ours) == 3
    for (h, p), (rh, rp) in zip(ours, reference):
        assert h.shape == (2, 19, 4, 6) and p.shape == (2, 38, 4, 6)
        assert torch.allclose(h, rh, atol=1e-5) and torch.allclose(p, rp, atol=1e-5)


def test_legacy_layers_and_blob_shapes(tmp_path):
    rng = np.random.default_rng(1)
    blobs = [rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)]
    layers = [('conv1_1', 'Convolution', blobs), ('relu1_1', 'ReLU', [])]
    for legacy in (False, True):
        path = write_caffemodel(tmp_path / f'legacy{legacy}.caffemodel', layers, legacy)
        read = caffe.read_caffemodel(path)
        assert [(name, kind) for name, kind, _ in read] == [('conv1_1', 'Convolution')]   # no blobs: skipped
        weight, bias = read[0][2]
        assert np.array_equal(weight, blobs[0])
        assert np.array_equal(bias.reshape(-1), blobs[1]) and bias.shape == ((1, 1, 1, 4) if legacy else (4,))


def test_missing_left_over_and_misshaped_layers_are_listed(small, tmp_path):
    _, layers, _ = small
    broken = [layer for layer in layers if layer[0] != 'conv2_1']                      # missing
    broken.append(('conv9_9', 'Convolution', layers[0][2]))                            # left over
    broken.append(('Mconv1_stage5_L1', 'Convolution', layers[0][2]))                   # no stage 5 here
    name, kind, (weight, bias) = broken[0]
    broken[0] = (name, kind, [weight[:, :2], bias])                                     # wrong shape
    path = write_caffemodel(tmp_path / 'broken.caffemodel', broken)
    with pytest.raises(caffe.CaffeError) as error:
        caffe.convert(path, mods=SMALL)
    message = str(error.value)
    assert 'missing: backbone.conv2_1.weight' in message and 'missing: backbone.conv2_1.bias' in message
    assert 'left over: layer conv9_9 (not in the mapping)' in message
    assert 'left over: layer Mconv1_stage5_L1 -> stages.4.Mconv1_stage5_L1.weight' in message
    assert 'shape: layer conv1_1 blob weight (64, 2, 3, 3), network backbone.conv1_1.weight (64, 3, 3, 3)' \
        in message


def test_unreadable_files(tmp_path):
    with pytest.raises(caffe.CaffeError, match='not found'):
        caffe.read_caffemodel(str(tmp_path / 'nope.caffemodel'))
    junk = tmp_path / 'junk.caffemodel'
    junk.write_bytes(b'\x0a\xff\xff\xff\x0f' + b'x' * 10)     # a field longer than the file
    with pytest.raises(caffe.CaffeError, match='junk.caffemodel is not a readable caffemodel'):
        caffe.read_caffemodel(str(junk))


def test_script_writes_checkpoint_and_reports_errors_in_one_line(small, tmp_path, capsys):
    path, _, _ = small
    output = tmp_path / 'out.pt'
    caffe.main([path, '-o', str(output), '-m', SMALL[0], '-m', SMALL[1]])
    assert output.is_file() and 'out.pt: 100 tensors' in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit:
        caffe.main([path, '-o', str(output)])                     # the mapping's 6 stages
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.startswith('error: the caffemodel does not fit the network')
    assert len(error.strip().splitlines()) == 1
