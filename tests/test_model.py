import io
import itertools
import json
import os
import subprocess
import sys
import warnings
from contextlib import redirect_stdout

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import model
from model import loss as losslib
from model import pretrained
from model.__main__ import build_meta, profile
from model.__main__ import main as summary_main
from pose import skeleton as skeletonlib
from utils import config as configlib
from utils.cli import UserError
from utils.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['model/stage_channels=16', 'model/resnet_depth=18', 'model/mobilenet_width=0.5']
SHIPPED = ['cmu_vgg19', 'mobilenet_v2', 'inception_v4_unet', 'resnet50', 'quick_start']


pytestmark = pytest.mark.usefixtures('one_torch_thread')


def config(*mods, files=()):
    return configlib.load(files, SMALL + list(mods))


def first_conv(network):
    return next(m for m in network.backbone.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize('backbone,stage', list(itertools.product(model.available('backbone'),
                                                                   model.available('stage'))))
def test_every_backbone_with_every_stage(backbone, stage):
    torch.manual_seed(0)
    network = model.build(config(f'model/backbone={backbone}', f'model/first_stage={stage}',
                                 f'model/stage={stage}', 'model/stages=2'))
    skeleton = skeletonlib.load('cmu18')
    n, height, width = 2, 64, 80
    outputs = network(torch.randn(n, 3, height, width))
    cells = (height // network.stride, width // network.stride)
    assert network.stride == 8 and len(outputs) == 2
    for heatmaps, pafs in outputs:
        assert heatmaps.shape == (n, len(skeleton.parts) + 1) + cells
        assert pafs.shape == (n, 2 * len(skeleton.limbs)) + cells
        assert torch.isfinite(heatmaps).all() and torch.isfinite(pafs).all()
    sum(o.square().mean() for pair in outputs for o in pair).backward()
    grad = first_conv(network).weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_channels_follow_the_layout():
    network = model.build(config('model/layout=coco17', 'model/stages=1'))
    heatmaps, pafs = network(torch.randn(1, 3, 32, 48))[0]
    coco = skeletonlib.load('coco17')
    assert heatmaps.shape == (1, 18, 4, 6) and pafs.shape == (1, 2 * len(coco.limbs), 4, 6)


def test_refinement_input_is_pafs_heatmaps_features_in_cmu_order():
    network = model.build(config('model/backbone=vgg19', 'model/first_stage=openpose', 'model/stage=openpose',
                                 'model/stages=2')).eval()
    seen = {}
    network.stages[1].register_forward_pre_hook(lambda module, args: seen.setdefault('input', args[0]))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        (heatmaps, pafs), _ = network(x)
        features = network.backbone(x)
    assert torch.equal(seen['input'], torch.cat([pafs, heatmaps, features], 1))


def cmu_names(stages=6):
    """CMU's pose_deploy_linevec.prototxt convolutions in forward order, written out from its naming rules."""
    names = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3', 'conv3_4',
             'conv4_1', 'conv4_2', 'conv4_3_CPM', 'conv4_4_CPM']
    names += [f'conv5_{i}_CPM_{branch}' for branch in ('L1', 'L2') for i in range(1, 6)]
    names += [f'Mconv{i}_stage{t}_{branch}' for t in range(2, stages + 1) for branch in ('L1', 'L2')
              for i in range(1, 8)]
    return names


def test_cmu_model_parameters_names_and_cost():
    network = build_meta(configlib.load([os.path.join(ROOT, 'config', 'cmu_vgg19.ini')]))
    assert sum(p.numel() for p in network.parameters()) == 52_311_446      # CMU's COCO model: 52.3 M
    layers = model.cmu_layers(network)
    assert list(layers) == cmu_names()
    assert layers['conv4_4_CPM'] == 'backbone.conv4_4_CPM'
    assert layers['conv5_5_CPM_L1'] == 'stages.0.conv5_5_CPM_L1'
    assert layers['Mconv7_stage6_L2'] == 'stages.5.Mconv7_stage6_L2'
    expected_keys = {f'{prefix}.{suffix}' for prefix in layers.values() for suffix in ('weight', 'bias')}
    assert set(network.state_dict()) == expected_keys
    shapes = dict(network.state_dict())
    assert shapes['stages.0.conv5_5_CPM_L1.weight'].shape == (38, 512, 1, 1)
    assert shapes['stages.0.conv5_5_CPM_L2.weight'].shape == (19, 512, 1, 1)
    assert shapes['stages.1.Mconv1_stage2_L1.weight'].shape == (128, 128 + 19 + 38, 7, 7)
    assert shapes['stages.5.Mconv7_stage6_L1.weight'].shape == (38, 128, 1, 1)
    _, _, macs = profile(network, 368)
    assert 135e9 < macs < 137e9                                               # CMU's ~136 GMACs


def test_mac_count_matches_torch_flop_counter():
    network = model.build(config('model/first_stage=unet', 'model/stage=lightweight')).eval()
    rows, params, macs = profile(network, 64)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.zeros(1, 3, 64, 64))
    assert macs == counter.get_total_flops() // 2
    assert params == sum(p.numel() for p in network.parameters()) and len(rows) > 10


@pytest.mark.parametrize('name', SHIPPED)
def test_summary_of_every_shipped_config(name):
    out = io.StringIO()
    with redirect_stdout(out):
        summary_main(['-c', os.path.join(ROOT, 'config', f'{name}.ini')])
    lines = out.getvalue().strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result) == {'params': 0, 'gmacs': 0}.keys() and result['params'] > 0 and result['gmacs'] > 0
    assert 'stages.0.' in out.getvalue()
    if name == 'cmu_vgg19':
        assert result['params'] == 52_311_446 and abs(result['gmacs'] - 135.9) < 0.5
    if name == 'mobilenet_v2':
        assert result['gmacs'] <= 9.0           # Lightweight OpenPose: 9 GMACs ("GFLOPs") at 368x368


def test_summary_command_line():
    result = subprocess.run([sys.executable, '-m', 'model', '-c', 'config/quick_start.ini', '--size', '224'],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])['gmacs'] > 0


def test_summary_errors_are_one_line(capsys):
    for argv in (['-m', 'model/backbone=vgg9'], ['--size', '100']):
        with pytest.raises(SystemExit) as exit_:
            summary_main(argv)
        assert exit_.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith('error:') and len(error.splitlines()) == 1
        assert ("'vgg9'" in error and 'vgg19' in error) or '--size 100' in error


@pytest.mark.parametrize('mods,message', [
    (['model/backbone=vgg9'], r"backbone = 'vgg9'.*available: .*mobilenet_v2.*vgg19"),
    (['model/stage=dense'], r"stage = 'dense'.*available: .*openpose"),
    (['model/stages=0'], r'stages = 0'),
    (['model/backbone=resnet', 'model/resnet_depth=34'], r'resnet_depth = 34: use 18 or 50'),
    (['model/layout=nope'], r"layout = 'nope'"),
    (['model/mobilenet_width=0'], r'mobilenet_width = 0'),
])
def test_bad_model_options_are_named(mods, message):
    with pytest.raises(ConfigError, match=message):
        model.build(config(*mods))


def test_dilated_depthwise_training_path_is_exact():
    network = model.build(config('model/stages=1'))
    backbone = network.backbone.double().train()
    phase = [m for m in backbone.modules() if type(m).__name__ == 'PhaseConv2d']
    assert len(phase) == 6
    x = torch.randn(2, 3, 72, 88, dtype=torch.float64)     # 9 x 11 cells: odd sizes get padded
    results = []
    for use_phase in (True, False):
        for module in phase:
            module.training = use_phase
        backbone.zero_grad()
        y = backbone(x)
        y.square().sum().backward()
        results.append((y.detach(), first_conv(network).weight.grad.clone()))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-10)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-8, atol=1e-8)


# --- pretrained ------------------------------------------------------------------------------------------

def test_pretrained_path_loads_backbone_weights(tmp_path):
    torch.manual_seed(1)
    source = model.build(config())
    path = str(tmp_path / 'backbone.pt')
    torch.save(source.backbone.state_dict(), path)
    torch.manual_seed(2)
    loaded = model.build(config(f'model/pretrained={path}'))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[key], value), key
    assert not torch.equal(loaded.stages[0].heatmaps[1].weight, source.stages[0].heatmaps[1].weight)

    checkpoint = str(tmp_path / 'checkpoint.pt')          # a checkpoint of this framework: its backbone.*
    torch.save({'model': source.state_dict(), 'config': 'x'}, checkpoint)
    loaded = model.build(config(f'model/pretrained={checkpoint}'))
    assert torch.equal(first_conv(loaded).weight, first_conv(source).weight)


def test_pretrained_path_lists_mismatched_keys(tmp_path):
    state = model.build(config()).backbone.state_dict()
    state['extra.weight'] = torch.zeros(1)
    del state['cpm.2.bias']
    path = str(tmp_path / 'partial.pt')
    torch.save(state, path)
    with pytest.warns(UserWarning, match=r'initialisation \(1\): cpm.2.bias.*not used \(1\): extra.weight'):
        model.build(config(f'model/pretrained={path}'))
    torch.save({'something.else': torch.zeros(3)}, path)
    with pytest.raises(ConfigError, match='no parameter of backbone mobilenet_v2'):
        model.build(config(f'model/pretrained={path}'))
    with pytest.raises(ConfigError, match=r"pretrained = '.*missing.pt': no such file"):
        model.build(config(f'model/pretrained={tmp_path / "missing.pt"}'))
    (tmp_path / 'junk.pt').write_bytes(b'not a torch file')
    with pytest.raises(UserError, match='cannot read weights file'):
        model.build(config(f'model/pretrained={tmp_path / "junk.pt"}'))


def test_imagenet_offline_fails_fast_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setenv('POSE_OFFLINE', '1')       # never download in a test, even on a connected machine
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    expected = os.path.join(str(tmp_path), 'hub', 'checkpoints', os.path.basename(url))
    with pytest.raises(UserError) as error:
        model.build(config('model/backbone=resnet', 'model/pretrained=imagenet'))
    message = str(error.value)
    assert url in message and expected in message and 'pretrained = PATH' in message
    assert '\n' not in message


def test_offline_detection_is_bounded():
    # .invalid never resolves (RFC 6761); the check gives up after CONNECT_TIMEOUT seconds at most.
    assert pretrained.offline('https://weights.invalid/file.pth')


def test_imagenet_from_the_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    monkeypatch.setenv('POSE_OFFLINE', '1')
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V2
    torch.manual_seed(3)
    library = torchvision.models.mobilenet_v2().state_dict()
    os.makedirs(tmp_path / 'hub' / 'checkpoints')
    torch.save(library, tmp_path / 'hub' / 'checkpoints' / os.path.basename(weights.url))
    with warnings.catch_warnings():
        warnings.simplefilter('error')                  # a full library file loads without complaint
        rgb = model.build(configlib.load(mods=['model/pretrained=imagenet', 'model/stage_channels=16']))
        bgr = model.build(configlib.load(mods=['model/pretrained=imagenet', 'model/stage_channels=16',
                                               'input/channel_order=bgr']))
    own = rgb.backbone.state_dict()
    assert torch.equal(own['features.13.conv.2.weight'], library['features.13.conv.2.weight'])
    assert torch.equal(own['features.0.0.weight'], library['features.0.0.weight'])
    assert torch.equal(bgr.backbone.state_dict()['features.0.0.weight'],
                       library['features.0.0.weight'].flip(1))
    with pytest.raises(ConfigError, match='width 1 only'):
        model.build(config('model/pretrained=imagenet'))


def test_vgg19_maps_torchvision_features_onto_cmu_names():
    with torch.device('meta'):
        library = torchvision.models.vgg19().state_dict()
        backbone = build_meta(configlib.load(mods=['model/backbone=vgg19'])).backbone
    mapped = backbone.from_library(library)
    names = cmu_names()[:10]                           # conv1_1 .. conv4_2, VGG19's own layers
    assert list(mapped)[::2] == [f'{n}.weight' for n in names]
    assert mapped['conv1_1.weight'] is library['features.0.weight']
    assert mapped['conv4_2.bias'] is library['features.21.bias']
    own = backbone.state_dict()
    assert all(own[key].shape == value.shape for key, value in mapped.items())


def test_inception_maps_timm_names():
    import timm
    with torch.device('meta'):
        library = timm.create_model('inception_v4').state_dict()
        backbone = build_meta(configlib.load(mods=['model/backbone=inception_v4'])).backbone
    mapped = backbone.from_library(library)
    assert set(backbone.state_dict()) - set(mapped) == {'cpm.0.weight', 'cpm.0.bias', 'cpm.2.weight',
                                                       'cpm.2.bias'}


# --- loss ------------------------------------------------------------------------------------------------

DEFAULT_LOSS = losslib.weights(configlib.load())


def targets(n=2, h=3, w=4):
    torch.manual_seed(0)
    return torch.rand(n, 19, h, w), torch.rand(n, 38, h, w), torch.ones(n, 1, h, w)


def test_loss_is_cmu_masked_l2_per_stage_and_branch():
    heatmaps, pafs, mask = targets()
    outputs = [(heatmaps + 1, pafs), (heatmaps, pafs - 2)]
    total, terms = losslib.compute(outputs, heatmaps, pafs, mask, DEFAULT_LOSS)
    assert list(terms) == ['stage1/heatmap', 'stage1/paf', 'stage2/heatmap', 'stage2/paf']
    assert terms['stage1/heatmap'].item() == pytest.approx(0.5 * heatmaps.numel() / 2)   # 0.5 sum / batch
    assert terms['stage1/paf'].item() == 0 and terms['stage2/heatmap'].item() == 0
    assert terms['stage2/paf'].item() == pytest.approx(0.5 * 4 * pafs.numel() / 2)
    assert total.item() == pytest.approx(sum(t.item() for t in terms.values()))
    mean_loss = losslib.weights(configlib.load(mods=['loss/normalize=mean']))
    mean = losslib.compute(outputs, heatmaps, pafs, mask, mean_loss)[1]
    assert mean['stage1/heatmap'].item() == pytest.approx(1.0)
    assert mean['stage2/paf'].item() == pytest.approx(4.0)


def test_loss_mask_and_weights():
    heatmaps, pafs, mask = targets()
    mask[:, :, 0] = 0
    noisy = heatmaps.clone()
    noisy[:, :, 0] += 100                               # only where the mask is 0: no loss
    cfg = configlib.load(mods=['loss/heatmap_weight=3', 'loss/paf_weight=0.5'])
    total, terms = losslib.compute([(noisy, pafs)], heatmaps, pafs, mask, losslib.weights(cfg))
    assert total.item() == 0
    total, terms = losslib.compute([(heatmaps + 1, pafs + 1)], heatmaps, pafs, mask, losslib.weights(cfg))
    unmasked = mask.sum().item() / 2 * 0.5
    assert terms['stage1/heatmap'].item() == pytest.approx(3 * 19 * unmasked)
    assert terms['stage1/paf'].item() == pytest.approx(0.5 * 38 * unmasked)


def test_loss_gradient_and_errors():
    heatmaps, pafs, mask = targets()
    prediction = heatmaps.clone().requires_grad_(True)
    total, terms = losslib.compute([(prediction, pafs)], heatmaps + 1, pafs, mask, DEFAULT_LOSS)
    total.backward()
    assert torch.allclose(prediction.grad, torch.full_like(heatmaps, -1 / 2))      # d(0.5 e^2 / N)
    assert not terms['stage1/heatmap'].requires_grad
    with pytest.raises(ValueError, match='differ in shape'):
        losslib.compute([(heatmaps[..., :3], pafs)], heatmaps, pafs, mask, DEFAULT_LOSS)
    with pytest.raises(ConfigError, match=r'normalize = .sum.'):
        losslib.weights(configlib.load(mods=['loss/normalize=sum']))


# --- ONNX ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('backbone,stage', [('mobilenet_v2', 'unet'), ('inception_v4', 'lightweight')])
def test_onnx_export_with_dynamic_size(backbone, stage, tmp_path):
    ort = pytest.importorskip('onnxruntime', reason='onnxruntime is needed to run the exported model')
    network = model.build(config(f'model/backbone={backbone}', f'model/first_stage={stage}',
                                 f'model/stage={stage}')).eval()
    path = str(tmp_path / 'model.onnx')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(network, (torch.randn(1, 3, 64, 64),), path, opset_version=17,
                          input_names=['image'], dynamic_axes={'image': {2: 'height', 3: 'width'}},
                          dynamo=False)
    network.eval()                                     # the exporter restores the mode it found
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    x = torch.randn(1, 3, 72, 104)                     # another size, odd cell counts
    with torch.no_grad():
        expected = [t for pair in network(x) for t in pair]
    got = session.run(None, {'image': x.numpy()})
    assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
    for g, e in zip(got, expected):
        assert torch.allclose(torch.from_numpy(g), e, atol=1e-4, rtol=1e-4)
