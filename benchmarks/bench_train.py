"""The paper's GAN training step and G's forward pass: npgan against its own
reference path, PyTorch (CPU) and JAX (CPU, jit), measured side by side.

Implementations, each in a worker process of its own (imports, thread pools
and allocators never mix; its peak RSS is its own):

  npgan        npgan.train.GANTrainer.step, compiled kernels (the default path:
               npgan's own float32 GEMM where the CPU has AVX-512)
  npgan-scipy  the same with NPGAN_BLAS=scipy: SciPy's BLAS (OpenBLAS) for the
               GEMMs, still cut into bands by npgan's pool
  npgan-blas   the same with NPGAN_GEMM_SPLIT=0: SciPy's BLAS threads each
               GEMM itself instead of npgan cutting it into single-threaded calls
  npgan-mkl    the same with NPGAN_BLAS=mkl: Intel MKL's sgemm (torch's BLAS on
               x86) for the GEMMs, threaded by npgan's pool (when MKL is installed)
  npgan-ref    the same trainer with NPGAN_NO_KERNELS=1 (the NumPy references)
  npgan-api    the same update written here with the public API (F, nn, optim)
  torch        the same models and update in PyTorch; backward(inputs=...) so
               that, as in npgan, only the needed gradients are computed
  jax          the same, the whole step one jax.jit function (donated buffers)
  npgan-base   npgan's default path from another source tree (--baseline TREE,
               e.g. a worktree of the previous commit with its kernels built):
               a same-run A/B of a change

The step is the paper's (and the authors' code's) simultaneous update: batch
100, z in R^100 (npgan's trainer: N(0, I), as the authors' code; the torch and
JAX rows: U(-sqrt 3, sqrt 3), the same cost), G 100-1200-1200-784 (ReLU, sigmoid), D
784-maxout 240x5-maxout 240x5-1 with dropout .2/.5/.5, losses from logits
(non-saturating G loss), SGD lr 0.1 momentum 0.5 for both players; about 2.7
GFLOP of GEMM. G forward: G(z) for 10,000 z in one call, no graph (npgan's
Generator runs such a call in blocks of 2,000 rows, torch and JAX in one).

Timing: the parent hands out turns: one worker runs a block of steps while the
others wait on their pipe, in an order that rotates every round, then a short
pause lets the spinning BLAS / OpenMP threads of that worker go idle. So load
from other processes falls on every implementation alike; ratios are taken
between medians (and between minima) of the same run. Peak RSS is measured in
fresh processes that only build the models and train.

    python benchmarks/bench_train.py [--steps 200] [--threads N] [--impls npgan,torch,...]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

IMPLS = ("npgan", "npgan-scipy", "npgan-mkl", "npgan-blas", "npgan-ref", "npgan-api", "torch",
         "jax", "npgan-base")
BASELINE = None     # --baseline: the source tree npgan-base imports npgan from
DEFAULT_IMPLS = ("npgan", "npgan-scipy", "npgan-mkl", "npgan-blas", "npgan-ref", "torch", "jax")   # npgan-api: same step as npgan
BATCH, Z_DIM, X_DIM, N_BATCHES = 100, 100, 784, 10
GF_SAMPLES = 10_000
S3 = math.sqrt(3.0)


def batches(seed=0):
    """The real minibatches every implementation cycles through: float32 (100, 784) in [0, 1)."""
    rng = numpy.random.default_rng(seed)
    return [rng.random((BATCH, X_DIM), dtype=numpy.float32) for _ in range(N_BATCHES)]


def z_10k(seed=1):
    return numpy.random.default_rng(seed).uniform(-S3, S3, (GF_SAMPLES, Z_DIM)).astype(numpy.float32)


# ----------------------------------------------------------------------------- npgan

def build_npgan(api=False):
    """-> (train_step(x), g_forward(z), description)."""
    from npgan import _kernels, models, train
    from npgan.tensor import Tensor, no_grad
    G, D = models.paper_mnist(seed=0)
    gf = _g_forward_npgan(G, no_grad)
    if not api:
        tr = train.GANTrainer(G, D, numpy.zeros((BATCH, X_DIM), numpy.float32), batch_size=BATCH)
        k = _kernels.load("pool") or _kernels.load("layers")     # layers: trees before issue 16
        path = "reference (NPGAN_NO_KERNELS)" if _kernels.disabled() else (
            (f"compiled, GEMMs split over {k.split_threads()} threads" if k.split_threads() > 1
             else "compiled, BLAS threads each GEMM itself") if k else
            "reference (layers not built)")
        import npgan
        return tr.step, gf, f"GANTrainer.step, kernels: {path}" + (
            f", BLAS {_kernels.blas()}" if k else "") + f"; npgan from {os.path.dirname(npgan.__file__)}"

    from npgan import functional as F, optim
    rng = numpy.random.default_rng(1)
    opt_g = optim.SGD(G.parameters(), lr=0.1, momentum=0.5)
    opt_d = optim.SGD(D.parameters(), lr=0.1, momentum=0.5)
    gp, dp = G.parameters(), D.parameters()

    def step(x):
        fake = G(models.sample_z(len(x), rng))
        l_real, l_fake = D(Tensor(x)), D(fake)
        d_loss = (F.binary_cross_entropy_with_logits(l_real, 1)
                  + F.binary_cross_entropy_with_logits(l_fake, 0))
        g_loss = F.binary_cross_entropy_with_logits(l_fake, 1)
        opt_d.zero_grad()
        opt_g.zero_grad()
        for frozen, loss in ((gp, d_loss), (dp, g_loss)):   # D's grads, then G's through D
            for p in frozen:
                p.requires_grad = False
            loss.backward()
            for p in frozen:
                p.requires_grad = True
        opt_d.step()
        opt_g.step()
        return d_loss.item(), g_loss.item()
    return step, gf, "public-API step (F, nn, optim)"


def _g_forward_npgan(G, no_grad):
    def gf(z):
        with no_grad():
            return G(z).data
    return gf


# ----------------------------------------------------------------------------- torch

def build_torch(threads):
    import torch
    import torch.nn.functional as TF
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rng = numpy.random.default_rng(0)

    def linear(i, o, irange):
        lin = torch.nn.Linear(i, o)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(rng.uniform(-irange, irange, (o, i)).astype("float32")))
            lin.bias.zero_()
        return lin

    class Maxout(torch.nn.Module):
        def __init__(self, i, units, pieces):
            super().__init__()
            self.lin, self.units, self.pieces = linear(i, units * pieces, 0.005), units, pieces

        def forward(self, x):
            return self.lin(x).view(x.shape[0], self.units, self.pieces).max(-1).values

    G = torch.nn.Sequential(linear(Z_DIM, 1200, 0.05), torch.nn.ReLU(), linear(1200, 1200, 0.05),
                            torch.nn.ReLU(), linear(1200, X_DIM, 0.05), torch.nn.Sigmoid())
    D = torch.nn.Sequential(torch.nn.Dropout(0.2), Maxout(X_DIM, 240, 5), torch.nn.Dropout(0.5),
                            Maxout(240, 240, 5), torch.nn.Dropout(0.5), linear(240, 1, 0.005))
    gp, dp = list(G.parameters()), list(D.parameters())
    opt_g = torch.optim.SGD(gp, lr=0.1, momentum=0.5)
    opt_d = torch.optim.SGD(dp, lr=0.1, momentum=0.5)

    def step(x):
        x = torch.from_numpy(x)
        z = torch.empty(x.shape[0], Z_DIM).uniform_(-S3, S3)
        fake = G(z)
        l_real, l_fake = D(x), D(fake)
        d_loss = TF.softplus(-l_real).mean() + TF.softplus(l_fake).mean()
        g_loss = TF.softplus(-l_fake).mean()
        opt_d.zero_grad(set_to_none=True)
        opt_g.zero_grad(set_to_none=True)
        d_loss.backward(inputs=dp, retain_graph=True)      # D's gradients only
        g_loss.backward(inputs=gp)                         # G's, through D
        opt_d.step()
        opt_g.step()
        with torch.no_grad():                              # the stats npgan's trainer returns
            return (d_loss.item(), g_loss.item(), torch.sigmoid(l_real).mean().item(),
                    torch.sigmoid(l_fake).mean().item())

    def gf(z):
        with torch.inference_mode():
            return G(torch.from_numpy(z)).numpy()
    return step, gf, f"torch {torch.__version__}, {torch.get_num_threads()} threads"


# ----------------------------------------------------------------------------- jax

def build_jax(threads):
    import jax
    import jax.numpy as jnp
    rng = numpy.random.default_rng(0)

    def lin(i, o, irange):
        return [jnp.asarray(rng.uniform(-irange, irange, (i, o)).astype("float32")),
                jnp.zeros(o, jnp.float32)]
    gp = lin(Z_DIM, 1200, 0.05) + lin(1200, 1200, 0.05) + lin(1200, X_DIM, 0.05)
    dp = lin(X_DIM, 1200, 0.005) + lin(240, 1200, 0.005) + lin(240, 1, 0.005)

    def G(p, z):
        h = jax.nn.relu(z @ p[0] + p[1])
        h = jax.nn.relu(h @ p[2] + p[3])
        return jax.nn.sigmoid(h @ p[4] + p[5])

    def dropout(key, h, p):
        return jnp.where(jax.random.bernoulli(key, 1 - p, h.shape), h / (1 - p), 0)

    def D(p, x, key):
        k0, k1, k2 = jax.random.split(key, 3)
        h = dropout(k0, x, 0.2)
        h = (h @ p[0] + p[1]).reshape(x.shape[0], 240, 5).max(-1)
        h = dropout(k1, h, 0.5)
        h = (h @ p[2] + p[3]).reshape(x.shape[0], 240, 5).max(-1)
        h = dropout(k2, h, 0.5)
        return h @ p[4] + p[5]

    def d_loss(dp, gp, x, z, kr, kf):
        return (jax.nn.softplus(-D(dp, x, kr)).mean()
                + jax.nn.softplus(D(dp, G(gp, z), kf)).mean())

    def g_loss(gp, dp, z, kf):
        return jax.nn.softplus(-D(dp, G(gp, z), kf)).mean()

    def _step(dp, gp, dv, gv, key, x):
        key, kz, kr, kf = jax.random.split(key, 4)
        z = jax.random.uniform(kz, (x.shape[0], Z_DIM), minval=-S3, maxval=S3)
        dl, gd = jax.value_and_grad(d_loss)(dp, gp, x, z, kr, kf)
        gl, gg = jax.value_and_grad(g_loss)(gp, dp, z, kf)      # XLA shares the forward
        dv = [0.5 * v - 0.1 * g for v, g in zip(dv, gd)]
        gv = [0.5 * v - 0.1 * g for v, g in zip(gv, gg)]
        return ([p + v for p, v in zip(dp, dv)], [p + v for p, v in zip(gp, gv)], dv, gv, key,
                dl, gl)

    jstep = jax.jit(_step, donate_argnums=(0, 1, 2, 3))
    state = {"s": (dp, gp, [jnp.zeros_like(p) for p in dp], [jnp.zeros_like(p) for p in gp],
                   jax.random.PRNGKey(0))}

    def step(x):
        dp, gp, dv, gv, key, dl, gl = jstep(*state["s"], jnp.asarray(x))
        state["s"] = (dp, gp, dv, gv, key)
        return float(dl), float(gl)

    jg = jax.jit(G)

    def gf(z):
        return numpy.asarray(jg(state["s"][1], jnp.asarray(z)).block_until_ready())
    return step, gf, f"jax {jax.__version__} (jit, {jax.devices()[0].platform})"


# ----------------------------------------------------------------------------- workers

def _env(impl, threads):
    """Environment of a worker: thread counts for every runtime, and the kernel switch."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["NPGAN_NO_KERNELS"] = "1" if impl == "npgan-ref" else env.get("NPGAN_NO_KERNELS", "")
    env["NPGAN_GEMM_SPLIT"] = "0" if impl == "npgan-blas" else env.get("NPGAN_GEMM_SPLIT", "")
    env["NPGAN_BLAS"] = {"npgan-mkl": "mkl", "npgan-scipy": "scipy", "npgan-blas": "scipy"}.get(
        impl, env.get("NPGAN_BLAS", ""))
    if impl == "jax":
        env["JAX_PLATFORMS"] = "cpu"
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                                " intra_op_parallelism_threads=1").strip()
    first = [BASELINE] if impl == "npgan-base" else []
    env["PYTHONPATH"] = os.pathsep.join(first + [ROOT, env.get("PYTHONPATH", "")])
    return env


def _build(impl, threads):
    if impl.startswith("npgan"):
        return build_npgan(api=impl == "npgan-api")
    if impl == "torch":
        return build_torch(threads)
    if impl == "jax":
        if 1 < threads < (os.cpu_count() or threads):
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
        return build_jax(threads)
    raise ValueError(f"unknown implementation {impl!r}")


def _status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(impl, threads, rss=None, steps=30):
    """Serve timing commands on stdin/stdout (one JSON object a line); with
    ``rss`` ("train" or "gforward") just run that and report memory."""
    step, gf, desc = _build(impl, threads)
    xs = batches()
    if rss:
        base = _status_mib("VmRSS")
        if rss == "train":
            for i in range(steps):
                step(xs[i % len(xs)])
        else:
            gf(z_10k())
        print(json.dumps({"base_mib": base, "peak_mib": _status_mib("VmHWM")}), flush=True)
        return
    z = z_10k()
    for i in range(3):                      # warm up: first-call costs, JIT compilation, and
        step(xs[i % len(xs)])               # the first 10k forwards' page faults (a fresh
        gf(z)                               # process's 100+ MB: up to 0.2 s of system time)
    print(json.dumps({"ready": desc}), flush=True)
    i = 0
    for line in sys.stdin:
        cmd = json.loads(line)
        times = []
        for _ in range(cmd["n"]):
            if cmd["cmd"] == "train":
                x = xs[i % len(xs)]
                i += 1
                t = time.perf_counter()
                step(x)
            else:
                t = time.perf_counter()
                gf(z)
            times.append(time.perf_counter() - t)
        print(json.dumps({"times": times}), flush=True)


class Worker:
    def __init__(self, impl, threads):
        self.impl = impl
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", impl,
                                   "--threads", str(threads)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=_env(impl, threads), cwd=ROOT)
        self.desc = self._reply()["ready"]

    def _reply(self):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.impl} worker died: {self.p.stderr.read()[-3000:]}")
        return json.loads(line)

    def run(self, cmd, n):
        self.p.stdin.write(json.dumps({"cmd": cmd, "n": n}) + "\n")
        self.p.stdin.flush()
        return self._reply()["times"]

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=60)


def available(impl):
    """None if the implementation can run here, else the reason it cannot."""
    if impl == "npgan-mkl":
        from npgan._kernels.blas_lib import find_mkl
        return None if find_mkl() else 'MKL not installed: pip install "npgan[mkl]"'
    mod = {"torch": "torch", "jax": "jax"}.get(impl)
    if mod is None:
        return None
    import importlib.util
    return None if importlib.util.find_spec(mod) else f"{mod} is not installed"


def measure_memory(impl, threads, what="train", steps=30):
    """(RSS after building, peak RSS) in MiB of a fresh process, or None."""
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", impl, "--threads",
                        str(threads), "--rss", what, "--steps", str(steps)],
                       capture_output=True, text=True, env=_env(impl, threads), cwd=ROOT)
    try:
        d = json.loads(r.stdout.strip().splitlines()[-1])
        return d["base_mib"], d["peak_mib"]
    except (IndexError, ValueError, KeyError):
        print(f"memory of {impl}: worker failed: {r.stderr[-800:]}", file=sys.stderr)
        return None


def run(steps=200, block=20, gf_reps=9, threads=None, impls=IMPLS, memory=True, pause=0.15,
        verbose=True, max_s=30.0, min_steps=50):
    """Time every implementation; -> dict with per-implementation step and
    G-forward times (seconds), descriptions, memory and notes (skipped ones).

    Every implementation gets ``steps`` training steps, except that one whose
    steps have taken ``max_s`` seconds in all stops getting turns once it has
    ``min_steps`` (on a loaded machine the slowest rows would otherwise take
    minutes); the tables give each row's count."""
    threads = threads or os.cpu_count() or 1
    notes, workers = [], {}
    for impl in impls:
        why = available(impl)
        if why:
            notes.append(f"{impl}: skipped ({why})")
            continue
        try:
            workers[impl] = Worker(impl, threads)
        except Exception as e:          # a broken install: report, go on
            notes.append(f"{impl}: skipped ({type(e).__name__}: {str(e).strip()[-300:]})")
    train = {k: [] for k in workers}
    gfwd = {k: [] for k in workers}
    names = list(workers)
    rounds = math.ceil(steps / block)
    try:
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                if len(train[k]) >= min_steps and sum(train[k]) > max_s:
                    continue
                time.sleep(pause)
                train[k] += workers[k].run("train", min(block, steps - r * block))
            if r < gf_reps:
                for k in order:
                    time.sleep(pause)
                    gfwd[k] += workers[k].run("gforward", 1)
            if verbose:
                print(f"round {r + 1}/{rounds}: " + ", ".join(
                    f"{k} {numpy.median(v) * 1e3:.1f} ms" for k, v in train.items()), file=sys.stderr)
        for r in range(rounds, gf_reps):
            for k in names:
                time.sleep(pause)
                gfwd[k] += workers[k].run("gforward", 1)
    finally:
        for w in workers.values():
            w.close()
    mem = {}
    if memory:
        for k in names:
            mem[k] = {"train": measure_memory(k, threads, "train"),
                      "gforward": measure_memory(k, threads, "gforward") if memory == "all" else None}
    return {"threads": threads, "steps": steps, "train": train, "gforward": gfwd,
            "desc": {k: w.desc for k, w in workers.items()}, "memory": mem, "notes": notes}


def _stats(v):
    return (float(numpy.median(v)), float(numpy.min(v))) if v else (float("nan"), float("nan"))


def report(res):
    """Markdown tables of a run() result, with ratios to torch and jax."""
    lines = []
    for what, key, unit, scale in (("Training step (batch 100, D and G)", "train", "ms", 1e3),
                                   (f"G forward, {GF_SAMPLES} samples", "gforward", "ms", 1e3)):
        data = res[key]
        st = {k: _stats(v) for k, v in data.items()}
        cols = [c for c in ("torch", "jax") if c in st]
        head = f"| {'implementation':12s} | n | median {unit} | min {unit} |" + "".join(
            f" x {c} (median / min) |" for c in cols)
        lines += [f"{what}, {res['threads']} threads", "", head,
                  "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
        for k, (med, mn) in st.items():
            row = f"| {k:12s} | {len(data[k])} | {med * scale:9.2f} | {mn * scale:6.2f} |"
            for c in cols:
                row += f" {med / st[c][0]:6.2f} / {mn / st[c][1]:4.2f} |".rjust(len(f" x {c} (median / min) |"))
            lines.append(row)
        lines.append("")
    if res["memory"]:
        lines += ["Peak RSS, fresh process per row (MiB): after building the models / peak", "",
                  "| implementation | train: built | train: peak | G fwd 10k: built | G fwd 10k: peak |",
                  "|---|---|---|---|---|"]
        for k, m in res["memory"].items():
            t, g = m["train"] or (float("nan"),) * 2, m["gforward"] or (float("nan"),) * 2
            lines.append(f"| {k} | {t[0]:.0f} | {t[1]:.0f} | {g[0]:.0f} | {g[1]:.0f} |")
        lines.append("(nan: not measured)")
        lines.append("")
    lines += [f"{k}: {d}" for k, d in res["desc"].items()]
    lines += [f"note: {n}" for n in res["notes"]]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--block", type=int, default=20, help="steps per turn")
    p.add_argument("--gf-reps", type=int, default=9, help="G forward repetitions")
    p.add_argument("--max-s", type=float, default=30.0,
                   help="seconds of steps after which a row stops (once it has 50 steps)")
    p.add_argument("--threads", type=int, default=None, help="default: all CPUs")
    p.add_argument("--impls", default=",".join(DEFAULT_IMPLS), help=f"of {','.join(IMPLS)}")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-gforward", action="store_true", help="also G forward's peak RSS")
    p.add_argument("--json", help="also write the raw times to this file")
    p.add_argument("--baseline", metavar="TREE",
                   help="a source tree (its kernels built in place) to time as npgan-base")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--rss", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.worker, a.threads, a.rss, a.steps)
    impls = a.impls.split(",")
    if a.baseline:
        global BASELINE
        BASELINE = os.path.abspath(a.baseline)
        if not os.path.isdir(os.path.join(BASELINE, "npgan")):
            p.error(f"--baseline {a.baseline}: no npgan package there")
        impls += [] if "npgan-base" in impls else ["npgan-base"]
    elif "npgan-base" in impls:
        p.error("npgan-base needs --baseline TREE")
    res = run(a.steps, a.block, a.gf_reps, a.threads, impls,
              False if a.no_memory else ("all" if a.memory_gforward else True), max_s=a.max_s)
    print(report(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()
