"""Optimizer and learning-rate schedule from the [train] section, chosen by name with keyword values.

Optimizers: sgd, adam, adamw (torch.optim, `optimizer_args` passed as keywords). The backbone
(`model.backbone`) gets its own parameter group at `lr * backbone_lr`; the stages use `lr`.
Schedules count optimizer steps and multiply every group's lr by one factor: a linear warm-up over
`warmup` steps times none (1), step (gamma ** (step // step_size)), multistep (gamma ** milestones
passed) or cosine (from 1 down to min_factor over t_max steps, default: the run's step limit).
"""

import bisect
import math

import torch

from utils.config import ConfigError

OPTIMIZERS = {'sgd': torch.optim.SGD, 'adam': torch.optim.Adam, 'adamw': torch.optim.AdamW}
# scheduler name -> {keyword: default}; None marks a keyword the schedule cannot do without
SCHEDULES = {
    'none': {},
    'step': {'step_size': None, 'gamma': 0.1},
    'multistep': {'milestones': None, 'gamma': 0.1},
    'cosine': {'t_max': None, 'min_factor': 0.0},
}


def param_groups(model, lr, backbone_lr):
    """[stages group, backbone group]: the backbone's parameters (model.backbone) at lr * backbone_lr."""
    backbone = getattr(model, 'backbone', None)
    inside = {id(p) for p in backbone.parameters()} if isinstance(backbone, torch.nn.Module) else set()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{'name': 'stages', 'params': [p for p in params if id(p) not in inside], 'lr': lr},
              {'name': 'backbone', 'params': [p for p in params if id(p) in inside], 'lr': lr * backbone_lr}]
    return [g for g in groups if g['params']]


def build_optimizer(model, config):
    """The [train] optimizer over `model`'s parameters, with the backbone's lr multiplier."""
    name = config.get('train', 'optimizer').strip().lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f'[train] optimizer = {name!r}: use one of {", ".join(OPTIMIZERS)}')
    lr = config.getfloat('train', 'lr')
    backbone_lr = config.getfloat('train', 'backbone_lr')
    if lr <= 0 or backbone_lr < 0:
        raise ConfigError(f'[train] lr = {lr}, backbone_lr = {backbone_lr}: need lr > 0, backbone_lr >= 0')
    kwargs = config.getkwargs('train', 'optimizer_args')
    try:
        groups = param_groups(model, lr, backbone_lr)
        return OPTIMIZERS[name](groups, lr=lr, **kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f'[train] optimizer_args = {config.get("train", "optimizer_args")!r} '
                          f'for {name}: {error}') from None


def schedule_args(config, total_steps):
    """(name, keyword values, warm-up steps) of the [train] schedule, checked and completed."""
    name = config.get('train', 'scheduler').strip().lower()
    if name not in SCHEDULES:
        raise ConfigError(f'[train] scheduler = {name!r}: use one of {", ".join(SCHEDULES)}')
    given = config.getkwargs('train', 'scheduler_args')
    where = f'[train] scheduler_args = {config.get("train", "scheduler_args")!r}'
    unknown = sorted(set(given) - set(SCHEDULES[name]))
    if unknown:
        valid = ', '.join(SCHEDULES[name]) or 'none'
        raise ConfigError(f'{where}: {name} does not take {", ".join(unknown)}; it takes: {valid}')
    kwargs = {**SCHEDULES[name], **given}
    if name == 'cosine' and kwargs['t_max'] is None:
        kwargs['t_max'] = total_steps
    if name == 'multistep' and kwargs['milestones'] is not None:
        kwargs['milestones'] = _milestones(kwargs['milestones'], where)
    missing = [k for k, v in kwargs.items() if v is None]
    if missing:
        hint = ' (or set a [train] steps or epochs limit)' if name == 'cosine' else ''
        raise ConfigError(f'{where}: {name} needs {", ".join(missing)}{hint}')
    for key in ('step_size', 't_max'):
        if key in kwargs and not (isinstance(kwargs[key], int) and kwargs[key] > 0):
            raise ConfigError(f'{where}: {key} must be a positive whole number of steps, got {kwargs[key]!r}')
    warmup = config.getint('train', 'warmup')
    if warmup < 0:
        raise ConfigError(f'[train] warmup = {warmup}: must be >= 0')
    return name, kwargs, warmup


def _milestones(value, where):
    try:
        steps = sorted(int(v) for v in str(value).split(';') if v.strip())
    except ValueError:
        raise ConfigError(f'{where}: milestones are steps separated by ";" (milestones=1000;2000)') from None
    if not steps:
        raise ConfigError(f'{where}: milestones is empty')
    return steps


def lr_factor(name, kwargs, warmup):
    """The function step -> lr multiplier of a schedule (warm-up included)."""
    def factor(step):
        value = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
        if name == 'step':
            value *= kwargs['gamma'] ** (step // kwargs['step_size'])
        elif name == 'multistep':
            value *= kwargs['gamma'] ** bisect.bisect_right(kwargs['milestones'], step)
        elif name == 'cosine':
            progress = min(step, kwargs['t_max']) / kwargs['t_max']
            low = kwargs['min_factor']
            value *= low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))
        return value
    return factor


def build_scheduler(optimizer, config, total_steps=None):
    """A LambdaLR stepped once per optimizer step; `total_steps` (the run's step limit, if any) is the
    cosine schedule's default length. Its state_dict is plain numbers, so checkpoints resume it exactly."""
    name, kwargs, warmup = schedule_args(config, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(name, kwargs, warmup))
