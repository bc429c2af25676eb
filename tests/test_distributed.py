"""`torchrun --nproc_per_node 2 train.py` on CPU (gloo, DistributedDataParallel): the ranks agree on the
steps, rank 0 alone writes one set of checkpoints and summaries, and a re-run resumes every rank."""

import os
import subprocess
import sys

import torch
from test_train import EVERY_STEP

from utils import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def torchrun(tmp_path, *mods):
    """train.py under torchrun with test_train's stand-in network and data (24 samples, batch 4)."""
    script = tmp_path / 'train_stand_in.py'
    script.write_text(f'import sys\nsys.path[:0] = [{ROOT!r}, {TESTS!r}]\nimport test_train\n'
                      f'test_train.use_stand_ins()\nimport train\ntrain.main()\n')
    from test_train import MODS
    mods = [a for m in MODS + list(mods) for a in ('-m', m)]
    args = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
            str(script), '--no-progress', '--name', 'exp', '-m', f'train/root={tmp_path}'] + mods
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})


def test_torchrun_two_processes_on_cpu(tmp_path):
    folder = str(tmp_path / 'exp')
    first = torchrun(tmp_path, 'train/steps=4', f'hooks/checkpoint={EVERY_STEP}', 'hooks/keep=10',
                     f'hooks/scalars={EVERY_STEP}')
    assert first.returncode == 0, first.stderr[-3000:]
    assert 'training from step 0 on cpu, 2 process(es)' in first.stderr
    assert first.stderr.count('stopped at step 4') == 1  # rank 0 alone reports
    # one checkpoint per step, written once (by rank 0), holding both ranks' RNG states
    assert [os.path.basename(p) for p in checkpoint.checkpoints(folder)] == \
        [f'checkpoint-0000000{s}.pt' for s in (1, 2, 3, 4)]
    state = checkpoint.load(checkpoint.path_for(folder, 4))
    assert len(state['rng']) == 2 and not torch.equal(state['rng'][0]['torch'], state['rng'][1]['torch'])
    assert state['epoch'] == 1 and state['batch_in_epoch'] == 1  # 24 samples / 2 ranks / batch 4 = 3 steps
    assert not any(k.startswith('module.') for k in state['model'])
    assert len([f for f in os.listdir(folder) if f.startswith('events.out.')]) == 1

    again = torchrun(tmp_path, 'train/steps=6', f'hooks/checkpoint={EVERY_STEP}', 'hooks/keep=10')
    assert again.returncode == 0, again.stderr[-3000:]
    assert f'resuming from {checkpoint.path_for(folder, 4)} at step 4 (epoch 1)' in again.stderr
    assert checkpoint.load(checkpoint.path_for(folder, 6))['step'] == 6
