"""The README's "Use in your own fast-reid project" example (fast-reid's tools/train_net.py + import vireid_plugins +
add_vireid_config), run as a user's script outside this repository, and the error without fast-reid."""
import os
import subprocess
import sys

import pytest
from conftest import ROOT
from test_stock_fastreid import TINY_STOCK

from vireid_plugins import compat

MARKER = "<!-- the code block below is run by tests/compat/test_readme_example.py -->"


def readme_example() -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = text[text.index(MARKER) + len(MARKER):]
    start = block.index("```python\n") + len("```python\n")
    return block[start:block.index("```", start)]


def run_example(tmp_path, datasets, *args):
    script = tmp_path / "my_project" / "train_net.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(readme_example())
    env = dict(os.environ, FASTREID_DATASETS=str(datasets), PYTHONPATH=ROOT)  # PYTHONPATH: as if pip-installed
    cmd = [sys.executable, str(script), "--config-file", os.path.join(ROOT, "configs/Market1501/bagtricks_R50.yml"),
           *args, *TINY_STOCK, "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.FEAT_DIM", "512"]
    proc = subprocess.run(cmd, cwd=script.parent, env=env, capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    return log


@pytest.mark.slow
def test_readme_example_trains_a_stock_model_on_sysu_with_the_official_protocol(tiny_sysu, tmp_path):
    out = tmp_path / "sysu"
    log = run_example(tmp_path, tiny_sysu, "DATASETS.NAMES", "('SYSUMM01',)", "DATASETS.TESTS", "('SYSUMM01',)",
                      "OUTPUT_DIR", str(out))
    assert "Evaluation results in csv format" in log and "all/Rank-1" in log and "indoor/mINP_std" in log
    assert (out / "model_final.pth").exists()


@pytest.mark.slow
def test_readme_example_runs_on_two_cpu_processes(tiny_market, tmp_path):
    out = tmp_path / "market"
    log = run_example(tmp_path, tiny_market, "--num-gpus", "2", "--dist-url", "auto", "OUTPUT_DIR", str(out),
                      "DATALOADER.NUM_INSTANCE", "2")
    assert "World size: 2" in log and "Rank-1" in log and "all/Rank-1" not in log  # Market-1501: fast-reid's protocol
    assert (out / "model_final.pth").exists()


@pytest.mark.slow
def test_importing_the_package_without_fastreid_names_the_install_command():
    code = "import sys; sys.modules['fastreid'] = None; import vireid_plugins"  # as if fastreid were not installed
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("ImportError: vireid_plugins needs fast-reid 1.4.0")
    assert "pip install --no-deps fastreid==1.4.0" in proc.stderr


def test_missing_fastreid_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastreid", None)  # what `import fastreid` meets when it is not installed
    with pytest.raises(ImportError, match=r"needs fast-reid 1\.4\.0.*pip install --no-deps fastreid==1\.4\.0"):
        compat.require_fastreid()
