"""Table 1 of the paper for a run of examples/mnist_gan.py, and Fig. 2.

    python examples/parzen_table.py runs/paper --out results/mnist
    python examples/parzen_table.py --samples S.npy [--n-test 1000] [--sigmas 0.1 0.2]

For every generator the run kept (G and its moving averages) and every snapshot
(OUT/snapshots/<G>_epoch_XXXX.npz): 10,000 samples, Parzen sigma chosen over
logspace(-1, 0, 10) on the first 1,000 validation images (train[50000:51000]),
validation LL -> a curve. The best validation epoch of each generator is then
evaluated by the paper's protocol on the 10,000 test images (LL +- standard
error), plus a clearly labelled finer sigma grid. A sanity row uses 10,000 real
training images in place of samples. Writes table1.md, parzen_curve.csv,
parzen_curve.png, samples and Fig. 2 (nearest training image beside each sample)
under --out.

``--samples S.npy``: the Parzen log-likelihood of one set of samples, (N, 784)
or (N, 28, 28) in [0, 1], by the same protocol (sigma over --sigmas on the
first --n-valid validation images, then the test images); prints the
validation curve and the test LL; writes nothing.
"""
import argparse
import sys
import glob
import json
import os
import re
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # run from a checkout

from npgan import datasets, files, images, models, sampling, settings  # noqa: E402
from npgan.metrics import parzen  # noqa: E402

PAPER_SIGMAS = np.logspace(-1, 0, 10)
FINE_SIGMAS = np.logspace(np.log10(0.1), np.log10(0.3), 41)


def run_prior(run):
    """The z prior RUN was trained with: its checkpoint's config ("z"); runs
    written before that option existed drew z uniform."""
    from npgan import checkpoint
    path = os.path.join(run, "checkpoint.npz")
    return models.run_prior(checkpoint.load(path)["config"]) if os.path.exists(path) else "gaussian"


def load_G(path, prior):
    """The Generator of a snapshot (a state_dict .npz), drawing z from ``prior``."""
    G = sampling.load_generator(path)
    G.z_prior = prior
    return G


def snapshots(run):
    """{generator name: [(epoch, path), ...]} from RUN/snapshots."""
    found = {}
    for p in sorted(glob.glob(os.path.join(run, "snapshots", "*_epoch_*.npz"))):
        m = re.match(r"(.+)_epoch_(\d+)\.npz$", os.path.basename(p))
        found.setdefault(m.group(1), []).append((int(m.group(2)), p))
    if not found:
        raise SystemExit(f"no snapshots in {run}/snapshots: train with --snapshot-every N")
    return found


def nearest_train_figure(samples, train_x, path, rows=8, cols=6):
    """Fig. 2 as in the paper: rows of samples; the rightmost column (after a
    gap, on a grey background) is the training image nearest to the sample
    beside it, to show the model has not memorised the training set."""
    from PIL import Image
    s = samples[:rows * cols].reshape(rows, cols, 784)
    last = s[:, -1]
    d2 = (last * last).sum(1)[:, None] + (train_x * train_x).sum(1)[None, :] - 2 * last @ train_x.T
    nn_img = train_x[d2.argmin(1)]
    gap = 6
    canvas = np.ones((rows * 29 + 1, (cols + 1) * 29 + gap + 1), np.float32)
    for r in range(rows):
        for c in range(cols):
            canvas[1 + 29 * r:29 * r + 29, 1 + 29 * c:29 * c + 29] = s[r, c].reshape(28, 28)
        x0 = 1 + 29 * cols + gap
        canvas[1 + 29 * r:29 * r + 29, x0:x0 + 28] = 0.35 + 0.65 * nn_img[r].reshape(28, 28)
    img = Image.fromarray((canvas * 255).astype(np.uint8)).resize(
        (canvas.shape[1] * 3, canvas.shape[0] * 3), Image.NEAREST)
    with files.atomic_write(path) as f:
        img.save(f, format="PNG")


def samples_ll(args):
    """--samples: the Parzen LL of one .npy of samples; prints, returns 0."""
    samples = np.load(args.samples)
    samples = samples.reshape(len(samples), -1)
    if samples.min() < -1e-6 or samples.max() > 1 + 1e-6:
        print(f"warning: samples span [{samples.min():.3g}, {samples.max():.3g}], "
              "expected [0, 1] like the test images", file=sys.stderr)
    valid_x, _ = datasets.load(args.dataset, "valid", data_dir=args.data_dir)
    test_x, _ = datasets.load(args.dataset, "test", data_dir=args.data_dir)
    if args.n_test is not None:
        test_x = test_x[:args.n_test]
    r = parzen.evaluate(samples.astype(np.float32), test_x, valid_x, args.sigmas, args.n_valid,
                        progress=not args.no_progress)
    for s, v in zip(r["sigmas"], r["valid_ll"]):
        print(f"  sigma {s:.4f}  valid LL {v:9.2f}" + ("  <- best" if s == r["sigma"] else ""))
    print(f"sigma = {r['sigma']:.4f}   test LL = {r['ll_mean']:.2f} +- {r['ll_se']:.2f}   "
          f"({r['n_samples']} samples, {r['n_test']} test, {r['n_valid']} valid, "
          f"{r['seconds']:.1f} s)")
    if r["sigma_at_edge"]:
        print("warning: the best sigma is at an end of the grid; widen --sigmas", file=sys.stderr)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", help="run directory of examples/mnist_gan.py")
    p.add_argument("--out", default="results/mnist")
    p.add_argument("--data-dir", default=None, help="directory with the MNIST files (default: "
                   "$NPGAN_DATA, then data/mnist of this checkout; with --samples: $NPGAN_DATA, "
                   "then the user cache)")
    p.add_argument("--n-samples", type=int, default=10000)
    p.add_argument("--n-valid", type=int, default=1000, help="validation images for sigma")
    p.add_argument("--label", default=None, help="name of this run in the table (default: run dir name)")
    p.add_argument("--z", choices=list(models.Z_PRIORS), default=None,
                   help="noise prior (default: the run's, from RUN/checkpoint.npz)")
    g = p.add_argument_group("one set of samples (instead of RUN)")
    g.add_argument("--samples", help=".npy file of samples, shape (N, 784) (or (N, 28, 28)) in [0, 1]")
    g.add_argument("--dataset", default="mnist", choices=sorted(datasets.DATASETS))
    g.add_argument("--sigmas", type=float, nargs="+", default=list(parzen.DEFAULT_SIGMAS),
                   help="sigma grid (default: logspace(-1, 0, 10))")
    g.add_argument("--n-test", type=int, default=None, help="test images (default: all)")
    g.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if (args.run is None) == (args.samples is None):
        p.error("give a RUN directory or --samples S.npy (one of them)")
    if args.samples is not None:
        return samples_ll(args)
    prior = args.z or run_prior(args.run)
    label = args.label or os.path.basename(os.path.normpath(args.run))
    os.makedirs(args.out, exist_ok=True)
    where = dict(data_dir=args.data_dir, fallback=os.path.join(HERE, "..", "data", "mnist"))
    train_x, _ = datasets.load_mnist("train", **where)
    valid_x = datasets.load_mnist("valid", **where)[0][:args.n_valid]
    test_x, _ = datasets.load_mnist("test", **where)
    t0 = time.time()

    # 1. validation curve of every generator over its snapshots
    curve, best = [], {}
    cache_path = os.path.join(args.run, "parzen_valid_cache.json")   # reruns skip done snapshots
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
    for name, snaps in snapshots(args.run).items():
        for epoch, path in snaps:
            key = f"{os.path.basename(path)}:{args.n_samples}:{args.n_valid}"
            if key not in cache:
                s = sampling.sample(load_G(path, prior), args.n_samples)
                sigma, lls = parzen.select_sigma(valid_x, s, PAPER_SIGMAS)
                cache[key] = [float(sigma), float(np.max(lls))]
                files.write_text(cache_path, json.dumps(cache))
            sigma, ll = cache[key]
            curve.append({"generator": name, "epoch": epoch, "valid_ll": ll, "sigma": float(sigma)})
            print(f"{name:14s} epoch {epoch:4d}  valid LL {ll:8.2f}  sigma {sigma:.3f}", flush=True)
            if ll > best.get(name, {"valid_ll": -np.inf})["valid_ll"]:
                best[name] = {"epoch": epoch, "path": path, "valid_ll": ll, "sigma": float(sigma)}
    files.write_text(os.path.join(args.out, f"parzen_curve_{label}.csv"),
                     "generator,epoch,valid_ll,sigma\n" + "".join(
                         f"{r['generator']},{r['epoch']},{r['valid_ll']:.3f},{r['sigma']:.4f}\n" for r in curve))
    plot_curve(curve, os.path.join(args.out, f"parzen_curve_{label}.png"), label)

    # 2. the Table 1 protocol on the test set, at each generator's best epoch
    rows = []
    for name, b in best.items():
        s = sampling.sample(load_G(b["path"], prior), args.n_samples)
        ll = parzen.log_likelihood(test_x, s, b["sigma"])
        m, se = parzen.mean_and_se(ll)
        sig_f, lls_f = parzen.select_sigma(valid_x, s, FINE_SIGMAS)
        mf, sef = parzen.mean_and_se(parzen.log_likelihood(test_x, s, sig_f))
        rows.append({"generator": name, **b, "test_ll": float(m), "test_se": float(se),
                     "fine_sigma": float(sig_f), "fine_test_ll": float(mf), "fine_test_se": float(sef)})
        print(f"TEST {name}: epoch {b['epoch']}  sigma {b['sigma']:.3f}  LL {m:.1f} +- {se:.1f}"
              f"   (fine grid: sigma {sig_f:.3f}, LL {mf:.1f} +- {sef:.1f})", flush=True)
        images.save_grid(s, os.path.join(args.out, f"samples_{label}_{name}_epoch{b['epoch']}.png"), 10)
        nearest_train_figure(s, train_x[:50000], os.path.join(args.out, f"fig2_{label}_{name}.png"))

    # 3. sanity row: real training images as the "samples"
    real = train_x[:args.n_samples]
    sig_r, _ = parzen.select_sigma(valid_x, real, PAPER_SIGMAS)
    mr, ser = parzen.mean_and_se(parzen.log_likelihood(test_x, real, sig_r))
    print(f"TEST real train[:{args.n_samples}]: sigma {sig_r:.3f}  LL {mr:.1f} +- {ser:.1f}")

    metrics = [json.loads(l) for l in open(os.path.join(args.run, "metrics.jsonl"))]
    result = {"run": args.run, "label": label, "rows": rows,
              "real": {"sigma": float(sig_r), "test_ll": float(mr), "test_se": float(ser)},
              "epochs": metrics[-1]["epoch"], "steps": metrics[-1]["step"],
              "train_seconds": sum(m.get("seconds", 0) for m in metrics),
              "eval_seconds": time.time() - t0, "machine": settings.machine()}
    files.write_text(os.path.join(args.out, f"table1_{label}.json"), json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    return result


def plot_curve(curve, path, label):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in sorted({r["generator"] for r in curve}):
        pts = sorted((r["epoch"], r["valid_ll"]) for r in curve if r["generator"] == name)
        ax.plot(*zip(*pts), "o-", ms=3, label=name)
    ax.axhline(225, color="k", ls="--", lw=0.8, label="paper, Table 1 (test): 225")
    ax.set_xlabel("epoch")
    ax.set_ylabel("Parzen log-likelihood, validation (nats)")
    ax.set_title(f"MNIST GAN ({label}): Parzen LL on 1,000 validation images")
    ax.legend()
    fig.tight_layout()
    files.save_figure(fig, path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
