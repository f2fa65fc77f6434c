"""What the training step's non-finite check costs, in one process, in turns.

    python benchmarks/bench_check.py [--rounds 12] [--block 15]

GANTrainer.step (the paper's networks, batch 100, SGD) with its optimizers'
check done three ways, interleaved block by block so that load from other
processes falls on all alike:

  staged        what npgan does: SGD.prepare() writes the next velocities into
                spare buffers and checks them as they are written; commit()
                adds them to the parameters
  separate      a read of every gradient first (Optimizer.prepare, a banded
                max over exponent bits), then the one-pass SGD step
  none          no check: the one-pass SGD step alone (what the step cost
                before issue #19)

Prints the median and minimum step time of each and their ratios to "none".
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from npgan import models, optim, train  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--block", type=int, default=15, help="steps per turn")
    a = p.parse_args(argv)
    G, D = models.paper_mnist(0)
    x = np.random.default_rng(0).random((100, 784), dtype=np.float32)
    t = train.GANTrainer(G, D, np.zeros((100, 784), np.float32), batch_size=100)
    staged = (optim.SGD.prepare, optim.SGD._commit)

    def unchecked(self):
        self._prepared = True
        return None
    ways = {"staged": staged, "separate": (optim.Optimizer.prepare, optim.SGD.step),
            "none": (unchecked, optim.SGD.step)}
    for _ in range(20):                                   # warm up
        t.step(x)
    times = {k: [] for k in ways}
    try:
        for _ in range(a.rounds):
            for k, (prep, commit) in ways.items():
                optim.SGD.prepare, optim.SGD._commit = prep, commit
                for _ in range(a.block):
                    t0 = time.perf_counter()
                    t.step(x)
                    times[k].append(time.perf_counter() - t0)
    finally:
        optim.SGD.prepare, optim.SGD._commit = staged
    base = np.median(times["none"])
    print(f"GANTrainer.step, paper networks, batch 100; {a.rounds} x {a.block} steps each; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"load {os.getloadavg()[0]:.1f}")
    for k, v in times.items():
        print(f"  {k:9s} median {np.median(v) * 1e3:7.2f} ms  min {np.min(v) * 1e3:7.2f} ms  "
              f"median / none {np.median(v) / base:.3f}")


if __name__ == "__main__":
    main()
