"""Train a pose network (OpenPose, Cao et al. CVPR 2017, and its variants) from a config.

    python train.py -c config/mobilenet_v2.ini                          # one process (GPU when present)
    torchrun --nproc_per_node 4 train.py -c config/mobilenet_v2.ini     # DistributedDataParallel

The experiment folder is [train] root / --name (default: the overlay names). Re-running the same command
resumes from its newest checkpoint; a saved config that differs in options changing the model or data
stops the run unless --force (continue with the new options) or --restart (move the old run aside).
"""

import datetime
import functools
import os
import shutil
import signal
import sys

import numpy as np
import torch

import model as models
from cache import dataset
from model import distill, equalize, loss
from pose import decode
from pose import hooks as pose_hooks  # the hooks that decode poses (summary images, evaluation)
from transform import normalize
from utils import checkpoint, cli, distributed, hooks, lock, optim
from utils import config as configlib
from utils.trainer import Trainer, seed_all

# Options in these sections may change between a run and its resumption; any other change alters the
# model or the data and must be confirmed with --force or --restart.
RESUMABLE_SECTIONS = ('train', 'hooks', 'eval', 'decode', 'detect')


def arguments():
    p = cli.parser(__doc__.splitlines()[0])
    p.add_argument('--finetune', metavar='PATH',
                   help='start from the weights of this checkpoint (missing and unexpected keys are listed; '
                        'default: [train] finetune); ignored when the model directory has a checkpoint to '
                        'resume')
    p.add_argument('--force', action='store_true',
                   help='resume although the saved config differs in options that change the model or data')
    p.add_argument('--restart', action='store_true',
                   help='move the model directory\'s previous run to previous/<time>/ and start from step 0')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


@cli.main
def main():
    args = arguments().parse_args()
    config = cli.load_config(args)
    if args.finetune:
        config.set('train', 'finetune', args.finetune)
    summary = run(config, cli.model_dir(args, config), force=args.force,
                  restart=args.restart, progress=not args.no_progress)
    for name, code in (('SIGINT', 130), ('SIGTERM', 128 + signal.SIGTERM)):
        if name in summary['reason']:
            sys.exit(code)


def build_model(config):
    return models.build(config)


def build_loader(config, stride, rank, world_size, seed):
    return dataset.loader(config, config.get('dataset', 'train'), stride, train=True, rank=rank,
                          world_size=world_size, seed=seed)


def loss_function(config):
    return functools.partial(loss.compute, params=loss.weights(config))


def log(message):
    if distributed.is_main():
        print(message, file=sys.stderr, flush=True)


def run(config, folder, finetune=None, force=False, restart=False, progress=True):
    """Train into `folder` (locked for the run), starting from the weights of `finetune` (default:
    [train] finetune) unless it resumes; returns {'step', 'epoch', 'reason', 'checkpoint'}."""
    device = distributed.init(config.get('train', 'device'))
    handle = None
    try:
        error = None
        if distributed.is_main():
            try:
                handle = lock.acquire(folder)
                prepare_folder(config, folder, force, restart)
            except (cli.UserError, configlib.ConfigError) as e:
                error = e
        message = distributed.broadcast_object(str(error) if error else None)  # other ranks stop too
        if error:
            raise error
        if message:
            raise cli.UserError(message)
        result = train(config, folder, device, finetune or config.get('train', 'finetune').strip(), progress)
        distributed.barrier()  # no rank tears the process group down while another still uses it
        return result
    finally:
        if handle is not None:
            lock.release(handle)
        distributed.cleanup()


def prepare_folder(config, folder, force, restart):
    """Check the config against the one saved with the run's checkpoints, then write it (rank 0)."""
    saved = os.path.join(folder, 'config.ini')
    if restart and (checkpoint.checkpoints(folder) or os.path.isfile(saved)):
        log(f'{folder}: the previous run moved to {move_previous_run(folder)}')
    elif checkpoint.checkpoints(folder) and os.path.isfile(saved):
        try:
            with open(saved, encoding='utf-8') as f:
                old = configlib.loads(f.read())
        except configlib.ConfigError as error:
            raise cli.UserError(f'{saved}: {error} (use --restart to move this run aside)') from None
        model_data = [s for s in config.sections() if s not in RESUMABLE_SECTIONS]
        changed = configlib.differences(old, config, model_data)
        others = configlib.differences(old, config, RESUMABLE_SECTIONS)
        if changed and not force:
            raise cli.UserError(
                f'{folder} holds a run whose saved config differs in options that change the model or data: '
                f'{describe(changed)}. Re-run with --force to resume it with the new options, --restart to '
                f'move it aside and start over, or --name NAME for a new experiment')
        if changed or others:
            log(f'{folder}: resuming with changed options: {describe(changed + others)}')
    configlib.write(config, saved)


def describe(changes):
    return '; '.join(f'[{section}] {option}: {old!r} -> {new!r}' for section, option, old, new in changes)


def move_previous_run(folder):
    """Move the checkpoints, config, summaries, evaluations, NaN dumps of `folder` to previous/<time>/."""
    target = os.path.join(folder, 'previous', datetime.datetime.now().strftime('%Y%m%d-%H%M%S'))
    os.makedirs(target, exist_ok=True)
    for name in os.listdir(folder):
        if name.startswith(('checkpoint-', 'events.out.')) or name in ('config.ini', 'eval', 'nan'):
            shutil.move(os.path.join(folder, name), os.path.join(target, name))
    return target


def load_finetune(model, path, config):
    """Weights of a checkpoint (or a bare state_dict) into `model`, listing what does not fit; UserError
    when the checkpoint's saved config normalises the input otherwise than `config` (the weights would see
    other pixels than they were trained on)."""
    try:
        state = checkpoint.load(path)
    except checkpoint.CheckpointError as error:
        raise cli.UserError(f'--finetune: {error}') from None
    weights = state.get('model', state) if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise cli.UserError(f'--finetune {path}: neither a checkpoint nor a state_dict')
    if isinstance(state.get('config'), str):
        normalize.check_same(state['config'], config, f'--finetune {path}')
    missing, unexpected = checkpoint.load_weights(model, weights, strict=False)
    log(f'--finetune {path}: loaded {len(weights) - len(unexpected)} tensors')
    for title, keys in (('missing (left as initialised)', missing), ('unexpected (ignored)', unexpected)):
        if keys:
            log(f'  {title}: {summarize(keys)}')


# the augmentation stream of the calibration samples, apart from every training epoch's
CALIBRATION_EPOCH = 2 ** 31 - 1


def equalize_on_training_data(model, dataset, config, samples=32):
    """Rescale the channels of a fine-tuned `model` without normalisation layers to unit size on `samples`
    training samples (model/equalize.py: the same maps, weights rewritten in place), so that each
    weight's gradient and each Adam step have the same meaning in every layer on the data it trains on
    (channel sizes measured on other images would leave some weights with far larger effective rates). A
    network that equalize refuses (batch norm, residual sums) is left as it is, saying why."""
    rng = np.random.default_rng(config.getint('train', 'seed'))
    picks = rng.choice(len(dataset), min(samples, len(dataset)), replace=False)
    # a PoseDataset takes (index, height, width, epoch) keys: the first input size, an epoch of its own
    keys = [(int(i), *dataset.sizes[0], CALIBRATION_EPOCH) if hasattr(dataset, 'sizes') else int(i)
            for i in picks]
    images = torch.stack([dataset[key]['image'] for key in keys])
    inputs = normalize.to_input(images, normalize.params(config)).to(next(model.parameters()).device)
    try:
        equalized = equalize.equalize(model, inputs)
    except ValueError as error:
        log(f'[train] equalize: {error}; left as it is')
        return
    model.load_state_dict(equalized.state_dict())
    log(f'[train] equalize: channels rescaled to unit size on {len(picks)} training samples (same maps)')


def summarize(keys):
    """Parameter names, those of a module with several (e.g. stages.3.*) as one `module.* (count)` item."""
    groups = {}
    for key in keys:
        groups.setdefault('.'.join(key.split('.')[:2]), []).append(key)
    return ', '.join(names[0] if len(names) == 1 else f'{prefix}.* ({len(names)})'
                     for prefix, names in groups.items())


def make_hooks(config, folder, config_text, writer, model):
    """The [hooks] hooks, the same list on every rank (their timing is agreed across ranks)."""
    period = functools.partial(config.getduration, 'hooks')
    result = [hooks.Checkpoint(period('checkpoint'), folder, config_text, config.getint('hooks', 'keep')),
              hooks.Scalars(period('scalars'), writer)]
    if period('images') > 0:
        result.append(pose_hooks.Images(period('images'), writer, model.skeleton, model.stride,
                                        normalize.params(config), decode.params(config)))
    if period('histograms') > 0:
        result.append(hooks.Histograms(period('histograms'), writer))
    if period('evaluate') > 0:
        result.append(pose_hooks.Evaluate(period('evaluate'), writer, config, folder,
                                          config.getint('hooks', 'evaluate_limit')))
    return result


def targets(config, device):
    """The Trainer's targets(batch): the [train] teacher's maps (model.distill) for the [dataset] extra
    images, or for every image when there is no extra set; None without a teacher (the labels)."""
    path = config.get('train', 'teacher').strip()
    if not path:
        return None
    return distill.targets(distill.load_teacher(path, config, device), models.layout(config),
                           config.getboolean('train', 'teacher_flip'),
                           every=not config.getlist('dataset', 'extra'))


def limits(config):
    steps, epochs = config.getint('train', 'steps'), config.getint('train', 'epochs')
    seconds = config.getduration('train', 'time')
    for name, value in (('steps', steps), ('epochs', epochs), ('time', seconds)):
        if value < 0:
            raise configlib.ConfigError(f'[train] {name} = {value}: must be >= 0 (0 = no limit)')
    return steps, epochs, seconds


def train(config, folder, device, finetune, progress):
    from tensorboardX import SummaryWriter
    if config.getint('train', 'threads') > 0:
        torch.set_num_threads(config.getint('train', 'threads'))
    seed, rank, world = config.getint('train', 'seed'), distributed.rank(), distributed.world_size()
    steps, epochs, seconds = limits(config)
    seed_all(seed)
    model = build_model(config).to(device)
    seed_all(seed + rank)
    loader = build_loader(config, model.stride, rank, world, seed)
    state, path = checkpoint.load_latest(folder) if distributed.is_main() else (None, None)
    state, path = distributed.broadcast_object((state, path))
    # DistributedDataParallel copies rank 0's weights to the other ranks
    if state is None and finetune and distributed.is_main():
        load_finetune(model, finetune, config)
        if config.getboolean('train', 'equalize'):
            equalize_on_training_data(model, loader.dataset, config)
    optimizer = optim.build_optimizer(model, config)
    totals = [n for n in (steps, epochs * len(loader)) if n > 0]
    scheduler = optim.build_scheduler(optimizer, config, min(totals) if totals else None)
    config_text = configlib.dumps(config)
    writer = SummaryWriter(folder) if distributed.is_main() else None
    try:
        trainer = Trainer(
            distributed.wrap(model, device), optimizer, scheduler, loader, loss_function(config), device,
            make_hooks(config, folder, config_text, writer, model), steps=steps, epochs=epochs,
            seconds=seconds,
            amp=config.getboolean('train', 'amp'), clip_grad=config.getfloat('train', 'clip_grad'),
            on_nonfinite=functools.partial(hooks.dump_nonfinite, folder, config), progress=progress,
            inputs=functools.partial(normalize.to_input, params=normalize.params(config)),
            targets=targets(config, device))
        if state is not None:
            trainer.load_state_dict(state)
            log(f'{folder}: resuming from {path} at step {trainer.step} (epoch {trainer.epoch})'
                + (f'; --finetune {finetune} is not used' if finetune else ''))
        else:
            log(f'{folder}: training from step 0 on {device}, {world} process(es)')
        reason = trainer.train()
    finally:
        if writer is not None:
            writer.close()
    saved = trainer.hooks[0].path
    log(f'{folder}: stopped at step {trainer.step} (epoch {trainer.epoch}): {reason}'
        + (f'; checkpoint {saved}' if saved else ''))
    return {'step': trainer.step, 'epoch': trainer.epoch, 'reason': reason, 'checkpoint': saved}


if __name__ == '__main__':
    main()
