"""Search the GAN recipe (what the paper leaves free) with Optuna on Dask.

    python examples/sweep.py --n-trials 40 --epochs 5                 # embedded LocalCluster
    python examples/sweep.py --n-trials 40 --epochs 5                 # again: resumes the study
    python examples/sweep.py --scheduler tcp://HOST:8786 --storage postgresql://... ...

Each trial trains the paper's MNIST GAN (widths configurable) with a recipe
drawn from --space (default examples/sweep_space.json) by Optuna's TPE sampler,
reports the validation Parzen LL and FD every --eval-every epochs (the median
pruner may stop it), and checkpoints into STUDY_DIR/trials/NNNNN/. The study
lives in STUDY_DIR/study.db (or --storage): run the same command again to
resume it (finished trials are kept, running ones continue from their
checkpoints). Results: STUDY_DIR/results.csv, results.json, best.json,
pareto.png, curves.png. The selected recipe: the highest validation Parzen LL
among the trials whose validation FD <= --fd-max. See docs/sweep.md.

    python examples/sweep.py --overhead            # Dask's cost per trivial task, then exit
"""
import argparse
import os
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from npgan import sweep  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s = p.add_argument_group("study")
    s.add_argument("--space", default=os.path.join(HERE, "sweep_space.json"), help="search space (JSON)")
    s.add_argument("--study-dir", default="runs/sweep", help="trial directories, results, default storage")
    s.add_argument("--study-name", default="npgan")
    s.add_argument("--storage", default=None,
                   help="SQLAlchemy URL of the Optuna storage (default sqlite:///STUDY_DIR/study.db)")
    s.add_argument("--n-trials", type=int, default=20,
                   help="run until the study holds this many finished trials")
    s.add_argument("--timeout", type=float, default=None,
                   help="seconds after which no new trial starts (running ones finish)")
    s.add_argument("--fd-max", default="1.5x",
                   help="selection rule: highest validation Parzen among trials with validation FD <= this: "
                        "a number (also the sampler's constraint; 'inf' for none) or FACTORx, FACTOR times "
                        "the lowest FD of the study's complete trials (default 1.5x)")
    s.add_argument("--pruner", choices=["median", "none"], default="median")
    s.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    s.add_argument("--no-paper-trial", action="store_true",
                   help="do not make trial 0 the paper's recipe")
    d = p.add_argument_group("Dask")
    d.add_argument("--scheduler", default=None,
                   help="address of a running Dask scheduler (default: an embedded LocalCluster)")
    d.add_argument("--workers", type=int, default=None,
                   help="LocalCluster workers (default: usable cores // --threads-per-trial)")
    d.add_argument("--threads-per-trial", type=int, default=1, help="BLAS threads of each trial")
    d.add_argument("--retries", type=int, default=2,
                   help="re-runs of a trial whose task failed or whose worker died")
    d.add_argument("--dashboard-address", default=":8787")
    d.add_argument("--overhead", action="store_true",
                   help="measure Dask's per-task overhead with trivial tasks on the cluster, then exit")
    t = p.add_argument_group("each trial (the same for every trial of a study)")
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--train-size", type=int, default=50000, help="train on MNIST train[:N]")
    t.add_argument("--eval-every", type=int, default=1, help="validation metrics every N epochs")
    t.add_argument("--eval-samples", type=int, default=2000, help="samples per evaluation")
    t.add_argument("--parzen-valid", type=int, default=1000, help="valid images scored by Parzen")
    t.add_argument("--fd-valid", type=int, default=10000, help="valid images of the FD reference")
    t.add_argument("--g-hidden", type=int, default=1200)
    t.add_argument("--d-units", type=int, default=240)
    t.add_argument("--d-pieces", type=int, default=5)
    t.add_argument("--trial-seed", type=int, default=0, help="initialisation and data order of every trial")
    t.add_argument("--data-dir", default=None)
    t.add_argument("--checkpoint-minutes", type=float, default=5.0)
    return p.parse_args(argv)


def overhead(args):
    import distributed
    if args.scheduler:
        client, cluster = distributed.Client(args.scheduler), None
    else:
        n = args.workers or max(1, sweep.usable_cores() // args.threads_per_trial)
        cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1,
                                           dashboard_address=args.dashboard_address, silence_logs=40)
        client = distributed.Client(cluster)
    try:
        client.submit(sweep._identity, 0, pure=False).result()       # warm up
        r = sweep.dask_overhead(client)
        print(f"Dask overhead per trivial task: {1e3 * r['serial_s']:.2f} ms one at a time "
              f"(submit + result), {1e3 * r['batched_s']:.2f} ms each when 200 are submitted at once")
        return r
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _terminate(signum, frame):
    raise KeyboardInterrupt    # SIGTERM (a batch system's stop) ends the driver as Ctrl-C does


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.overhead:
        return overhead(args)
    config = {"epochs": args.epochs, "train_size": args.train_size, "eval_every": args.eval_every,
              "eval_samples": args.eval_samples, "parzen_valid": args.parzen_valid,
              "fd_valid": args.fd_valid, "g_hidden": args.g_hidden, "d_units": args.d_units,
              "d_pieces": args.d_pieces, "seed": args.trial_seed, "data_dir": args.data_dir}
    try:
        return sweep.run_study(
            args.space, args.study_dir, n_trials=args.n_trials, config=config, storage=args.storage,
            study_name=args.study_name, timeout=args.timeout, scheduler=args.scheduler,
            workers=args.workers, threads_per_trial=args.threads_per_trial, retries=args.retries,
            fd_max=args.fd_max, pruner=args.pruner, seed=args.seed,
            enqueue_paper=not args.no_paper_trial, dashboard_address=args.dashboard_address,
            checkpoint_minutes=args.checkpoint_minutes)
    except sweep.SweepError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
