"""What the training step's non-finite check costs, in one process, in turns.

    python benchmarks/bench_check.py [--rounds 12] [--block 15]

GANTrainer.step (the paper's networks, batch 100, SGD) with and without its
check of the gradients, interleaved block by block so that load from other
processes falls on both alike:

  check   what npgan does: one banded read of every gradient before the update
          (train._first_non_finite_grad -> _kernels.all_finite, a max over
          exponent bits), then the one-pass SGD step
  none    the same step with that check switched off (what the step cost
          before issue #19; the checks of the batch and the losses stay)

(Folding the check into SGD instead, the next velocities written to spare
buffers and checked as written, then added to the parameters, was tried: it
cost more than the separate read, 5.4 ms of SGD per step against 3.0 + 1.6.)

Prints the median and minimum step time of each and their ratios to "none".
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from npgan import models, train  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--block", type=int, default=15, help="steps per turn")
    a = p.parse_args(argv)
    G, D = models.paper_mnist(0)
    x = np.random.default_rng(0).random((100, 784), dtype=np.float32)
    t = train.GANTrainer(G, D, np.zeros((100, 784), np.float32), batch_size=100)
    check = train._first_non_finite_grad
    ways = {"check": check, "none": lambda params: None}
    for _ in range(20):                                   # warm up
        t.step(x)
    times = {k: [] for k in ways}
    try:
        for _ in range(a.rounds):
            for k, fn in ways.items():
                train._first_non_finite_grad = fn
                for _ in range(a.block):
                    t0 = time.perf_counter()
                    t.step(x)
                    times[k].append(time.perf_counter() - t0)
    finally:
        train._first_non_finite_grad = check
    base = np.median(times["none"])
    print(f"GANTrainer.step, paper networks, batch 100; {a.rounds} x {a.block} steps each; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"load {os.getloadavg()[0]:.1f}")
    for k, v in times.items():
        print(f"  {k:9s} median {np.median(v) * 1e3:7.2f} ms  min {np.min(v) * 1e3:7.2f} ms  "
              f"median / none {np.median(v) / base:.3f}")


if __name__ == "__main__":
    main()
