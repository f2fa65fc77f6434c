"""Conditional GAN on MNIST (paper Section 7, item 1; Mirza & Osindero 2014).

    python examples/conditional_gan.py --out /work/runs/cond            # train (resumable), then evaluate
    python examples/conditional_gan.py --out /work/runs/cond --resume   # continue / evaluate a stopped run

Algorithm (npgan.conditional; GANTrainer plays the game on pairs unchanged):

    data pairs     (x, y):        x an MNIST training image, y its one-hot label
    generated pairs (G(z, y), y): z ~ N(0, I_100), y ~ uniform over 10 classes
    G: [z | y] 110 -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid   (the paper's G, +10 inputs)
    D: [x | y] 794 -> maxout 240x5 -> maxout 240x5 -> logit  (the paper's D, +10 inputs;
                                                               input dropout on x only)
    for each minibatch of 100 pairs: D and G updated at once (the authors' k = 1),
        D: minimise 0.5 [BCE(D(x, y), 1) + BCE(D(G(z, y'), y'), 0)]
        G: minimise BCE(D(G(z, y'), y'), 1)                 (non-saturating)

--init-from CHECKPOINT starts G and D from a trained unconditional pair
(examples/mnist_gan.py), the label's input weights zero: the pair then
computes the unconditional game exactly, and training only has to teach D to
check the label and G to follow it (fine-tuning; what the measured run did).

Evaluation (after the last epoch): 1,000 samples per class (10,000 in all) are
classified by the reference classifier (npgan.classifier): accuracy against the
label asked for; Fréchet distance in its features, per class (against the test
images of that class) and overall (against all 10,000 test images); the same
numbers for real data (held-out validation images vs test) as a floor.
Results: results/future_work/conditional_gan.json; grid, one row per digit:
docs/figures/future_conditional_grid.png.
"""
import argparse
import json
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import checkpoint, classifier, conditional, datasets, files, images, optim, train  # noqa: E402
from npgan.metrics import feature_statistics, frechet_distance  # noqa: E402
from npgan.progress import Progress  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_DATA = os.path.join(ROOT, "data", "mnist")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                   help="adam: Adam(lr, betas (0.5, 0.999)); sgd: the paper's SGD lr 0.1, momentum .5->.7, decay")
    p.add_argument("--lr", type=float, default=None, help="default 2e-4 (adam) or 0.1 (sgd)")
    p.add_argument("--init-from", default=None,
                   help="a trainer checkpoint of the unconditional paper GAN (examples/mnist_gan.py): start "
                        "from its G and D, the label's input weights zero (fine-tuning)")
    p.add_argument("--label-scale", type=float, default=1.0,
                   help="the one-hot label enters G's and D's first layer as S*y (10: about a digit's norm)")
    p.add_argument("--ema", type=float, nargs="*", default=[0.999])
    p.add_argument("--train-size", type=int, default=50000)
    p.add_argument("--per-class", type=int, default=1000, help="evaluation samples per class")
    p.add_argument("--n-ref", type=int, default=10000,
                   help="real images compared with: the first N test (and validation) images")
    p.add_argument("--out", default="runs/cond")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint-minutes", type=float, default=3.0)
    p.add_argument("--results", default=os.path.join(ROOT, "results", "future_work", "conditional_gan.json"))
    p.add_argument("--figure", default=os.path.join(ROOT, "docs", "figures", "future_conditional_grid.png"))
    p.add_argument("--skip-eval", action="store_true", help="train only")
    p.add_argument("--no-real-floor", action="store_true", help="skip the real-data row (validation vs test)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.lr is None:
        args.lr = 2e-4 if args.optimizer == "adam" else 0.1
    return args


def config_of(args):
    cfg = {k: getattr(args, k) for k in ("seed", "optimizer", "lr", "ema", "train_size")}
    if args.init_from:
        cfg["init_from"] = args.init_from
    if args.label_scale != 1.0:
        cfg["label_scale"] = args.label_scale
    return cfg


def build(args, train_x, train_y):
    G, D = conditional.paper_conditional(args.seed, train_x)
    G.label_scale = D.label_scale = args.label_scale
    if args.init_from:
        state = checkpoint.load(args.init_from)["state"]
        conditional.from_unconditional(G, D, state["G"], state["D"])
    if args.optimizer == "adam":
        opt_g = optim.Adam(G.parameters(), lr=args.lr, betas=(0.5, 0.999))
        opt_d = optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
        lr_s = mom_s = None
    else:
        opt_g = optim.SGD(G.parameters(), lr=args.lr, momentum=0.5)
        opt_d = optim.SGD(D.parameters(), lr=args.lr, momentum=0.5)
        lr_s, mom_s = train.paper_schedules(args.lr)
    return train.GANTrainer(G, D, conditional.pack(train_x, train_y), batch_size=100,
                            opt_g=opt_g, opt_d=opt_d, lr_schedule=lr_s, momentum_schedule=mom_s,
                            ema_decays=tuple(args.ema), seed=args.seed,
                            sample_z=conditional.label_z_sampler())


def generators(trainer):
    gs = {"G": trainer.G}
    for d in trainer.emas:
        g = conditional.ConditionalGenerator()
        g.label_scale = trainer.G.label_scale
        gs[f"G_ema{d}"] = trainer.averaged_generator(d, g)
    return gs


def train_loop(args, trainer, ck_path):
    cfg = config_of(args)
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True
        print("\nstopping: saving a checkpoint after this step", flush=True)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _epochs(args, trainer, ck_path, cfg, stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _epochs(args, trainer, ck_path, cfg, stop):
    last = {"t": time.time()}

    def save():
        checkpoint.save(ck_path, trainer.state_dict(), cfg)
        last["t"] = time.time()

    def should_stop():
        if stop["flag"]:
            return True
        if time.time() - last["t"] > 60 * args.checkpoint_minutes:
            save()
        return False

    while trainer.epoch < args.epochs:
        bar = Progress(trainer.batches_left(), f"epoch {trainer.epoch + 1}", not args.no_progress,
                       unit="steps", every=10)
        t0 = time.time()
        rec = trainer.train_epoch(on_step=lambda t, s: bar.update(1), should_stop=should_stop)
        bar.close()
        if rec is None:
            save()
            print(f"checkpoint at epoch {trainer.epoch}, step {trainer.step_count}: continue with --resume")
            return False
        rec["seconds"] = time.time() - t0
        trainer.history[-1] = rec
        for name, G in generators(trainer).items():     # fixed z, one row per digit
            grid = conditional.generate(G, np.repeat(np.arange(10), 10), rng=2014)
            images.save_grid(grid, os.path.join(args.out, "samples", f"{name}_epoch_{trainer.epoch:04d}.png"), 10)
        save()
        print(f"epoch {trainer.epoch:3d}  D {rec['d_loss']:.3f}  G {rec['g_loss']:.3f}  "
              f"D(x,y) {rec['d_real']:.3f}  D(G(z,y),y) {rec['d_fake']:.3f}  {rec['seconds']:.0f}s", flush=True)
    return True


def evaluate(G, model, test_out, test_y, per_class, seed=12345):
    """Accuracy of the reference classifier on G's samples against the labels asked
    for; FD per class (vs that class's test images) and overall (vs all test)."""
    labels = np.repeat(np.arange(10), per_class)
    x = conditional.generate(G, labels, rng=seed)
    out = classifier.classify(model, x)
    pred = out.log_probs.argmax(1)
    res = {"n": len(x), "accuracy": float((pred == labels).mean()),
           "accuracy_per_class": [float((pred[labels == c] == c).mean()) for c in range(10)],
           "fd": frechet_distance(*feature_statistics(out.features), *feature_statistics(test_out.features)),
           "fd_per_class": [frechet_distance(*feature_statistics(out.features[labels == c]),
                                             *feature_statistics(test_out.features[test_y == c]))
                            for c in range(10)]}
    res["fd_per_class_mean"] = float(np.mean(res["fd_per_class"]))
    return res, x


def real_floor(model, test_out, test_y, valid_x, valid_y):
    """The same numbers for real images: validation images (not trained on) vs test."""
    out = classifier.classify(model, valid_x)
    pred = out.log_probs.argmax(1)
    fd_c = [frechet_distance(*feature_statistics(out.features[valid_y == c]),
                             *feature_statistics(test_out.features[test_y == c])) for c in range(10)]
    return {"n": len(valid_x), "accuracy": float((pred == valid_y).mean()),
            "fd": frechet_distance(*feature_statistics(out.features), *feature_statistics(test_out.features)),
            "fd_per_class": fd_c, "fd_per_class_mean": float(np.mean(fd_c))}


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    train_x, train_y = datasets.load_mnist("train", fallback=DEFAULT_DATA)
    train_x, train_y = train_x[:args.train_size], train_y[:args.train_size]
    trainer = build(args, train_x, train_y)
    ck_path = os.path.join(args.out, "checkpoint.npz")
    if args.resume:
        trainer.load_state_dict(checkpoint.load(ck_path, config=config_of(args))["state"])
        print(f"resumed from {ck_path} at epoch {trainer.epoch}, step {trainer.step_count}")
    elif os.path.exists(ck_path):
        sys.exit(f"{ck_path} exists: pass --resume, or choose another --out")
    print(f"npgan {npgan.__version__}, backend {npgan.backend.name}; conditional GAN, {args.optimizer} "
          f"lr {args.lr}, {trainer.batches_per_epoch()} steps per epoch, until epoch {args.epochs} -> {args.out}")
    with files.lock_dir(args.out):
        if not train_loop(args, trainer, ck_path) or args.skip_eval:
            return None

    print("evaluating with the reference classifier ...", flush=True)
    model = classifier.load_classifier()
    test_x, test_y = datasets.load_mnist("test", fallback=DEFAULT_DATA)
    valid_x, valid_y = datasets.load_mnist("valid", fallback=DEFAULT_DATA)
    test_x, test_y, valid_x, valid_y = (a[:args.n_ref] for a in (test_x, test_y, valid_x, valid_y))
    test_out = classifier.classify(model, test_x)
    results = {"command": "python examples/conditional_gan.py " + " ".join(sys.argv[1:] if argv is None else argv),
               "config": config_of(args), "init_from_sha256": files.sha256(args.init_from) if args.init_from else None,
               "epochs": trainer.epoch, "steps": trainer.step_count,
               "train_seconds": float(sum(h.get("seconds", 0) for h in trainer.history)),
               "history": trainer.history}
    if not args.no_real_floor:
        results["real_valid_vs_test"] = real_floor(model, test_out, test_y, valid_x, valid_y)
    for name, G in generators(trainer).items():
        res, x = evaluate(G, model, test_out, test_y, args.per_class)
        results[name] = res
        print(f"{name}: accuracy {res['accuracy']:.4f}  FD {res['fd']:.2f}  "
              f"FD per class {' '.join(f'{v:.1f}' for v in res['fd_per_class'])}", flush=True)
        if name == "G":
            # one row per digit: the first 10 evaluation samples of each class
            grid = np.concatenate([x[c * args.per_class:c * args.per_class + 10] for c in range(10)])
            images.save_grid(grid, args.figure, 10)
    f = results.get("real_valid_vs_test")
    if f:
        print(f"real (valid vs test): accuracy {f['accuracy']:.4f}  FD {f['fd']:.2f}  per-class mean "
              f"{f['fd_per_class_mean']:.2f}")
    results["eval_seconds"] = time.time() - t_start
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    files.write_text(args.results, json.dumps(results, indent=1) + "\n")
    print(f"results -> {args.results}, grid -> {args.figure}")
    return results


if __name__ == "__main__":
    main()
