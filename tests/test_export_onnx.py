"""export_onnx: every shipped config's network exports with dynamic batch and size, ONNX Runtime computes
what PyTorch computes, and the file carries what eval.py and detect.py need (read back by model.runner)."""

import glob
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import export_onnx
import model as models
from convert_caffe_torch import config_text
from model import runner
from utils import config as configlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERLAYS = [None] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'config', '*.ini'))
                           if os.path.basename(p) != 'default.ini')
THIN = os.path.join(ROOT, 'config', 'tf_mobilenet_thin.ini')
OUTPUT_SCALE = 0.25


def network(config, seed=0):
    """A randomly initialised network whose activations keep their scale through all stages and whose
    outputs are about as large as a trained one's (heatmaps in 0..1): PyTorch's default initialisation
    shrinks activations towards zero (any comparison would pass) or, with residual blocks, lets them grow.
    In one forward pass on a sample batch each conv is rescaled to unit output standard deviation (LSUV,
    Mishkin and Matas, ICLR 2016), the output convs to OUTPUT_SCALE, and the batch norms take the batch's
    statistics."""
    torch.manual_seed(seed)
    net = models.build(config, pretrained=False)
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
            module.momentum = None                      # a plain average over the sample batch
    with torch.no_grad():
        net.train()(torch.from_numpy(export_onnx.sample_images(config, (2, 64, 64), seed)))
    for hook in hooks:
        hook.remove()
    return net.eval()


@pytest.mark.parametrize('overlay', OVERLAYS)
def test_each_shipped_config_exports_and_matches_onnx_runtime(overlay, tmp_path):
    config = configlib.load([os.path.join(ROOT, overlay)] if overlay else [])
    net = network(config)
    stride = net.stride
    path = tmp_path / 'net.onnx'
    difference = export_onnx.export(net, config, str(path), size=(4 * stride, 6 * stride))
    assert difference < export_onnx.TOLERANCE
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta['stride'] == str(stride) and meta['layout'] == config.get('model', 'layout')
    assert meta['outputs'] == 'heatmaps pafs' and [o.name for o in proto.graph.output] == ['heatmaps', 'pafs']
    assert meta['channel_order'] == config.get('input', 'channel_order')
    assert [float(v) for v in meta['mean'].split()] == pytest.approx(config.getfloatlist('input', 'mean'))
    saved = configlib.loads(meta['config'])
    assert configlib.differences(config, saved, ['model', 'input', 'decode']) == []
    # the network still computes something that depends on its input, so the comparison means something
    x = torch.from_numpy(export_onnx.sample_images(config, (1, 4 * stride, 6 * stride), 0))
    with torch.no_grad():
        heatmaps, _ = net(x)[-1]
    assert 0.05 < float(heatmaps.std()) < 1


def test_all_stages_and_dynamic_sizes_through_model_runner(tmp_path):
    config = configlib.load([THIN], ['model/stages=2'])
    net = network(config)
    path = str(tmp_path / 'all.onnx')
    assert export_onnx.export(net, config, path, all_stages=True, size=(32, 48)) < export_onnx.TOLERANCE
    names = [o.name for o in onnx.load(path).graph.output]
    assert names == ['stage1_heatmaps', 'stage1_pafs', 'heatmaps', 'pafs']
    loaded = runner.load(configlib.load(), onnx=path)               # how eval.py and detect.py read it
    assert loaded['stride'] == 8 and loaded['config'].get('model', 'backbone') == 'mobilenet_thin'
    assert loaded['config'].getfloat('input', 'divisor') == 1
    batch = export_onnx.sample_images(config, (3, 56, 40), 5)      # another batch and size than traced
    heatmaps, pafs = loaded['run'](batch)
    with torch.no_grad():
        reference = net(torch.from_numpy(batch))[-1]
    assert heatmaps.shape == (3, 19, 7, 5) and pafs.shape == (3, 38, 7, 5)
    assert np.abs(heatmaps - reference[0].numpy()).max() < export_onnx.TOLERANCE
    assert np.abs(pafs - reference[1].numpy()).max() < export_onnx.TOLERANCE


def test_refusals_leave_no_file(tmp_path):
    config = configlib.load([THIN], ['model/stages=1'])
    net = network(config)
    path = tmp_path / 'refused.onnx'
    with pytest.raises(export_onnx.ExportError, match='not a multiple of the stride 8'):
        export_onnx.export(net, config, str(path), size=(30, 48))
    with pytest.raises(export_onnx.ExportError, match='differs from PyTorch by .* not written'):
        export_onnx.export(net, config, str(path), size=(32, 48), tolerance=-1)
    assert os.listdir(tmp_path) == []


def test_script_exports_a_checkpoint(tmp_path):
    config = configlib.load([THIN], ['model/stages=1'])
    checkpoint = tmp_path / 'thin.pt'
    torch.save({'model': network(config).state_dict(), 'config': config_text(config)}, checkpoint)
    script = os.path.join(ROOT, 'export_onnx.py')
    result = subprocess.run([sys.executable, script, '--checkpoint', str(checkpoint), '--size', '32', '40'],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert 'largest difference between ONNX Runtime and PyTorch' in result.stdout
    assert (tmp_path / 'thin.onnx').is_file()
    result = subprocess.run([sys.executable, script, '--checkpoint', str(tmp_path / 'none.pt')], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.startswith('error: checkpoint not found')
    assert len(result.stderr.strip().splitlines()) == 1
