"""The main example end to end at toy size: train, interrupt-free resume, Table 1 script."""
import importlib.util
import json
import os

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")


def load(name):
    import sys
    if EXAMPLES not in sys.path:        # parzen_table imports mnist_gan, as when run as a script
        sys.path.insert(0, EXAMPLES)
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


ARGS = ["--train-size", "300", "--eval-every", "1", "--eval-samples", "300", "--snapshot-every", "1",
        "--no-progress", "--seed", "3"]


def test_mnist_gan_runs_resumes_and_evaluates(tmp_path):
    mg = load("mnist_gan")
    out = str(tmp_path / "run")
    t = mg.main(ARGS + ["--epochs", "2", "--out", out])
    assert t.epoch == 2 and t.step_count == 6
    with pytest.raises(SystemExit, match="--resume"):          # never overwrite a run silently
        mg.main(ARGS + ["--epochs", "3", "--out", out])
    t2 = mg.main(ARGS + ["--epochs", "3", "--out", out, "--resume"])
    assert t2.epoch == 3 and t2.step_count == 9
    ref = mg.main(ARGS + ["--epochs", "3", "--out", str(tmp_path / "ref")])
    for p, q in zip(t2.G.parameters() + t2.D.parameters(), ref.G.parameters() + ref.D.parameters()):
        assert np.array_equal(p.data, q.data)                   # resumed == uninterrupted
    lines = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    assert [l["epoch"] for l in lines] == [1, 2, 3]
    assert all(np.isfinite(l["parzen_G"]) for l in lines)
    files = ["checkpoint.npz", "samples/G_epoch_0003.png", "best_G.npz"]
    if importlib.util.find_spec("matplotlib") is not None:     # curves need the examples extra
        files.append("curves.png")
    for f in files:
        assert os.path.exists(os.path.join(out, f)), f
    with pytest.raises(Exception, match="different configuration"):
        mg.main(ARGS[:-2] + ["--seed", "4", "--epochs", "4", "--out", out, "--resume"])

    pt = load("parzen_table")
    res = pt.main([out, "--out", str(tmp_path / "res"), "--n-samples", "300", "--n-valid", "100"])
    assert {r["generator"] for r in res["rows"]} == {"G", "G_ema0.9999"}
    assert all(np.isfinite(r["test_ll"]) and r["test_se"] > 0 for r in res["rows"])
    assert os.path.exists(str(tmp_path / "res" / "fig2_run_G.png"))
