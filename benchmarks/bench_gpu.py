"""GPU benchmark: npgan on CuPy against PyTorch CUDA, on the same GPU.

Rows (best of ``--repeats`` timings, after a warm-up that also compiles the
kernels; every timing ends with a device synchronisation):

  train step        one simultaneous D+G update of the paper's MNIST networks
                    (G 100-1200-1200-784, D maxout 240x5 x2 with dropout, batch
                    100, SGD momentum), from a host minibatch as the trainer
                    gets it; npgan ``GANTrainer.step`` vs the same step in torch
  G forward         G(z) in eval mode, no graph: 100 and 10,000 samples
  Parzen            log-likelihood of N test points under M samples, D = 784,
                    the paper's 10-sigma grid and a single sigma: 10k x 10k and
                    10k test points x 60k samples; npgan's CUDA path vs torch
                    (addmm + logsumexp, blocked) and the bare float32 GEMM of
                    that shape as the floor

    python benchmarks/bench_gpu.py [--repeats 5] [--steps 50] [--json out.json]
    python benchmarks/bench_gpu.py --quick        # small sizes, a smoke run

float32 GEMMs run without TF32 on both sides (CuPy's default unless
CUPY_TF32=1; torch's default since 1.12), so both compute the same thing.

Needs CuPy and an NVIDIA GPU (``pip install -e ".[cuda12]"``); PyTorch rows
are left out when torch or its CUDA build is not installed. Where there is no
GPU the script says so and exits with status 2.
"""
import argparse
import json
import math
import os
import platform
import sys
import time

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import npgan  # noqa: E402
from npgan import backend, models, no_grad, train  # noqa: E402
from npgan.metrics import parzen  # noqa: E402

SIGMAS = numpy.logspace(-1, 0, 10)
ONE_SIGMA = float(SIGMAS[3])
DIM = 784


def require_gpu():
    """cupy, after npgan.use("cupy"); else exit 2 with the reason."""
    try:
        import cupy
    except Exception as e:
        sys.exit(_no_gpu(f"CuPy is not importable ({type(e).__name__}: {e}); install it with "
                         "pip install -e \".[cuda12]\" on a machine with an NVIDIA GPU and CUDA 12"))
    try:
        npgan.use("cupy")
    except RuntimeError as e:
        sys.exit(_no_gpu(str(e)))
    return cupy


def _no_gpu(reason):
    print(f"bench_gpu.py: no GPU to benchmark on: {reason}", file=sys.stderr)
    return 2


def device_name(cupy):
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def best_of(fn, repeats, sync, warmup=1):
    for _ in range(warmup):
        fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


# ----------------------------------------------------------------------------- npgan

def npgan_trainer(data):
    G, D = models.paper_mnist(seed=0, train_images=data)
    lr, mom = train.paper_schedules()
    return train.GANTrainer(G, D, data, batch_size=100, lr_schedule=lr, momentum_schedule=mom, seed=0)


def bench_npgan_train(data, steps, repeats, sync):
    t = npgan_trainer(data)
    batches = [data[i * 100:(i + 1) * 100] for i in range(steps)]

    def run():
        for b in batches:
            t.step(b)
    return best_of(run, repeats, sync) / steps


def bench_npgan_g_forward(n, repeats, sync):
    G, _ = models.paper_mnist(seed=0)
    G.eval()
    z = models.sample_z(n, numpy.random.default_rng(0))

    def run():
        with no_grad():
            G(z)
    return best_of(run, repeats, sync)


def bench_npgan_parzen(x, s, sigmas, repeats, sync):
    return best_of(lambda: parzen.log_likelihood(x, s, sigmas), repeats, sync)


# ----------------------------------------------------------------------------- torch

def torch_cuda():
    try:
        import torch
    except Exception:
        return None
    return torch if torch.cuda.is_available() else None


def torch_models(torch):
    nn = torch.nn

    class Maxout(nn.Module):
        def __init__(self, inp, units, pieces):
            super().__init__()
            self.units, self.pieces = units, pieces
            self.lin = nn.Linear(inp, units * pieces)

        def forward(self, x):
            return self.lin(x).view(-1, self.units, self.pieces).max(dim=-1).values

    G = nn.Sequential(nn.Linear(100, 1200), nn.ReLU(), nn.Linear(1200, 1200), nn.ReLU(),
                      nn.Linear(1200, DIM), nn.Sigmoid())
    D = nn.Sequential(nn.Dropout(0.2), Maxout(DIM, 240, 5), nn.Dropout(0.5), Maxout(240, 240, 5),
                      nn.Dropout(0.5), nn.Linear(240, 1))
    return G.cuda(), D.cuda()


def bench_torch_train(torch, data, steps, repeats):
    G, D = torch_models(torch)
    F = torch.nn.functional
    opt_g = torch.optim.SGD(G.parameters(), lr=0.1, momentum=0.5)
    opt_d = torch.optim.SGD(D.parameters(), lr=0.1, momentum=0.5)
    batches = [data[i * 100:(i + 1) * 100] for i in range(steps)]
    r = math.sqrt(3.0)

    def step(batch):
        x = torch.from_numpy(batch).cuda()
        z = torch.rand(100, 100, device="cuda") * (2 * r) - r
        l_real, l_fake = D(x), D(G(z))
        d_loss = F.softplus(-l_real).mean() + F.softplus(l_fake).mean()
        g_loss = F.softplus(-l_fake).mean()
        gd = torch.autograd.grad(d_loss, list(D.parameters()), retain_graph=True)
        gg = torch.autograd.grad(g_loss, list(G.parameters()))
        for p, g in zip(D.parameters(), gd):
            p.grad = g
        for p, g in zip(G.parameters(), gg):
            p.grad = g
        opt_d.step()
        opt_g.step()
        # the same host reads npgan's step makes (its returned stats)
        return (d_loss.item(), g_loss.item(), torch.sigmoid(l_real).mean().item(),
                torch.sigmoid(l_fake).mean().item())

    def run():
        for b in batches:
            step(b)
    return best_of(run, repeats, torch.cuda.synchronize) / steps


def bench_torch_g_forward(torch, n, repeats):
    G, _ = torch_models(torch)
    G.eval()
    z = torch.rand(n, 100, device="cuda") * 2 * math.sqrt(3) - math.sqrt(3)

    def run():
        with torch.no_grad():
            G(z)
    return best_of(run, repeats, torch.cuda.synchronize)


def torch_parzen(torch, x, s, sigmas, bx=2048):
    """(K, N) log p in torch: addmm distances (float32), logsumexp per sigma."""
    sig = torch.as_tensor(numpy.atleast_1d(sigmas), dtype=torch.float64, device="cuda")
    ss = (s.double() ** 2).sum(1).float()
    out = torch.empty(len(sig), x.shape[0], dtype=torch.float64, device="cuda")
    for i0 in range(0, x.shape[0], bx):
        xb = x[i0:i0 + bx]
        xx = (xb.double() ** 2).sum(1).float()
        d = torch.addmm(xx[:, None] + ss[None, :], xb, s.T, alpha=-2).clamp_min_(0)
        for k in range(len(sig)):
            c = float(1.0 / (2 * sig[k] ** 2))
            out[k, i0:i0 + bx] = torch.logsumexp(d * -c, dim=1).double()
    const = math.log(s.shape[0]) + 0.5 * x.shape[1] * torch.log(2 * math.pi * sig ** 2)
    return out - const[:, None]


# ----------------------------------------------------------------------------- main

def _k(n):
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=50, help="train steps per timing")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--no-torch", action="store_true", help="leave out the PyTorch rows")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    a = p.parse_args(argv)

    cupy = require_gpu()
    sync = cupy.cuda.runtime.deviceSynchronize
    torch = None if a.no_torch else torch_cuda()
    steps = 3 if a.quick else a.steps
    repeats = 1 if a.quick else a.repeats
    parzen_sizes = [(200, 300)] if a.quick else [(10_000, 10_000), (10_000, 60_000)]
    g_sizes = [100, 1000] if a.quick else [100, 10_000]

    rng = numpy.random.default_rng(0)
    data = rng.uniform(0, 1, (max(steps, 1) * 100, DIM)).astype(numpy.float32)
    rows = []

    def row(name, npgan_s, torch_s=None, unit="ms", scale=1e3, note=""):
        rows.append({"row": name, "npgan_" + unit: npgan_s * scale,
                     "torch_" + unit: None if torch_s is None else torch_s * scale,
                     "npgan/torch": None if torch_s is None else npgan_s / torch_s, "note": note})
        tt = "" if torch_s is None else f"{torch_s * scale:10.2f}   {npgan_s / torch_s:6.2f}x"
        print(f"{name:50s} {npgan_s * scale:10.2f} {tt}  {note}", flush=True)

    print(f"device: {device_name(cupy)}; CuPy {cupy.__version__}; "
          f"torch {'(none)' if torch is None else torch.__version__}; npgan {npgan.__version__}; "
          f"CUDA kernels: {npgan._kernels.cuda_kernels() is not None}")
    print(f"{'':50s} {'npgan ms':>10s} {'torch ms':>10s}   npgan/torch")

    row("train step (paper G/D, batch 100)", bench_npgan_train(data, steps, repeats, sync),
        None if torch is None else bench_torch_train(torch, data, steps, repeats))
    for n in g_sizes:
        row(f"G forward, {n} samples", bench_npgan_g_forward(n, repeats, sync),
            None if torch is None else bench_torch_g_forward(torch, n, repeats))

    for n_test, n_samples in parzen_sizes:
        x = cupy.asarray(rng.uniform(0, 1, (n_test, DIM)).astype(numpy.float32))
        s = cupy.asarray(rng.uniform(0, 1, (n_samples, DIM)).astype(numpy.float32))
        label = f"{_k(n_test)} test x {_k(n_samples)} samples"
        gemm = best_of(lambda: x @ s.T, repeats, sync)
        row(f"float32 GEMM ({label}), the floor", gemm, note="cupy matmul")
        for sig, what in ((SIGMAS, "10 sigmas"), (ONE_SIGMA, "1 sigma")):
            t_np = bench_npgan_parzen(x, s, sig, repeats, sync)
            t_th, note = None, ""
            if torch is not None:
                xt, st = torch.as_tensor(x, device="cuda"), torch.as_tensor(s, device="cuda")
                t_th = best_of(lambda: torch_parzen(torch, xt, st, sig), repeats, torch.cuda.synchronize)
                ll_np = backend.to_numpy(parzen.log_likelihood(x, s, sig))
                ll_th = torch_parzen(torch, xt, st, sig).cpu().numpy()
                note = f"max |LL diff| {numpy.abs(ll_np - ll_th.reshape(ll_np.shape)).max():.1e}"
            row(f"Parzen {label}, {what}", t_np, t_th, note=note)

    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": device_name(cupy), "cupy": cupy.__version__,
                       "torch": None if torch is None else torch.__version__,
                       "python": platform.python_version(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
