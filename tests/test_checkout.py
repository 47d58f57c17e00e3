"""A checkout is self-contained: its task folders' scripts run its own
`common/` (and so find its own pretrained_models/) even when the editable
install points at another clone, and its demo survives being moved."""
import os
import shutil
import subprocess
import sys

from conftest import PROJECT_ROOT


def copy_checkout(target):
    keep = shutil.ignore_patterns("__pycache__", "features", "results", "*.png")
    for name in ("common", "esc50_feature_fc"):
        shutil.copytree(PROJECT_ROOT / name, target / name, ignore=keep)
    (target / "pretrained_models").mkdir()
    return target


def test_task_scripts_run_the_common_of_their_own_checkout(tmp_path):
    clone = copy_checkout(tmp_path / "clone")
    cli = clone / "common" / "cli.py"
    cli.write_text(cli.read_text().replace("Extract pooled embeddings", "CLONE-MARKER Extract pooled embeddings"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # as a user runs it: the editable install
    out = subprocess.run([sys.executable, "extract.py", "--help"], cwd=clone / "esc50_feature_fc", env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "CLONE-MARKER" in out.stdout
