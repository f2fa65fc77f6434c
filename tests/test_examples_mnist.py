"""The main example end to end at toy size: train, resume, Table 1 script; a
second run in the same directory; a run killed (or out of disk) at each point
of an epoch resumes to the log and weights of an uninterrupted run."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")


def load(name):
    """The example script ``name`` as a module, to call its main() in this process."""
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


def test_mnist_gan_per_player_lr_momentum_ramp_and_time_budget(tmp_path):
    mg = load("mnist_gan")
    out = str(tmp_path / "run")
    t = mg.main(ARGS + ["--epochs", "3", "--out", out, "--lr", "0.2", "--lr-g", "0.05",
                        "--lr-decay", "1.01", "--momentum-end", "0.9", "--momentum-epochs", "2"])
    # lr / 1.01^t for each player: the last step's lr was set at t = 8 (9 steps)
    assert t.opt_d.lr == pytest.approx(0.2 / 1.01 ** 8) and t.opt_g.lr == pytest.approx(0.05 / 1.01 ** 8)
    assert t.opt_g.momentum == pytest.approx(0.9) and t.opt_d.momentum == pytest.approx(0.9)
    with pytest.raises(Exception, match="different configuration"):       # the recipe is the run's
        mg.main(ARGS + ["--epochs", "4", "--out", out, "--resume", "--lr", "0.2", "--lr-decay", "1.01",
                        "--momentum-end", "0.9", "--momentum-epochs", "2"])
    # a run written before these options existed resumes with the authors' values only
    from npgan import checkpoint
    old = {k: v for k, v in mg.config_of(mg.parse_args([])).items() if k not in mg.LATER_KEYS}
    path = str(tmp_path / "old.npz")
    checkpoint.save(path, {"x": np.zeros(1)}, old)
    checkpoint.load(path, config=mg.config_of(mg.parse_args([])), defaults=mg.LATER_KEYS)
    with pytest.raises(Exception, match="momentum_epochs"):
        checkpoint.load(path, config=mg.config_of(mg.parse_args(["--momentum-epochs", "10"])),
                        defaults=mg.LATER_KEYS)
    # a training-time budget smaller than one epoch: the first epoch runs, no second starts
    t = mg.main(ARGS + ["--epochs", "5", "--out", str(tmp_path / "budget"), "--minutes", "1e-9"])
    assert t.epoch == 1
    for bad in (["--lr-g", "0"], ["--momentum-end", "1"], ["--minutes", "-1"]):
        with pytest.raises(SystemExit):
            mg.parse_args(bad)


def test_mnist_gan_lr_tail_from_the_start_or_added_on_resume(tmp_path):
    mg = load("mnist_gan")
    tail = ["--lr", "0.2", "--lr-decay", "1.01", "--tail-from", "1", "--tail-lr-decay", "1.5"]
    ref = mg.main(ARGS + ["--epochs", "3", "--out", str(tmp_path / "ref")] + tail)
    # 3 steps an epoch: the last of 9 steps used the lr set at t = 8: 3 steps of 1.01, 5 of 1.5
    assert ref.opt_d.lr == pytest.approx(0.2 / 1.01 ** 3 / 1.5 ** 5, rel=1e-12)
    out = str(tmp_path / "branch")
    mg.main(ARGS + ["--epochs", "1", "--out", out, "--lr", "0.2", "--lr-decay", "1.01"])
    t = mg.main(ARGS + ["--epochs", "3", "--out", out, "--resume"] + tail)    # the tail starts here
    for p, q in zip(t.G.parameters() + t.D.parameters(), ref.G.parameters() + ref.D.parameters()):
        assert np.array_equal(p.data, q.data)          # the same run as the tail from the start
    later = [a if a != "1" else "2" for a in tail]     # --tail-from 2: epochs 2-3 were trained otherwise
    with pytest.raises(SystemExit, match="would differ"):
        mg.main(ARGS + ["--epochs", "4", "--out", out, "--resume"] + later)
    with pytest.raises(SystemExit, match="would differ"):   # dropping the tail it has used
        mg.main(ARGS + ["--epochs", "4", "--out", out, "--resume", "--lr", "0.2", "--lr-decay", "1.01"])
    for bad in (["--tail-lr-decay", "0.5"], ["--tail-from", "-1"], ["--tail-from", "3", "--optimizer", "adam"],
                ["--optimizer", "adam", "--lr-decay", "1.01"], ["--optimizer", "adam", "--momentum-end", "0.9"]):
        with pytest.raises(SystemExit):
            mg.parse_args(bad)


# -- crashes and concurrent runs ----------------------------------------------------------

TINY = ["--train-size", "200", "--eval-every", "0", "--snapshot-every", "0", "--no-progress", "--seed", "5",
        "--epochs", "3"]

# Runs mnist_gan in a subprocess and kills it (SIGKILL: no cleanup runs) at a
# point named by the file it is about to replace (or has just replaced), or
# makes the disk "full" from that point on. Curves are skipped for speed.
CRASH = """
import errno, os, signal, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import mnist_gan
how, name, nth, when = sys.argv[2].split(":")
seen, real_replace, real_write = [0], os.replace, np.lib.format.write_array
def full(*a, **kw):
    raise OSError(errno.ENOSPC, "No space left on device")
def replace(src, dst):
    hit = os.path.basename(dst) == name and seen[0] + 1 == int(nth)
    seen[0] += os.path.basename(dst) == name
    if hit and how == "full":
        np.lib.format.write_array = full
    if hit and how == "kill" and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)
    if hit and how == "kill" and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
mnist_gan.save_curves = lambda *a: None
mnist_gan.main(sys.argv[3:])
"""


def epochs_log(out):
    return [{k: v for k, v in json.loads(l).items() if k != "seconds"}
            for l in open(os.path.join(out, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    mg = load("mnist_gan")
    out = str(tmp_path_factory.mktemp("ref"))
    with pytest.MonkeyPatch.context() as m:
        m.setattr(mg, "save_curves", lambda *a: None)
        t = mg.main(TINY + ["--out", out])
    return epochs_log(out), [p.data.copy() for p in t.G.parameters() + t.D.parameters()]


@pytest.mark.parametrize("point", [
    "kill:checkpoint.npz:2:before",       # epoch 2 done, samples written, checkpoint temp complete
    "kill:checkpoint.npz:2:after",        # checkpoint of epoch 2 in place, its log line not yet
    "kill:metrics.jsonl:2:before",        # during epoch 2's log write
    "kill:G_epoch_0002.png:1:before",     # during epoch 2's sample grid
    "full:checkpoint.npz:2:-",            # disk full from epoch 2's checkpoint on (and a partial temp)
    "kill:checkpoint.npz:2:after:mid",    # mid-epoch checkpoints: after epoch 1's last step, not closed
    "kill:checkpoint.npz:4:after:mid",    # mid-epoch checkpoints: in the middle of epoch 2
])
def test_crash_at_any_point_resumes_to_the_uninterrupted_log(tmp_path, monkeypatch, uninterrupted, point):
    """kill -9 (or ENOSPC) at ``point``, then --resume: metrics.jsonl equals an
    uninterrupted run's (times aside), weights bit-identical, and no
    temporary file left behind."""
    out = str(tmp_path / "run")
    extra = ["--checkpoint-minutes", "0"] if point.endswith(":mid") else []
    crash = point.rsplit(":mid", 1)[0] if point.endswith(":mid") else point
    p = subprocess.run([sys.executable, "-c", CRASH, EXAMPLES, crash] + TINY + extra + ["--out", out],
                       capture_output=True, text=True, timeout=300)
    if crash.startswith("kill"):
        assert p.returncode == -9, p.stderr[-2000:]
    else:
        assert p.returncode == 1 and "No space left" in p.stderr, p.stderr[-2000:]
    temps = lambda: [f for _, _, fs in os.walk(out) for f in fs if ".tmp-" in f]
    assert len(temps()) == crash.endswith(":before")     # the killed writer's, complete but not in place
    mg = load("mnist_gan")
    monkeypatch.setattr(mg, "save_curves", lambda *a: None)
    t = mg.main(TINY + ["--out", out, "--resume"])
    log, weights = uninterrupted
    assert epochs_log(out) == log
    assert all(np.array_equal(a.data, b) for a, b in zip(t.G.parameters() + t.D.parameters(), weights))
    assert temps() == []


def test_second_run_in_the_same_directory_is_refused(tmp_path):
    """While a run holds OUT, another mnist_gan there exits 1 naming its PID and writes nothing."""
    from npgan import files
    out = str(tmp_path / "run")
    with files.lock_dir(out):
        p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "mnist_gan.py")] + TINY + ["--out", out],
                           capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and f"PID {os.getpid()} " in p.stderr, p.stderr[-2000:]
    assert sorted(os.listdir(out)) == [files.LOCK_NAME]


def test_results_tables_are_generated_from_the_rows(tmp_path):
    rt = load("results_table")
    rows = [{"label": "run A", "parzen": {"ll_mean": 230.04, "ll_se": 2.16}, "fd": 4.567, "score": 9.1,
             "classes_covered": 10, "precision": 0.8, "recall": 0.7654, "epoch": 40,
             "train_seconds": 1500.0},
            {"label": "run B", "fd": 12.0, "score": 8.0, "classes_covered": 9, "precision": 0.5,
             "recall": 0.25}]
    gen = dict(score=9.0, classes_covered=10, precision=0.8, epoch=10)
    rows += [{"label": "run C", "parzen": {"ll_mean": 229.0, "ll_se": 2.0}, "fd": 4.6, "recall": 0.76, **gen},
             {"label": "run D", "parzen": {"ll_mean": 240.0, "ll_se": 2.0}, "fd": 5.5, "recall": 0.70, **gen},
             {"label": "run E", "parzen": {"ll_mean": 230.04, "ll_se": 2.16}, "fd": 4.567, "recall": 0.7654,
              **gen}]                                         # ties run A: neither dominates
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:table1 -->\nold table\n<!-- /results -->\noutro\n")
    metrics = tmp_path / "metrics.md"
    metrics.write_text("<!-- results:metrics -->\n<!-- /results -->\n<!-- results:pareto -->\n<!-- /results -->\n")
    args = [str(tmp_path / "rows.json"), "--readme", str(readme), "--metrics", str(metrics)]
    rt.main(args)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert "| run A | 230.0 ± 2.2 | 4.57 | 0.765 | 40 (25 min) |" in text
    assert "| run B | – | 12.00 | 0.250 |  |" in text
    assert "| Adversarial nets (paper) | 225 ± 2 |" in text
    assert "| run A | 230.0 ± 2.2 | 4.57 | 9.10 | 10 | 0.800 | 0.765 | 40 (25 min) |" in metrics.read_text()
    front = metrics.read_text().split("results:pareto")[1]       # C is beaten by A on all three
    assert [l.split(" | ")[0] for l in front.splitlines() if l.startswith("| run")] == ["| run A", "| run D", "| run E"]
    assert "| run A | 230.0 ± 2.2 | 4.57 | 0.765 | 25 min | none: target met | `" in front
    assert "| run D | 240.0 ± 2.0 | 5.50 | 0.700 |  | FD +0.50, recall -0.050 |" in front
    rt.main(args)                                             # idempotent
    assert readme.read_text() == text
    (tmp_path / "other.md").write_text("no block\n")
    with pytest.raises(SystemExit, match="no <!-- results:table1"):
        rt.main([str(tmp_path / "rows.json"), "--readme", str(tmp_path / "other.md")])


def test_compare_curves_reads_both_formats_and_bounds_the_columns(tmp_path, capsys):
    """A metrics.jsonl and a parzen curve CSV side by side: one row per (run, generator),
    only epochs divisible by --every and not past --until, blanks where a run has none."""
    cc = load("compare_curves")
    jl = tmp_path / "m.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 10, "parzen_G": 100.0, "parzen_G_ema0.999": 150.0},
        {"epoch": 15, "parzen_G": 111.0},
        {"epoch": 20, "parzen_G": 120.25, "d_loss": 0.6},
        {"epoch": 30, "parzen_G": 130.0}]) + "\n")
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("generator,epoch,valid_ll,sigma\nG,10,90.0,0.2\nG,20,95.5,0.2\n")
    cc.main([f"a={jl}", f"b={csv_path}", "--every", "10", "--until", "20",
             "--markdown", str(tmp_path / "t.md")])
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[0] == "| run | generator | 10 | 20 |"
    assert lines[2:] == ["| a | G | 100.0 | 120.2 |", "| a | G_ema0.999 | 150.0 |  |",
                         "| b | G | 90.0 | 95.5 |"]


def test_select_snapshot_reapplies_the_rule_to_an_epoch_range(tmp_path):
    """--rows re-uses computed figures; --to-epoch chooses the run as it stood then. The FD
    bound (1.5x the lowest FD in range) moves with the range, so the choice changes."""
    ss = load("select_snapshot")
    snaps = [("G_ema0.9999", 40, 240.0, 40.0), ("G_ema0.9999", 120, 210.0, 6.5),
             ("G_ema0.999", 120, 192.0, 5.0), ("G_ema0.9999", 300, 222.0, 4.0)]
    rows = [{"number": i, "state": "COMPLETE", "generator": g, "epoch": e, "path": f"{g}_{e}.npz",
             "parzen": p, "sigma": 0.17, "fd": fd} for i, (g, e, p, fd) in enumerate(snaps)]
    src = tmp_path / "all.json"
    src.write_text(json.dumps({"snapshots": rows}))
    best = ss.main(["run", "--rows", str(src)])                       # bound 6.0
    assert (best["generator"], best["epoch"]) == ("G_ema0.9999", 300)
    out = tmp_path / "to120.json"
    best = ss.main(["run", "--rows", str(src), "--to-epoch", "120", "--json", str(out)])   # bound 7.5
    assert (best["generator"], best["epoch"]) == ("G_ema0.9999", 120)
    saved = json.loads(out.read_text())
    assert saved["to_epoch"] == 120 and saved["fd_bound"] == pytest.approx(7.5) and len(saved["snapshots"]) == 3
    with pytest.raises(SystemExit, match="before --from-epoch"):
        ss.main(["run", "--rows", str(src), "--from-epoch", "50", "--to-epoch", "10"])
    with pytest.raises(SystemExit, match="no snapshot between"):
        ss.main(["run", "--rows", str(src), "--from-epoch", "500"])
    (tmp_path / "bad.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(SystemExit, match="not the --json output"):
        ss.main(["run", "--rows", str(tmp_path / "bad.json")])
    with pytest.raises(SystemExit, match="no generator has validation FD <= 3.000"):
        ss.main(["run", "--rows", str(src), "--fd-max", "3"])


def test_select_snapshot_chooses_and_saves_a_window_average(tmp_path):
    """An average row (sources, first_epoch) competes with the snapshots; --from-epoch
    drops a window that starts before it; --save writes the chosen average's weights."""
    ss = load("select_snapshot")
    rng = np.random.default_rng(1)
    paths = []
    for e in (100, 110, 120):
        paths.append(str(tmp_path / f"G_ema0.9999_epoch_{e:04d}.npz"))
        np.savez(paths[-1], w=rng.standard_normal((2, 3)).astype(np.float32))
    rows = [{"number": 0, "state": "COMPLETE", "generator": "G_ema0.9999", "epoch": 120,
             "path": paths[2], "parzen": 212.0, "sigma": 0.17, "fd": 4.9},
            {"number": 1, "state": "COMPLETE", "generator": "G_ema0.9999_mean3", "epoch": 120,
             "first_epoch": 100, "sources": paths, "path": "mean", "parzen": 219.0, "sigma": 0.17,
             "fd": 5.2},
            {"number": 2, "state": "COMPLETE", "generator": "G_ema0.9999_mean2", "epoch": 120,
             "first_epoch": 110, "sources": paths[1:], "path": "mean", "parzen": 216.0,
             "sigma": 0.17, "fd": 5.0}]
    src = tmp_path / "rows.json"
    src.write_text(json.dumps({"snapshots": rows}))
    out = tmp_path / "chosen.npz"
    best = ss.main(["run", "--rows", str(src), "--fd-max", "5.0", "--save", str(out)])
    assert best["generator"] == "G_ema0.9999_mean2"            # mean3 is over the bound
    with np.load(out) as f:
        want = (np.load(paths[1])["w"].astype(np.float64) + np.load(paths[2])["w"]) / 2
        np.testing.assert_allclose(f["w"], want, rtol=1e-6)
    best = ss.main(["run", "--rows", str(src), "--fd-max", "6", "--from-epoch", "105"])
    assert best["generator"] == "G_ema0.9999_mean2"            # mean3 starts at 100
    best = ss.main(["run", "--rows", str(src), "--fd-max", "6", "--save", str(out)])
    assert best["generator"] == "G_ema0.9999_mean3"
    with np.load(out) as f:
        np.testing.assert_allclose(f["w"], np.mean([np.load(p)["w"] for p in paths], axis=0),
                                   rtol=1e-6)
    saved = tmp_path / "averages"
    ss.main(["run", "--rows", str(src), "--fd-max", "6", "--save", str(saved) + os.sep])
    assert os.listdir(saved) == ["G_ema0.9999_mean3_epoch_0120.npz"]
    with pytest.raises(SystemExit):
        ss.main(["run", "--average", "1"])


def test_evaluate_samples_dates_a_snapshot_or_an_average_from_its_run(tmp_path):
    es = load("evaluate_samples")
    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "seconds": 10.0 + e}) + "\n" for e in (1, 2, 3)))
    for sub in ("snapshots", "averages", "elsewhere"):
        (tmp_path / sub).mkdir()
    info = es.run_info(str(tmp_path / "snapshots" / "G_ema0.9999_epoch_0002.npz"))
    assert info == {"generator": "G_ema0.9999", "epoch": 2, "train_seconds": 23.0}
    info = es.run_info(str(tmp_path / "averages" / "G_ema0.9999_mean5_epoch_0003.npz"))
    assert info == {"generator": "G_ema0.9999_mean5", "epoch": 3, "train_seconds": 36.0}
    assert es.run_info(str(tmp_path / "elsewhere" / "G_epoch_0002.npz")) == {}


def test_evaluate_samples_grid_is_named_for_its_source_and_holds_its_samples(tmp_path):
    from PIL import Image
    es = load("evaluate_samples")
    x = np.random.default_rng(0).random((35, 784)).astype(np.float32)
    path = es.save_sample_grid(x, "runs/r/snapshots/G_epoch_0010.npz [ema0.9999]", str(tmp_path / "g"))
    assert os.path.basename(path) == "samples_G_epoch_0010_ema0.9999.png"
    img = np.asarray(Image.open(path), dtype=np.float64) / 255
    assert img.shape == ((3 * 29 + 1) * 2, (10 * 29 + 1) * 2)          # 3 whole rows of 10
    cell = img[2:58:2, 2 + 2 * 29 * 4:58 + 2 * 29 * 4:2]                # row 0, column 4, unscaled
    np.testing.assert_allclose(cell, x[4].reshape(28, 28), atol=1 / 255 + 1e-9)
    assert os.path.basename(es.save_sample_grid(x, "uniform noise", str(tmp_path))) == "samples_uniform_noise.png"
