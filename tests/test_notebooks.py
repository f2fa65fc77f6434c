"""The teaching notebooks (docs/notebooks/*.py, jupytext "percent" scripts) run
and their assertions hold.

Each notebook is executed as a plain Python script in a subprocess, at its
small size (NPGAN_NOTEBOOK_FAST=1), figures written to a temporary folder
(NPGAN_NOTEBOOK_OUT, matplotlib on Agg). The NPGAN_* settings of this run
(e.g. NPGAN_NO_KERNELS=1) pass through, so the notebooks' numbers are checked
on both kernel paths. Where jupytext, nbclient and ipykernel are installed
(not part of the [test] extra), each is also converted to .ipynb and executed
cell by cell on a Jupyter kernel, as ``jupytext --to notebook`` + nbmake would.
"""
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "docs" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
TIMEOUT = 240       # seconds per notebook; each takes a few at the small size

if not NOTEBOOK_DIR.is_dir():       # e.g. the tests of an unpacked sdist, which has no docs/
    pytest.skip("docs/notebooks/ is not in this tree", allow_module_level=True)


def _env(tmp_path):
    env = dict(os.environ)
    env.update(NPGAN_NOTEBOOK_FAST="1", NPGAN_NOTEBOOK_OUT=str(tmp_path), MPLBACKEND="Agg",
               OPENBLAS_NUM_THREADS=env.get("OPENBLAS_NUM_THREADS", "1"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def test_the_notebooks_are_there():
    names = [p.name for p in NOTEBOOKS]
    assert names == ["01_autograd.py", "02_second_derivatives.py", "03_gan_game_on_the_ring.py"]
    for p in NOTEBOOKS:
        text = p.read_text(encoding="utf-8")
        assert "# %% [markdown]" in text and "\n# %%\n" in text, f"{p.name}: not a percent script"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_as_script(path, tmp_path):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=_env(tmp_path),
                       capture_output=True, text=True, timeout=TIMEOUT)
    took = time.perf_counter() - t0
    assert r.returncode == 0, f"{path.name} failed after {took:.1f} s:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    print(f"{path.name}: {took:.1f} s")
    if path.name.startswith("03") and importlib.util.find_spec("matplotlib") is not None:
        figs = sorted(f.name for f in tmp_path.glob("*.png"))
        assert figs, f"{path.name} drew no figure into NPGAN_NOTEBOOK_OUT"


def _have(*mods):
    return all(importlib.util.find_spec(m) is not None for m in mods)


@pytest.mark.skipif(not _have("jupytext", "nbclient", "ipykernel"),
                    reason="jupytext, nbclient and ipykernel not installed (pip install jupytext nbmake)")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_jupyter(path, tmp_path, monkeypatch):
    import jupytext
    import nbclient

    nb = jupytext.read(path)            # the percent script -> notebook cells
    kinds = {c.cell_type for c in nb.cells}
    assert kinds == {"markdown", "code"}, f"{path.name}: cell types {kinds}"
    # the text form is the source of truth: converting back loses no code
    back = jupytext.writes(nb, fmt="py:percent")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert all(src in back for src in code)
    for k, v in _env(tmp_path).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline"
                       if _have("matplotlib_inline") else "Agg")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()
