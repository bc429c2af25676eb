"""Training hooks that decode poses (utils/trainer.py runs them, utils/hooks.py has the rest): TensorBoard
images of the ground truth, the maps and the people decoded from them, and timed COCO evaluation."""

import json
import os

import numpy as np
import torch

from model import runner
from pose import decode as decoder
from pose import draw, evaluate
from transform import normalize
from utils import distributed
from utils.hooks import TimedHook
from utils.io import atomic_write_text


class Images(TimedHook):
    """The first sample of the latest batch: input with the ground-truth skeleton (decoded from its target
    maps), the loss mask, the last stage's heatmaps and PAFs, and the people decoded from them."""

    def __init__(self, period, writer, skeleton, stride, norm, decode_params):
        super().__init__(period)
        self.writer, self.skeleton, self.stride = writer, skeleton, stride
        self.norm, self.decode_params = norm, decode_params

    def run(self, trainer):
        if not distributed.is_main() or not trainer.last:
            return
        for tag, image in summary_images(trainer.last['batch'], trainer.last['outputs'], self.skeleton,
                                         self.stride, self.norm, self.decode_params).items():
            self.writer.add_image(f'images/{tag}', image[:, :, ::-1], trainer.step, dataformats='HWC')
        self.writer.flush()


def summary_images(batch, outputs, skeleton, stride, norm, decode_params):
    """{tag: BGR uint8 image} for the first sample of a batch and its network outputs."""
    image = normalize.denormalize(batch['image'][0].detach().float().cpu().numpy(), norm)
    target = [batch[k][0].detach().float().cpu().numpy() for k in ('heatmaps', 'pafs')]
    predicted = [t[0].detach().float().cpu().numpy() for t in outputs[-1]]

    def people(heatmaps, pafs):
        found = decoder.decode(heatmaps, pafs, skeleton, stride, **decode_params)
        return np.stack([p['keypoints'] for p in found]) if found else np.zeros((0, len(skeleton.parts), 3))

    def magnitudes(pafs):
        return np.hypot(pafs[0::2], pafs[1::2])

    mask = 1 - batch['mask'][0].detach().float().cpu().numpy()
    return {'ground_truth': draw.draw_people(image, people(*target), skeleton),
            'ignored': draw.colorize(mask, image),
            'heatmaps': draw.colorize(predicted[0][:-1], image),
            'pafs': draw.colorize(magnitudes(predicted[1]), image),
            'people': draw.draw_people(image, people(*predicted), skeleton)}


class Evaluate(TimedHook):
    """COCO keypoint AP on the validation cache (pose.evaluate.evaluate, the code eval.py runs), written
    to TensorBoard as eval/<metric> and to <model dir>/eval/metrics-<step>.json."""

    def __init__(self, period, writer, config, folder, limit):
        super().__init__(period)
        self.writer, self.config, self.folder, self.limit = writer, config, folder, limit
        self.metrics = None

    def before_train(self, trainer):
        super().before_train(trainer)
        if distributed.is_main():  # a missing validation cache stops the run now, not at the first evaluation
            evaluate.cache_images(self.config, self.limit)

    def run(self, trainer):
        if not distributed.is_main():
            return
        module = trainer.module
        was_training = module.training
        module.eval()
        try:
            results = os.path.join(self.folder, 'eval', f'results-{trainer.step:08d}.json')
            os.makedirs(os.path.dirname(results), exist_ok=True)
            with torch.no_grad():
                metrics = evaluate.evaluate(runner.torch_runner(module, trainer.device), self.config,
                                            limit=self.limit, results_path=results, progress=False)
        finally:
            module.train(was_training)
        for name, value in metrics.items():
            self.writer.add_scalar(f'eval/{name}', value, trainer.step)
        self.writer.flush()
        atomic_write_text(os.path.join(self.folder, 'eval', f'metrics-{trainer.step:08d}.json'),
                          json.dumps({'step': trainer.step, **metrics}, indent=1) + '\n')
        self.metrics = metrics
