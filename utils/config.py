"""INI configuration: `config/default.ini` overlaid by `-c` files in order, then `-m section/option=value`.

Every option a run can read is declared, with a comment, in `config/default.ini`; overlays may only set
declared options, so a typo is an error instead of a silently ignored setting. Typed getters name the
option and the value when it does not parse. Nothing here evaluates config text as code.
"""

import configparser
import difflib
import io
import os
import re
import warnings

from utils.io import atomic_write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.join(ROOT, 'config', 'default.ini')

_DURATION = re.compile(r'(\d+(?:\.\d*)?|\.\d+)\s*(ms|h|m|s)?', re.IGNORECASE)
_UNITS = {'h': 3600.0, 'm': 60.0, 's': 1.0, 'ms': 0.001, None: 1.0}


class ConfigError(ValueError):
    """A config file, option or value is wrong; the message names it."""


def parse_duration(text):
    """Seconds in a duration such as `30s`, `10m`, `2h`, `1h30m`, `90` (seconds) or `0` (off)."""
    text = str(text).strip()
    pos, total, seen = 0, 0.0, False
    for match in _DURATION.finditer(text):
        if match.start() != pos and text[pos:match.start()].strip():
            break
        total += float(match.group(1)) * _UNITS[(match.group(2) or '').lower() or None]
        pos, seen = match.end(), True
    if not seen or text[pos:].strip():
        raise ValueError(f'not a duration (use e.g. 30s, 10m, 2h, 1h30m): {text!r}')
    return total


def parse_list(text, cast=str):
    """Whitespace- or comma-separated values."""
    return [cast(item) for item in re.split(r'[\s,]+', str(text).strip()) if item]


def parse_kwargs(text):
    """`name=value` pairs separated by commas or whitespace, values as int, float, bool or string."""
    result = {}
    for item in parse_list(text):
        if '=' not in item:
            raise ValueError(f'expected name=value, got {item!r}')
        key, value = item.split('=', 1)
        result[key.strip()] = _scalar(value.strip())
    return result


def _scalar(value):
    if value.lower() in ('true', 'false'):
        return value.lower() == 'true'
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_bool(text):
    value = str(text).strip().lower()
    if value in ('1', 'yes', 'true', 'on'):
        return True
    if value in ('0', 'no', 'false', 'off'):
        return False
    raise ValueError(f'not a boolean (use true/false): {text!r}')


class Config(configparser.ConfigParser):
    """A ConfigParser whose typed getters raise ConfigError naming the option and the value.

    Besides getint/getfloat/getboolean it has getduration (seconds), getlist, getintlist,
    getfloatlist and getkwargs.
    """

    def __init__(self):
        super().__init__(interpolation=None, inline_comment_prefixes=None, converters={
            'duration': parse_duration,
            'list': parse_list,
            'intlist': lambda text: parse_list(text, int),
            'floatlist': lambda text: parse_list(text, float),
            'kwargs': parse_kwargs,
        })
        self.BOOLEAN_STATES = {}  # getboolean goes through parse_bool for a message that names the option

    def getboolean(self, section, option, **kwargs):
        return self._get_conv(section, option, parse_bool, **kwargs)

    def _get_conv(self, section, option, conv, *, raw=False, vars=None, fallback=configparser._UNSET, **kw):
        if fallback is configparser._UNSET:
            check_option(self, section, option)
        value = self.get(section, option, raw=raw, vars=vars, fallback=fallback, **kw)
        if value is fallback and fallback is not configparser._UNSET:
            return fallback
        try:
            return conv(value)
        except (ValueError, TypeError) as error:
            raise ConfigError(f'[{section}] {option} = {value!r}: {error}') from None

    def get(self, section, option, *args, fallback=configparser._UNSET, **kwargs):
        if fallback is configparser._UNSET:
            check_option(self, section, option)
        return super().get(section, option, *args, fallback=fallback, **kwargs)


def _suggest(name, choices):
    close = difflib.get_close_matches(name, choices, n=1)
    return f' (did you mean {close[0]!r}?)' if close else ''


def check_option(config, section, option):
    """Raise ConfigError naming an unknown section or option and listing the valid ones."""
    if not config.has_section(section):
        raise ConfigError(f'unknown config section [{section}]{_suggest(section, config.sections())}; '
                          f'valid sections: {", ".join(config.sections())}')
    if not config.has_option(section, option):
        options = list(config[section].keys())
        raise ConfigError(f'unknown option {option!r} in [{section}]{_suggest(option, options)}; '
                          f'valid options: {", ".join(options)}')


def _overlay(config, parser, origin, strict=True):
    for section in parser.sections():
        for option, value in parser.items(section, raw=True):
            try:
                check_option(config, section, option)
            except ConfigError as error:
                if strict:
                    raise ConfigError(f'{origin}: {error}') from None
                warnings.warn(f'{origin}: ignored, this version does not have it: {error}', stacklevel=3)
                continue
            config.set(section, option, value)


def _read(path):
    if not os.path.isfile(path):
        raise ConfigError(f'config file not found: {path}')
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding='utf-8') as f:
            parser.read_file(f, source=path)
    except configparser.Error as error:
        raise ConfigError(f'cannot parse config file {path}: {error}') from None
    return parser


def load(files=(), mods=(), base=DEFAULT):
    """The default config overlaid by `files` in order (later wins), then by `mods`.

    `mods` are strings `section/option=value`. Unknown sections or options raise ConfigError.
    """
    config = Config()
    with open(base, encoding='utf-8') as f:
        config.read_file(f, source=base)
    for path in files or ():
        _overlay(config, _read(path), path)
    for mod in mods or ():
        section, option, value = parse_mod(mod)
        try:
            check_option(config, section, option)
        except ConfigError as error:
            raise ConfigError(f'-m {mod}: {error}') from None
        config.set(section, option, value)
    return config


def parse_mod(mod):
    """`section/option=value` -> (section, option, value)."""
    match = re.fullmatch(r'\s*([^/=\s]+)/([^/=\s]+)\s*=(.*)', mod, re.DOTALL)
    if not match:
        raise ConfigError(f'-m {mod!r}: expected section/option=value')
    return match.group(1), match.group(2).lower(), match.group(3).strip()


def loads(text, base=DEFAULT):
    """A config from its merged text (as written by `dumps`) on top of the default.

    The text may come from an older version (a checkpoint's, a model directory's): options this version
    no longer has are skipped with a warning, and options it added keep their defaults."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    config = load(base=base)
    _overlay(config, parser, 'saved config', strict=False)
    return config


def dumps(config):
    """The merged config as INI text; `loads(dumps(c))` gives the same values."""
    stream = io.StringIO()
    config.write(stream)
    return stream.getvalue()


def write(config, path):
    """Write the merged config to `path` atomically."""
    atomic_write_text(path, dumps(config))


NETWORK_SECTIONS = ('model', 'input')    # what a converted checkpoint's config text holds


def config_text(config, sections=NETWORK_SECTIONS):
    """INI text of `sections` of `config` only; utils.config.loads() fills in the defaults.

    A converted model is a long-lived file: leaving out the training sections keeps it loadable when
    options that do not describe the network change."""
    parser = configparser.ConfigParser(interpolation=None)
    for section in sections:
        parser[section] = dict(config.items(section, raw=True))
    stream = io.StringIO()
    parser.write(stream)
    return stream.getvalue()


def differences(old, new, sections):
    """[(section, option, old value, new value)] for options of `sections` that differ."""
    changed = []
    for section in sections:
        if not (old.has_section(section) and new.has_section(section)):
            continue
        for option in new[section]:
            a, b = old.get(section, option, fallback=None), new.get(section, option)
            if a != b:
                changed.append((section, option, a, b))
    return changed


def reference(path=DEFAULT):
    """The config reference as Markdown: one table per section of `path`, each option with its default and
    its comment line. docs/configuration.md embeds this text; a test keeps the two equal."""
    lines, comment, section = [], '', None
    with open(path, encoding='utf-8') as f:
        for raw in f:
            line = raw.rstrip('\n')
            if line.startswith('#'):
                comment = line.lstrip('# ').strip()
            elif line.startswith('['):
                section = line.strip('[] ')
                lines += ['', f'**[{section}]**', '', '| option | default | meaning |', '|---|---|---|']
            elif '=' in line and section:
                option, value = (part.strip() for part in line.split('=', 1))
                value = f'`{value}`' if value else '(empty)'
                text = comment.replace('|', '/').replace('<', '&lt;').replace('>', '&gt;')
                lines.append(f'| `{option}` | {value} | {text} |')
                comment = ''
    return '\n'.join(lines[1:]) + '\n'


REFERENCE = os.path.join(ROOT, 'docs', 'configuration.md')
_MARKERS = ('<!-- config-reference:start -->\n', '<!-- config-reference:end -->')


def reference_text(path=REFERENCE):
    """(text of `path`, start, end): the config reference embedded between its markers is text[start:end]."""
    text = open(path, encoding='utf-8').read()
    start, end = text.index(_MARKERS[0]) + len(_MARKERS[0]), text.index(_MARKERS[1])
    return text, start, end


if __name__ == '__main__':
    import sys
    if sys.argv[1:] in (['--update-docs'], ['--update-readme']):
        # write the reference into docs/configuration.md (--update-readme: the older name of the same flag)
        text, start, end = reference_text()
        atomic_write_text(REFERENCE, text[:start] + reference() + text[end:])
    else:
        print(reference(), end='')
