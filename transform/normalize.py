"""Input normalisation: uint8 BGR image -> float32 (3, H, W) network input, (pixel / divisor - mean) / std per
channel, channels in RGB or BGR order. CMU's original model wants BGR and x / 256 - 0.5 (divisor 256,
mean 0.5, std 1); torchvision's ImageNet backbones want RGB, divisor 255 and ImageNet's mean and std."""

import cv2
import numpy as np

from utils import config as configlib
from utils.config import ConfigError


def params(config):
    """{'channel_order', 'divisor', 'mean', 'std'} from the [input] section, checked."""
    order = config.get('input', 'channel_order').strip().lower()
    if order not in ('rgb', 'bgr'):
        raise ConfigError(f'[input] channel_order = {order!r}: use rgb or bgr')
    divisor = config.getfloat('input', 'divisor')
    if divisor <= 0:
        raise ConfigError(f'[input] divisor = {divisor}: must be positive')
    result = {'channel_order': order, 'divisor': divisor}
    for name in ('mean', 'std'):
        values = config.getfloatlist('input', name)
        if len(values) == 1:
            values = values * 3
        if len(values) != 3:
            raise ConfigError(f'[input] {name} = {config.get("input", name)!r}: give 1 or 3 values')
        if name == 'std' and min(values) <= 0:
            raise ConfigError(f'[input] std = {config.get("input", "std")!r}: values must be positive')
        result[name] = values
    return result



def check_same(saved_text, config, what):
    """ConfigError when the network whose saved config text is `saved_text` reads its input normalised
    otherwise than `config` (its weights would see other pixels than they were trained on); `what` names
    the network in the message."""
    theirs, ours = params(configlib.loads(saved_text)), params(config)
    if theirs != ours:
        wanted = ' '.join(f'-m input/{k}={" ".join(map(str, v)) if isinstance(v, list) else v}'
                          for k, v in theirs.items())
        raise ConfigError(f'{what} reads input normalised as {theirs}, the config says {ours}; set the same '
                          f'[input] ({wanted})')

def coefficients(params):
    """(source channel of the BGR image, scale, offset) per output channel: out = pixel * scale + offset."""
    source = (2, 1, 0) if params['channel_order'] == 'rgb' else (0, 1, 2)
    return [(source[c], 1.0 / (params['divisor'] * params['std'][c]), -params['mean'][c] / params['std'][c])
            for c in range(3)]


def normalize(image, params):
    """uint8 BGR (H, W, 3) -> float32 (3, H, W) network input."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected a (H, W, 3) BGR image, got shape {image.shape}')
    channels = cv2.split(np.ascontiguousarray(image))  # contiguous planes convert fastest
    out = np.empty((3,) + image.shape[:2], np.float32)
    for c, (source, scale, offset) in enumerate(coefficients(params)):
        np.multiply(channels[source], np.float32(scale), out=out[c])  # to float32 and scale in one pass
        out[c] += np.float32(offset)
    return out


def to_input(images, params):
    """A batch of uint8 BGR images (B, H, W, 3), as the training loader gives them, -> the float32 network
    input (B, 3, H, W) on the same device, with normalize()'s arithmetic. A floating-point batch is taken to
    be network input already and returned as it is."""
    if images.is_floating_point():
        return images
    if images.dim() != 4 or images.shape[3] != 3:
        raise ValueError(f'expected a (B, H, W, 3) uint8 BGR batch, got shape {tuple(images.shape)}')
    import torch  # here: the rest of this file serves the ONNX path too, which needs no torch
    source, scale, offset = zip(*coefficients(params))
    planes = images.permute(0, 3, 1, 2)[:, list(source)].float()
    scale, offset = (torch.tensor(v, dtype=torch.float32, device=images.device)[:, None, None]
                     for v in (scale, offset))
    return (planes * scale + offset).contiguous()


def denormalize(tensor, params):
    """float (3, H, W) network input -> uint8 BGR (H, W, 3) image, for drawing."""
    tensor = np.asarray(tensor, np.float32)
    image = np.empty(tensor.shape[1:] + (3,), np.float32)
    for c, (source, scale, offset) in enumerate(coefficients(params)):
        image[:, :, source] = (tensor[c] - offset) / scale
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
