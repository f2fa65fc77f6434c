"""Semi-supervised MNIST from a GAN's discriminator features (paper Section 7, item 4; issue #18).

    python examples/semi_supervised.py --gan-checkpoint runs/mnist/checkpoint.npz \\
        --infogan-d runs/infogan/seed_0/D.npz

Algorithm:
    unsupervised: a GAN trained on MNIST train[:50000] without labels (examples/mnist_gan.py;
                  its checkpoint holds D), and/or InfoGAN's D (examples/infogan.py, OUT/seed_S/D.npz)
    features f(x): D's last hidden layer (240 maxout units, eval mode), centred and scaled by
                   one number fitted on the 50,000 unlabelled training images
    for n_labels in (100, 1000); for draw in 0..4:
        draw n_labels/10 labelled images per class from train[:50000] (the same draws for
        every feature set)
        choose the L2 weight (1e-4 .. 1) by 3-fold stratified cross-validation on those labels alone
        fit multinomial logistic regression (npgan, 200 steps of full-batch Adam, lr 0.05) on f(x_labelled)
        test accuracy on the 10,000 MNIST test images
    baselines with the same labels and the same classifier: raw pixels, and the features of
    an untrained (randomly initialised) D of the same architecture.
    --first-layer: also D's first hidden layer (h0, 240 maxout units) (rows NAME_h0).
Results -> results/future_work/semi_supervised.json, figure -> docs/figures/future_semi_supervised.png.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import checkpoint, datasets, files, infogan, models, plots, settings  # noqa: E402
from npgan import semisupervised as ssl  # noqa: E402
from npgan.progress import Progress  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(ROOT, "data", "mnist")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gan-checkpoint", default=None,
                   help="checkpoint.npz of an examples/mnist_gan.py run (its state holds D)")
    p.add_argument("--infogan-d", default=None, help="D.npz of an examples/infogan.py seed")
    p.add_argument("--first-layer", action="store_true",
                   help="also D's first hidden layer (h0) as features (rows NAME_h0)")
    p.add_argument("--no-baselines", action="store_true",
                   help="only the Ds given (no pixels, no untrained D): their rows are the same "
                        "numbers in every run, the label draws being fixed")
    p.add_argument("--labels", type=int, nargs="+", default=[100, 1000], help="labelled images in all")
    p.add_argument("--draws", type=int, default=5, help="label draws per label count")
    p.add_argument("--steps", type=int, default=200, help="Adam steps of each logistic regression")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--train-size", type=int, default=50000)
    p.add_argument("--test-size", type=int, default=10000)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--results", default=os.path.join(ROOT, "results", "future_work", "semi_supervised.json"))
    p.add_argument("--figure", default=os.path.join(ROOT, "docs", "figures", "future_semi_supervised.png"))
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def gan_discriminator(path):
    """The paper's D from an examples/mnist_gan.py checkpoint -> (D, description)."""
    ck = checkpoint.load(path)
    D = models.Discriminator(rng=np.random.default_rng(0))
    D.load_state_dict(ck["state"]["D"])
    return D, {"path": os.path.abspath(path), "sha256": files.sha256(path), "epoch": ck["state"]["epoch"],
               "step": ck["state"]["step"], "config": ck["config"]}


def infogan_discriminator(path):
    """InfoGAN's D (+Q) from an examples/infogan.py D.npz -> (D, description)."""
    with np.load(path) as z:
        state = {k: z[k] for k in z.files}
    learn_std = state["q.weight"].shape[1] > infogan.N_CAT + infogan.N_CONT
    D = infogan.InfoDiscriminator(learn_std=learn_std, rng=np.random.default_rng(0))
    D.load_state_dict(state)
    return D, {"path": os.path.abspath(path), "sha256": files.sha256(path)}


def feature_sets(args, train_x, test_x):
    """name -> (train features, test features, description): pixels, each D given, an untrained D."""
    sets = {} if args.no_baselines else {"pixels": (train_x, test_x, {"dim": 784})}
    Ds = []
    if args.gan_checkpoint:
        Ds.append(("gan_D",) + gan_discriminator(args.gan_checkpoint))
    if args.infogan_d:
        Ds.append(("infogan_D",) + infogan_discriminator(args.infogan_d))
    if not args.no_baselines:
        Ds.append(("untrained_D", models.Discriminator(rng=np.random.default_rng(0)),
                   {"note": "models.Discriminator(rng=default_rng(0)), no training"}))
    for name, D, desc in Ds:
        t0 = time.time()
        tr = ssl.discriminator_features(D, train_x, layers=("h0", "h1"))
        te = ssl.discriminator_features(D, test_x, layers=("h0", "h1"))
        units = D.h0.units
        for suffix, cols in (("", slice(units, None)), ("_h0", slice(0, units))):   # last, first layer
            if suffix and not args.first_layer:
                continue
            d = dict(desc, layer="h1 (last hidden)" if not suffix else "h0 (first hidden)",
                     dim=int(tr[:, cols].shape[1]), dead_units=int((tr[:, cols].std(axis=0) == 0).sum()))
            sets[name + suffix] = (tr[:, cols], te[:, cols], d)
        print(f"{name}: features {tr.shape} in {time.time() - t0:.0f}s", flush=True)
    return sets


def main(argv=None):
    args = parse_args(argv)
    npgan.settings.configure(blas_threads=1, gemm_split=False)
    t_start = time.time()
    train_x, train_y = datasets.load_mnist("train", data_dir=args.data_dir, fallback=DEFAULT_DATA)
    test_x, test_y = datasets.load_mnist("test", data_dir=args.data_dir, fallback=DEFAULT_DATA)
    train_x, train_y = train_x[:args.train_size], train_y[:args.train_size]
    test_x, test_y = test_x[:args.test_size], test_y[:args.test_size]
    sets = feature_sets(args, train_x, test_x)
    scalers = {name: ssl.Scaler.fit(tr) for name, (tr, _, _) in sets.items()}   # unlabelled data
    test_scaled = {name: scalers[name](te) for name, (_, te, _) in sets.items()}

    rows = []
    bar = Progress(len(args.labels) * args.draws * len(sets), "fits", not args.no_progress,
                   unit="fits", every=10)
    for n in args.labels:
        for draw in range(args.draws):
            idx = ssl.balanced_subset(train_y, n // 10, np.random.default_rng([n, draw]))
            for name, (tr, _, _) in sets.items():
                x = scalers[name](tr[idx])
                l2, cv = ssl.select_l2(x, train_y[idx], folds=args.folds,
                                       rng=np.random.default_rng(draw), steps=args.steps)
                model = ssl.fit_logistic(x, train_y[idx], l2=l2, steps=args.steps)
                acc = ssl.accuracy(model, test_scaled[name], test_y)
                rows.append({"features": name, "labels": n, "draw": draw, "l2": l2,
                             "cv_accuracy": cv[l2], "test_accuracy": acc,
                             "train_accuracy": ssl.accuracy(model, x, train_y[idx])})
                bar.update(1)
            print(f"{n} labels, draw {draw}: " + ", ".join(
                f"{r['features']} {r['test_accuracy']:.4f}" for r in rows[-len(sets):]), flush=True)
    bar.close()

    summary = {}
    for name in sets:
        for n in args.labels:
            acc = np.array([r["test_accuracy"] for r in rows if r["features"] == name and r["labels"] == n])
            summary[f"{name}/{n}"] = {"mean": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
                                      "min": float(acc.min()), "max": float(acc.max()),
                                      "per_draw": acc.round(4).tolist()}
            s = summary[f"{name}/{n}"]
            spread = "n/a" if s["std"] is None else f"{s['std']:.4f}"   # one draw has no spread
            print(f"{name:12s} {n:5d} labels: test accuracy {s['mean']:.4f} +- {spread} "
                  f"(std over {len(acc)} draws; min {s['min']:.4f}, max {s['max']:.4f})")
    result = {"method": "multinomial logistic regression (npgan, L2 by CV on the labels) on "
                        "D's last hidden layer vs on pixels",
              "command": "python examples/semi_supervised.py " + " ".join(sys.argv[1:]),
              "features": {name: desc for name, (_, _, desc) in sets.items()},
              "summary": summary, "fits": rows, "steps": args.steps, "folds": args.folds,
              "l2_grid": list(ssl.L2_GRID), "seconds": round(time.time() - t_start, 1),
              "machine": settings.machine()}
    files.write_text(args.results, json.dumps(result, indent=1))
    print(f"-> {args.results}")
    if args.figure:
        figure(summary, list(sets), args.labels, args.draws, args.figure)
        print(f"-> {args.figure}")
    return result


def figure(summary, names, labels, draws, path):
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        means = [summary[f"{name}/{n}"]["mean"] for n in labels]
        stds = [summary[f"{name}/{n}"]["std"] or 0.0 for n in labels]      # one draw: no bar
        pos = np.arange(len(labels)) + (i - (len(names) - 1) / 2) * width
        ax.bar(pos, means, width, yerr=stds, capsize=3, label=name)
        for p, m in zip(pos, means):
            ax.text(p, m + 0.01, f"{m:.3f}", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(labels)))
    ax.set_xticklabels([f"{n} labels" for n in labels])
    ax.set_ylabel("MNIST test accuracy")
    ax.set_ylim(0.5, 1.0)
    ax.set_title(f"logistic regression on D's last hidden layer vs pixels\n"
                 f"(mean +- std over {draws} label draws)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    plots.save(fig, path)


if __name__ == "__main__":
    main()
