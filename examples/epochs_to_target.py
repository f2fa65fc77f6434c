"""How many epochs would a run's validation Parzen curve need to reach a target?

    python examples/epochs_to_target.py runs/faithful/metrics.jsonl --target 225 \\
        --json results/mnist/epochs_to_225.json --png docs/figures/faithful_long_run.png

Reads the ``parzen_<generator>`` fields a run of ``mnist_gan.py`` logs every
--eval-every epochs and fits LL = a + b ln(epoch) by least squares on the
epochs >= START, for several START (the late curve of the paper's recipe is
close to linear in ln(epoch): ~12 nats per doubling in an independent run).
For each fit it solves a + b ln(E) = target. The interval reported is the
first (longest) window's solutions with the slope at b +- 2 s.e. (s.e. from
the residuals, treated as independent: optimistic, since neighbouring
evaluations share most of their training); the later windows show how much
the central figure moves with the window. It is an
extrapolation: it assumes the log-linear trend holds while the learning rate
keeps decaying (x 1/1.000004 per step) and the momentum has saturated.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from npgan import files  # noqa: E402


def read_curve(path, generator):
    """(epochs, LL) arrays of ``parzen_<generator>`` in a metrics.jsonl."""
    pts = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if f"parzen_{generator}" in r:
                pts[r["epoch"]] = r[f"parzen_{generator}"]
    if not pts:
        raise SystemExit(f"{path}: no field parzen_{generator}")
    e = np.array(sorted(pts), dtype=float)
    return e, np.array([pts[k] for k in sorted(pts)])


def fit(epochs, ll):
    """Least squares LL = a + b ln(epoch): (a, b, standard error of b)."""
    X = np.stack([np.ones_like(epochs), np.log(epochs)], axis=1)
    coef, *_ = np.linalg.lstsq(X, ll, rcond=None)
    resid = ll - X @ coef
    dof = max(len(ll) - 2, 1)
    cov = (resid @ resid / dof) * np.linalg.inv(X.T @ X)
    return float(coef[0]), float(coef[1]), float(math.sqrt(cov[1, 1]))


def solve(a, b, target):
    """Epoch E with a + b ln(E) = target (inf when the slope is not positive)."""
    return math.exp((target - a) / b) if b > 0 else math.inf


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("metrics", help="a run's metrics.jsonl (examples/mnist_gan.py --eval-every N)")
    p.add_argument("--generator", default="G", help="G or G_ema<decay>, e.g. G_ema0.999")
    p.add_argument("--target", type=float, default=225.0, help="validation Parzen LL to reach (nats)")
    p.add_argument("--starts", type=int, nargs="+", default=[100, 150, 200],
                   help="fit windows: the epochs each fit starts from (the first gives the interval)")
    p.add_argument("--json", help="write the fits here")
    p.add_argument("--png", help="the curve on a log-epoch axis with the first fit extended")
    a = p.parse_args(argv)
    epochs, ll = read_curve(a.metrics, a.generator)
    rows = []
    for s in a.starts:
        m = epochs >= s
        if m.sum() < 3:
            continue
        ia, ib, se = fit(epochs[m], ll[m])
        rows.append({"fit_from_epoch": s, "points": int(m.sum()), "a": ia,
                     "nats_per_doubling": ib * math.log(2), "se_per_doubling": se * math.log(2),
                     "epochs_to_target": solve(ia, ib, a.target),
                     "epochs_low": solve(ia, ib + 2 * se, a.target),
                     "epochs_high": solve(ia, ib - 2 * se, a.target)})
    if not rows:
        raise SystemExit(f"fewer than 3 evaluations after epoch {min(a.starts)}")
    low, high = rows[0]["epochs_low"], rows[0]["epochs_high"]
    out = {"metrics": a.metrics, "generator": a.generator, "target": a.target,
           "last_epoch": int(epochs[-1]), "last_valid_ll": float(ll[-1]),
           "best_valid_ll": float(ll.max()), "best_epoch": int(epochs[ll.argmax()]),
           "fits": rows, "interval_epochs": [low, high],
           "command": "python examples/epochs_to_target.py " + " ".join(argv or sys.argv[1:])}
    print(f"{a.generator}: validation Parzen {ll[-1]:.1f} at epoch {int(epochs[-1])} "
          f"(best {ll.max():.1f} at {int(epochs[ll.argmax()])}); target {a.target:g}")
    for r in rows:
        print(f"  fit from epoch {r['fit_from_epoch']:4d} ({r['points']} points): "
              f"{r['nats_per_doubling']:5.1f} +- {r['se_per_doubling']:.1f} nats per doubling "
              f"-> {r['epochs_to_target']:,.0f} epochs (slope +-2 s.e.: "
              f"{r['epochs_low']:,.0f} to {r['epochs_high']:,.0f})")
    print(f"  interval (fit from epoch {rows[0]['fit_from_epoch']}, slope +-2 s.e.): "
          f"{low:,.0f} to {high:,.0f} epochs; central figures of the windows: "
          + ", ".join(f"{r['epochs_to_target']:,.0f}" for r in rows))
    if a.json:
        files.write_text(a.json, json.dumps(out, indent=1) + "\n")
    if a.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6.4, 4))
        ax.plot(epochs, ll, "o-", ms=3, label=f"validation Parzen LL ({a.generator})")
        r = rows[0]
        e_end = min(max(r["epochs_to_target"], epochs[-1]) * 1.3, 1e6)
        grid = np.geomspace(r["fit_from_epoch"], e_end, 100)
        ax.plot(grid, r["a"] + r["nats_per_doubling"] / math.log(2) * np.log(grid), "--",
                label=f"fit from epoch {r['fit_from_epoch']}: "
                      f"{r['nats_per_doubling']:.1f} nats / doubling")
        ax.axhline(a.target, color="k", lw=0.8, ls=":", label=f"target {a.target:g}")
        ax.set_xscale("log")
        ax.set_xlabel("epoch (log scale)")
        ax.set_ylabel("nats")
        ax.legend(fontsize=8)
        ax.set_title("The authors' recipe, long: validation Parzen LL", fontsize=10)
        fig.tight_layout()
        files.save_figure(fig, a.png)
        print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
