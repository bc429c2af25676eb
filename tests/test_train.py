"""Training: optimizer and schedules, exact resume, checkpoint rotation, NaN dumps, TensorBoard summaries,
the model-directory lock, signals and changed-config checks. A tiny stand-in network and dataset keep it
fast; test_end_to_end trains the real model on a generated dataset."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

import train
from pose import skeleton as skeletons
from utils import checkpoint, hooks, lock, optim
from utils import config as configlib
from utils.cli import UserError
from utils.config import ConfigError
from utils.trainer import NonFiniteLoss, rng_state, set_rng_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
SKELETON = skeletons.load('coco17')


# ---- stand-in network, loss and data ----------------------------------------------------------
class TinyNet(nn.Module):
    stride = 4

    def __init__(self, skeleton=SKELETON):
        super().__init__()
        self.skeleton = skeleton
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.heatmaps = nn.Conv2d(8, len(skeleton.parts) + 1, 1)
        self.pafs = nn.Conv2d(8, 2 * len(skeleton.limbs), 1)

    def forward(self, x):
        features = self.backbone(x)
        return [(self.heatmaps(features), self.pafs(features))]


def tiny_loss(outputs, heatmaps, pafs, mask):
    terms = {}
    for i, (h, p) in enumerate(outputs, 1):
        terms[f'stage{i}/heatmap'] = ((h - heatmaps) ** 2 * mask).mean()
        terms[f'stage{i}/paf'] = ((p - pafs) ** 2 * mask).mean()
    return sum(terms.values()), terms


class TinyData(torch.utils.data.Dataset):
    """Targets are a fixed function of the image, so the loss can go down; the noise comes from the global
    torch RNG like a data augmentation would, so exact resume needs the RNG state restored."""

    def __init__(self, n=24, size=16, skeleton=SKELETON):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, size, size, generator=g)
        self.k, self.l = len(skeleton.parts) + 1, len(skeleton.limbs)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i] + 0.01 * torch.randn(self.images[i].shape)
        cells = nn.functional.avg_pool2d(image[None], 4)[0]
        return {'image': image, 'heatmaps': cells.mean(0, keepdim=True).repeat(self.k, 1, 1),
                'pafs': cells[:1].repeat(2 * self.l, 1, 1) - 0.5, 'mask': torch.ones(1, *cells.shape[1:]),
                'index': i}


def tiny_loader(config, stride, rank, world_size, seed):
    data = TinyData()
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=world_size, rank=rank, seed=seed)
    return torch.utils.data.DataLoader(data, batch_size=config.getint('train', 'batch_size'), sampler=sampler,
                                       drop_last=True)


def use_stand_ins():
    """Route train.py to the stand-ins (also called in subprocesses, see run_script)."""
    train.build_model = lambda config: TinyNet()
    train.build_loader = tiny_loader
    train.loss_function = lambda config: tiny_loss


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(train, 'build_model', lambda config: TinyNet())
    monkeypatch.setattr(train, 'build_loader', tiny_loader)
    monkeypatch.setattr(train, 'loss_function', lambda config: tiny_loss)


MODS = ['train/batch_size=4', 'train/epochs=0', 'train/workers=0', 'train/lr=0.01', 'train/warmup=2',
        'train/scheduler=none', 'train/threads=1', 'hooks/checkpoint=0', 'hooks/scalars=0', 'hooks/images=0',
        'model/layout=coco17']
EVERY_STEP = '0.000001s'  # a hook period that fires after every step (the stand-in's steps can take < 1 ms)


def make_config(*mods):
    return configlib.load(mods=MODS + list(mods))


def run(folder, *mods, **kwargs):
    return train.run(make_config(*mods), str(folder), progress=False, **kwargs)


def run_script(folder, *mods, extra=(), wait=True):
    """train.py in a subprocess with the stand-ins; returns the Popen (waited for when `wait`)."""
    code = (f'import sys; sys.path[:0] = [{ROOT!r}, {TESTS!r}]; sys.argv[0] = "train.py"; '
            f'import test_train; test_train.use_stand_ins(); import train; train.main()')
    args = [sys.executable, '-c', code, '--no-progress', '--name', os.path.basename(folder),
            '-m', f'train/root={os.path.dirname(folder)}'] + [a for m in MODS + list(mods) for a in ('-m', m)]
    process = subprocess.Popen(args + list(extra), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    if wait:
        out, err = process.communicate(timeout=120)
        return subprocess.CompletedProcess(args, process.returncode, out, err)
    return process


def steps_of(folder):
    return [int(os.path.basename(p)[11:19]) for p in checkpoint.checkpoints(str(folder))]


# ---- optimizer and schedules ---------------------------------------------------------------------
def test_backbone_gets_its_own_lr():
    config = configlib.load(mods=['train/optimizer=sgd', 'train/lr=0.1', 'train/backbone_lr=0.25',
                                  'train/optimizer_args=momentum=0.9 nesterov=true'])
    optimizer = optim.build_optimizer(TinyNet(), config)
    lrs = {g['name']: g['lr'] for g in optimizer.param_groups}
    assert lrs == {'stages': 0.1, 'backbone': 0.025}
    assert optimizer.param_groups[0]['momentum'] == 0.9 and optimizer.param_groups[0]['nesterov']
    assert isinstance(optim.build_optimizer(TinyNet(), configlib.load(mods=['train/optimizer=adamw'])),
                      torch.optim.AdamW)


@pytest.mark.parametrize('mods,message', [
    (['train/optimizer=lion'], r"optimizer = 'lion': use one of sgd, adam, adamw"),
    (['train/optimizer_args=momentum=0.9'], r'optimizer_args.*momentum'),
    (['train/scheduler=linear'], r"scheduler = 'linear'"),
    (['train/scheduler=step'], r'step needs step_size'),
    (['train/scheduler=step', 'train/scheduler_args=step_size=10 gama=0.5'], r'does not take gama.*gamma'),
    (['train/scheduler=multistep', 'train/scheduler_args=milestones=10;x'], r'milestones are steps'),
])
def test_bad_optimizer_options_are_named(mods, message):
    config = configlib.load(mods=mods + ['train/optimizer=adam'] * ('optimizer=' not in str(mods)))
    with pytest.raises(ConfigError, match=message):
        optim.build_scheduler(optim.build_optimizer(TinyNet(), config), config, total_steps=100)


def test_cosine_needs_a_length():
    config = configlib.load(mods=['train/scheduler=cosine'])
    with pytest.raises(ConfigError, match='cosine needs t_max.*steps or epochs'):
        optim.build_scheduler(optim.build_optimizer(TinyNet(), config), config, total_steps=None)


def factors(mods, total=None, steps=12):
    config = configlib.load(mods=mods)
    name, kwargs, warmup = optim.schedule_args(config, total)
    factor = optim.lr_factor(name, kwargs, warmup)
    return [factor(s) for s in range(steps)]


def test_schedules_with_warmup():
    assert factors(['train/scheduler=none', 'train/warmup=4'], steps=6) == [0.25, 0.5, 0.75, 1, 1, 1]
    step = factors(['train/scheduler=step', 'train/warmup=0', 'train/scheduler_args=step_size=4 gamma=0.5'])
    assert step == [1] * 4 + [0.5] * 4 + [0.25] * 4
    multi = factors(['train/scheduler=multistep', 'train/warmup=0',
                     'train/scheduler_args=milestones=2;5 gamma=0.1'], steps=7)
    assert multi == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])
    cosine = factors(['train/scheduler=cosine', 'train/warmup=0', 'train/scheduler_args=min_factor=0.1'],
                     total=10, steps=12)
    assert cosine[0] == 1 and cosine[5] == pytest.approx(0.55) and cosine[10:] == pytest.approx([0.1, 0.1])
    assert factors(['train/scheduler=cosine', 'train/warmup=0', 'train/scheduler_args=t_max=4'],
                   total=10, steps=5)[4] == pytest.approx(0)


def test_scheduler_drives_the_optimizer_lr():
    config = configlib.load(mods=['train/scheduler=step', 'train/scheduler_args=step_size=2 gamma=0.5',
                                  'train/warmup=0', 'train/lr=1', 'train/backbone_lr=0.1'])
    optimizer = optim.build_optimizer(TinyNet(), config)
    scheduler = optim.build_scheduler(optimizer, config)
    seen = []
    for _ in range(5):
        seen.append([g['lr'] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    assert np.allclose(seen, [[1, 0.1], [1, 0.1], [0.5, 0.05], [0.5, 0.05], [0.25, 0.025]])


# ---- RNG state -----------------------------------------------------------------------------------
def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    import random
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    path = str(tmp_path / 'rng.pt')
    torch.save(rng_state(), path)
    first = (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.standard_normal(), random.random())
    set_rng_state(torch.load(path, weights_only=True))
    again = (torch.rand(3).tolist(), np.random.rand(3).tolist(), np.random.standard_normal(), random.random())
    assert first == again


# ---- the loop ------------------------------------------------------------------------------------
def test_loss_goes_down_and_config_is_saved(tmp_path, tiny):
    folder = tmp_path / 'exp'
    summary = run(folder, 'train/steps=40', f'hooks/scalars={EVERY_STEP}')
    assert summary['step'] == 40 and summary['reason'] == 'step limit 40 reached'
    losses = scalar_values(folder, 'loss/total')
    assert len(losses) >= 20 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    saved = configlib.loads(open(folder / 'config.ini').read())
    assert saved.getint('train', 'steps') == 40
    state = checkpoint.load(checkpoint.checkpoints(str(folder))[-1])
    assert state['step'] == 40 and state['epoch'] == 40 // 6 and state['batch_in_epoch'] == 40 % 6
    assert configlib.loads(state['config']).get('model', 'layout') == 'coco17'


def test_epoch_limit_and_checkpoint_rotation(tmp_path, tiny):
    folder = tmp_path / 'exp'
    summary = run(folder, 'train/epochs=1', f'hooks/checkpoint={EVERY_STEP}', 'hooks/keep=3')
    exports = [p + checkpoint.ONNX_SUFFIX for p in checkpoint.checkpoints(str(folder))]
    for p in exports:                                     # ONNX exports cached beside them (eval --backend)
        open(p, 'wb').close()
    summary = run(folder, 'train/epochs=2', f'hooks/checkpoint={EVERY_STEP}', 'hooks/keep=3')
    assert summary['step'] == 12 and summary['epoch'] == 2  # 24 samples / batch 4 = 6 steps per epoch
    assert steps_of(folder) == [10, 11, 12]
    assert not any(os.path.exists(p) for p in exports)     # rotated out with their checkpoints
    assert summary['checkpoint'] == checkpoint.path_for(str(folder), 12)


def test_time_limit(tmp_path, tiny):
    start = time.monotonic()
    summary = run(tmp_path / 'exp', 'train/time=1s')
    assert summary['reason'] == 'time limit reached' and summary['step'] > 0
    assert 1 <= time.monotonic() - start < 30
    assert steps_of(tmp_path / 'exp') == [summary['step']]


def final_state(folder):
    return checkpoint.load(checkpoint.checkpoints(str(folder))[-1])


def assert_same_training_state(a, b):
    assert a['step'] == b['step'] and a['epoch'] == b['epoch']
    for key in a['model']:
        assert torch.equal(a['model'][key], b['model'][key]), key
    for i, state in a['optimizer']['state'].items():
        for key, value in state.items():
            assert torch.equal(value, b['optimizer']['state'][i][key]), (i, key)
    assert a['scheduler'] == b['scheduler']


def test_resume_is_exact(tmp_path, tiny):
    run(tmp_path / 'whole', 'train/steps=15', 'train/scheduler=cosine')
    run(tmp_path / 'parts', 'train/steps=8', 'train/scheduler=cosine', 'train/scheduler_args=t_max=15')
    assert steps_of(tmp_path / 'parts') == [8]
    # a longer limit is a [train] change: the same command with more steps resumes
    run(tmp_path / 'parts', 'train/steps=15', 'train/scheduler=cosine', 'train/scheduler_args=t_max=15')
    assert_same_training_state(final_state(tmp_path / 'whole'), final_state(tmp_path / 'parts'))


def test_corrupt_newest_checkpoint_falls_back(tmp_path, tiny):
    folder = tmp_path / 'exp'
    run(folder, 'train/steps=5', f'hooks/checkpoint={EVERY_STEP}')
    newest = checkpoint.checkpoints(str(folder))[-1]
    with open(newest, 'r+b') as f:
        f.truncate(100)
    with pytest.warns(UserWarning, match='falling back'):
        summary = run(folder, 'train/steps=7', f'hooks/checkpoint={EVERY_STEP}')
    assert summary['step'] == 7 and steps_of(folder)[-3:] == [5, 6, 7]
    assert checkpoint.load(newest)['step'] == 5  # the damaged file was trained again and replaced


def test_sigkill_then_rerun_resumes_at_the_checkpoint(tmp_path):
    folder = str(tmp_path / 'exp')
    process = run_script(folder, 'train/steps=100000', 'hooks/checkpoint=300ms', wait=False)
    deadline = time.monotonic() + 60
    while len(steps_of(folder)) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.kill()
    process.communicate()
    killed_at = final_state(folder)
    assert killed_at['step'] > 0 and killed_at['optimizer']['state'], 'no checkpoint before the kill'
    step = killed_at['step']
    again = run_script(folder, f'train/steps={step + 3}', f'hooks/checkpoint={EVERY_STEP}')
    assert again.returncode == 0, again.stderr
    resumed = checkpoint.load(checkpoint.path_for(folder, step + 1))
    assert f'resuming from {checkpoint.path_for(folder, step)} at step {step}' in again.stderr
    # Adam's step count continues from the checkpoint: the optimizer state was restored, not restarted
    assert resumed['optimizer']['state'][0]['step'].item() == step + 1


def test_nan_in_a_batch_dumps_and_stops(tmp_path, tiny, monkeypatch):
    original, calls = TinyData.__getitem__, []

    def poisoned(self, i):
        item = original(self, i)
        calls.append(i)
        if len(calls) == 13:  # the first sample of the 4th batch of 4
            item['image'][0, 0, 0] = math.nan
        return item
    monkeypatch.setattr(TinyData, '__getitem__', poisoned)
    folder = tmp_path / 'exp'
    with pytest.raises(NonFiniteLoss, match=r'non-finite loss \(nan\) at step 3.*nan/00000003'):
        run(folder, 'train/steps=10', f'hooks/checkpoint={EVERY_STEP}')
    dump = folder / 'nan' / '00000003'
    assert sorted(os.listdir(dump)) == ['batch.pt', 'config.ini', 'model.pt', 'outputs.pt', 'terms.pt']
    batch = torch.load(dump / 'batch.pt', weights_only=True)
    assert torch.isnan(batch['image']).any() and batch['image'].shape == (4, 3, 16, 16)
    outputs = torch.load(dump / 'outputs.pt', weights_only=True)
    assert torch.isnan(outputs[0][0]).any()
    model = torch.load(dump / 'model.pt', weights_only=True)
    assert all(torch.isfinite(v).all() for v in model.values())
    assert configlib.loads(open(dump / 'config.ini').read()).getint('train', 'steps') == 10
    assert steps_of(folder) == [1, 2, 3]  # no checkpoint after the NaN


def scalar_values(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder), size_guidance={'scalars': 0, 'images': 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)]


def test_tensorboard_scalars_and_histograms(tmp_path, tiny):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    folder = tmp_path / 'exp'
    run(folder, 'train/steps=6', f'hooks/scalars={EVERY_STEP}', f'hooks/histograms={EVERY_STEP}',
        'train/backbone_lr=0.5')
    events = EventAccumulator(str(folder), size_guidance={'scalars': 0, 'histograms': 0})
    events.Reload()
    tags = events.Tags()
    assert {'loss/total', 'loss/stage1/heatmap', 'loss/stage1/paf', 'lr/stages', 'lr/backbone',
            'speed/samples_per_s', 'progress/epoch'} <= set(tags['scalars'])
    assert [e.step for e in events.Scalars('loss/total')] == [1, 2, 3, 4, 5, 6]
    assert events.Scalars('lr/backbone')[-1].value == pytest.approx(0.005)
    # samples/s counts samples, not steps: with batches of 4 the rate is 4x the steps' rate
    start, end = events.Scalars('speed/samples_per_s')[0], events.Scalars('speed/samples_per_s')[-1]
    steps_per_s = (end.step - start.step) / (end.wall_time - start.wall_time)
    assert 2 * steps_per_s < np.median([e.value for e in events.Scalars('speed/samples_per_s')[1:]])
    assert 'parameters/backbone.0.weight' in tags['histograms']


def test_a_failing_hook_runs_after_the_others_and_never_hides_the_loops_error(tmp_path, tiny, monkeypatch):
    class Broken(hooks.Hook):
        def after_train(self, trainer):
            raise OSError('disk full')
    make_hooks = train.make_hooks
    monkeypatch.setattr(train, 'make_hooks', lambda *args: [Broken()] + make_hooks(*args))
    with pytest.raises(OSError, match='disk full'):
        run(tmp_path / 'a', 'train/steps=2')
    assert steps_of(tmp_path / 'a') == [2]  # the checkpoint hook ran after the broken one

    calls = []

    def failing_loss(*args):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError('loss exploded')
        return tiny_loss(*args)
    monkeypatch.setattr(train, 'loss_function', lambda config: failing_loss)
    with pytest.warns(UserWarning, match='Broken hook failed at the end: disk full'):
        with pytest.raises(ValueError, match='loss exploded'):
            run(tmp_path / 'b', 'train/steps=5')
    assert steps_of(tmp_path / 'b') == [2]


def test_changed_model_option_is_refused_unless_forced_or_restarted(tmp_path, tiny):
    folder = tmp_path / 'exp'
    run(folder, 'train/steps=2')
    with pytest.raises(UserError, match=r"\[input\] height: '368' -> '256'.*--force.*--restart"):
        run(folder, 'train/steps=4', 'input/height=256')
    assert steps_of(folder) == [2] and 'height = 368' in open(folder / 'config.ini').read()
    assert run(folder, 'train/steps=4', 'input/height=256', force=True)['step'] == 4
    assert run(folder, 'train/steps=3', 'input/height=256', 'model/layout=coco17', restart=True)['step'] == 3
    previous = os.listdir(folder / 'previous')
    assert len(previous) == 1 and 'checkpoint-00000004.pt' in os.listdir(folder / 'previous' / previous[0])
    assert steps_of(folder) == [3]


def test_finetune_lists_missing_and_unexpected_keys(tmp_path, tiny, capsys):
    weights = TinyNet().state_dict()
    weights['extra.weight'] = torch.zeros(1)
    weights.update({f'stages.3.conv{i}.weight': torch.zeros(1) for i in range(4)})
    del weights['pafs.bias']
    path = str(tmp_path / 'weights.pt')
    torch.save({'model': weights}, path)
    run(tmp_path / 'exp', 'train/steps=1', finetune=path)
    err = capsys.readouterr().err
    assert 'missing (left as initialised): pafs.bias\n' in err
    assert 'unexpected (ignored): extra.weight, stages.3.* (4)\n' in err
    # [train] finetune is the same start, from the config (what a config file's recipe names)
    run(tmp_path / 'from_config', 'train/steps=1', f'train/finetune={path}')
    assert 'missing (left as initialised): pafs.bias\n' in capsys.readouterr().err


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    folder = str(tmp_path / 'exp')
    code = (f'import sys, time; sys.path.insert(0, {ROOT!r}); from utils import lock; '
            f'held = lock.acquire({folder!r}); print("locked", flush=True); time.sleep(60)')
    holder = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(UserError, match=f'pid {holder.pid}'):
        lock.acquire(folder)
    holder.kill()
    holder.wait()
    lock.release(lock.acquire(folder))


def test_concurrent_run_is_refused_and_sigterm_stops_with_a_checkpoint(tmp_path, tiny):
    folder = str(tmp_path / 'exp')
    process = run_script(folder, 'train/steps=100000', 'hooks/checkpoint=200ms', wait=False)
    deadline = time.monotonic() + 60
    while not steps_of(folder) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    saved = open(os.path.join(folder, 'config.ini')).read()
    with pytest.raises(UserError, match=f'exp is in use by another run \\(pid {process.pid}'):
        run(folder, 'train/steps=1', 'train/lr=0.5')
    assert open(os.path.join(folder, 'config.ini')).read() == saved
    assert run(tmp_path / 'other', 'train/steps=1')['step'] == 1  # other experiments train side by side
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    step = final_state(folder)['step']
    assert f'stopped at step {step} (epoch {step // 6}): interrupted (SIGTERM); checkpoint' in err


# ---- the real network on a generated dataset ----------------------------------------------------------
@pytest.fixture(scope='module')
def synthetic_data(tmp_path_factory):
    """8 training and 4 validation images of 64-96 pixels, generated and cached."""
    from cache import coco, synthetic
    folder = tmp_path_factory.mktemp('synthetic')
    opts = dict(min_size=64, max_size=96, max_people=3, seed=0, unannotated=0.1, crowd=0.1,
                person_min=0.5, person_max=0.9)
    for split, count in (('train', 8), ('val', 4)):
        synthetic.write_split(str(folder / 'data'), split, count, opts)
    mods = [f'dataset/root={folder / "data"}', f'dataset/cache={folder / "cache"}', 'input/height=64',
            'input/width=64', 'eval/height=64', 'model/stage_channels=16', 'train/batch_size=4',
            'train/workers=0', 'train/threads=1', 'train/warmup=0', 'train/scheduler=none', 'hooks/keep=2']
    config = configlib.load(mods=mods)
    for split in ('train', 'val'):
        coco.build(config, split)
    return mods


def test_end_to_end_on_generated_data(tmp_path, synthetic_data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    folder = tmp_path / 'exp'
    config = configlib.load(mods=synthetic_data + ['train/steps=12', f'hooks/scalars={EVERY_STEP}',
                                                   f'hooks/images={EVERY_STEP}', 'hooks/evaluate=1h',
                                                   'hooks/evaluate_limit=3'])
    summary = train.run(config, str(folder), progress=False)
    assert summary['step'] == 12 and summary['epoch'] == 6  # 8 images, batches of 4
    events = EventAccumulator(str(folder), size_guidance={'scalars': 0, 'images': 0})
    events.Reload()
    losses = [e.value for e in events.Scalars('loss/total')]
    assert len(losses) == 12 and np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert {'loss/stage2/heatmap', 'loss/stage2/paf', 'eval/AP', 'eval/AR'} <= set(events.Tags()['scalars'])
    assert {'images/ground_truth', 'images/heatmaps', 'images/pafs', 'images/people'} <= \
        set(events.Tags()['images'])
    image = events.Images('images/ground_truth')[-1]
    assert (image.width, image.height, image.step) == (64, 64, 12)
    metrics = json.load(open(folder / 'eval' / 'metrics-00000012.json'))
    assert metrics['step'] == 12 and 0 <= metrics['AP'] <= 1
    assert [e.step for e in events.Scalars('eval/AP')] == [12]
    # resuming mid-epoch with a loader worker gives the same weights as the uninterrupted run without one
    # (the samples' augmentation is seeded by (seed, epoch, index)) and the hooks do not disturb training
    parts = [m for m in synthetic_data if m != 'train/workers=0'] + ['train/workers=1']
    for steps in (5, 12):
        train.run(configlib.load(mods=parts + [f'train/steps={steps}']), str(tmp_path / 'parts'),
                  progress=False)
    assert_same_training_state(final_state(folder), final_state(tmp_path / 'parts'))


# ---- distillation from a teacher on the [dataset] extra images -------------------------------------------
def test_teacher_maps_replace_the_targets_of_extra_images(tmp_path, synthetic_data):
    import model as models
    from model import distill
    from utils.config import config_text
    config = configlib.load(mods=synthetic_data)
    teacher_net = models.build(config, pretrained=False).eval()
    path = str(tmp_path / 'teacher.pt')
    torch.save({'model': teacher_net.state_dict(), 'config': config_text(config)}, path)
    teacher = distill.load_teacher(path, config, torch.device('cpu'))
    image = torch.rand(2, 3, 64, 64)
    batch = {'image': image, 'heatmaps': torch.zeros(2, 19, 8, 8), 'pafs': torch.zeros(2, 38, 8, 8),
             'mask': torch.zeros(2, 1, 8, 8), 'extra': torch.tensor([True, False])}
    distill.targets(teacher)(batch)
    with torch.no_grad():
        heatmaps, pafs = teacher_net(image[:1])[-1]
    assert torch.equal(batch['heatmaps'][0], heatmaps[0]) and torch.equal(batch['pafs'][0], pafs[0])
    assert (batch['mask'][0] == 1).all() and not batch['heatmaps'][1].any() and not batch['mask'][1].any()
    # in training: the extra set's images are flagged and the run goes through
    extra = [f'dataset/extra={synthetic_data[0].split("=", 1)[1]}', 'dataset/extra_repeat=2',
             f'train/teacher={path}', 'train/steps=2']
    from cache import coco, dataset
    cfg = configlib.load(mods=synthetic_data + extra)
    coco.build(cfg, 'train', root=cfg.get('dataset', 'extra'))
    data = dataset.PoseDataset(cfg, 'train', stride=8)
    assert len(data) == 3 * data.own and not data[0]['extra'] and data[data.own]['extra']
    assert train.run(cfg, str(tmp_path / 'exp'), progress=False)['step'] == 2
    with pytest.raises(configlib.ConfigError, match='reads input normalised'):
        distill.load_teacher(path, configlib.load(mods=synthetic_data + ['input/divisor=1']), 'cpu')
    # without [dataset] extra the teacher's maps are the targets of every image
    every = {'image': image, 'heatmaps': torch.zeros(2, 19, 8, 8), 'pafs': torch.zeros(2, 38, 8, 8),
             'mask': torch.zeros(2, 1, 8, 8), 'extra': torch.tensor([False, False])}
    train.targets(configlib.load(mods=synthetic_data + [f'train/teacher={path}']), 'cpu')(every)
    with torch.no_grad():
        heatmaps, pafs = teacher_net(image)[-1]
    assert torch.equal(every['heatmaps'], heatmaps) and (every['mask'] == 1).all()


def test_teacher_flip_averages_its_maps_with_the_mirrored_images():
    from model import distill
    from pose import predict
    skeleton = skeletons.load('cmu18')
    heatmaps, pafs = torch.randn(2, 19, 4, 6), torch.randn(2, 38, 4, 6)
    ours = distill.unflip(heatmaps, pafs, skeleton)
    for a, b in zip(ours, predict.unflip(heatmaps.numpy(), pafs.numpy(), skeleton)):
        assert np.allclose(a.numpy(), b)
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 19 + 38, 3, padding=1)

    def teacher(images):
        out = conv(images)
        return [(out[:, :19], out[:, 19:])]

    image = torch.rand(2, 3, 8, 8)
    batch = {'image': image, 'heatmaps': torch.zeros(2, 19, 8, 8), 'pafs': torch.zeros(2, 38, 8, 8),
             'mask': torch.zeros(2, 1, 8, 8), 'extra': torch.tensor([True, True])}
    distill.targets(teacher, skeleton, flip=True)(batch)
    with torch.no_grad():
        mirrored = distill.unflip(*teacher(image.flip(-1))[0], skeleton)
        expected = [(a + b) / 2 for a, b in zip(teacher(image)[0], mirrored)]
    assert torch.allclose(batch['heatmaps'], expected[0]) and torch.allclose(batch['pafs'], expected[1])


def test_finetune_refuses_a_network_normalised_otherwise(tmp_path, tiny):
    from utils.config import config_text
    path = str(tmp_path / 'raw.pt')
    torch.save({'model': TinyNet().state_dict(),
                'config': config_text(make_config('input/divisor=1', 'input/mean=0', 'input/std=1'))}, path)
    with pytest.raises(configlib.ConfigError, match=r'--finetune .*raw.pt reads input normalised as .* -m '
                                                   r'input/divisor=1.0'):
        run(tmp_path / 'exp', 'train/steps=1', finetune=path)
    torch.save({'model': TinyNet().state_dict(), 'config': config_text(make_config())}, path)
    assert run(tmp_path / 'same', 'train/steps=1', finetune=path)['step'] == 1


def test_extra_sets_with_one_folder_name_are_refused():
    from cache import io as cacheio
    with pytest.raises(UserError, match='share a folder name'):
        cacheio.extras(make_config('dataset/extra=a/real b/real/'))
    assert cacheio.extras(make_config('dataset/extra=a/real b/other')) == ['a/real', 'b/other']


def test_finetune_equalizes_a_network_without_normalisation(tmp_path, tiny, capsys):
    torch.manual_seed(0)
    skewed = TinyNet()
    with torch.no_grad():
        skewed.backbone[0].weight *= 100       # a folded network's layers differ in scale by orders
        skewed.backbone[0].bias *= 100
        skewed.backbone[2].weight *= 0.01
    path = str(tmp_path / 'skewed.pt')
    torch.save({'model': skewed.state_dict()}, path)
    run(tmp_path / 'exp', 'train/steps=1', 'train/lr=1e-12', 'hooks/checkpoint=1m', finetune=path)
    assert 'channels rescaled to unit size on 24 training samples' in capsys.readouterr().err
    equalized = TinyNet()
    equalized.load_state_dict(checkpoint.load(checkpoint.checkpoints(str(tmp_path / 'exp'))[-1])['model'])
    images = torch.stack([TinyData()[i]['image'] for i in range(4)])
    from model import equalize
    with torch.no_grad():
        for a, b in zip(skewed(images)[0], equalized(images)[0]):   # the same maps
            assert float((a - b).abs().max()) < equalize.TOLERANCE * float(a.abs().max())
    sizes = equalize.sizes(equalized, images)
    assert 0.5 < sizes['backbone.0'] <= 1.01 and 0.5 < sizes['backbone.2'] <= 1.01
    run(tmp_path / 'off', 'train/steps=1', 'train/lr=1e-12', 'train/equalize=false', 'hooks/checkpoint=1m',
        finetune=path)
    kept = checkpoint.load(checkpoint.checkpoints(str(tmp_path / 'off'))[-1])['model']
    assert torch.allclose(kept['backbone.0.weight'], skewed.state_dict()['backbone.0.weight'], rtol=1e-6)
    normalised = TinyNet()                               # batch norm: left as it is, saying why
    normalised.backbone[1] = nn.BatchNorm2d(8)
    before = {k: v.clone() for k, v in normalised.state_dict().items()}
    train.equalize_on_training_data(normalised, TinyData(), make_config())
    assert 'normalisation layers' in capsys.readouterr().err
    assert all(torch.equal(before[k], v) for k, v in normalised.state_dict().items())
