"""The benchmark scripts start: --help, the GPU benchmark's clear stop on a machine without a CUDA GPU, and
the real-image yardstick's table on a small COCO-format folder (the figures themselves are never asserted)."""

import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('script', ['benchmarks/realtime.py', 'benchmarks/gpu.py', 'benchmarks/real.py',
                                    'benchmarks/finetune.py', 'benchmarks/targets.py',
                                    'benchmarks/sharpness.py'])
def test_help(script):
    result = run(script, '--help')
    assert result.returncode == 0 and 'usage:' in result.stdout, result.stderr


def test_training_benchmarks_name_bad_input_in_one_line(tmp_path):
    for args in (['benchmarks/finetune.py', '--data', str(tmp_path), '--steps', '5', '--every', '10'],
                 ['benchmarks/targets.py', '--data', str(tmp_path / 'none')],
                 ['benchmarks/sharpness.py', '-c', 'config/quick_start.ini',
                  '--finetune', str(tmp_path / 'no.pt')],
                 ['benchmarks/finetune.py', '--data', str(tmp_path), '--finetune', str(tmp_path / 'no.pt')]):
        result = run(*args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_gpu_benchmark_says_why_it_stops_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip('this machine has a CUDA GPU: the benchmark would measure it')
    result = run('benchmarks/gpu.py')
    assert result.returncode == 0, result.stderr
    assert 'no CUDA GPU here' in result.stdout and len(result.stdout.strip().splitlines()) == 1


def test_real_image_benchmark_scores_checkpoints_on_a_coco_folder(tmp_path):
    import model as models
    from cache import synthetic
    from utils import config as configlib
    from utils.config import config_text
    options = dict(min_size=64, max_size=96, max_people=2, seed=0, unannotated=0, crowd=0, person_min=0.5,
                   person_max=0.9)
    synthetic.write_split(str(tmp_path / 'data'), 'val', 6, options)
    config = configlib.load(mods=['model/stages=1', 'model/stage_channels=8'])
    torch.manual_seed(0)
    path = tmp_path / 'tiny.pt'
    torch.save({'model': models.build(config).state_dict(), 'config': config_text(config), 'step': 3}, path)
    result = run('benchmarks/real.py', '--data', str(tmp_path / 'data'), '--checkpoint', f'tiny={path}',
                 f'again={path}', '-m', 'eval/height=64', '--json', str(tmp_path / 'real.json'),
                 '--bootstrap', '20')
    assert result.returncode == 0, result.stderr
    assert '| tiny |' in result.stdout and '6 images, 3 held out' in result.stdout
    assert '20 draws of the held-out images' in result.stdout
    figures = json.load(open(tmp_path / 'real.json'))
    assert 0 <= figures['rows'][0]['real']['AP'] <= 1 and figures['eval']['backend'] == 'torch f32'
    # the same network twice: no difference on any draw
    again = figures['rows'][1]['bootstrap']
    assert again['vs_first_95'] == [0, 0] and again['at_least_first'] == 1 and again['draws'] == 20
    negative = run('benchmarks/real.py', '--data', str(tmp_path / 'data'), '--checkpoint', str(path),
                   '--bootstrap', '-1')
    assert negative.returncode == 2 and '--bootstrap -1' in negative.stderr
    missing = run('benchmarks/real.py', '--data', str(tmp_path / 'none'), '--checkpoint', str(path))
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    # draws pair networks image by image on one ground truth: a network scored on other keypoints is refused
    layout = tmp_path / 'coco17_wide_nose.ini'
    coco17 = open(os.path.join(ROOT, 'config', 'skeleton', 'coco17.ini')).read()
    layout.write_text(coco17 + '\n[sigmas]\nnose = 0.1\n')
    config = configlib.load(mods=['model/stages=1', 'model/stage_channels=8', f'model/layout={layout}'])
    other = tmp_path / 'other.pt'
    torch.save({'model': models.build(config).state_dict(), 'config': config_text(config), 'step': 3}, other)
    mixed = run('benchmarks/real.py', '--data', str(tmp_path / 'data'), '--checkpoint', str(path), str(other),
                '-m', 'eval/height=64', '--bootstrap', '5')
    assert mixed.returncode == 2 and 'scored on the same keypoints' in mixed.stderr, mixed.stderr


def test_sharpness_steps_move_the_weights_downhill_and_back():
    import model as models
    from benchmarks import sharpness
    from model import loss as losslib
    from utils import config as configlib
    config = configlib.load(mods=['model/stages=2', 'model/stage_channels=8', 'model/pretrained=none'])
    torch.manual_seed(0)
    network = models.build(config, pretrained=False).eval()
    k, limbs = len(network.skeleton.parts) + 1, 2 * len(network.skeleton.limbs)
    batches = [{'image': torch.randn(2, 3, 64, 64), 'heatmaps': torch.rand(2, k, 8, 8),
                'pafs': torch.rand(2, limbs, 8, 8) - 0.5, 'mask': torch.ones(2, 1, 8, 8)}]
    weights = losslib.weights(config)
    start = {name: p.detach().clone() for name, p in network.named_parameters()}
    base = sharpness.measure_loss(network, batches, weights)
    signs = {name: g.sign() for name, g in sharpness.gradients(network, batches, weights).items()}
    sharpness.stepped(network, start, signs, 1e-5)
    assert sharpness.measure_loss(network, batches, weights)[0] < base[0]
    one = next(iter(signs))
    sharpness.stepped(network, start, signs, 1e-2, {one})
    moved = [name for name, p in network.named_parameters() if not torch.equal(p, start[name])]
    assert moved == [one]
    sharpness.stepped(network, start, signs, 0)
    assert sharpness.measure_loss(network, batches, weights) == base
