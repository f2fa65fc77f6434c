"""npgan.progress: the one way long loops report (a tqdm bar, a plain line
without tqdm, lines to a log callable) and timestamped log lines."""
import builtins
import re

import pytest

from npgan import progress


@pytest.fixture
def no_tqdm(monkeypatch):
    real_import = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", fake)


def test_callable_gets_a_line_per_tenth_and_one_at_the_end():
    lines = []
    with progress.Progress(100, "radii", lines.append) as bar:
        for _ in range(40):
            bar.update(2)         # 2 % at a time, stopping at 80 %
        bar.update(20)
    assert all(re.fullmatch(r"radii: +\d+% \(\d+ s\)", l) for l in lines)
    pct = [int(l.split(":")[1].split("%")[0]) for l in lines]
    assert pct[0] == 10 and pct[-1] == 100 and 8 <= len(pct) <= 10      # a line per tenth
    assert all(b - a >= 10 for a, b in zip(pct, pct[1:-1]))          # at most one per tenth


def test_plain_line_without_tqdm(no_tqdm, capsys):
    bar = progress.Progress(30, "parzen", True)
    assert bar.bar is None
    for _ in range(3):
        bar.update(10)
    bar.close()
    err = capsys.readouterr().err
    assert "parzen: 30/30 rows" in err and err.endswith("\n") and err.startswith("\r")


def test_silent_when_off(capsys):
    for off in (False, None):
        bar = progress.Progress(5, "x", off)
        bar.update(5)
        bar.close()
        assert bar.done == 5
    assert capsys.readouterr() == ("", "")


def test_log_stamps_lines():
    lines = []
    log = progress.Log(lines.append, t0=0.0)
    log("hello")
    assert re.fullmatch(r"\[ *\d+\.\ds\] hello", lines[0])
    log = progress.Log(lines.append, stamp="[{:6.1f} s] ")
    log("again")
    assert lines[1] == "[   0.0 s] again"
    progress.Log(None)("nothing")          # None: no output, no error
