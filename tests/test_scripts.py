import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ['train.py', 'eval.py', 'detect.py', 'cache.py', 'convert_caffe_torch.py', 'convert_tf_torch.py',
           'export_onnx.py']


@pytest.mark.parametrize('script', SCRIPTS)
def test_help(script):
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), '--help'], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'usage:' in result.stdout


def test_bad_option_is_one_line_error():
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), '-m', 'train/lrr=1'], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith('error:') and "'lrr'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
