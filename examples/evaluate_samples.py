"""Every sample-quality metric of a set of MNIST samples, in one command.

    python examples/evaluate_samples.py --samples S.npy            # (N, 784) or (N, 28, 28) in [0, 1]
    python examples/evaluate_samples.py --checkpoint runs/paper/checkpoint.npz --generator G ema0.9999
    python examples/evaluate_samples.py --checkpoint runs/paper/best_G.npz   # a G state_dict .npz
    python examples/evaluate_samples.py --real --baseline noise kmeans      # reference rows

Several sources may be given at once: one row each, the real-side work done
once; ``--markdown T.md`` writes them as a table, ``--json R.json`` in full.

Prints: Parzen-window log-likelihood of the test set (sigma chosen on
validation images, npgan.metrics.parzen), Fréchet distance (FD) in the reference
classifier's features to the 10,000 test images, classifier score,
class histogram and classes covered, precision and recall (k = 3; first
hidden layer, the penultimate one in brackets: see npgan.metrics.suite), and
the distance of each sample to its nearest training image against the same
for the test images.

``--real`` evaluates 10,000 real images unseen by G: MNIST valid
(train[50000:]); their Parzen sigma is then chosen on train[:1000] instead of
on themselves.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from npgan import cluster, files, metrics, sampling  # noqa: E402
from npgan.metrics import parzen  # noqa: E402
from npgan.datasets import load_mnist  # noqa: E402

REPO_DATA = os.path.join(os.path.dirname(HERE), "data")


def report(r, p, out=sys.stdout):
    w = lambda s="": print(s, file=out)  # noqa: E731
    w(f"samples                     {r['n']}")
    if p is not None:
        w(f"Parzen LL (test)            {p['ll_mean']:.2f} +- {p['ll_se']:.2f}   (sigma {p['sigma']:.4f}"
          + (", AT GRID EDGE" if p["sigma_at_edge"] else "") + ")")
    w(f"Frechet distance (FD)       {r['fd']:.4f}")
    w(f"classifier score            {r['score']:.4f} +- {r['score_std']:.4f}   (10 splits)")
    w(f"classes covered (>= 1 %)    {r['classes_covered']} / {len(r['class_counts'])}")
    w("class histogram             " + " ".join(f"{i}:{c}" for i, c in enumerate(r["class_counts"])))
    w(f"precision (k={r['k']})           {r['precision']:.4f}   (penultimate layer: "
      f"{r['precision_penultimate']:.4f})")
    w(f"recall    (k={r['k']})           {r['recall']:.4f}   (penultimate layer: "
      f"{r['recall_penultimate']:.4f})")
    s, t = r["nn_train"], r["nn_train_real"]
    w("nearest-train distance      q01     q05     q25  median     q75     q95")
    for name, d in (("  samples", s), ("  real test images", t)):
        w(f"{name:26s}" + "".join(f"{d[k]:8.3f}" for k in ("q01", "q05", "q25", "median", "q75", "q95")))
    w(f"samples closer to train than 99 % of test images: {r['frac_closer_than_real_q01']:.2%}")


def run_info(path):
    """What a row from a snapshot of an mnist_gan.py run should say about its
    training: {"epoch", "train_seconds", "run_config"} from RUN/metrics.jsonl and
    RUN/checkpoint.npz for RUN/snapshots/<G>_epoch_NNNN.npz (or RUN/averages/, where
    select_snapshot.py --save puts a snapshot average); {} otherwise."""
    import re
    from npgan import checkpoint
    m = re.match(r"(.+)_epoch_(\d+)\.npz$", os.path.basename(path))
    run = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    log = os.path.join(run, "metrics.jsonl")
    if not (m and os.path.basename(os.path.dirname(os.path.abspath(path))) in ("snapshots", "averages")
            and os.path.exists(log)):
        return {}
    epoch = int(m.group(2))
    with open(log) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    info = {"generator": m.group(1), "epoch": epoch,
            "train_seconds": sum(r.get("seconds", 0.0) for r in recs if r["epoch"] <= epoch)}
    ck = os.path.join(run, "checkpoint.npz")
    if os.path.exists(ck):
        info["run_config"] = checkpoint.load(ck)["config"]
    return info


def sources(a, data, log):
    """(label, samples, parzen validation images, info) for every row asked for."""
    train_x, valid_x = data["train"], data["valid"]
    if a.real:
        # unseen by G; the reference classifier was trained on all 60,000 training
        # images, these included (99.45 % accuracy on them vs 99.04 % on test)
        yield "real: MNIST valid (train[50000:], unseen by G, in the classifier's training set)", \
            valid_x, train_x, {}
    for b in a.baseline:
        rng = np.random.default_rng(a.seed)
        if b == "noise":
            yield "uniform noise", rng.random((a.n, 784), dtype=np.float32), valid_x, {}
        else:
            k = a.kmeans_k
            log(f"k-means, k={k}, on the {len(train_x)} training images")
            c = cluster.kmeans(train_x, k, a.seed, iters=20)[0]   # a blurry "generator" Parzen rates highly
            yield (f"k-means centroids (k={k}, each x{a.n // k})", np.repeat(c, a.n // k, axis=0),
                   valid_x, {})
    for path in a.samples:
        yield path, np.load(path, allow_pickle=False), valid_x, {}
    for path in a.checkpoint:
        plain = not sampling.is_checkpoint(path)
        for g in (["G"] if plain else a.generator):
            log(f"sampling {a.n} images from {path} ({g}, seed {a.seed})")
            try:
                G = sampling.load_generator(path, g)
            except (ValueError, KeyError) as e:         # a CheckpointError is a ValueError
                raise SystemExit(f"error: {e}")
            G.z_prior = a.z or G.z_prior
            yield (f"{path}" + ("" if plain else f" [{g}]"), sampling.sample(G, a.n, rng=a.seed),
                   valid_x, run_info(path) if plain else {})


def markdown(rows):
    head = ("| samples | Parzen LL +- se | FD | classifier score | classes covered | precision | "
            "recall | median dist. to nearest train image |\n|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        p = r.get("parzen")
        pz = f"{p['ll_mean']:.1f} +- {p['ll_se']:.1f}" if p else "-"
        lines.append(f"| {r['source']} | {pz} | {r['fd']:.2f} | {r['score']:.2f} | "
                     f"{r['classes_covered']} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['nn_train']['median']:.2f} (test images: {r['nn_train_real']['median']:.2f}) |")
    return head + "\n".join(lines) + "\n"


def save_sample_grid(x, label, folder):
    """The first 100 (or as many whole rows of 10 as there are) images of x (N, 784) as a
    grid at FOLDER/samples_<label's file name, without extension>.png -> its path."""
    import re
    from npgan.images import save_grid
    head, _, tail = label.partition(" ")            # "PATH [generator]", or words
    parts = (os.path.splitext(os.path.basename(head.rstrip("/")))[0], tail)
    name = "_".join(t for t in (re.sub(r"[^A-Za-z0-9._-]+", "_", p).strip("_") for p in parts) if t)
    os.makedirs(folder, exist_ok=True)
    rows = min(10, len(x) // 10)
    return save_grid(x, os.path.join(folder, f"samples_{name}.png"), rows, 10)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", nargs="+", default=[],
                    help=".npy files of samples, (N, 784) or (N, 28, 28) float in [0, 1]")
    ap.add_argument("--checkpoint", nargs="+", default=[],
                    help="trainer checkpoints .npz, or G state_dict .npz files")
    ap.add_argument("--generator", nargs="+", default=["G"],
                    help="with a trainer --checkpoint: G and/or ema<decay>, e.g. G ema0.9999")
    ap.add_argument("--real", action="store_true", help="real baseline: the 10,000 MNIST valid images")
    ap.add_argument("--baseline", nargs="+", default=[], choices=["noise", "kmeans"],
                    help="reference rows: uniform noise; k-means centroids of the training images")
    ap.add_argument("--kmeans-k", type=int, default=1000)
    ap.add_argument("-n", type=int, default=10000, help="samples to draw from a checkpoint/baseline")
    ap.add_argument("--seed", type=int, default=12345, help="z seed for --checkpoint")
    ap.add_argument("--z", choices=["gaussian", "uniform"], default=None,
                    help="noise prior for --checkpoint (default: the checkpoint's; plain G weights: gaussian)")
    ap.add_argument("--no-parzen", action="store_true")
    ap.add_argument("--classifier", default=None, help="classifier weights (default: the shipped ones)")
    ap.add_argument("--data-dir", default=REPO_DATA if os.path.isdir(REPO_DATA) else None)
    ap.add_argument("--json", help="also write the results (a list, one per row) to this file")
    ap.add_argument("--markdown", help="also write a markdown table of the rows to this file")
    ap.add_argument("--grid", metavar="DIR",
                    help="also save each row's first 100 samples as DIR/samples_<source>.png (10 x 10)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    a = ap.parse_args(argv)
    if not (a.samples or a.checkpoint or a.real or a.baseline):
        ap.error("nothing to evaluate: give --samples, --checkpoint, --real or --baseline")

    t0 = time.time()
    say = None if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    log = say or (lambda m: None)
    data = {s: load_mnist(s, data_dir=a.data_dir)[0] for s in ("train", "valid", "test")}
    rows = []
    try:
        model = None
        if a.classifier:
            from npgan.classifier import load_classifier
            model = load_classifier(a.classifier)
        ref = None
        command = "python " + " ".join([os.path.relpath(__file__)] + list(sys.argv[1:] if argv is None
                                                                           else argv))
        for label, x, parzen_valid, info in sources(a, data, log):
            t1 = time.time()
            x = metrics.check_images(x, label, min_count=10)   # fail before any long work
            if a.grid:
                log(f"sample grid -> {save_sample_grid(x, label, a.grid)}")
            if ref is None:
                ref = metrics.RealReference(data["test"], data["train"], model=model, progress=say)
            log(f"== {label}")
            r = metrics.evaluate(x, ref, progress=say)
            p = None
            if not a.no_parzen:
                log("Parzen window log-likelihood")
                p = parzen.evaluate(x, data["test"], parzen_valid, progress=not a.quiet)
            print(f"\n== {label}   ({time.time() - t1:.0f} s)")
            report(r, p)
            r["source"] = label
            r.update(info, command=command)
            if p is not None:
                r["parzen"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in p.items()}
            rows.append(r)
    except metrics.MetricsError as e:
        raise SystemExit(f"error: {e}")
    print(f"\n{len(rows)} row(s) in {time.time() - t0:.0f} s")
    if a.json:
        files.write_text(a.json, json.dumps(rows, indent=1))
    if a.markdown:
        files.write_text(a.markdown, markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
