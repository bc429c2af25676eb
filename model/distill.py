"""Knowledge distillation from a frozen teacher network ("learning without forgetting", Li and Hoiem,
ECCV 2016; Hinton et al., "Distilling the Knowledge in a Neural Network", 2015): the images of the
[dataset] extra sets take the teacher's maps of the same augmented input as their targets, over the whole
map, instead of their labels. Fine-tuning a pretrained network on a new domain (the quick start's synthetic
people) with its own maps of real footage in every few batches keeps what it knew of real people.
"""

import torch

import model as models
from pose.predict import flip_channels
from transform import normalize
from utils import checkpoint
from utils import config as configlib
from utils.cli import UserError


def load_teacher(path, config, device):
    """The frozen network of checkpoint `path` (built from its own saved config) on `device`; UserError when
    it is missing or reads its input normalised otherwise than `config` (it would see other pixels)."""
    try:
        state = checkpoint.load(path)
    except checkpoint.CheckpointError as error:
        raise UserError(f'[train] teacher: {error}') from None
    if not isinstance(state, dict) or not isinstance(state.get('config'), str) or 'model' not in state:
        raise UserError(f'[train] teacher = {path}: not a checkpoint with a model and its config')
    normalize.check_same(state['config'], config, f'[train] teacher = {path}')
    teacher = models.build(configlib.loads(state['config']), pretrained=False)
    teacher.load_state_dict(state['model'])
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def targets(teacher, skeleton=None, flip=False, every=False):
    """set(batch): for the samples whose batch['extra'] is true (every sample with `every`), heatmaps and pafs
    become the teacher's last-stage maps of batch['image'] (the network input) and the mask 1 (every cell
    counts). flip: the teacher's maps are the mean of the image's and its mirror's (mirrored back by the
    `skeleton`'s flip table), as eval.py's [eval] flip averages them: better maps than the student starts
    from."""
    def maps(images):
        heatmaps, pafs = teacher(images)[-1]
        if not flip:
            return heatmaps, pafs
        mirrored_heatmaps, mirrored_pafs = unflip(*teacher(images.flip(-1))[-1], skeleton)
        return (heatmaps + mirrored_heatmaps) / 2, (pafs + mirrored_pafs) / 2

    def apply(batch):
        if every:
            batch['extra'] = torch.ones_like(batch['extra'])
        if batch['extra'].any():
            with torch.no_grad():
                replace(batch, *maps(batch['image'][batch['extra'].bool()]))
    return apply


def replace(batch, heatmaps, pafs):
    """The targets of the samples whose batch['extra'] is true become `heatmaps` and `pafs` (the maps of those
    samples, in batch order) and their mask 1 (every cell counts); the batch's tensors are copied."""
    chosen = batch['extra'].bool()
    for key, value in (('heatmaps', heatmaps), ('pafs', pafs)):
        batch[key] = batch[key].clone()
        batch[key][chosen] = value.to(batch[key].dtype)
    batch['mask'] = batch['mask'].clone()
    batch['mask'][chosen] = 1


def unflip(heatmaps, pafs, skeleton):
    """pose.predict.unflip for (N, C, h, w) tensors: maps of mirrored inputs mirrored back."""
    channels, index, sign = flip_channels(skeleton)
    sign = torch.tensor(sign, dtype=pafs.dtype, device=pafs.device).view(1, -1, 1, 1)
    return heatmaps[:, channels].flip(-1), pafs[:, index].flip(-1) * sign
