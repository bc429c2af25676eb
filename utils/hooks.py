"""Timed training hooks: checkpoint, TensorBoard scalars and histograms, and the NaN dump (pose/hooks.py has
the ones that decode poses: summary images, evaluation). Each fires every `period` seconds of wall clock
(0 = only at the end) and once more at the end of training, also after Ctrl-C or SIGTERM. Rank 0 alone
writes; the checkpoint hook runs on every rank because it gathers every rank's RNG states.
"""

import os
import time

import torch

from utils import checkpoint, distributed
from utils import config as configlib
from utils.io import atomic_path


class Hook:
    """Base hook: detectron2's before_train / after_step / after_train, all no-ops."""

    def is_due(self, now):
        return False

    def before_train(self, trainer):
        pass

    def after_step(self, trainer):
        pass

    def after_train(self, trainer):
        pass


class TimedHook(Hook):
    """Calls `run(trainer)` after a step when `period` seconds have passed since it last ran (rank 0's
    clock decides, see Trainer._agree) and at the end of training if a step was done since."""

    def __init__(self, period):
        self.period = period
        self.last_time = self.done_step = None

    def is_due(self, now):
        return self.period > 0 and now - self.last_time >= self.period

    def before_train(self, trainer):
        self.last_time, self.done_step = time.monotonic(), trainer.step

    def after_step(self, trainer):
        if self in trainer.due:
            self._fire(trainer)

    def after_train(self, trainer):
        if trainer.step != self.done_step:
            self._fire(trainer)

    def _fire(self, trainer):
        self.run(trainer)
        self.last_time, self.done_step = time.monotonic(), trainer.step

    def run(self, trainer):
        raise NotImplementedError


class Checkpoint(TimedHook):
    """Atomic `checkpoint-<step>.pt` in the model directory, with the merged config; keeps the newest `keep`.
    Skipped when the state is not consistent (a stop inside an optimizer step, or after a NaN)."""

    def __init__(self, period, folder, config_text, keep):
        super().__init__(period)
        self.folder, self.config_text, self.keep = folder, config_text, keep
        self.path = None

    def run(self, trainer):
        if not trainer.consistent:
            return
        state = trainer.state_dict()
        if distributed.is_main():
            state['config'] = self.config_text
            self.path = checkpoint.save(self.folder, state, trainer.step, self.keep)


class Scalars(TimedHook):
    """Loss total and terms (means since the last write), learning rate per group, samples/s, epoch."""

    def __init__(self, period, writer):
        super().__init__(period)
        self.writer = writer
        self.mark = None

    def before_train(self, trainer):
        super().before_train(trainer)
        self.mark = (time.monotonic(), trainer.step)

    def run(self, trainer):
        means = trainer.pop_means()
        if not distributed.is_main():
            return
        for name, value in means.items():
            self.writer.add_scalar(f'loss/{name}', value, trainer.step)
        for group in trainer.optimizer.param_groups:
            self.writer.add_scalar(f'lr/{group.get("name", "group")}', group['lr'], trainer.step)
        now, (then, step) = time.monotonic(), self.mark
        if trainer.step > step:
            rate = (trainer.step - step) * trainer.samples_per_step / max(now - then, 1e-9)
            self.writer.add_scalar('speed/samples_per_s', rate, trainer.step)
        self.writer.add_scalar('progress/epoch', trainer.epoch, trainer.step)
        self.writer.flush()
        self.mark = (now, trainer.step)


class Histograms(TimedHook):
    """Histograms of every parameter and its gradient."""

    def __init__(self, period, writer):
        super().__init__(period)
        self.writer = writer

    def run(self, trainer):
        if not distributed.is_main():
            return
        for name, param in trainer.module.named_parameters():
            step = trainer.step
            self.writer.add_histogram(f'parameters/{name}', param.detach().float().cpu(), step)
            if param.grad is not None:
                self.writer.add_histogram(f'gradients/{name}', param.grad.detach().float().cpu(), step)
        self.writer.flush()


def dump_nonfinite(folder, config, trainer, batch, outputs, terms):
    """Save what a non-finite loss needs for debugging into <folder>/nan/<step>/: each rank's batch,
    outputs and loss terms (batch.pt, outputs.pt, terms.pt, with -rank<r> past rank 0) and, from rank 0,
    the model's state_dict (model.pt) and the merged config (config.ini). Returns the folder."""
    where = os.path.join(folder, 'nan', f'{trainer.step:08d}')
    suffix = '' if distributed.is_main() else f'-rank{distributed.rank()}'
    cpu = {'batch': {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in batch.items()},
           'outputs': [tuple(t.detach().cpu() for t in stage) for stage in outputs],
           'terms': {k: v.detach().cpu() for k, v in terms.items()}}
    if distributed.is_main():
        cpu['model'] = trainer.module.state_dict()
        configlib.write(config, os.path.join(where, 'config.ini'))
    os.makedirs(where, exist_ok=True)
    for name, value in cpu.items():
        with atomic_path(os.path.join(where, f'{name}{suffix}.pt')) as tmp:
            torch.save(value, tmp)
    return where
