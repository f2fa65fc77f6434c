"""InfoGAN (Chen et al., 2016) with the paper's MNIST networks (issue #18, item 2).

    python examples/infogan.py                          # 5 seeds x 5 epochs, then the summary
    python examples/infogan.py --seeds 0 --epochs 1     # one short run
    python examples/infogan.py --summarize-only         # re-read OUT/seed_*/result.json

Algorithm (per seed):
    G: [z ~ N(0, I_100), c_cat ~ Cat(10) one-hot, c_cont ~ U(-1, 1)^2] -> 1200 -> 1200 -> 784
    D: the paper's maxout D; Q: a linear head on D's last hidden layer (240 units)
       -> logits of q(c_cat | x), means of q(c_cont | x) (std 1, or learned: --learn-std);
       --q-no-dropout: Q reads a second pass of G(z, c) through D's body without dropout
    for each minibatch x of 100 MNIST images (train[:50000]), one simultaneous update:
        D, Q:  0.5 [BCE(D(x), 1) + BCE(D(G(z, c)), 0)] + lam E[-log q(c | G(z, c))]
        G   :  BCE(D(G(z, c)), 1)                        + lam E[-log q(c | G(z, c))]
        (lam = 1; Adam, beta1 0.5, D 2e-4, G 1e-3: InfoGAN's; --optimizer sgd: the paper's SGD)
    evaluate: 1,000 samples per value of c_cat (c_cont ~ U(-1, 1)); the reference classifier
       labels them; agreement = fraction of samples whose c_cat maps to their label under the
       best one-to-one map of code values to classes (Hungarian, npgan.metrics.best_assignment);
       also: the same agreement for Q's c_cat on the 10,000 real test images, Q's recovery of
       the codes, classifier score, classes covered, Frechet distance in classifier features.
Summary: agreement mean +- std (and min..max) over seeds -> results/future_work/infogan.json;
traversals of c_cont (rows = c_cat value ordered by its matched class, columns = c_k from -2
to 2, the other code 0, z fixed per row) -> docs/figures/future_infogan_traversal.png.

Each seed's run directory (OUT/seed_S) holds G.npz, D.npz, metrics.jsonl, result.json,
samples.png, traversal.png and epoch_EEE/{G,D}.npz after every epoch; a finished seed is not
retrained (delete its result.json); --evaluate-epoch E scores the seeds' epoch-E weights.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import checkpoint, classifier, datasets, files, images, infogan, models, plots, settings  # noqa: E402
from npgan import cluster, metrics  # noqa: E402
from npgan.progress import Progress  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(ROOT, "data", "mnist")
TRAVERSE = np.linspace(-2.0, 2.0, 9)     # the continuous code's values in the traversal figure


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--max-steps", type=int, default=None, help="steps per epoch (default: all)")
    p.add_argument("--lam", type=float, default=1.0, help="weight of the mutual-information term")
    p.add_argument("--lam-cont", type=float, default=None,
                   help="weight of its continuous-code part (default: --lam; InfoGAN weights it less)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="adam",
                   help="adam: InfoGAN's (beta1 .5; D 2e-4, G 1e-3); sgd: the paper's (give --lr-d 0.1 "
                        "--lr-g 0.1; the code stayed unused, see docs/future_work.md)")
    p.add_argument("--lr-d", type=float, default=2e-4)
    p.add_argument("--lr-g", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.5, help="SGD momentum")
    p.add_argument("--init-from", default=None,
                   help="checkpoint.npz of examples/mnist_gan.py: start G and D from its trained "
                        "(unconditional, unsupervised) pair, G's code rows zero, Q fresh (fine-tuning)")
    p.add_argument("--code-init", choices=["zero", "latent", "cluster"], default="zero",
                   help="with --init-from: G's code rows zero; each c_cat value a random shift of the "
                        "trained G's latent; or the mean latent of one k-means cluster of the trained G's "
                        "samples in D's first-layer features, no labels (npgan.infogan.from_unconditional)")
    p.add_argument("--code-spread", type=float, default=0.3,
                   help="with --code-init cluster: G(z, c) = G_trained(SPREAD z + mu_c)")
    p.add_argument("--kmeans-restarts", type=int, default=3,
                   help="with --code-init cluster: k-means restarts (the lowest inertia is kept)")
    p.add_argument("--kmeans-check", type=int, default=None, metavar="N",
                   help="no training: for each seed, the first N k-means restarts of the cluster code "
                        "init with their inertia and their agreement with the reference classifier's "
                        "labels of the samples (a diagnostic: the init itself never sees labels) -> --results")
    p.add_argument("--code-scale", type=float, default=1.0,
                   help="the codes enter G multiplied by this (with --init-from: 10, as the "
                        "conditional GAN's --label-scale)")
    p.add_argument("--learn-std", action="store_true", help="Q also outputs log std of c_cont")
    p.add_argument("--q-no-dropout", action="store_true",
                   help="Q reads a second pass of G's samples through D's body without dropout")
    p.add_argument("--train-size", type=int, default=50000)
    p.add_argument("--eval-per-code", type=int, default=1000, help="samples per c_cat value")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="runs/infogan", help="run directory (one seed_S inside per seed)")
    p.add_argument("--results", default=os.path.join(ROOT, "results", "future_work", "infogan.json"))
    p.add_argument("--figure", default=os.path.join(ROOT, "docs", "figures", "future_infogan_traversal.png"))
    p.add_argument("--figure-seed", type=int, default=None,
                   help="seed whose traversal goes to --figure (default: the first of --seeds)")
    p.add_argument("--summarize-only", action="store_true")
    p.add_argument("--evaluate-epoch", type=int, default=None,
                   help="no training: evaluate the G, D each seed saved after this epoch")
    p.add_argument("--no-summary", action="store_true", help="train/evaluate the seeds only")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def config_of(args):
    cfg = {k: getattr(args, k) for k in ("epochs", "max_steps", "lam", "optimizer", "lr_d", "lr_g", "momentum",
                                         "learn_std", "q_no_dropout", "train_size", "eval_per_code")}
    if args.init_from:                     # only when used: earlier results keep their config
        cfg["init_from"] = os.path.basename(args.init_from)
        cfg["init_from_sha256"] = files.sha256(args.init_from)
        cfg["code_init"] = args.code_init
        if args.code_init == "cluster":
            cfg["code_spread"] = args.code_spread
            if args.kmeans_restarts != 3:
                cfg["kmeans_restarts"] = args.kmeans_restarts
    if args.code_scale != 1.0:
        cfg["code_scale"] = args.code_scale
    if args.lam_cont is not None and args.lam_cont != args.lam:
        cfg["lam_cont"] = args.lam_cont
    return cfg


def make_trainer(args, seed, train_x, G, D):
    return infogan.InfoGANTrainer(G, D, train_x, lam=args.lam, lr_d=args.lr_d, lr_g=args.lr_g,
                                  seed=seed, q_dropout=not args.q_no_dropout,
                                  optimizer=args.optimizer, momentum=args.momentum,
                                  code_scale=args.code_scale, lam_cont=args.lam_cont)


def trained_pair(state, seed):
    """The unconditional (G, D) of a mnist_gan.py checkpoint's state, as the paper's models."""
    G, D = models.paper_mnist(seed)
    G.load_state_dict(state["G"])
    D.load_state_dict(state["D"])
    return G, D


# -- one seed -----------------------------------------------------------------------------------
def train_seed(args, seed, train_x, log=print):
    G, D = infogan.build(seed, train_x, learn_std=args.learn_std)
    if args.init_from:
        state = checkpoint.load(args.init_from)["state"]
        means = None
        if args.code_init == "cluster":           # where the trained pair puts 10 kinds of sample
            means, sizes = infogan.cluster_latent_means(*trained_pair(state, seed), D.n_cat, rng=seed,
                                                        restarts=args.kmeans_restarts)
            log(f"seed {seed}: k-means of the trained G's samples in D's first layer, cluster sizes "
                f"{sizes.tolist()}")
        infogan.from_unconditional(G, D, state["G"], state["D"], code_init=args.code_init,
                                   code_scale=args.code_scale, rng=seed, means=means, spread=args.code_spread)
    trainer = make_trainer(args, seed, train_x, G, D)
    out = os.path.join(args.out, f"seed_{seed}")
    lines = []
    t0 = time.time()
    for _ in range(args.epochs):
        steps = trainer.data.shape[0] // trainer.batch_size
        steps = steps if args.max_steps is None else min(steps, args.max_steps)
        bar = Progress(steps, f"seed {seed} epoch {trainer.epoch + 1}", not args.no_progress,
                       unit="steps", every=10)
        rec = trainer.train_epoch(on_step=lambda t, s: bar.update(1), max_steps=args.max_steps)
        bar.close()
        rec["seconds"] = time.time() - t0
        agree = quick_agreement(trainer)
        rec["agreement_1000"] = agree
        lines.append(json.dumps(rec) + "\n")
        files.write_text(os.path.join(out, "metrics.jsonl"), "".join(lines))
        snap = os.path.join(out, f"epoch_{trainer.epoch:03d}")     # every epoch: --evaluate-epoch
        save_npz(os.path.join(snap, "G.npz"), G.state_dict())
        save_npz(os.path.join(snap, "D.npz"), D.state_dict())
        log(f"seed {seed} epoch {rec['epoch']}: D {rec['d_loss']:.3f} G {rec['g_loss']:.3f} "
            f"D(x) {rec['d_real']:.2f} D(G(z)) {rec['d_fake']:.2f} -log q(cat) {rec['mi_cat']:.3f} "
            f"-log q(cont) {rec['mi_cont']:.3f} MI bound {rec['mi_lower_bound']:.2f} nats, "
            f"agreement (1,000 samples) {agree:.3f}, {rec['seconds']:.0f}s")
    save_npz(os.path.join(out, "G.npz"), G.state_dict())
    save_npz(os.path.join(out, "D.npz"), D.state_dict())
    return trainer, time.time() - t0


def quick_agreement(trainer, n=1000):
    """Agreement of c_cat with the reference classifier on n samples (a progress number)."""
    rng = np.random.default_rng(99)
    cat = np.repeat(np.arange(trainer.n_cat), n // trainer.n_cat)
    cont = rng.uniform(-1, 1, (len(cat), trainer.n_cont)).astype(np.float32)
    labels = classifier.classify(reference(), trainer.generate(cat, cont, rng)).log_probs.argmax(1)
    return metrics.cluster_agreement(cat, labels)[0]


_REF = {}


def reference():
    if "clf" not in _REF:
        _REF["clf"] = classifier.load_classifier()
    return _REF["clf"]


def interleave(rows, n_groups):
    """Rows grouped by code value (group g = rows g*m .. (g+1)*m - 1) -> the same rows
    dealt round the groups (row i of each group in turn), so that each consecutive part
    the classifier score splits into holds every code value equally. (Scored in code
    order, each part held one code value and the 'score' measured the spread of classes
    inside a code value: ~1 for a good code.)"""
    rows = np.asarray(rows)
    m = len(rows) // n_groups
    if m * n_groups != len(rows):
        raise ValueError(f"interleave: {len(rows)} rows do not split into {n_groups} equal groups")
    return rows.reshape(n_groups, m, *rows.shape[1:]).swapaxes(0, 1).reshape(rows.shape)


def evaluate_seed(trainer, test_x, test_y, test_features, per_code):
    """The numbers of one trained seed (see the module docstring)."""
    n_cat, n_cont = trainer.n_cat, trainer.n_cont
    rng = np.random.default_rng(2016)                        # the same draws for every seed
    cat = np.repeat(np.arange(n_cat), per_code)
    cont = rng.uniform(-1, 1, (len(cat), n_cont)).astype(np.float32)
    samples = trainer.generate(cat, cont, rng)
    out = classifier.classify(reference(), samples)
    labels = out.log_probs.argmax(axis=1)
    agree, mapping = metrics.cluster_agreement(cat, labels, n_cat, 10)
    counts = metrics.confusion(cat, labels, n_cat, 10)
    q_cat, q_cont = trainer.predict_codes(samples)
    test_codes, _ = trainer.predict_codes(test_x)
    agree_test, map_test = metrics.cluster_agreement(test_codes, test_y, n_cat, 10)
    score, score_sd = metrics.classifier_score(interleave(out.log_probs, n_cat))
    hist = metrics.class_histogram(out.log_probs)
    return {
        "agreement": agree,
        "mapping_code_to_class": mapping.tolist(),
        "confusion_code_by_class": counts.tolist(),
        "purity_per_code": (counts.max(axis=1) / counts.sum(axis=1)).round(4).tolist(),
        "agreement_q_on_test_images": agree_test,
        "q_recovers_cat": float((q_cat == cat).mean()),
        "q_cont_correlation": [float(np.corrcoef(q_cont[:, k], cont[:, k])[0, 1]) for k in range(n_cont)],
        "classifier_score": score, "classifier_score_sd": score_sd,
        "classes_covered": metrics.classes_covered(hist),
        "class_histogram": hist.tolist(),
        "frechet_distance": float(metrics.frechet_distance_from_features(out.features, test_features)),
        "n_samples": int(len(samples)),
    }, samples


def traversal(trainer, mapping, code, seed=7):
    """Images (n_cat rows x len(TRAVERSE) columns): row r is the c_cat value matched to
    class r (by ``mapping``), columns c_code = TRAVERSE, the other codes 0, one z per row."""
    n_cat, n_cont = trainer.n_cat, trainer.n_cont
    order = np.argsort(mapping)              # code values by their matched class
    z = np.random.default_rng(seed).standard_normal((n_cat, trainer.z_dim), dtype=np.float32)
    cat = np.repeat(order, len(TRAVERSE))
    cont = np.zeros((len(cat), n_cont), dtype=np.float32)
    cont[:, code] = np.tile(TRAVERSE, n_cat)
    return trainer.generate(cat, cont, None, z=np.repeat(z, len(TRAVERSE), axis=0)), order


def traversal_figure(trainer, mapping, path, title):
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, trainer.n_cont, figsize=(4.6 * trainer.n_cont, 5.4))
    for k, ax in enumerate(np.atleast_1d(axes)):
        imgs, order = traversal(trainer, mapping, k)
        rows, cols = trainer.n_cat, len(TRAVERSE)
        canvas = np.ones((rows * 29 + 1, cols * 29 + 1))
        for i in range(rows):
            for j in range(cols):
                canvas[1 + 29 * i:29 * i + 29, 1 + 29 * j:29 * j + 29] = imgs[i * cols + j].reshape(28, 28)
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks(14.5 + 29 * np.arange(cols))
        ax.set_xticklabels([f"{v:g}" for v in TRAVERSE])
        ax.set_yticks(14.5 + 29 * np.arange(rows))
        ax.set_yticklabels([f"c={c}->{mapping[c]}" for c in order], fontsize=8)
        ax.set_xlabel(f"continuous code c{k + 1} (trained on [-1, 1])")
    fig.suptitle(title, fontsize=10)
    plots.save(fig, path, rect=(0, 0, 1, 0.95))


def save_npz(path, arrays):
    with files.atomic_write(path) as f:
        np.savez(f, **arrays)


def load_seed(args, seed, epoch, train_x):
    """A trainer holding the G and D a run saved after ``epoch`` (OUT/seed_S/epoch_EEE)."""
    snap = os.path.join(args.out, f"seed_{seed}", f"epoch_{epoch:03d}")
    G, D = infogan.build(seed, train_x[:100], learn_std=args.learn_std)
    for module, name in ((G, "G.npz"), (D, "D.npz")):
        with np.load(os.path.join(snap, name)) as z:
            module.load_state_dict({k: z[k] for k in z.files})
    trainer = make_trainer(args, seed, train_x[:100], G, D)
    with open(os.path.join(args.out, f"seed_{seed}", "metrics.jsonl")) as f:
        trainer.history = [json.loads(line) for line in f][:epoch]
    trainer.epoch = epoch
    return trainer, sum(h.get("seconds", 0) for h in trainer.history[-1:])


def run_seed(args, seed, train_x, test):
    out = os.path.join(args.out, f"seed_{seed}")
    res_path = os.path.join(out, "result.json")
    if os.path.exists(res_path) and args.evaluate_epoch is None:
        print(f"seed {seed}: {res_path} exists, kept")
        return
    if args.evaluate_epoch is not None:        # a run stopped early: score its saved epoch
        trainer, seconds = load_seed(args, seed, args.evaluate_epoch, train_x)
        args.epochs = args.evaluate_epoch
    else:
        trainer, seconds = train_seed(args, seed, train_x)
    res, samples = evaluate_seed(trainer, *test, args.eval_per_code)
    res.update(seed=seed, train_seconds=round(seconds, 1), config=config_of(args),
               history=trainer.history)
    images.save_grid(samples[::max(args.eval_per_code // 10, 1)][:100], os.path.join(out, "samples.png"), 10)
    files.write_text(res_path, json.dumps(res, indent=1))       # the numbers first: a figure
    try:                                                        # cannot lose them
        traversal_figure(trainer, res["mapping_code_to_class"], os.path.join(out, "traversal.png"),
                         f"InfoGAN seed {seed}: agreement {res['agreement']:.3f}")
    except ImportError as e:
        print(f"seed {seed}: no traversal figure ({e}; pip install matplotlib, then rerun with "
              f"--evaluate-epoch {args.epochs})", flush=True)
    print(f"seed {seed}: agreement {res['agreement']:.3f} (code -> class {res['mapping_code_to_class']}), "
          f"Q on test images {res['agreement_q_on_test_images']:.3f}, score {res['classifier_score']:.2f}, "
          f"FD {res['frechet_distance']:.1f}, {seconds:.0f}s", flush=True)


def summarize(args):
    """Gather OUT/seed_*/result.json for --seeds -> the results JSON and the figure."""
    per = []
    for s in args.seeds:
        path = os.path.join(args.out, f"seed_{s}", "result.json")
        if os.path.exists(path):
            with open(path) as f:
                per.append(json.load(f))
        else:
            print(f"seed {s}: no result ({path})")
    if not per:
        sys.exit("no finished seed to summarize")

    def stat(key):
        v = np.array([r[key] for r in per], dtype=float)
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "min": float(v.min()), "max": float(v.max()), "per_seed": v.round(4).tolist()}
    summary = {
        "method": "InfoGAN on the paper's MNIST G (input 100+10+2) and maxout D + linear Q head",
        "command": "python examples/infogan.py " + " ".join(sys.argv[1:]),
        "seeds": [r["seed"] for r in per],
        "config": per[-1]["config"],
        "config_per_seed": {r["seed"]: r["config"] for r in per},
        "agreement": stat("agreement"),
        "agreement_q_on_test_images": stat("agreement_q_on_test_images"),
        "q_recovers_cat": stat("q_recovers_cat"),
        "classifier_score": stat("classifier_score"),
        "classes_covered": stat("classes_covered"),
        "frechet_distance": stat("frechet_distance"),
        "train_seconds": stat("train_seconds"),
        "per_seed": [{k: r[k] for k in ("seed", "agreement", "mapping_code_to_class", "purity_per_code",
                                        "agreement_q_on_test_images", "q_recovers_cat",
                                        "q_cont_correlation", "classifier_score", "classes_covered",
                                        "frechet_distance", "train_seconds")} for r in per],
        "machine": settings.machine(),
    }
    files.write_text(args.results, json.dumps(summary, indent=1))
    a = summary["agreement"]
    print(f"agreement over {len(per)} seeds: {a['mean']:.3f} +- {a['std']:.3f} (std), "
          f"min {a['min']:.3f}, max {a['max']:.3f}; per seed {a['per_seed']} -> {args.results}")
    return summary


def figure_from_seed(args, seed, train_x):
    """Rebuild the trained seed's G from its G.npz and draw its traversal to --figure."""
    out = os.path.join(args.out, f"seed_{seed}")
    with open(os.path.join(out, "result.json")) as f:
        res = json.load(f)
    if args.evaluate_epoch is not None:
        trainer = load_seed(args, seed, args.evaluate_epoch, train_x)[0]
    else:
        G, D = infogan.build(seed, train_x[:100], learn_std=args.learn_std)
        with np.load(os.path.join(out, "G.npz")) as z:
            G.load_state_dict({k: z[k] for k in z.files})
        trainer = make_trainer(args, seed, train_x[:100], G, D)
    traversal_figure(trainer, res["mapping_code_to_class"], args.figure,
                     f"InfoGAN (seed {seed}, {res['config']['epochs']} epochs): agreement "
                     f"{res['agreement']:.3f}; rows: c_cat value -> matched class")


def kmeans_check(args, n=10000):
    """Each restart of the cluster code init (the same draws as training makes):
    inertia, and how well its clusters match the reference classifier's labels."""
    state = checkpoint.load(args.init_from)["state"]
    rows = []
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        _, x, f = infogan.generator_features(*trained_pair(state, seed), n, rng)
        labels = classifier.classify(reference(), x).log_probs.argmax(axis=1)
        for r in range(args.kmeans_check):
            _, lab, inertia = cluster.kmeans(f, infogan.N_CAT, rng=rng, restarts=1)
            purity = metrics.cluster_agreement(lab, labels, infogan.N_CAT, 10)[0]
            rows.append({"seed": seed, "restart": r, "inertia": inertia, "cluster_label_agreement": purity})
            print(f"seed {seed} restart {r}: inertia {inertia:.1f}, clusters vs classifier labels {purity:.3f}")
        mine = [row for row in rows if row["seed"] == seed]
        for k in (3, 10):
            if k <= len(mine):
                pick = min(mine[:k], key=lambda row: row["inertia"])
                print(f"seed {seed}: {k} restarts keep restart {pick['restart']} "
                      f"({pick['cluster_label_agreement']:.3f})")
    inert = np.array([r["inertia"] for r in rows])
    agree = np.array([r["cluster_label_agreement"] for r in rows])
    corr = float(np.corrcoef(inert, agree)[0, 1]) if len(rows) > 2 else None
    print(f"correlation of inertia with agreement over {len(rows)} restarts: {corr}")
    res = {"command": "python " + " ".join(sys.argv), "n_samples": n, "rows": rows,
           "correlation_inertia_agreement": corr}
    files.write_text(args.results, json.dumps(res, indent=1))
    return res


def main(argv=None):
    args = parse_args(argv)
    npgan.settings.configure(blas_threads=1, gemm_split=False)
    train_x, _ = datasets.load_mnist("train", data_dir=args.data_dir, fallback=DEFAULT_DATA)
    train_x = train_x[:args.train_size]
    if args.kmeans_check is not None:
        if not args.init_from:
            sys.exit("--kmeans-check needs --init-from (the trained pair whose samples are clustered)")
        return kmeans_check(args)
    if not args.summarize_only:
        test_x, test_y = datasets.load_mnist("test", data_dir=args.data_dir, fallback=DEFAULT_DATA)
        test_features = classifier.classify(reference(), test_x).features
        for seed in args.seeds:
            run_seed(args, seed, train_x, (test_x, test_y, test_features))
    if args.no_summary:
        return None
    summary = summarize(args)
    fig_seed = args.figure_seed if args.figure_seed is not None else summary["seeds"][0]
    if args.figure:
        figure_from_seed(args, fig_seed, train_x)
        print(f"traversal figure (seed {fig_seed}) -> {args.figure}")
    return summary


if __name__ == "__main__":
    main()
