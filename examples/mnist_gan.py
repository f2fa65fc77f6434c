"""Train the paper's MNIST GAN (Goodfellow et al., 2014, Table 1 / Fig. 2).

    python examples/mnist_gan.py                      # 25 epochs: recognisable digits
    python examples/mnist_gan.py --epochs 300 --out runs/paper   # the long run
    python examples/mnist_gan.py --out runs/paper --resume       # continue it

The recipe is the authors' released one (docs/fidelity.md, item by item):
z ~ N(0, I) in R^100, G 100-1200-1200-784 (ReLU, ReLU, sigmoid), D maxout
240x5, 240x5 with dropout, D's objective 0.5 (BCE real + BCE fake) (so the
first d_loss is ln 2), batch 100, SGD lr 0.1 divided by 1.000004 per step
(floor 1e-6), momentum .5 -> .7 by epoch 250, D and G updated from the same
minibatch (k = 1), non-saturating G loss; trained on MNIST train[:50000].
``--z uniform --d-scale 1`` is what npgan did before it followed that code. A moving average of G's weights (--ema) is kept beside it
for sampling only; it does not change training.

The run directory holds: checkpoint.npz (also written on Ctrl-C),
metrics.jsonl (one line per epoch), samples/epoch_XXXX.png (10x10 grid, fixed z),
curves.png, and best_<G>.npz (G's weights at its best validation Parzen LL).
Every file is written atomically; a run locks its directory (a second run
there is refused); metrics.jsonl is the checkpoint's history, rewritten from it
on --resume, so a run killed at any point resumes to the same log.
"""
import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # run from a checkout
import npgan  # noqa: E402
from npgan import checkpoint, datasets, files, images, models, optim, train  # noqa: E402
from npgan.progress import Progress  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "data", "mnist")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=25, help="train until this many epochs in total")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k", type=int, default=1, help="D steps per G step (Algorithm 1); implies --sequential if > 1")
    p.add_argument("--sequential", action="store_true",
                   help="Algorithm 1 as written (D step, then G step on fresh noise) instead of the "
                        "authors' simultaneous update")
    p.add_argument("--g-loss", choices=["nonsaturating", "minimax"], default="nonsaturating")
    p.add_argument("--z", choices=list(models.Z_PRIORS), default="gaussian",
                   help="noise prior (authors' code: gaussian; uniform is U(-sqrt 3, sqrt 3))")
    p.add_argument("--d-scale", type=float, default=0.5,
                   help="D's loss = D_SCALE x (BCE real + BCE fake) (authors' code: 0.5; the paper's "
                        "value function as written: 1)")
    p.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (paper: 0.1)")
    p.add_argument("--lr-decay", type=float, default=None,
                   help="lr divided by this per step (default 1.000004, the authors'; SGD only)")
    p.add_argument("--tail-from", type=int, default=None, metavar="EPOCH",
                   help="from this many completed epochs on, divide the lr by --tail-lr-decay per step "
                        "instead (a run may be resumed with a new tail if it has not reached it yet)")
    p.add_argument("--tail-lr-decay", type=float, default=1.0,
                   help="the lr's divisor per step after --tail-from (1: hold it where it stands)")
    p.add_argument("--lr-g", type=float, default=None,
                   help="G's initial learning rate, if not --lr (D keeps --lr; same decay)")
    p.add_argument("--momentum-end", type=float, default=None,
                   help="SGD momentum rises from .5 to this (default .7)")
    p.add_argument("--momentum-epochs", type=int, default=None,
                   help="... reaching it at this epoch (default 250, the authors')")
    p.add_argument("--minutes", type=float, default=None,
                   help="training-time budget: no epoch starts that would end past it "
                        "(its time estimated by the last epoch's); evaluation not counted")
    p.add_argument("--ema", type=float, nargs="*", default=[0.9999],
                   help="decays of moving averages of G's weights to sample from (none: --ema)")
    p.add_argument("--data-dir", default=None,
                   help="directory with the MNIST .gz files (default: NPGAN_DATA, the cache, then data/mnist)")
    p.add_argument("--out", default="runs/mnist", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--eval-every", type=int, default=5, help="validation Parzen LL every N epochs (0: never)")
    p.add_argument("--eval-samples", type=int, default=10000)
    p.add_argument("--snapshot-every", type=int, default=5,
                   help="keep every generator's weights each N epochs in OUT/snapshots (0: never)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0, help="also checkpoint mid-epoch this often")
    p.add_argument("--train-size", type=int, default=50000, help="use train[:N] (paper: 50000)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.k > 1:
        args.sequential = True
    sgd_only = [f for f, v in (("--lr-decay", args.lr_decay), ("--momentum-end", args.momentum_end),
                               ("--momentum-epochs", args.momentum_epochs), ("--tail-from", args.tail_from))
                if v is not None]
    if args.optimizer != "sgd" and sgd_only:
        p.error(f"{', '.join(sgd_only)}: SGD's schedules; --optimizer {args.optimizer} has none")
    for name, default in (("lr_decay", 1.000004), ("momentum_end", 0.7), ("momentum_epochs", 250)):
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.lr_g is None:
        args.lr_g = args.lr
    for name in ("lr", "lr_g"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if not 0 <= args.momentum_end < 1 or args.momentum_epochs < 1:
        p.error("--momentum-end must be in [0, 1) and --momentum-epochs >= 1")
    if args.minutes is not None and not args.minutes > 0:
        p.error("--minutes must be > 0")
    if not (args.lr_decay >= 1 and args.tail_lr_decay >= 1):
        p.error("--lr-decay and --tail-lr-decay must be >= 1 (they divide the lr)")
    if args.tail_from is not None and args.tail_from < 0:
        p.error("--tail-from must be >= 0")
    return args


#: configuration keys older runs lack, and the values they stood for (the authors')
LATER_KEYS = {"lr_g": None, "momentum_end": 0.7, "momentum_epochs": 250, "tail": None}


def config_of(args):
    """What must match for --resume to continue the same run."""
    keys = ["seed", "k", "sequential", "g_loss", "z", "d_scale", "optimizer", "lr", "lr_decay", "ema",
            "train_size", "momentum_end", "momentum_epochs"]
    cfg = {k: getattr(args, k) for k in keys}
    cfg["lr_g"] = None if args.lr_g == args.lr else args.lr_g      # None: G's lr is D's
    cfg["tail"] = None if args.tail_from is None else [args.tail_from, args.tail_lr_decay]
    return cfg


def check_tail(stored, now, step, steps_per_epoch):
    """A resumed run may take a new lr tail (``[from_epoch, decay]`` or None)
    only if none of the ``step`` updates it has made would have had another
    lr: both tails start at or after it. Returns a line to print, or exits."""
    stored = None if stored is None else list(stored)
    if stored == now:
        return None
    first = min(t[0] for t in (stored, now) if t is not None)
    if step > first * steps_per_epoch:
        sys.exit(f"error: the checkpoint (step {step}) was trained with lr tail {stored}, now {now}: "
                 f"its steps after epoch {first} would differ; use a new --out or the same --tail-*")
    return (f"lr tail {stored} -> {now}: the checkpoint's {step} steps are the same under both, "
            "so this continues the run the new options make from the start")


def load_data(args):
    # DEFAULT_DATA: the copy this checkout carries, searched after NPGAN_DATA and the cache
    train_x, _ = datasets.load_mnist("train", data_dir=args.data_dir, fallback=DEFAULT_DATA)
    valid_x, _ = datasets.load_mnist("valid", data_dir=args.data_dir, fallback=DEFAULT_DATA)
    return train_x[:args.train_size], valid_x


def build(args, train_x):
    G, D = models.paper_mnist(args.seed, train_x)
    if args.optimizer == "sgd":
        opt_g = optim.SGD(G.parameters(), lr=args.lr_g, momentum=0.5)
        opt_d = optim.SGD(D.parameters(), lr=args.lr, momentum=0.5)
        tail = {}
        if args.tail_from is not None:
            tail = dict(tail_from=args.tail_from * (len(train_x) // 100), tail_factor=args.tail_lr_decay)
        lr_s, mom_s = train.paper_schedules(args.lr, args.lr_decay, **tail)
        if args.lr_g != args.lr:                       # (for G, for D)
            lr_s = (train.paper_schedules(args.lr_g, args.lr_decay, **tail)[0], lr_s)
        if (args.momentum_end, args.momentum_epochs) != (0.7, 250):
            mom_s = optim.LinearRamp(0.5, args.momentum_end, 0, args.momentum_epochs - 1)
    else:
        opt_g = optim.Adam(G.parameters(), lr=args.lr_g, betas=(0.5, 0.999))
        opt_d = optim.Adam(D.parameters(), lr=args.lr, betas=(0.5, 0.999))
        lr_s, mom_s = None, None
    return train.GANTrainer(G, D, train_x, batch_size=100, k=args.k, simultaneous=not args.sequential,
                            g_loss=args.g_loss, opt_g=opt_g, opt_d=opt_d, lr_schedule=lr_s,
                            momentum_schedule=mom_s, ema_decays=tuple(args.ema), seed=args.seed,
                            sample_z=models.z_sampler(args.z), d_scale=args.d_scale)


def generators(trainer):
    """name -> G module to sample from: the trained G and each moving average."""
    gs = {"G": trainer.G}
    for d in trainer.emas:
        gs[f"G_ema{d}"] = trainer.averaged_generator(d, models.Generator())
    return gs


def save_curves(history, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    ax[0].plot(ep, [h["d_loss"] for h in history], label="D loss")
    ax[0].plot(ep, [h["g_loss"] for h in history], label="G loss")
    ax[0].set_title("losses (epoch means)")
    ax[1].plot(ep, [h["d_real"] for h in history], label="mean D(x)")
    ax[1].plot(ep, [h["d_fake"] for h in history], label="mean D(G(z))")
    ax[1].axhline(0.5, color="gray", lw=0.5)
    ax[1].set_title("discriminator outputs")
    names = sorted({k for h in history for k in h if k.startswith("parzen_")})
    for k in names:
        pts = [(h["epoch"], h[k]) for h in history if k in h]
        ax[2].plot(*zip(*pts), "o-", label=k.replace("parzen_", ""))
    ax[2].set_title("validation Parzen LL (nats)")
    for a in ax:
        a.set_xlabel("epoch")
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    files.save_figure(fig, path, dpi=90)
    plt.close(fig)


def save_npz(path, arrays):
    with files.atomic_write(path) as f:
        np.savez(f, **arrays)


def write_metrics(path, history):
    """metrics.jsonl: one line per finished epoch, from the trainer's history."""
    files.write_text(path, "".join(json.dumps(rec) + "\n" for rec in history))


def main(argv=None):
    args = parse_args(argv)
    try:
        with files.lock_dir(args.out):
            return run(args)
    except files.DirectoryLocked as e:
        sys.exit(f"error: {e}")


def run(args):
    train_x, valid_x = load_data(args)
    trainer = build(args, train_x)
    ck_path = os.path.join(args.out, "checkpoint.npz")
    cfg = config_of(args)
    best = {}
    if args.resume:
        ck = checkpoint.load(ck_path, config={k: v for k, v in cfg.items() if k != "tail"},
                             defaults={k: v for k, v in LATER_KEYS.items() if k != "tail"})
        state = ck["state"]
        best = state.pop("best", {}) if isinstance(state, dict) else {}   # ours, not the trainer's
        trainer.load_state_dict(state)
        note = check_tail(ck["config"].get("tail"), cfg["tail"], trainer.step_count,
                          trainer.batches_per_epoch())
        if note:
            print(note)
        print(f"resumed from {ck_path} at epoch {trainer.epoch}, step {trainer.step_count}")
        write_metrics(os.path.join(args.out, "metrics.jsonl"), trainer.history)  # drop lines past it
    elif os.path.exists(ck_path):
        sys.exit(f"{ck_path} exists: pass --resume to continue it, or choose another --out")

    def save_checkpoint():
        state = trainer.state_dict()
        state["best"] = best
        checkpoint.save(ck_path, state, cfg)

    stop = {"flag": False}
    def on_sigint(signum, frame):
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True
        print("\ninterrupted: finishing this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)
    signal.signal(signal.SIGINT, on_sigint)

    print(f"npgan {npgan.__version__}, backend {npgan.backend.name}, kernels {npgan._kernels.available()}")
    print(f"training on {len(train_x)} images, {trainer.batches_per_epoch()} steps per epoch, "
          f"until epoch {args.epochs} -> {args.out}")
    t_start, last_ck = time.time(), time.time()
    metrics_path = os.path.join(args.out, "metrics.jsonl")
    while trainer.epoch < args.epochs:
        if args.minutes is not None and trainer.history:
            spent = sum(h.get("seconds", 0.0) for h in trainer.history)
            if spent + trainer.history[-1].get("seconds", 0.0) > 60 * args.minutes:
                print(f"training-time budget: {spent:.0f} s spent; another epoch would pass "
                      f"{args.minutes:g} min, so the run stops at epoch {trainer.epoch}")
                break
        bar = Progress(trainer.batches_left(), f"epoch {trainer.epoch + 1}", not args.no_progress,
                       unit="steps", every=10)
        def should_stop():
            nonlocal last_ck
            if stop["flag"]:
                return True
            if time.time() - last_ck > 60 * args.checkpoint_minutes:
                save_checkpoint()
                last_ck = time.time()
            return False
        t0 = time.time()
        rec = trainer.train_epoch(on_step=lambda t, s: bar.update(1), should_stop=should_stop)
        bar.close()
        if rec is None:
            save_checkpoint()
            print(f"checkpoint saved to {ck_path} (epoch {trainer.epoch}, step {trainer.step_count}); "
                  "continue with --resume")
            return trainer
        rec["seconds"] = time.time() - t0
        rec["lr"] = trainer.opt_d.lr
        gs = generators(trainer)
        for name, G in gs.items():
            grid = trainer.generate(100, G, rng=np.random.default_rng(2014))
            images.save_grid(grid, os.path.join(args.out, "samples", f"{name}_epoch_{trainer.epoch:04d}.png"),
                             10)
        if args.snapshot_every and trainer.epoch % args.snapshot_every == 0:
            for name, G in gs.items():
                save_npz(os.path.join(args.out, "snapshots", f"{name}_epoch_{trainer.epoch:04d}.npz"),
                         G.state_dict())
        if args.eval_every and trainer.epoch % args.eval_every == 0:
            for name, G in gs.items():
                samples = trainer.generate(args.eval_samples, G)
                from npgan.metrics import parzen
                sigma, curve = parzen.select_sigma(valid_x[:1000], samples)
                ll = float(max(curve))
                rec[f"parzen_{name}"], rec[f"sigma_{name}"] = ll, float(sigma)
                if ll > best.get(name, {}).get("ll", -math.inf):
                    best[name] = {"ll": ll, "sigma": float(sigma), "epoch": trainer.epoch}
                    save_npz(os.path.join(args.out, f"best_{name}.npz"), G.state_dict())
        trainer.history[-1] = rec
        save_checkpoint()               # first: the log and curves are derived from it
        last_ck = time.time()
        write_metrics(metrics_path, trainer.history)
        save_curves(trainer.history, os.path.join(args.out, "curves.png"))
        parz = " ".join(f"{k[7:]}={v:.1f}" for k, v in rec.items() if k.startswith("parzen_"))
        print(f"epoch {trainer.epoch:4d}  D {rec['d_loss']:.3f}  G {rec['g_loss']:.3f}  "
              f"D(x) {rec['d_real']:.3f}  D(G(z)) {rec['d_fake']:.3f}  {rec['seconds']:.1f}s"
              + (f"  Parzen(valid) {parz}" if parz else ""), flush=True)
    print(f"done: {trainer.epoch} epochs, {trainer.step_count} steps, {time.time() - t_start:.0f}s this run. "
          f"Samples in {args.out}/samples; Table 1 protocol: python examples/parzen_table.py {args.out}")
    return trainer


if __name__ == "__main__":
    main()
