"""The training loop: a plain loop with hooks, shaped like detectron2's trainer.

Hooks (utils/hooks.py) have `before_train`, `after_step` and `after_train`; `after_train` runs in a
`finally`, so a run stopped by a limit, Ctrl-C, SIGTERM or an error still checkpoints and flushes its
summaries. The step stays cheap: forward, loss, backward, one small collective that agrees on the loss,
on stopping and on which timed hooks fire (rank 0's clock decides, so every rank fires the same hooks at
the same step), then the optimizer step. Slow work lives in hooks.

Resume is exact: the trainer's state holds the model, optimizer, scheduler, GradScaler, step, epoch, the
batches done in the current epoch and every rank's RNG states (as tensors and plain numbers, loadable with
`torch.load(weights_only=True)`); the data order continues through the sampler's epoch seed and by
skipping the batches already done.
"""

import contextlib
import math
import random
import signal
import threading
import time
import warnings

import numpy as np
import torch
import tqdm

from utils import distributed
from utils.cli import UserError


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the message says where the dump is."""


def rng_state():
    """This process's RNG states (python, numpy, torch, CUDA) as tensors and plain numbers."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': {'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
        'python': {'version': version, 'state': torch.tensor(internal, dtype=torch.int64), 'gauss': gauss},
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    n = state['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(int(v) for v in p['state'].tolist()), p['gauss']))
    if 'cuda' in state and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state['cuda'])


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_batches(loader, epoch, skip=0, epoch_rng=None):
    """An iterator over epoch `epoch` of `loader` without its first `skip` batches.

    The sampler is seeded by the epoch (set_epoch), so the order is the same as in the run that was
    interrupted; the skipped batches are not loaded: a loader over the remaining batches takes over.
    Making an iterator draws the workers' base seed from torch's RNG: with `epoch_rng`, the torch RNG state
    when the interrupted run began this epoch, the draw repeats that run's and the current state is kept."""
    for sampler in (loader.batch_sampler, getattr(loader.batch_sampler, 'sampler', None), loader.sampler):
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(epoch)
            break
    if skip == 0:
        return iter(loader)
    batches = list(loader.batch_sampler)[skip:]
    current = torch.get_rng_state()
    if epoch_rng is not None:
        torch.set_rng_state(epoch_rng)
    extra = {'prefetch_factor': loader.prefetch_factor} if loader.num_workers > 0 else {}
    rest = torch.utils.data.DataLoader(
        loader.dataset, batch_sampler=batches, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
        multiprocessing_context=loader.multiprocessing_context, **extra)
    iterator = iter(rest)
    torch.set_rng_state(current)
    return iterator


@contextlib.contextmanager
def stop_signals(on_signal):
    """Turn SIGINT and SIGTERM into a call of `on_signal(name)` (a graceful stop after the current step);
    a second signal raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def handler(signum, frame):
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        on_signal(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


class Trainer:
    """One training run: model, optimizer, data, limits, hooks and the loop over them.

    compute_loss(outputs, heatmaps, pafs, mask) -> (total, {name: scalar tensor}). limits: steps, epochs
    (0 = none) and seconds of wall-clock time in this run (0 = none). on_nonfinite(trainer, batch, outputs,
    terms) dumps what is needed to debug a NaN and returns the folder it wrote. inputs(image batch) makes
    the network input from the loader's images once they are on the device (the training loader's are
    uint8, see transform.normalize.to_input); the hooks and NaN dumps see its result. targets(batch), when
    given, may replace the batch's targets in place after the forward (model.distill: a teacher's maps)."""

    def __init__(self, model, optimizer, scheduler, loader, compute_loss, device, hooks=(), steps=0, epochs=0,
                 seconds=0.0, amp=False, clip_grad=0.0, on_nonfinite=None, progress=True, inputs=None,
                 targets=None):
        self.model, self.module = model, distributed.unwrap(model)
        self.optimizer, self.scheduler, self.loader = optimizer, scheduler, loader
        self.compute_loss, self.device, self.hooks = compute_loss, device, list(hooks)
        self.max_steps, self.max_epochs, self.max_seconds = steps, epochs, seconds
        self.amp = amp and device.type == 'cuda'
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp)
        self.clip_grad, self.on_nonfinite, self.progress = clip_grad, on_nonfinite, progress
        self.inputs = inputs or (lambda images: images)
        self.targets = targets
        self.step = self.epoch = self.batch_in_epoch = 0
        self.epoch_rng = None     # torch's RNG state when this epoch's data iterator was made
        self.start_step = 0
        self.batch_size = 0       # samples in the latest batch of this process
        self.stop_reason = None
        self.signal = None        # name of the signal that asked for a stop
        self.consistent = True    # False while an optimizer step is half done or after a NaN
        self.due = set()          # hooks that fire after this step
        self.last = {}            # batch, outputs, terms of the latest step, for the hooks
        self.sums, self.count = {}, 0

    # ---- state -------------------------------------------------------------------------------------------
    def state_dict(self):
        """Checkpoint contents; a collective under torchrun (every rank's RNG states are gathered)."""
        return {'model': self.module.state_dict(), 'optimizer': self.optimizer.state_dict(),
                'scheduler': self.scheduler.state_dict(), 'scaler': self.scaler.state_dict(),
                'step': self.step, 'epoch': self.epoch, 'batch_in_epoch': self.batch_in_epoch,
                'rng': distributed.all_gather_object({**rng_state(), 'epoch_torch': self.epoch_rng})}

    def load_state_dict(self, state):
        self.module.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.scheduler.load_state_dict(state['scheduler'])
        if self.amp and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        self.step, self.epoch, self.batch_in_epoch = state['step'], state['epoch'], state['batch_in_epoch']
        rng = state.get('rng') or []
        if len(rng) == distributed.world_size():
            set_rng_state(rng[distributed.rank()])
            self.epoch_rng = rng[distributed.rank()].get('epoch_torch')
        self.start_step = self.step

    @property
    def total_steps(self):
        """The step at which the limits stop the run, when steps or epochs are limited."""
        totals = [n for n in (self.max_steps, self.max_epochs * len(self.loader)) if n > 0]
        return min(totals) if totals else None

    @property
    def samples_per_step(self):
        return self.batch_size * distributed.world_size()

    # ---- loop --------------------------------------------------------------------------------------------
    def train(self):
        """Run until a limit, a signal or an error; the hooks' after_train always runs. Returns the reason."""
        self.started = time.monotonic()
        bar = tqdm.tqdm(total=self.total_steps, initial=self.step, unit='step', dynamic_ncols=True,
                        disable=not (self.progress and distributed.is_main()), smoothing=0.1)
        failed = True
        with stop_signals(self._on_signal):
            try:
                for hook in self.hooks:
                    hook.before_train(self)
                self._check_limits()
                while self.stop_reason is None:
                    self._run_epoch(bar)
                failed = False
            except BaseException:
                self.stop_reason = self.stop_reason or 'error'
                raise
            finally:
                bar.close()
                self._after_train(raise_errors=not failed)
        return self.stop_reason

    def _on_signal(self, name):
        self.signal = name

    def _after_train(self, raise_errors):
        """Every hook's after_train, even when one fails; the first failure is raised afterwards unless the
        loop itself failed (its error is the one to report, a hook's is only a warning then)."""
        error = None
        for hook in self.hooks:
            try:
                hook.after_train(self)
            except Exception as e:
                error = error or e
                if not raise_errors:
                    warnings.warn(f'{type(hook).__name__} hook failed at the end: {e}', stacklevel=2)
        if error is not None and raise_errors:
            raise error

    def _run_epoch(self, bar):
        if self.batch_in_epoch == 0:
            self.epoch_rng = torch.get_rng_state()
        batches = epoch_batches(self.loader, self.epoch, self.batch_in_epoch, self.epoch_rng)
        bar.set_description(f'epoch {self.epoch}', refresh=False)
        while self.stop_reason is None:
            try:
                batch = next(batches)
            except StopIteration:  # a loader shorter than its len(): the epoch ends here
                if self.batch_in_epoch == 0:
                    raise UserError('the training data loader yields no batch') from None
                self._end_epoch()
                return
            except RuntimeError:
                if self.signal and distributed.world_size() == 1:  # Ctrl-C also stopped the loader's workers
                    self.stop_reason = f'interrupted ({self.signal})'
                    return
                raise
            self.run_step(batch)
            bar.set_postfix(self._postfix(), refresh=False)
            bar.update(1)
            for hook in self.hooks:
                hook.after_step(self)
            if self.batch_in_epoch == 0:  # the epoch is complete
                return

    def _end_epoch(self):
        self.epoch += 1
        self.batch_in_epoch = 0
        self._check_limits()

    def _postfix(self):
        """Loss and samples/s for the progress bar; the time left when only [train] time limits the run."""
        postfix = {'loss': f'{self.last["loss"]:.4g}', 'samples/s': f'{self._rate():.1f}'}
        if self.max_seconds and self.total_steps is None:
            left = max(0, int(self.max_seconds - (time.monotonic() - self.started)))
            postfix['time left'] = f'{left // 60}:{left % 60:02d}'
        return postfix

    def _rate(self):
        elapsed = time.monotonic() - self.started
        return (self.step - self.start_step) * self.samples_per_step / max(elapsed, 1e-9)

    def _check_limits(self):
        if self.max_steps and self.step >= self.max_steps:
            self.stop_reason = f'step limit {self.max_steps} reached'
        elif self.max_epochs and self.epoch >= self.max_epochs:
            self.stop_reason = f'epoch limit {self.max_epochs} reached'

    def run_step(self, batch):
        """One optimizer step on `batch` (a dict of tensors: image, heatmaps, pafs, mask)."""
        batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                 for k, v in batch.items()}
        batch['image'] = self.inputs(batch['image'])
        self.batch_size = len(batch['image'])
        with torch.autocast(self.device.type, enabled=self.amp):
            outputs = self.model(batch['image'])
        if self.targets is not None:
            self.targets(batch)
        total, terms = self.compute_loss(outputs, batch['heatmaps'], batch['pafs'], batch['mask'])
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        loss, stop, self.due = self._agree(total)
        outputs = [tuple(t.detach() for t in stage) for stage in outputs]
        if not math.isfinite(loss):
            self._nonfinite(batch, outputs, terms, loss)
        self.consistent = False
        if self.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        self.batch_in_epoch += 1
        self.consistent = True
        self._record(batch, outputs, terms, loss)
        if stop:
            self.stop_reason = f'interrupted ({self.signal})' if self.signal else 'time limit reached'
        if self.batch_in_epoch >= len(self.loader):
            self._end_epoch()
        else:
            self._check_limits()

    def _agree(self, total):
        """(mean loss over ranks, stop wanted by any rank, hooks due by rank 0's clock) in one collective."""
        now = time.monotonic()
        wants_stop = bool(self.signal) or (self.max_seconds > 0 and now - self.started >= self.max_seconds)
        main = distributed.is_main()
        flags = [float(wants_stop)] + [float(main and hook.is_due(now)) for hook in self.hooks]
        if distributed.world_size() == 1:
            loss = total.item()
        else:
            stats = torch.cat([total.detach().float().reshape(1), torch.tensor(flags, device=total.device)])
            values = distributed.all_reduce_sum(stats).tolist()
            loss, flags = values[0] / distributed.world_size(), values[1:]
        due = {hook for hook, flag in zip(self.hooks, flags[1:]) if flag > 0}
        return loss, flags[0] > 0, due

    def _nonfinite(self, batch, outputs, terms, loss):
        self.consistent = False
        self.stop_reason = 'non-finite loss'
        where = self.on_nonfinite(self, batch, outputs, terms) if self.on_nonfinite else None
        saved = f'; the batch, outputs, model and config are in {where}' if where else ''
        raise NonFiniteLoss(f'non-finite loss ({loss}) at step {self.step}, epoch {self.epoch}{saved}')

    def _record(self, batch, outputs, terms, loss):
        """Keep the latest batch and outputs for the image hooks and sum the loss terms for the scalars
        (on the device, without a sync)."""
        self.last = {'batch': batch, 'outputs': outputs, 'loss': loss}
        self.sums['total'] = self.sums.get('total', 0.0) + loss
        for name, value in terms.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value
        self.count += 1

    def pop_means(self):
        """Mean of the loss total and terms since the last call, as floats; resets the sums."""
        means = {name: float(value) / max(1, self.count) for name, value in self.sums.items()}
        self.sums, self.count = {}, 0
        return means
