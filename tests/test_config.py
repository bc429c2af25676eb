import configparser

import pytest

from utils import config as configlib
from utils.config import ConfigError, parse_duration


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_default_has_a_comment_for_every_option():
    lines = open(configlib.DEFAULT).read().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(('#', '[', ' ')) and '=' in line:
            assert lines[i - 1].startswith('#'), f'option without a comment line: {line!r}'


def test_overlay_order_and_modify(tmp_path):
    a = write(tmp_path, 'a.ini', '[train]\nlr = 0.1\nbatch_size = 4\n')
    b = write(tmp_path, 'b.ini', '[train]\nlr = 0.2\n')
    config = configlib.load([a, b])
    assert config.getfloat('train', 'lr') == 0.2
    assert config.getint('train', 'batch_size') == 4
    config = configlib.load([b, a])
    assert config.getfloat('train', 'lr') == 0.1
    config = configlib.load([a, b], ['train/lr=0.5', 'model/backbone=vgg19'])
    assert config.getfloat('train', 'lr') == 0.5
    assert config.get('model', 'backbone') == 'vgg19'


def test_unknown_section_and_option_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\[trian\].*did you mean 'train'.*valid sections"):
        configlib.load([write(tmp_path, 'x.ini', '[trian]\nlr = 1\n')])
    with pytest.raises(ConfigError, match=r"'lrr'.*did you mean 'lr'.*valid options"):
        configlib.load(mods=['train/lrr=1'])
    with pytest.raises(ConfigError, match='section/option=value'):
        configlib.load(mods=['train.lr=1'])
    with pytest.raises(ConfigError, match='not found'):
        configlib.load([str(tmp_path / 'missing.ini')])
    with pytest.raises(ConfigError, match='unknown option'):
        configlib.load().getint('train', 'nope')


def test_type_errors_name_option_and_value():
    config = configlib.load(mods=['train/batch_size=eight', 'train/amp=maybe', 'hooks/checkpoint=soon'])
    with pytest.raises(ConfigError, match=r"\[train\] batch_size = 'eight'"):
        config.getint('train', 'batch_size')
    with pytest.raises(ConfigError, match=r"\[train\] amp = 'maybe'"):
        config.getboolean('train', 'amp')
    with pytest.raises(ConfigError, match=r"\[hooks\] checkpoint = 'soon'"):
        config.getduration('hooks', 'checkpoint')


@pytest.mark.parametrize('text,seconds', [
    ('30s', 30), ('10m', 600), ('2h', 7200), ('1h30m', 5400), ('90', 90), ('0', 0), ('1.5m', 90),
    ('500ms', 0.5), ('1h 2m 3s', 3723)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize('text', ['', 'soon', '10x', '1h-', 'm'])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_lists_and_kwargs():
    config = configlib.load(mods=['train/optimizer_args=momentum=0.9, nesterov=true name=x',
                                  'eval/scales=0.5 1.5'])
    assert config.getkwargs('train', 'optimizer_args') == {'momentum': 0.9, 'nesterov': True, 'name': 'x'}
    assert config.getfloatlist('eval', 'scales') == [0.5, 1.5]
    assert configlib.load().getfloatlist('eval', 'scales') == []


def test_round_trip(tmp_path):
    config = configlib.load(mods=['train/lr=0.25', 'model/layout=coco17'])
    path = str(tmp_path / 'merged.ini')
    configlib.write(config, path)
    again = configlib.loads(open(path).read())
    assert configlib.dumps(again) == configlib.dumps(config)
    plain = configparser.ConfigParser(interpolation=None)
    plain.read(path)
    assert {s: dict(plain[s]) for s in plain.sections()} == {s: dict(config[s]) for s in config.sections()}
    changed = configlib.differences(configlib.load(), again, ['model'])
    assert changed == [('model', 'layout', 'cmu18', 'coco17')]


def test_saved_config_from_an_older_version_loads():
    text = configlib.dumps(configlib.load(mods=['train/lr=0.5'])) + '\n[retired]\nretired_option = 1\n'
    with pytest.warns(UserWarning, match=r'\[retired\]'):
        config = configlib.loads(text)
    assert config.getfloat('train', 'lr') == 0.5


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    import os

    from utils.io import atomic_write_text
    path = tmp_path / 'x.txt'
    atomic_write_text(str(path), 'hello')
    mask = os.umask(0)
    os.umask(mask)
    assert path.read_text() == 'hello' and (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_docs_reference_is_current():
    text, start, end = configlib.reference_text()
    assert text[start:end] == configlib.reference(), \
        'docs/configuration.md config reference is stale: run `python -m utils.config --update-docs`'
    for section in configlib.load().sections():
        assert f'**[{section}]**' in text[start:end]
