"""Cures for mode collapse on the ring of 8 Gaussians, measured over seeds.

    python examples/variants.py --method vanilla --k 1 --seeds 0 1 2 3 4 --steps 3000
    python examples/variants.py --method wgan --seeds 0 1 2 3 4 --steps 3000
    python examples/variants.py --method wgan-gp --seeds 0 1 2 3 4 --steps 3000
    python examples/variants.py --method unrolled --k 5 --seeds 0 1 2 3 4 --steps 3000
    python examples/variants.py --plot-only                 # the figure from ring.json

Every method: the ring of examples/mode_collapse.py (8 modes, radius 2, std
0.02: npgan.metrics.modes), the same G (z in R^16 -> 64 -> 64 -> 2, ReLU) and
D (2 -> 64 -> 64 -> 1, no sigmoid: a logit for the GAN, a real number for a
critic), batches of 256, the same number of G steps; seed s initialises G,
then D, then draws every batch, z and eps from one generator. After the last
G step, 2,000 samples of G on fixed z are scored by mode_metrics: modes
covered (of 8; >= 1 % of the samples within 3 std of the mode) and the
high-quality fraction (within 3 std of any mode). Time per G step is wall
time of training (not evaluation) over G steps, D's steps included.

    vanilla  (Algorithm 1)  k D steps (Adam 1e-3, betas (.5, .999)), then 1 G step,
                            non-saturating G loss                   [--k: D steps]
    wgan     (Arjovsky 17)  n_critic = 5 critic steps on E D(G(z)) - E D(x), RMSprop
                            lr 5e-5, weights clipped to [-0.01, 0.01]; G on -E D(G(z))
                                                                    [--k: n_critic]
    wgan-gp  (Gulrajani 17) as wgan, no clipping, + 10 E(||grad D(x_hat)|| - 1)^2 on
                            x_hat = eps x + (1 - eps) G(z); Adam 1e-4, betas (0, .9)
    unrolled (Metz 17)      1 D step as vanilla, then 1 G step on -E log D_K(G(z)),
                            D_K: D after K more Adam steps on one batch, G's gradient
                            taken through those K updates               [--k: K]

Results go into --out/ring.json (one entry per method and k, merged with what is
there), the figure into docs/figures/variants_ring.png.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
if __name__ == "__main__":   # as a script only (importing it must not change the settings)
    npgan.settings.configure(blas_threads=1, gemm_split=False)    # tiny matrices: one thread
from npgan import files, optim, plots, toys  # noqa: E402
from npgan.metrics.modes import STD, mode_metrics, ring_centers, sample_ring  # noqa: E402
from npgan.progress import Progress  # noqa: E402
from npgan.train import GANTrainer  # noqa: E402
from npgan.variants import UnrolledTrainer, WassersteinTrainer  # noqa: E402

METHODS = ("vanilla", "wgan", "wgan-gp", "unrolled")
DEFAULT_K = {"vanilla": 1, "wgan": 5, "wgan-gp": 5, "unrolled": 5}
DEFAULT_LR = {"vanilla": 1e-3, "wgan": 5e-5, "wgan-gp": 1e-4, "unrolled": 1e-3}


# ---- one run: build the game, train, score ---------------------------------------------
def build(method, k, seed, lr=None, batch=256, hidden=64, z_dim=16, clip=0.01, gp_weight=10.0):
    """(G, trainer) for ``method``; trainer.step() makes one G step (and its D steps)."""
    lr = DEFAULT_LR[method] if lr is None else lr
    rng = np.random.default_rng(seed)                     # init, then every draw of the run
    G = toys.ReLUMLP([z_dim, hidden, hidden, 2], rng)
    D = toys.ReLUMLP([2, hidden, hidden, 1], rng)
    centers = ring_centers()
    data = lambda m, r: sample_ring(m, r, centers, STD)  # noqa: E731
    sample_z = toys.noise("gaussian", z_dim)
    if method in ("vanilla", "unrolled"):
        gan = GANTrainer(G, D, data, batch_size=batch, k=k if method == "vanilla" else 1,
                         simultaneous=False, opt_g=optim.Adam(G.parameters(), lr, (0.5, 0.999)),
                         opt_d=optim.Adam(D.parameters(), lr, (0.5, 0.999)),
                         sample_z=sample_z, d_scale=1.0, generator=rng)
        if method == "unrolled":
            return G, UnrolledTrainer(gan, unroll=k)

        class OneGStep:              # k D steps, the k-th followed by the G step
            def step(self):
                for _ in range(k):
                    gan.step()
        return G, OneGStep()
    if method == "wgan":
        opt_g, opt_d = optim.RMSprop(G.parameters(), lr), optim.RMSprop(D.parameters(), lr)
        return G, WassersteinTrainer(G, D, data, sample_z, opt_g, opt_d, n_critic=k, clip=clip,
                                     batch_size=batch, generator=rng)
    if method == "wgan-gp":
        opt_g = optim.Adam(G.parameters(), lr, (0.0, 0.9))
        opt_d = optim.Adam(D.parameters(), lr, (0.0, 0.9))
        return G, WassersteinTrainer(G, D, data, sample_z, opt_g, opt_d, n_critic=k,
                                     gp_weight=gp_weight, batch_size=batch, generator=rng)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def run(method, k, seed, steps, lr=None, eval_every=500, n_eval=2000, progress=True):
    """Train ``steps`` G steps; returns {"modes", "hq", "sec_per_g_step", "history", "samples"}."""
    G, trainer = build(method, k, seed, lr=lr)
    z_eval = toys.noise("gaussian", 16)(n_eval, np.random.default_rng(10_000 + seed))
    centers = ring_centers()
    hist, train_s = [], 0.0

    def evaluate(step):
        with npgan.no_grad():
            s = G(z_eval).numpy()
        m = mode_metrics(s, centers, STD)
        hist.append([step, m["modes_covered"], round(m["high_quality_fraction"], 4)])
        return s, m

    evaluate(0)
    with Progress(steps, f"{method} k={k} seed {seed}", report=progress, unit="G steps") as bar:
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            trainer.step()
            train_s += time.perf_counter() - t0
            bar.update(1)
            if step % eval_every == 0 or step == steps:
                s, m = evaluate(step)
    return {"seed": seed, "modes": m["modes_covered"], "hq": m["high_quality_fraction"],
            "counts": m["counts"].tolist(), "sec_per_g_step": train_s / steps, "history": hist,
            "samples": np.round(s[:1000], 3).tolist()}


# ---- results file and figure -------------------------------------------------------------
def key(method, k):
    return f"{method} k={k}"


def summary(entry):
    modes = np.array([r["modes"] for r in entry["runs"]], float)
    hq = np.array([r["hq"] for r in entry["runs"]])
    t = np.array([r["sec_per_g_step"] for r in entry["runs"]])
    return {"modes_mean": modes.mean(), "modes_std": modes.std(ddof=1) if len(modes) > 1 else 0.0,
            "modes_min": modes.min(), "modes_max": modes.max(),
            "hq_mean": hq.mean(), "hq_std": hq.std(ddof=1) if len(hq) > 1 else 0.0,
            "sec_per_g_step": float(np.median(t))}


def save_results(path, entry):
    """Merge ``entry`` into the JSON at ``path`` (under its key), atomically, under
    the directory's lock (runs of other methods may finish at the same moment)."""
    for _ in range(300):
        try:
            with files.lock_dir(os.path.dirname(path) or "."):
                data = {}
                if os.path.exists(path):
                    with open(path) as f:
                        data = json.load(f)
                kk = key(entry["method"], entry["k"])
                old = data.get(kk)
                if old and (old["steps"], old["lr"]) == (entry["steps"], entry["lr"]):
                    # the same experiment, other seeds (runs of one method in parallel): merge
                    runs = {r["seed"]: r for r in old["runs"]}
                    runs.update({r["seed"]: r for r in entry["runs"]})
                    entry = dict(entry, runs=[runs[sd] for sd in sorted(runs)])
                    entry["summary"] = summary(entry)
                data[kk] = entry
                files.write_text(path, json.dumps(data, indent=1, sort_keys=True))
                return
        except files.DirectoryLocked:
            time.sleep(1)
    raise RuntimeError(f"{path}: its directory stayed locked for 5 minutes")


ORDER = ["vanilla k=1", "vanilla k=5", "wgan k=5", "wgan-gp k=5", "unrolled k=1",
         "unrolled k=5", "unrolled k=10"]


def table(results):
    """Markdown: one row per method with mean +- std over seeds, then the per-seed values."""
    keys = [k for k in ORDER if k in results] + sorted(k for k in results if k not in ORDER)
    seeds = sorted({r["seed"] for k in keys for r in results[k]["runs"]})
    head = ("| method | lr | G steps | modes covered (of 8), mean +- std [min, max] | "
            "high-quality fraction, mean +- std | ms per G step (median) | "
            + " | ".join(f"seed {s}: modes / HQ" for s in seeds) + " |\n"
            + "|---" * (6 + len(seeds)) + "|\n")
    rows = []
    for k in keys:
        e, sm = results[k], summary(results[k])
        per = {r["seed"]: f"{r['modes']} / {r['hq']:.2f}" for r in e["runs"]}
        rows.append(f"| {k} | {e['lr']:g} | {e['steps']} | {sm['modes_mean']:.1f} +- "
                    f"{sm['modes_std']:.1f} [{sm['modes_min']:.0f}, {sm['modes_max']:.0f}] | "
                    f"{sm['hq_mean']:.2f} +- {sm['hq_std']:.2f} | {sm['sec_per_g_step'] * 1e3:.1f} | "
                    + " | ".join(per.get(s, "-") for s in seeds) + " |")
    return head + "\n".join(rows) + "\n"


def plot(results, path, seed=0):
    plt = plots.pyplot()
    keys = [k for k in ORDER if k in results] + sorted(k for k in results if k not in ORDER)
    centers = ring_centers()
    n = len(keys)
    fig = plt.figure(figsize=(2.3 * max(n, 4), 2.4 + 2.8))
    gs = fig.add_gridspec(2, n, height_ratios=[1, 1.1])
    for i, kk in enumerate(keys):
        e = results[kk]
        r = next((r for r in e["runs"] if r["seed"] == seed), e["runs"][0])
        ax = fig.add_subplot(gs[0, i])
        ax.scatter(centers[:, 0], centers[:, 1], s=25, marker="x", color="0.5", lw=1)
        if "samples" in r:
            s = np.asarray(r["samples"])
            ax.scatter(s[:, 0], s[:, 1], s=3, alpha=0.5, lw=0, color=f"C{i}")
        else:                           # an entry recovered from a run's log lines
            ax.text(0, 0, "samples\nnot kept", ha="center", va="center", fontsize=8)
        ax.set_title(f"{kk}\nseed {r['seed']}: {r['modes']}/8, HQ {r['hq']:.2f}", fontsize=8)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=6)
    ax = fig.add_subplot(gs[1, :])
    rng = np.random.default_rng(0)
    for i, kk in enumerate(keys):
        modes = [r["modes"] for r in results[kk]["runs"]]
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(modes)), modes, color=f"C{i}", s=18, alpha=0.7)
        sm = summary(results[kk])
        ax.errorbar(i + 0.25, sm["modes_mean"], yerr=sm["modes_std"], fmt="o", color="k", ms=4,
                    capsize=3)
    ax.set_xticks(range(n))
    ax.set_xticklabels([f"{kk}\n{summary(results[kk])['sec_per_g_step'] * 1e3:.1f} ms/G step"
                        for kk in keys], fontsize=7)
    ax.set_ylim(-0.3, 8.5)
    ax.set_ylabel("modes covered (of 8)")
    ax.grid(alpha=0.3)
    ax.set_title("modes covered after the last G step: one dot per seed, mean +- std (black)",
                 fontsize=9)
    steps = {results[kk]["steps"] for kk in keys}
    fig.suptitle(f"ring of 8 Gaussians (std {STD}), same G and D, {'/'.join(map(str, steps))} "
                 "G steps each: samples of G for one seed (dots), mode centres (x)", fontsize=9)
    plots.save(fig, path)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", choices=METHODS, default="vanilla")
    ap.add_argument("--k", type=int, default=None,
                    help="vanilla: D steps per G step; wgan(-gp): n_critic; unrolled: unroll steps")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=3000, help="G steps per run")
    ap.add_argument("--lr", type=float, default=None, help="both players' lr (default per method)")
    ap.add_argument("--out", default="results/variants", help="directory of ring.json")
    ap.add_argument("--figure", default="docs/figures/variants_ring.png")
    ap.add_argument("--label", default=None, help="key suffix, e.g. for a non-default lr")
    ap.add_argument("--plot-only", action="store_true", help="only draw the figure from ring.json")
    ap.add_argument("--table", action="store_true", help="only print ring.json as a markdown table")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    path = os.path.join(args.out, "ring.json")
    if args.table:
        with open(path) as f:
            print(table(json.load(f)), end="")
        return
    if not args.plot_only:
        k = DEFAULT_K[args.method] if args.k is None else args.k
        lr = DEFAULT_LR[args.method] if args.lr is None else args.lr
        runs = []
        for seed in args.seeds:
            r = run(args.method, k, seed, args.steps, lr=lr)
            print(f"{key(args.method, k)} seed {seed}: modes {r['modes']}/8, HQ {r['hq']:.3f}, "
                  f"{r['sec_per_g_step'] * 1e3:.2f} ms per G step", flush=True)
            runs.append(r)
        entry = {"method": args.method + (f" ({args.label})" if args.label else ""), "k": k,
                 "lr": lr, "steps": args.steps, "runs": runs,
                 "command": "python examples/variants.py " + " ".join(
                     sys.argv[1:] if argv is None else argv)}
        entry["summary"] = summary(entry)
        sm = entry["summary"]
        print(f"{key(entry['method'], k)}: modes {sm['modes_mean']:.1f} +- {sm['modes_std']:.1f} "
              f"(min {sm['modes_min']:.0f}, max {sm['modes_max']:.0f}), HQ {sm['hq_mean']:.3f} +- "
              f"{sm['hq_std']:.3f}, {sm['sec_per_g_step'] * 1e3:.2f} ms per G step")
        save_results(path, entry)
        print("wrote", path)
    if not args.no_plot and os.path.exists(path):
        with open(path) as f:
            print("wrote", plot(json.load(f), args.figure))


if __name__ == "__main__":
    main()
