"""Choose a run's generator on validation only: the sweep's rule over snapshots.

    python examples/select_snapshot.py runs/faithful --json results/mnist/selection_faithful.json \
        --png docs/figures/selection_faithful.png

For every snapshot of a run of examples/mnist_gan.py (OUT/snapshots/<G>_epoch_XXXX.npz,
G and its moving averages): 10,000 samples (z seed 12345, the run's prior); their
validation Parzen LL (the paper's sigma grid on train[50000:51000], taken from
parzen_table.py's cache OUT/parzen_valid_cache.json when present) and their Fréchet
distance to the 10,000 validation images train[50000:] in the reference classifier's
features. Selected: the highest validation Parzen among snapshots whose validation FD
is within --fd-max (default 1.5x the lowest FD of all snapshots) -- npgan.sweep.select,
the rule the recipe search uses. No test image is read; evaluate the chosen snapshot
once on test afterwards (examples/evaluate_samples.py --checkpoint PATH).

``--to-epoch N`` keeps to snapshots made by epoch N (a run continued past a training
budget is chosen as it stood at the budget); ``--rows J`` takes every snapshot's figures
from an earlier ``--json J`` instead of computing them again, so the rule can be
re-applied to another epoch range in seconds.

``--average K [K ...]`` adds, for each generator and each run of K consecutive snapshots
of it, their uniform weight average (npgan.train.average_state_dicts: one network, the
paper's G) as a candidate named ``<G>_mean<K>``, dated by its last snapshot: a longer
window of G's iterates than its EMA holds. ``--save PATH`` writes the chosen generator
(snapshot or average) as a G state_dict .npz, ready for evaluate_samples.py.

The reference classifier was trained on all 60,000 training images
(examples/train_mnist_classifier.py), validation included: FD on validation images
is a selection signal here, not a reported figure (reported FDs are to test).
"""
import argparse
import json
import os
import re
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # run from a checkout

from npgan import checkpoint, classifier, datasets, files, models, sampling  # noqa: E402
from npgan import sweep, train  # noqa: E402
from npgan.metrics import feature_statistics, frechet_distance, parzen  # noqa: E402

SNAPSHOT = re.compile(r"^(G(?:_ema[0-9.]+)?)_epoch_(\d+)\.npz$")


def snapshots(run):
    """[(generator, epoch, path)] of RUN's snapshots, by generator then epoch."""
    d = os.path.join(run, "snapshots")
    if not os.path.isdir(d):
        raise SystemExit(f"{run}: no snapshots/ folder (train with --snapshot-every N)")
    out = []
    for name in os.listdir(d):
        m = SNAPSHOT.match(name)
        if m:
            out.append((m.group(1), int(m.group(2)), os.path.join(d, name)))
    if not out:
        raise SystemExit(f"{d}: no <G>_epoch_XXXX.npz snapshots")
    return sorted(out)


def generate(row, n, prior):
    """(n, 784) float32 samples of the generator a row stands for, z from PRIOR."""
    if row.get("sources"):
        G = models.Generator()
        G.load_state_dict(row_state(row))
    else:
        G = sampling.load_generator(row["path"])
    G.eval().z_prior = prior        # a bare state_dict does not record the run's prior
    return sampling.sample(G, n).astype(np.float32)


def load_state(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def row_state(row):
    """The G state_dict a row stands for: its snapshot, or the average of its sources."""
    if row.get("sources"):
        return train.average_state_dicts(load_state(p) for p in row["sources"])
    return load_state(row["path"])


def windows(snaps, ks):
    """[(name, [(gen, epoch, path), ...])]: every K consecutive snapshots of each generator."""
    out = []
    for gen in sorted({s[0] for s in snaps}):
        own = [s for s in snaps if s[0] == gen]
        for k in ks:
            out += [(f"{gen}_mean{k}", own[i - k + 1:i + 1]) for i in range(k - 1, len(own))]
    return out


def positive_k(text):
    k = int(text)
    if k < 2:
        raise argparse.ArgumentTypeError(f"--average needs windows of 2 or more snapshots, got {k}")
    return k


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="run directory of examples/mnist_gan.py")
    p.add_argument("--fd-max", default="1.5x", type=sweep.parse_fd_max,
                   help="FD bound: a number, or a factor of the lowest FD such as 1.5x")
    p.add_argument("--from-epoch", type=int, default=0, help="skip snapshots before this epoch")
    p.add_argument("--to-epoch", type=int, default=None, help="skip snapshots after this epoch")
    p.add_argument("--rows", help="figures of every snapshot from an earlier --json (no computing)")
    p.add_argument("--average", type=positive_k, nargs="+", default=[],
                   help="also every average of K consecutive snapshots of a generator")
    p.add_argument("--save", help="write the chosen generator here (a G state_dict .npz; a folder: "
                                  "as FOLDER/<G>_epoch_NNNN.npz, e.g. RUN/averages/)")
    p.add_argument("--n-samples", type=int, default=10000)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", help="write every snapshot's figures and the choice here")
    p.add_argument("--png", help="validation Parzen and FD against epoch, the choice marked")
    a = p.parse_args(argv)

    if a.to_epoch is not None and a.to_epoch < a.from_epoch:
        raise SystemExit(f"--to-epoch {a.to_epoch} is before --from-epoch {a.from_epoch}")
    last = float("inf") if a.to_epoch is None else a.to_epoch
    if a.rows:
        rows = [r for r in load_rows(a.rows)
                if a.from_epoch <= r.get("first_epoch", r["epoch"]) and r["epoch"] <= last]
        if not rows:
            raise SystemExit(f"{a.rows}: no snapshot between epochs {a.from_epoch} and {last}")
        return choose(a, rows)

    prior = models.run_prior(checkpoint.load(os.path.join(a.run, "checkpoint.npz"))["config"])
    valid, _ = datasets.load_mnist("valid", data_dir=a.data_dir,          # train[50000:]
                                   fallback=os.path.join(os.path.dirname(HERE), "data", "mnist"))
    valid = np.asarray(valid, dtype=np.float32).reshape(-1, 784)
    cache_path = os.path.join(a.run, "parzen_valid_cache.json")
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
    model = classifier.load_classifier()
    mu, cov = feature_statistics(classifier.classify(model, valid).features)

    rows, t0 = [], time.time()
    snaps = [s for s in snapshots(a.run) if a.from_epoch <= s[1] <= last]
    if not snaps:
        raise SystemExit(f"{a.run}: no snapshot between epochs {a.from_epoch} and {last}")
    todo = [(gen, [(gen, epoch, path)]) for gen, epoch, path in snaps] + windows(snaps, a.average)
    for i, (gen, group) in enumerate(todo):
        first, epoch, path = group[0][1], group[-1][1], group[-1][2]
        if len(group) == 1:
            key, row = f"{os.path.basename(path)}:{a.n_samples}:1000", {"path": path}
        else:
            key, row = None, {"path": f"mean of {len(group)} {group[0][0]} snapshots, epochs {first}-{epoch}",
                              "first_epoch": first, "sources": [s[2] for s in group]}
        x = generate(row, a.n_samples, prior)
        if key in cache:
            sigma, ll = cache[key]
        else:
            sigma, curve = parzen.select_sigma(valid, x, n_valid=1000)
            sigma, ll = float(sigma), float(np.max(curve))
        fd = float(frechet_distance(*feature_statistics(classifier.classify(model, x).features), mu, cov))
        rows.append({"number": i, "state": "COMPLETE", "generator": gen, "epoch": epoch, **row,
                     "parzen": ll, "sigma": sigma, "fd": fd})
        span = f"{epoch:4d}" if len(group) == 1 else f"{first}-{epoch}"
        print(f"[{time.time() - t0:6.0f}s] {i + 1}/{len(todo)} {gen:18s} epoch {span:>7s}  "
              f"valid Parzen {ll:7.2f}  valid FD {fd:7.2f}", flush=True)
    return choose(a, rows)


def load_rows(path):
    """The snapshot rows of an earlier --json output; SystemExit if it is not one."""
    try:
        with open(path) as f:
            rows = json.load(f)["snapshots"]
        for r in rows:
            r["epoch"], r["parzen"], r["fd"] = int(r["epoch"]), float(r["parzen"]), float(r["fd"])
            r["generator"], r["path"], r["state"] = str(r["generator"]), str(r["path"]), r["state"]
            if "sources" in r:
                r["sources"], r["first_epoch"] = [str(p) for p in r["sources"]], int(r["first_epoch"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not the --json output of select_snapshot.py ({e!r})") from None
    return rows


def choose(a, rows):
    """Apply the rule to ROWS, print and write the choice -> the chosen row."""
    bound = sweep.fd_bound(rows, a.fd_max)
    best = sweep.select(rows, a.fd_max)
    if best is None:
        raise SystemExit(f"no generator has validation FD <= {bound:.3f} (lowest: "
                         f"{min(r['fd'] for r in rows):.3f})")
    print(f"FD bound {bound:.3f}; selected: {best['generator']} epoch {best['epoch']} "
          f"(valid Parzen {best['parzen']:.2f}, valid FD {best['fd']:.2f}): {best['path']}")
    if a.json:
        files.write_text(a.json, json.dumps({"run": a.run, "fd_max": a.fd_max, "fd_bound": bound,
                                             "from_epoch": a.from_epoch, "to_epoch": a.to_epoch,
                                             "selected": best, "snapshots": rows}, indent=1))
    if a.png:
        plot(rows, best, bound, a.png)
    if a.save:
        path = a.save
        if os.path.isdir(path) or path.endswith(os.sep):     # a folder: named as a snapshot
            os.makedirs(path, exist_ok=True)
            path = os.path.join(path, f"{best['generator']}_epoch_{best['epoch']:04d}.npz")
        with files.atomic_write(path) as f:
            np.savez(f, **row_state(best))
        print(f"saved the chosen generator to {path}")
    return best


def plot(rows, best, bound, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for gen in sorted({r["generator"] for r in rows}):
        rs = [r for r in rows if r["generator"] == gen]
        ax1.plot([r["epoch"] for r in rs], [r["parzen"] for r in rs], ".-", label=gen)
        ax2.plot([r["epoch"] for r in rs], [r["fd"] for r in rs], ".-", label=gen)
    for ax, k in ((ax1, "parzen"), (ax2, "fd")):
        ax.plot([best["epoch"]], [best[k]], "k*", ms=14, label="selected")
        ax.set_xlabel("epoch")
    ax2.axhline(bound, color="grey", ls=":", label=f"FD bound {bound:.2f}")
    ax1.set_ylabel("validation Parzen LL (nats)")
    ax2.set_ylabel("validation FD")
    ax2.set_yscale("log")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.suptitle("Choosing a snapshot on validation only")
    fig.tight_layout()
    files.save_figure(fig, path)


if __name__ == "__main__":
    main()
