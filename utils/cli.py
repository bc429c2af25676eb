"""Shared command-line plumbing: `-c`/`-m` config arguments, experiment folders, one-line errors."""

import argparse
import functools
import os
import sys

from utils import config as configlib


class UserError(Exception):
    """Bad input from the user (a file, option or value); reported in one line, exit status 2."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless its help already says what the default is."""

    def _get_help_string(self, action):
        if 'default' in (action.help or '') or action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def parser(description, config=True):
    """An ArgumentParser with `-c/--config` overlay files and `-m/--modify section/option=value`."""
    p = argparse.ArgumentParser(description=description, formatter_class=_HelpFormatter)
    if config:
        p.add_argument('-c', '--config', nargs='+', default=[], metavar='INI',
                       help='config overlays applied on config/default.ini in order (later wins)')
        p.add_argument('-m', '--modify', action='append', default=[], metavar='SECTION/OPTION=VALUE',
                       help='set one config value; repeatable')
        p.add_argument('--name', help='experiment name (default: the overlay file names joined by +)')
    return p


def load_config(args):
    return configlib.load(args.config, args.modify)


def experiment_name(args):
    if getattr(args, 'name', None):
        return args.name
    names = [os.path.splitext(os.path.basename(path))[0] for path in args.config]
    return '+'.join(names) or 'default'


def model_dir(args, config):
    """The experiment folder: `[train] root` / experiment name."""
    return os.path.join(config.get('train', 'root'), experiment_name(args))


def main(function):
    """Run `function()` turning expected failures into `error: ...` on stderr and exit status 2."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (UserError, configlib.ConfigError, FileNotFoundError) as error:
            print(f'error: {error}', file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print('interrupted', file=sys.stderr)
            sys.exit(130)
    return wrapper
