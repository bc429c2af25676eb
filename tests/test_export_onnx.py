"""export_onnx: every shipped config's network exports with dynamic batch and size, ONNX Runtime computes
what PyTorch computes, and the file carries what eval.py and detect.py need (read back by model.runner)."""

import glob
import os

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import export_onnx
import model as models
from model import onnx_export, runner
from utils import config as configlib
from utils.config import config_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THIN = os.path.join(ROOT, 'config', 'tf_mobilenet_thin.ini')
OUTPUT_SCALE = 0.25


def shipped_networks():
    """The default config and every overlay config/*.ini, one per distinct network ([model] apart from
    `pretrained`, which these tests do not load), each with at most 2 stages: two stages hold every
    module type of a config (later stages repeat the second's) at a fraction of the export time."""
    files = sorted(glob.glob(os.path.join(ROOT, 'config', '*.ini')))
    overlays = [None] + [os.path.relpath(p, ROOT) for p in files if os.path.basename(p) != 'default.ini']
    seen, result = set(), []
    for overlay in overlays:
        config = configlib.load([os.path.join(ROOT, overlay)] if overlay else [])
        config.set('model', 'stages', str(min(config.getint('model', 'stages'), 2)))
        key = tuple((k, v) for k, v in config.items('model', raw=True) if k != 'pretrained')
        if key not in seen:
            seen.add(key)
            result.append(pytest.param(config, id=overlay or 'default'))
    return result


def network(config, seed=0):
    """A randomly initialised network whose activations keep their scale through all stages and whose
    outputs are about as large as a trained one's (heatmaps in 0..1): PyTorch's default initialisation
    shrinks activations towards zero (any comparison would pass) or, with residual blocks, lets them grow.
    Batch norms are reset to the identity, then in one forward pass on a sample image (at least as large
    as the inputs compared on) each conv is rescaled to unit output standard deviation (LSUV, Mishkin and
    Matas, ICLR 2016) and the output convs to OUTPUT_SCALE."""
    torch.manual_seed(seed)
    net = models.build(config, pretrained=False).eval()
    outputs = {len(net.skeleton.parts) + 1, 2 * len(net.skeleton.limbs)}

    def rescale(module, inputs, output):
        scale = float(output.std()) / (OUTPUT_SCALE if module.out_channels in outputs else 1.0) or 1.0
        module.weight.data /= scale
        if module.bias is not None:
            module.bias.data /= scale
        return output / scale

    hooks = []
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            if module.bias is not None:
                nn.init.normal_(module.bias, 0, 0.1)
            hooks.append(module.register_forward_hook(rescale))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.reset_parameters()
    sample = onnx_export.sample_images(config, (1, 8 * net.stride, 8 * net.stride), seed)
    with torch.no_grad():
        net(torch.from_numpy(sample))
    for hook in hooks:
        hook.remove()
    return net


@pytest.mark.parametrize('config', shipped_networks())
def test_each_shipped_config_exports_and_matches_onnx_runtime(config, tmp_path):
    net = network(config)
    stride = net.stride
    path = tmp_path / 'net.onnx'
    difference = onnx_export.export(net, config, str(path), size=(4 * stride, 6 * stride))
    assert difference < onnx_export.TOLERANCE
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta['stride'] == str(stride) and meta['layout'] == config.get('model', 'layout')
    assert meta['outputs'] == 'heatmaps pafs' and [o.name for o in proto.graph.output] == ['heatmaps', 'pafs']
    assert meta['channel_order'] == config.get('input', 'channel_order')
    assert [float(v) for v in meta['mean'].split()] == pytest.approx(config.getfloatlist('input', 'mean'))
    saved = configlib.loads(meta['config'])
    assert configlib.differences(config, saved, ['model', 'input', 'decode']) == []
    # the network still computes something that depends on its input, so the comparison means something
    x = torch.from_numpy(onnx_export.sample_images(config, (1, 4 * stride, 6 * stride), 0))
    with torch.no_grad():
        heatmaps, _ = net(x)[-1]
    assert 0.05 < float(heatmaps.std()) < 1


def test_all_stages_and_dynamic_sizes_through_model_runner(tmp_path):
    config = configlib.load([THIN], ['model/stages=2'])
    net = network(config)
    path = str(tmp_path / 'all.onnx')
    assert onnx_export.export(net, config, path, all_stages=True, size=(32, 48)) < onnx_export.TOLERANCE
    names = [o.name for o in onnx.load(path).graph.output]
    assert names == ['stage1_heatmaps', 'stage1_pafs', 'heatmaps', 'pafs']
    loaded = runner.load(configlib.load(), onnx=path, backend='onnxruntime')  # as eval.py and detect.py do
    assert loaded['stride'] == 8 and loaded['config'].get('model', 'backbone') == 'mobilenet_thin'
    assert loaded['config'].getfloat('input', 'divisor') == config.getfloat('input', 'divisor') == 255
    batch = onnx_export.sample_images(config, (3, 56, 40), 5)      # another batch and size than traced
    heatmaps, pafs = loaded['run'](batch)
    with torch.no_grad():
        reference = net(torch.from_numpy(batch))[-1]
    assert heatmaps.shape == (3, 19, 7, 5) and pafs.shape == (3, 38, 7, 5)
    assert np.abs(heatmaps - reference[0].numpy()).max() < onnx_export.TOLERANCE
    assert np.abs(pafs - reference[1].numpy()).max() < onnx_export.TOLERANCE


def test_refusals_leave_no_file(tmp_path):
    config = configlib.load([THIN], ['model/stages=1'])
    net = network(config)
    path = tmp_path / 'refused.onnx'
    with pytest.raises(onnx_export.ExportError, match='not a multiple of the stride 8'):
        onnx_export.export(net, config, str(path), size=(30, 48))
    with pytest.raises(onnx_export.ExportError, match='differs from PyTorch by .* not written'):
        onnx_export.export(net, config, str(path), size=(32, 48), tolerance=-1)
    assert os.listdir(tmp_path) == []


def test_script_exports_a_checkpoint(tmp_path, capsys):
    config = configlib.load([THIN], ['model/stages=1'])
    checkpoint = tmp_path / 'thin.pt'
    torch.save({'model': network(config).state_dict(), 'config': config_text(config)}, checkpoint)
    export_onnx.main(['--checkpoint', str(checkpoint), '--size', '32', '40'])
    assert 'largest difference between ONNX Runtime and PyTorch' in capsys.readouterr().out
    assert (tmp_path / 'thin.onnx').is_file()
    with pytest.raises(SystemExit) as exit:
        export_onnx.main(['--checkpoint', str(tmp_path / 'none.pt')])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.startswith('error: checkpoint not found')
    assert len(error.strip().splitlines()) == 1
