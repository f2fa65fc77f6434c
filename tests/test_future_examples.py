"""The InfoGAN and semi-supervised examples end to end at toy size (issue #18: each
example runs its reduced size in the suite): a short InfoGAN seed, then its D's features
fed to the semi-supervised probe beside the pixel and untrained-D baselines."""
import importlib.util
import json
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
pytest.importorskip("matplotlib")      # both examples draw a figure


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_infogan_then_semi_supervised_at_toy_size(tmp_path):
    load("infogan").main(["--seeds", "0", "--epochs", "1", "--max-steps", "2", "--train-size", "300",
                          "--eval-per-code", "10", "--out", str(tmp_path / "run"),
                          "--results", str(tmp_path / "i.json"), "--figure", str(tmp_path / "i.png"),
                          "--no-progress"])
    info = json.load(open(tmp_path / "i.json"))
    seed = info["per_seed"][0]
    assert seed["seed"] == 0 and sorted(seed["mapping_code_to_class"]) == list(range(10))
    # agreement under the best one-to-one map is at least what any single class gets (>= 1/10)
    assert 0.1 - 1e-9 <= seed["agreement"] <= 1.0
    assert info["agreement"]["per_seed"] == [seed["agreement"]]
    assert os.path.getsize(tmp_path / "i.png") > 0
    d_path = tmp_path / "run" / "seed_0" / "D.npz"
    assert d_path.exists()

    load("semi_supervised").main(["--infogan-d", str(d_path), "--labels", "100", "--draws", "1",
                                  "--steps", "5", "--folds", "2", "--train-size", "1000",
                                  "--test-size", "300", "--results", str(tmp_path / "s.json"),
                                  "--figure", str(tmp_path / "s.png"), "--no-progress"])
    semi = json.load(open(tmp_path / "s.json"))
    assert set(semi["summary"]) == {"pixels/100", "infogan_D/100", "untrained_D/100"}
    assert semi["features"]["infogan_D"]["dim"] == 240 and semi["features"]["pixels"]["dim"] == 784
    for row in semi["summary"].values():
        acc = row["per_draw"][0]
        # 100 labels, 5 steps: better than chance on 300 test digits, not perfect
        assert 0.2 < acc < 1.0 and np.isclose(row["mean"], acc, atol=1e-4)


def test_infogan_keeps_its_numbers_when_the_figure_cannot_be_drawn(tmp_path, monkeypatch, capsys):
    """Without matplotlib the seed's result.json is still written (the numbers come before
    the figure), and the message says how to draw it later."""
    mod = load("infogan")

    def no_matplotlib(*a, **k):
        raise ImportError("No module named 'matplotlib'")
    monkeypatch.setattr(mod, "traversal_figure", no_matplotlib)
    mod.main(["--seeds", "0", "--epochs", "1", "--max-steps", "2", "--train-size", "300",
              "--eval-per-code", "10", "--out", str(tmp_path / "run"), "--no-summary", "--no-progress"])
    res = json.load(open(tmp_path / "run" / "seed_0" / "result.json"))
    assert res["seed"] == 0 and sorted(res["mapping_code_to_class"]) == list(range(10))
    assert not (tmp_path / "run" / "seed_0" / "traversal.png").exists()
    assert "--evaluate-epoch 1" in capsys.readouterr().out


def test_infogan_scores_samples_dealt_round_the_code_values():
    """Samples come grouped by code value; the classifier score's parts must each hold
    every value: 10 values, each one class with certainty, score 10 (in code order: 1)."""
    from npgan import metrics
    mod = load("infogan")
    lp = np.full((10 * 30, 10), -np.inf)
    lp[np.arange(300), np.repeat(np.arange(10), 30)] = 0.0
    assert metrics.classifier_score(lp)[0] == pytest.approx(1.0)
    dealt = mod.interleave(lp, 10)
    assert metrics.classifier_score(dealt)[0] == pytest.approx(10.0, rel=1e-12)
    assert sorted(map(tuple, dealt.tolist())) == sorted(map(tuple, lp.tolist()))   # same rows
    assert np.array_equal(dealt[:10].argmax(1), np.arange(10))
    with pytest.raises(ValueError):
        mod.interleave(lp[:-1], 10)


def test_infogan_kmeans_check_reports_the_restarts_training_would_use(tmp_path):
    """The diagnostic on a toy-size trained pair: one row per restart, and the restart
    the cluster init keeps (lowest inertia) is the one its own k-means returns."""
    from npgan import cluster, checkpoint, infogan, models
    mg = load("mnist_gan")
    mg.main(["--train-size", "200", "--epochs", "1", "--eval-every", "0", "--snapshot-every", "0",
             "--no-progress", "--out", str(tmp_path / "pair")])
    ck = str(tmp_path / "pair" / "checkpoint.npz")
    res = load("infogan").main(["--seeds", "3", "--init-from", ck, "--kmeans-check", "3",
                                "--results", str(tmp_path / "k.json")])
    rows = json.load(open(tmp_path / "k.json"))["rows"]
    assert [r["restart"] for r in rows] == [0, 1, 2] and res["rows"] == rows
    assert all(0.1 - 1e-9 <= r["cluster_label_agreement"] <= 1 for r in rows)
    state = checkpoint.load(ck)["state"]
    G0, D0 = models.paper_mnist(3)
    G0.load_state_dict(state["G"])
    D0.load_state_dict(state["D"])
    rng = np.random.default_rng(3)
    _, _, f = infogan.generator_features(G0, D0, 10000, rng)
    inertia = cluster.kmeans(f, 10, rng=rng, restarts=3)[2]
    assert inertia == min(r["inertia"] for r in rows)
