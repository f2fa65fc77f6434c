"""npgan.sweep: an Optuna study of GAN recipes on Dask (embedded LocalCluster),
a worker killed mid-trial, a restarted driver, and bad search spaces.

The cluster tests train tiny networks on 300 MNIST rows; they are skipped on
the NumPy reference pass of CI (NPGAN_NO_KERNELS=1), as the sweep does not
depend on the kernels and each cluster start costs seconds.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("distributed")
optuna = pytest.importorskip("optuna")
pytest.importorskip("sqlalchemy")

from npgan import sweep  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "mnist")
# 300 rows, batch 50: 6 steps per epoch; 2 epochs, an evaluation after each
TINY = {"epochs": 2, "train_size": 300, "eval_every": 1, "eval_samples": 100, "parzen_valid": 100,
        "fd_valid": 200, "g_hidden": 32, "d_units": 16, "d_pieces": 2, "z_dim": 10, "data_dir": DATA}
SPACE = {"optimizer": {"choices": ["sgd", "adam"]},
         "sgd_lr_d": {"low": 0.02, "high": 0.2, "log": True},
         "adam_lr_g": {"low": 1e-4, "high": 1e-3, "log": True},
         "ema_decay": 0.9,                        # every trial keeps an average of G...
         "ema_start": {"low": 0.0, "high": 0.3},  # ...from a drawn fraction of its steps on
         "batch_size": 50, "momentum_ramp_epochs": 2}
KILL_STEP = 10          # in epoch 2, after the mid-epoch checkpoint at step 8 (every 4 steps)

cluster_test = pytest.mark.skipif(os.environ.get("NPGAN_NO_KERNELS") == "1",
                                  reason="Dask cluster tests run once, on the kernels pass")


# ------------------------------------------------------------------ search spaces

@pytest.mark.parametrize("space, words", [
    ({"lr": {"low": 0.01, "high": 0.1}}, ["unknown key", "'lr'"]),
    ({"sgd_lr_d": {"low": 0.2, "high": 0.1}}, ["'sgd_lr_d'", "empty range"]),
    ({"batch_size": {"choices": []}}, ["'batch_size'", "empty choice list"]),
    ({"p_hidden": {"low": 0.5, "high": 1.0}}, ["'p_hidden'", "must be < 1.0"]),
    ({"adam_lr_d": {"low": 0.0, "high": 1e-3, "log": True}}, ["'adam_lr_d'", "must be > 0.0"]),
    ({"z_prior": {"low": 0, "high": 1}}, ["'z_prior'", "not a range"]),
    ({"k": {"low": 1, "high": 3, "scale": "log"}}, ["'k'", "fields"]),
    ({"optimizer": {"choices": ["sgd", "rmsprop"]}}, ["'optimizer'", "'rmsprop'"]),
])
def test_bad_space_refused_before_any_trial(tmp_path, space, words):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(space))
    study_dir = tmp_path / "study"
    for s in (space, str(path)):
        with pytest.raises(sweep.SweepError) as e:
            sweep.run_study(s, study_dir, n_trials=1, config=TINY)
        for w in words:
            assert w in str(e.value)
    assert not study_dir.exists()            # no storage, no cluster, no trial directory


def test_default_space_file_and_conditional_draws():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    space = sweep.load_space(os.path.join(here, "examples", "sweep_space.json"))
    assert set(space) == set(sweep.KEYS)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        t = study.ask()
        r = sweep.suggest(t, space)
        seen.add((r["optimizer"], r["simultaneous"]))
        assert set(r) == set(sweep.KEYS)
        opt = r["optimizer"]
        assert all(k.startswith(("sgd_", "momentum_")) == (opt == "sgd") for k in t.params
                   if k.startswith(("sgd_", "momentum_", "adam_")))
        assert ("k" in t.params) == (not r["simultaneous"])
        assert ("ema_start" in t.params) == (r["ema_decay"] > 0)
        for k, v in t.params.items():
            spec = space[k]
            assert (v in spec["choices"]) if "choices" in spec else spec["low"] <= v <= spec["high"]
        assert sweep.recipe_from_params(t.params, space) == r
        study.tell(t, 0.0)
    assert len(seen) == 4


def test_selection_rule_and_pareto_front():
    rows = [{"number": i, "state": s, "parzen": p, "fd": f} for i, (s, p, f) in enumerate([
        ("COMPLETE", 200.0, 30.0), ("COMPLETE", 180.0, 8.0), ("COMPLETE", 150.0, 5.0),
        ("COMPLETE", 170.0, 9.0), ("PRUNED", 250.0, 1.0), ("COMPLETE", 185.0, 12.0)])]
    assert sweep.select(rows, 10.0)["number"] == 1          # best Parzen with FD <= 10
    assert sweep.select(rows, 20.0)["number"] == 5
    assert sweep.select(rows, math.inf)["number"] == 0
    assert sweep.select(rows, 4.0) is None
    assert [r["number"] for r in sweep.pareto_front(rows)] == [2, 1, 5, 0]   # 3 is dominated by 1
    assert sweep.select(rows, "1.5x")["number"] == 2        # bound 1.5 x 5 (the pruned 1.0 not counted)
    assert sweep.select(rows, sweep.parse_fd_max("2X"))["number"] == 1      # bound 10
    assert sweep.fd_bound(rows[4:5], "2x") == math.inf
    assert sweep.parse_fd_max("inf") == math.inf and sweep.parse_fd_max(20) == 20.0
    for bad in ("0.5x", "fast", 0, -3, "nanx"):
        with pytest.raises(sweep.SweepError, match="fd_max"):
            sweep.parse_fd_max(bad)


def test_trial_config_checked():
    with pytest.raises(sweep.SweepError, match="unknown key"):
        sweep.trial_config({"epoch": 3})
    with pytest.raises(sweep.SweepError, match="train_size"):
        sweep.trial_config({"train_size": 0})


# ------------------------------------------------------------------ on a cluster

@pytest.fixture(scope="module")
def cluster():
    """The embedded cluster of run_study (sweep.local_cluster), 2 single-thread
    worker processes, started once for the module: every run_study below
    reaches it by its address, as a driver does with --scheduler."""
    c = sweep.local_cluster(workers=2, threads_per_trial=1, dashboard_address=":0")
    yield c
    c.close()


def _on_worker(cluster, spec):
    """sweep.run_trial(spec) (no driver, no pruning) as a task on the cluster."""
    from distributed import Client
    with Client(cluster.scheduler_address) as client:
        return client.submit(sweep.run_trial, spec, pure=False, resources={"trial": 1}).result()


@pytest.fixture(scope="module")
def study(cluster, tmp_path_factory):
    """A 2-trial study (the paper's recipe and a TPE draw) run at once on the
    2 workers; the first trial to reach step KILL_STEP SIGKILLs its worker."""
    d = tmp_path_factory.mktemp("sweep")
    lines = []
    marker = d / "killed.json"
    summary = sweep.run_study(
        SPACE, d / "study", n_trials=2, config=TINY, scheduler=cluster.scheduler_address,
        checkpoint_steps=4, fd_max=1e6, figures=False,
        inject={"inject_kill": {"step": KILL_STEP, "marker": str(marker)}}, out=lines.append)
    if os.environ.get("NPGAN_SWEEP_TEST_LOG"):
        print("\n".join(lines))
    sd = d / "study"        # what the study left, before the restart test adds to it
    return {"dir": sd, "summary": summary, "lines": lines, "marker": marker,
            "trials": optuna.load_study(study_name="npgan",
                                        storage=f"sqlite:///{sd / 'study.db'}").get_trials(),
            "results.json": json.loads((sd / "results.json").read_text()),
            "results.csv": (sd / "results.csv").read_text()}


@cluster_test
def test_study_on_a_local_cluster(study, cluster):
    s, text = study["summary"], "\n".join(study["lines"])
    assert f"Dask: {cluster.scheduler_address}, 2 trial(s) at once, 1 thread(s) each; " \
        "dashboard http" in text
    trials = study["trials"]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 2
    for t in trials:
        assert f"trial {t.number} COMPLETE: Parzen" in text
        assert f"trial {t.number} epoch 1:" in text and "-> continue" in text
        assert [e["epoch"] for e in t.user_attrs["evals"]] == [1, 2]
        assert t.intermediate_values.keys() == {1, 2}
        assert t.value == t.user_attrs["evals"][-1]["parzen"]
        assert math.isfinite(t.user_attrs["fd"]) and t.user_attrs["fd"] > 0
    assert trials[0].params == {"optimizer": "sgd", "sgd_lr_d": 0.1, "ema_start": 0.0}  # paper first
    res = study["results.json"]
    assert [r["number"] for r in res["trials"]] == [0, 1]
    best = sweep.select(res["trials"], 1e6)
    assert res["best"]["number"] == best["number"] == max(trials, key=lambda t: t.value).number
    rows = study["results.csv"].splitlines()
    assert rows[0].startswith("number,state,parzen,fd,sigma,fd_ok,pareto") and len(rows) == 3
    assert s["this_run"]["finished"] == 2


@cluster_test
def test_figures(study, tmp_path):
    pytest.importorskip("matplotlib")
    rows = study["results.json"]["trials"]
    paths = sweep.plot(rows, sweep.select(rows, 1e6), sweep.pareto_front(rows), 1e6, str(tmp_path))
    assert sorted(os.path.basename(p) for p in paths) == ["curves.png", "pareto.png"]
    assert all(os.path.getsize(p) > 1000 for p in paths)


@cluster_test
def test_killed_worker_trial_ends_bit_identical(study, cluster, tmp_path):
    d = study["dir"]
    killed = json.loads(study["marker"].read_text())         # it happened, once
    n = killed["number"]
    tdir = d / "trials" / f"{n:05d}"
    attempts = [json.loads(x) for x in (tdir / "attempts.jsonl").read_text().splitlines()]
    assert [a["from_step"] for a in attempts] == [0, 8]      # resumed from the step-8 checkpoint
    assert attempts[1]["pid"] != killed["pid"]
    with open(tdir / "result.json") as f:
        got = json.load(f)
    assert got["state"] == "complete" and got["attempts"] == 2
    # the same trial, uninterrupted, on a worker (they hold the data already)
    with open(tdir / "recipe.json") as f:
        recipe = json.load(f)["recipe"]
    ref = _on_worker(cluster, {"number": n, "recipe": recipe, "config": sweep.trial_config(TINY),
                               "dir": str(tmp_path / "ref"), "threads": 1})
    assert ref["state"] == "complete" and ref["attempts"] == 1
    key = ("epoch", "step", "parzen", "sigma", "fd")
    assert [[e[k] for k in key] for e in got["evals"]] == [[e[k] for k in key] for e in ref["evals"]]
    a, b = np.load(tdir / "final.npz"), np.load(tmp_path / "ref" / "final.npz")
    assert sorted(a.files) == sorted(b.files) and any(f.startswith("D.") for f in a.files)
    for f in a.files:
        assert a[f].dtype == b[f].dtype and np.array_equal(a[f], b[f]), f
    other = 1 - n                                             # the other trial ran once
    assert len((d / "trials" / f"{other:05d}" / "attempts.jsonl").read_text().splitlines()) == 1


@cluster_test
def test_restarted_driver_resumes_the_study(study, cluster):
    d = study["dir"]
    storage = f"sqlite:///{d / 'study.db'}"
    before = {t.number: (t.value, t.datetime_complete) for t in study["trials"]}
    # a driver that died while trial 2 ran: asked, trained to step 5 (mid-epoch), checkpointed
    st = optuna.load_study(study_name="npgan", storage=storage)
    trial = st.ask()
    space = sweep.load_space(SPACE)
    recipe = sweep.suggest(trial, space)
    tdir = d / "trials" / "00002"
    r = _on_worker(cluster, {"number": 2, "recipe": recipe, "config": sweep.trial_config(TINY),
                             "dir": str(tdir), "threads": 1, "stop_at_step": 5})
    assert r["state"] == "interrupted" and r["step"] == 5 and (tdir / "checkpoint.npz").exists()
    lines = []
    sweep.run_study(SPACE, d, n_trials=3, config=TINY, scheduler=cluster.scheduler_address,
                    fd_max=1e6, figures=False, out=lines.append)
    text = "\n".join(lines)
    assert "2 finished trial(s), 1 to resume" in text
    assert "trial 2 was running when the driver stopped: resubmitted" in text
    assert [line.split("]", 1)[1].split(":")[0] for line in lines if "submitted:" in line] == \
        [" trial 2 submitted"]                                       # no new trial, none rerun
    trials = optuna.load_study(study_name="npgan", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3      # no fourth trial
    for t in trials[:2]:                                            # not rerun
        assert (t.value, t.datetime_complete) == before[t.number]
    attempts = [json.loads(x) for x in (tdir / "attempts.jsonl").read_text().splitlines()]
    assert [a["from_step"] for a in attempts] == [0, 5]
    assert trials[2].params == trial.params and trials[2].user_attrs["attempts"] == 2
    # another trial configuration for the same study is refused
    with pytest.raises(sweep.SweepError, match="epochs: study 2 vs now 3"):
        sweep.run_study(SPACE, d, n_trials=5, config={**TINY, "epochs": 3},
                        scheduler=cluster.scheduler_address)
    # a pruner's verdict reaches the trial on its worker: trial 3 stops after epoch 1
    lines = []
    sweep.run_study(SPACE, d, n_trials=4, config=TINY, scheduler=cluster.scheduler_address,
                    fd_max=1e6, figures=False, out=lines.append,
                    pruner=optuna.pruners.ThresholdPruner(lower=1e9))
    text = "\n".join(lines)
    assert "trial 3 epoch 1:" in text and "-> pruned" in text and "trial 3 PRUNED at epoch 1" in text
    t3 = optuna.load_study(study_name="npgan", storage=storage).get_trials()[3]
    assert t3.state.name == "PRUNED" and list(t3.intermediate_values) == [1]
    with open(d / "trials" / "00003" / "result.json") as f:
        r3 = json.load(f)
    assert r3["state"] == "pruned" and r3["epoch"] == 1 and len(r3["evals"]) == 1


def test_missing_dependency_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[sweep\]"'):
        sweep.run_study(SPACE, "unused", n_trials=1, config=TINY)


def test_import_npgan_stays_numpy_only():
    code = ("import sys, npgan, npgan.sweep; "
            "bad = [m for m in ('dask', 'distributed', 'optuna', 'sqlalchemy', 'threadpoolctl') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
