"""Recipe search for the paper's MNIST GAN: an Optuna study whose trials run on Dask.

    from npgan import sweep
    sweep.run_study("examples/sweep_space.json", "runs/sweep", n_trials=40,
                    config={"epochs": 5})            # embedded LocalCluster
    sweep.run_study(space, "runs/sweep", scheduler="tcp://host:8786")   # an existing cluster

Architecture fixed (widths configurable for small runs), everything the paper
leaves free is searched: learning rates and their decay (D and G apart), the
momentum ramp, k / simultaneous update, D's objective scale, dropout rates, the
z prior, Adam (rates and betas per player), batch size and an average of G's
weights (decay and start). See docs/sweep.md.

How it runs
-----------
* The **driver** (:func:`run_study`) is the only process that talks to the
  Optuna storage (an SQLite file in the study directory by default, any
  SQLAlchemy URL otherwise). It asks the TPE sampler for a recipe
  (``study.ask()``), submits the trial to Dask (``client.submit(...,
  retries=N)``), and ``study.tell()``\\ s the result. A study is resumable: a
  restarted driver leaves finished trials alone and resubmits the trials left
  RUNNING, which continue from their last checkpoint.
* A **trial** (:func:`run_trial`) runs on a Dask worker with BLAS (and npgan's
  own GEMM pool, which follows it) pinned to ``threads`` threads
  (threadpoolctl). It checkpoints into ``STUDY/trials/NNNNN/`` every few
  minutes and at every evaluation (the trainer's state, its own moving
  average of G, the learning rates' position, the evaluations so far), so a
  trial whose worker died is re-run by Dask on another worker from that
  checkpoint and ends bit for bit as it would have without the failure.
* Every ``eval_every`` epochs the trial measures the validation Parzen LL
  (sigma chosen on MNIST valid[:parzen_valid], as in the paper) and the
  validation FD (reference classifier's features, against MNIST valid =
  train[50000:60000]; never the test set), sends them to the driver through a
  Dask Queue and waits for the pruner's answer in a Dask Variable.
* Objective: maximise the final validation Parzen LL, subject to validation
  FD <= ``fd_max``: a number, or "1.5x" (the default) for 1.5 times the lowest
  validation FD of the study's complete trials. The selected recipe is the
  highest Parzen among complete trials within that bound; an absolute bound
  is also the TPE sampler's constraint. Single-objective so
  that the median pruner can stop poor trials early.

``import npgan`` does not import this module; dask, distributed, optuna and
sqlalchemy are imported when a study starts (``pip install -e ".[sweep]"``).
"""
import contextlib
import csv
import io
import json
import math
import numbers
import os
import signal
import socket
import sys
import time
import uuid

import numpy

from . import backend, checkpoint, files, models, optim, train
from .metrics.parzen import usable_cores  # noqa: F401  (sweep.usable_cores: examples/sweep.py)
from .progress import Log

INSTALL_HINT = 'pip install -e ".[sweep]"  (dask[distributed], optuna, sqlalchemy, threadpoolctl)'
HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT_DATA = os.path.join(os.path.dirname(HERE), "data", "mnist")
DECISION_TIMEOUT = 60.0     # seconds a trial waits for the pruner's answer before going on
CANCEL_POLL = 5.0           # seconds between a trial's checks that its task is still wanted


class SweepError(ValueError):
    """A search space, trial configuration or study that cannot be run."""


def _require():
    """(dask, distributed, optuna), or ImportError naming the install command."""
    try:
        import dask
        import distributed
        import optuna
        import sqlalchemy  # noqa: F401  (optuna's RDB storage)
    except ImportError as e:
        raise ImportError(f"npgan.sweep needs {e.name}: {INSTALL_HINT}") from e
    return dask, distributed, optuna


# ------------------------------------------------------------------ the search space

def _real(lo=None, hi=None, lo_open=False, hi_open=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"must be {'<' if hi_open else '<='} {hi}"
        return None
    return check


def _integer(lo):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            return "must be an integer"
        return None if v >= lo else f"must be >= {lo}"
    return check


def _one_of(*values):
    def check(v):
        return None if any(v is c or (type(v) is type(c) and v == c) for c in values) \
            else f"must be one of {list(values)}"
    return check


#: key -> (kind, value check, the paper's value). Order matters: a key's
#: parents (optimizer, simultaneous, ema_decay) come before it.
KEYS = {
    "optimizer": ("cat", _one_of("sgd", "adam"), "sgd"),
    "simultaneous": ("cat", _one_of(True, False), True),
    "ema_decay": ("float", _real(0.0, 1.0, hi_open=True), 0.0),
    "sgd_lr_d": ("float", _real(0.0, lo_open=True), 0.1),
    "sgd_lr_g": ("float", _real(0.0, lo_open=True), 0.1),
    "momentum_start": ("float", _real(0.0, 1.0, hi_open=True), 0.5),
    "momentum_end": ("float", _real(0.0, 1.0, hi_open=True), 0.7),
    "momentum_ramp_epochs": ("int", _integer(0), 249),
    "adam_lr_d": ("float", _real(0.0, lo_open=True), 2e-4),
    "adam_lr_g": ("float", _real(0.0, lo_open=True), 2e-4),
    "adam_beta1_d": ("float", _real(0.0, 1.0, hi_open=True), 0.5),
    "adam_beta1_g": ("float", _real(0.0, 1.0, hi_open=True), 0.5),
    "adam_beta2": ("float", _real(0.0, 1.0, hi_open=True), 0.999),
    "lr_decay_d": ("float", _real(1.0), 1.000004),
    "lr_decay_g": ("float", _real(1.0), 1.000004),
    "k": ("int", _integer(1), 1),
    "d_scale": ("float", _real(0.0, lo_open=True), 0.5),
    "p_input": ("float", _real(0.0, 1.0, hi_open=True), 0.2),
    "p_hidden": ("float", _real(0.0, 1.0, hi_open=True), 0.5),
    "z_prior": ("cat", _one_of(*models.Z_PRIORS), "gaussian"),
    "batch_size": ("int", _integer(1), 100),
    "ema_start": ("float", _real(0.0, 1.0, hi_open=True), 0.0),
}
#: the authors' recipe (train.paper_schedules, models.paper_mnist), no averaging of G
PAPER = {k: v[2] for k, v in KEYS.items()}


def active(key, recipe):
    """Does ``key`` matter for a recipe with these parents' values?"""
    if key.startswith("sgd_") or key.startswith("momentum_"):
        return recipe["optimizer"] == "sgd"
    if key.startswith("adam_"):
        return recipe["optimizer"] == "adam"
    if key == "k":
        return not recipe["simultaneous"]
    if key == "ema_start":
        return recipe["ema_decay"] > 0
    return True


def load_space(space):
    """Validate a search space (a dict or the path of a JSON file) -> {key: spec}.

    Each key of :data:`KEYS` may appear; one that is absent keeps the paper's
    value. A spec is a fixed value (``0.5``, ``"adam"``, ``true``), a range
    ``{"low": a, "high": b}`` (``"log": true`` for a log scale, ``"step"``) or
    ``{"choices": [...]}``. Raises SweepError naming the key for an unknown
    key or field, an empty range or choice list, or a value out of its domain."""
    if isinstance(space, (str, os.PathLike)):
        path = os.fspath(space)
        try:
            with open(path, encoding="utf-8") as f:
                space = json.load(f)
        except OSError as e:
            raise SweepError(f"cannot read the search space {path}: {e}") from e
        except json.JSONDecodeError as e:
            raise SweepError(f"search space {path} is not valid JSON: {e}") from e
    if not isinstance(space, dict):
        raise SweepError(f"a search space is a JSON object {{key: spec}}, got {type(space).__name__}")
    out = {}
    for key, spec in space.items():
        if key not in KEYS:
            raise SweepError(f"search space: unknown key {key!r}; known keys: {', '.join(KEYS)}")
        out[key] = _check_spec(key, spec)
    return out


def _check_spec(key, spec):
    kind, check, _ = KEYS[key]

    def value(v, what):
        if kind == "int" and isinstance(v, float) and v.is_integer():
            v = int(v)
        err = check(v)
        if err:
            raise SweepError(f"search space: {key!r} {what} {v!r} {err}")
        return v

    if not isinstance(spec, dict):
        if isinstance(spec, list):
            raise SweepError(f"search space: {key!r} is a list; write {{\"choices\": [...]}}")
        return {"fixed": value(spec, "value")}
    fields = set(spec)
    if "choices" in fields:
        if fields != {"choices"}:
            raise SweepError(f"search space: {key!r} mixes 'choices' with {sorted(fields - {'choices'})}")
        ch = spec["choices"]
        if not isinstance(ch, list) or not ch:
            raise SweepError(f"search space: {key!r} has an empty choice list" if isinstance(ch, list)
                             else f"search space: {key!r} 'choices' must be a list, got {ch!r}")
        ch = [value(v, "choice") for v in ch]
        if len({json.dumps(v) for v in ch}) != len(ch):
            raise SweepError(f"search space: {key!r} lists a choice twice: {ch}")
        return {"choices": ch}
    unknown = fields - {"low", "high", "log", "step"}
    if unknown or not {"low", "high"} <= fields:
        raise SweepError(f"search space: {key!r} must be a value, {{\"low\", \"high\"[, \"log\", "
                         f"\"step\"]}} or {{\"choices\"}}; got fields {sorted(fields)}")
    if kind == "cat":
        raise SweepError(f"search space: {key!r} takes a value or choices, not a range")
    lo, hi = value(spec["low"], "low"), value(spec["high"], "high")
    if lo > hi:
        raise SweepError(f"search space: {key!r} has an empty range: low {lo!r} > high {hi!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SweepError(f"search space: {key!r} 'log' must be true or false, got {log!r}")
    if log and lo <= 0:
        raise SweepError(f"search space: {key!r} has a log range with low {lo!r} <= 0")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, numbers.Real) or not step > 0:
            raise SweepError(f"search space: {key!r} 'step' must be a positive number, got {step!r}")
        if log:
            raise SweepError(f"search space: {key!r} cannot have both 'log' and 'step'")
        if kind == "int" and not float(step).is_integer():
            raise SweepError(f"search space: {key!r} is an integer; 'step' must be one, got {step!r}")
    return {"low": lo, "high": hi, "log": log, "step": step}


def resolve(space, pick):
    """The full recipe (every key of KEYS): fixed values and the paper's for
    absent keys; ``pick(key, spec)`` for the searched keys that are active."""
    recipe = {}
    for key in KEYS:
        spec = space.get(key)
        if spec is None:
            recipe[key] = PAPER[key]
        elif "fixed" in spec:
            recipe[key] = spec["fixed"]
        elif active(key, recipe):
            recipe[key] = pick(key, spec)
        else:
            recipe[key] = PAPER[key]
    return recipe


def suggest(trial, space):
    """Draw a recipe with an Optuna trial (define-by-run: only active keys)."""
    def pick(key, spec):
        if "choices" in spec:
            return trial.suggest_categorical(key, spec["choices"])
        if KEYS[key][0] == "int":
            return trial.suggest_int(key, spec["low"], spec["high"], step=int(spec["step"] or 1),
                                     log=spec["log"])
        return trial.suggest_float(key, spec["low"], spec["high"], step=spec["step"], log=spec["log"])
    return resolve(space, pick)


def recipe_from_params(params, space):
    """The recipe of a trial already in the study (its stored params)."""
    def pick(key, spec):
        if key not in params:
            raise SweepError(f"trial has no value for {key!r}: the search space changed since it "
                             "started; use the space it was started with or a new --study-name")
        return params[key]
    return resolve(space, pick)


def paper_params(space):
    """The searched parameters of the paper's recipe within ``space`` (its
    fixed keys as they are; the searched ones at the paper's values)."""
    return searched(resolve(space, lambda key, spec: PAPER[key]), space)


def searched(recipe, space):
    """The recipe's values of the searched, active keys (its Optuna params)."""
    return {k: recipe[k] for k in KEYS
            if k in space and "fixed" not in space[k] and active(k, recipe)}


# ------------------------------------------------------------------ one trial

#: what a trial is, apart from its recipe (same for every trial of a study)
TRIAL_DEFAULTS = {
    "epochs": 5, "train_size": 50000, "eval_every": 1, "eval_samples": 2000,
    "parzen_valid": 1000, "fd_valid": 10000, "g_hidden": 1200, "d_units": 240, "d_pieces": 5,
    "z_dim": models.Z_DIM, "g_loss": "nonsaturating", "seed": 0, "data_dir": None,
}


def trial_config(config=None):
    """TRIAL_DEFAULTS updated by ``config``, checked (SweepError naming the key)."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(TRIAL_DEFAULTS))
    if unknown:
        raise SweepError(f"trial config: unknown key(s) {unknown}; known: {sorted(TRIAL_DEFAULTS)}")
    cfg = {**TRIAL_DEFAULTS, **config}
    for key in ("epochs", "train_size", "eval_every", "eval_samples", "parzen_valid", "fd_valid",
                "g_hidden", "d_units", "d_pieces", "z_dim"):
        err = _integer(1)(cfg[key])
        if err:
            raise SweepError(f"trial config: {key} {cfg[key]!r} {err}")
    if cfg["eval_samples"] < 2 or cfg["fd_valid"] < 2:
        raise SweepError("trial config: eval_samples and fd_valid must be >= 2 (FD needs a covariance)")
    if cfg["parzen_valid"] > 10000 or cfg["fd_valid"] > 10000:
        raise SweepError("trial config: MNIST valid has 10000 images (parzen_valid, fd_valid)")
    if cfg["train_size"] > 50000:
        raise SweepError("trial config: train_size is at most 50000 (MNIST train; valid is held out)")
    if cfg["g_loss"] not in ("nonsaturating", "minimax"):
        raise SweepError(f"trial config: g_loss {cfg['g_loss']!r} must be 'nonsaturating' or 'minimax'")
    if isinstance(cfg["seed"], bool) or not isinstance(cfg["seed"], numbers.Integral):
        raise SweepError(f"trial config: seed must be an integer, got {cfg['seed']!r}")
    if cfg["data_dir"] is not None:
        cfg["data_dir"] = os.path.abspath(os.fspath(cfg["data_dir"]))
    return cfg


_cache = {}   # per process (a Dask worker keeps its data between trials)


def _data(cfg):
    """(train[:train_size], valid) float32, MNIST train_full split 50000 / 10000."""
    key = ("mnist", cfg["data_dir"])
    if key not in _cache:
        from . import datasets
        full, _ = datasets.load_mnist("train_full", data_dir=cfg["data_dir"], dtype="uint8",
                                      fallback=CHECKOUT_DATA)      # the copy a checkout carries
        _cache[key] = (full, {}, _float(full[50000:]))
    full, trains, valid = _cache[key]
    n = cfg["train_size"]
    if n not in trains:             # only the rows used, as load_mnist(dtype="float32") converts
        trains[n] = _float(full[:n])
    return trains[n], valid


def _float(images):
    return numpy.divide(images, numpy.float32(255), dtype=numpy.float32)


def _fd_reference(cfg, valid):
    key = ("fd", cfg["data_dir"], cfg["fd_valid"])
    if key not in _cache:
        from . import classifier
        from .metrics import feature_statistics
        model = classifier.load_classifier()
        _cache[key] = (model, feature_statistics(classifier.classify(model, valid[:cfg["fd_valid"]]).features))
    return _cache[key]


@contextlib.contextmanager
def _threads(n):
    """BLAS (and npgan's kernel pool, which follows it) limited to n threads.
    threadpoolctl reaches only the libraries loaded when it is entered, and the
    kernels load SciPy's OpenBLAS: load them first."""
    if not n:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    from . import _kernels
    for name in ("layers", "parzen_kernel"):
        _kernels.load(name)
    with threadpool_limits(limits=int(n)):
        yield


def _write_json(path, obj):
    files.write_text(path, json.dumps(obj, indent=1, allow_nan=True))


def _build(recipe, cfg, train_x):
    rng = numpy.random.default_rng(cfg["seed"])
    G = models.Generator(cfg["z_dim"], cfg["g_hidden"], train_x.shape[1],
                         output_bias=models.pixel_logits(train_x), rng=rng)
    D = models.Discriminator(train_x.shape[1], cfg["d_units"], cfg["d_pieces"],
                             p_input=recipe["p_input"], p_hidden=recipe["p_hidden"], rng=rng)
    if recipe["optimizer"] == "sgd":
        opt_g = optim.SGD(G.parameters(), lr=recipe["sgd_lr_g"], momentum=recipe["momentum_start"])
        opt_d = optim.SGD(D.parameters(), lr=recipe["sgd_lr_d"], momentum=recipe["momentum_start"])
        mom = optim.LinearRamp(recipe["momentum_start"], recipe["momentum_end"], 0,
                               recipe["momentum_ramp_epochs"])
        lr_g, lr_d = recipe["sgd_lr_g"], recipe["sgd_lr_d"]
    else:
        opt_g = optim.Adam(G.parameters(), lr=recipe["adam_lr_g"],
                           betas=(recipe["adam_beta1_g"], recipe["adam_beta2"]))
        opt_d = optim.Adam(D.parameters(), lr=recipe["adam_lr_d"],
                           betas=(recipe["adam_beta1_d"], recipe["adam_beta2"]))
        mom, lr_g, lr_d = None, recipe["adam_lr_g"], recipe["adam_lr_d"]
    # lr_schedule=None: the trainer would give D and G one schedule; each gets its own here
    trainer = train.GANTrainer(
        G, D, train_x, batch_size=recipe["batch_size"], k=recipe["k"],
        simultaneous=recipe["simultaneous"], g_loss=cfg["g_loss"], opt_g=opt_g, opt_d=opt_d,
        lr_schedule=None, momentum_schedule=mom, seed=cfg["seed"],
        sample_z=models.z_sampler(recipe["z_prior"], cfg["z_dim"]), d_scale=recipe["d_scale"])
    scheds = (optim.ExponentialDecay(lr_g, recipe["lr_decay_g"], 1e-6),
              optim.ExponentialDecay(lr_d, recipe["lr_decay_d"], 1e-6))
    return trainer, scheds


def _evaluate(trainer, G_eval, cfg, valid, threads):
    from . import classifier
    from .metrics import feature_statistics, frechet_distance, parzen
    samples = trainer.generate(cfg["eval_samples"], G_eval)      # fixed z (seed 12345)
    sigma, curve = parzen.select_sigma(valid, samples, n_valid=cfg["parzen_valid"],
                                       threads=threads or None)
    model, (mu, cov) = _fd_reference(cfg, valid)
    fd = frechet_distance(*feature_statistics(classifier.classify(model, samples).features), mu, cov)
    return {"parzen": float(numpy.max(curve)), "sigma": float(sigma), "fd": float(fd)}


def run_trial(spec, report=None):
    """Train and evaluate one recipe; resumable, deterministic.

    spec: {"number", "recipe" (full, see :func:`resolve`), "config" (see
    :func:`trial_config`), "dir" (the trial directory), "threads" (BLAS
    threads, 0: leave as is), optional "stop_at_step" (checkpoint and return
    "interrupted" there), "inject_kill" ({"step", "marker"}: the first trial to reach that
    step creates ``marker`` (JSON: number, pid, step) and SIGKILLs its own
    process; for tests)}.
    report(eval_record, final) -> True to prune; called at every evaluation.

    Returns {"number", "state": "complete" | "pruned" | "fail" | "interrupted",
    "parzen", "fd", "sigma" (last evaluation), "evals", "history", "step",
    "epoch", "seconds", "attempts", "error"}. A trial directory that holds a
    result returns it without training again."""
    tdir = spec["dir"]
    os.makedirs(tdir, exist_ok=True)
    res_path = os.path.join(tdir, "result.json")
    if os.path.exists(res_path):
        with open(res_path, encoding="utf-8") as f:
            return json.load(f)
    with _threads(spec.get("threads", 0)):
        return _run_trial(spec, report, res_path)


def _run_trial(spec, report, res_path):
    recipe, cfg, tdir = spec["recipe"], trial_config(spec["config"]), spec["dir"]
    threads = spec.get("threads", 0)
    train_x, valid = _data(cfg)
    trainer, (sched_g, sched_d) = _build(recipe, cfg, train_x)
    G = trainer.G
    ck_path = os.path.join(tdir, "checkpoint.npz")
    ck_config = {"recipe": recipe, "config": {k: v for k, v in cfg.items() if k != "data_dir"}}
    extra = {"evals": [], "ema": None, "seconds": 0.0}
    if os.path.exists(ck_path):
        ck = checkpoint.load(ck_path, config=ck_config)
        trainer.load_state_dict(ck["state"]["trainer"])
        extra = ck["state"]["sweep"]
    ema = None if extra["ema"] is None else [backend.asarray(a).copy() for a in extra["ema"]]
    steps_total = cfg["epochs"] * trainer.batches_per_epoch()
    ema_from = int(round(recipe["ema_start"] * steps_total))
    decay = recipe["ema_decay"]

    def set_lrs(step):
        trainer.opt_g.lr, trainer.opt_d.lr = sched_g(step), sched_d(step)
    set_lrs(trainer.step_count)

    attempts_path = os.path.join(tdir, "attempts.jsonl")
    with open(attempts_path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"time": time.time(), "host": socket.gethostname(), "pid": os.getpid(),
                            "from_step": trainer.step_count, "threads": threads}) + "\n")
    t_start, seconds0 = time.time(), extra["seconds"]
    state = {"last_ck": time.time(), "stop": False, "last_poll": time.time()}
    ck_steps = int(spec.get("checkpoint_steps") or 0)
    ck_seconds = 60.0 * float(spec.get("checkpoint_minutes", 5.0))
    kill = spec.get("inject_kill")
    stop_at = spec.get("stop_at_step")

    def save():
        extra["seconds"] = seconds0 + time.time() - t_start
        extra["ema"] = None if ema is None else [backend.to_numpy(a).copy() for a in ema]
        checkpoint.save(ck_path, {"trainer": trainer.state_dict(), "sweep": extra}, ck_config)
        state["last_ck"] = time.time()

    def on_step(tr, stats):
        nonlocal ema
        if decay > 0 and "g_loss" in stats and tr.step_count > ema_from:
            if ema is None:                      # the average starts from G's weights
                ema = [p.data.copy() for p in G.parameters()]
            else:
                for a, p in zip(ema, G.parameters()):
                    a += (1.0 - decay) * (p.data - a)
        set_lrs(tr.step_count)                   # lr of the next step, each player its own
        if kill and tr.step_count == kill["step"]:
            try:                                 # the first trial there (once): marker, then SIGKILL
                fd = os.open(kill["marker"], os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                fd = None
            if fd is not None:
                os.write(fd, json.dumps({"number": spec["number"], "pid": os.getpid(),
                                         "step": tr.step_count}).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        if stop_at is not None and tr.step_count >= stop_at:
            state["stop"] = True

    def should_stop():
        now = time.time()
        if state["stop"]:
            save()
            return True
        if (ck_steps and trainer.step_count % ck_steps == 0) or now - state["last_ck"] > ck_seconds:
            save()
        if now - state["last_poll"] > CANCEL_POLL:
            state["last_poll"] = now
            if _task_cancelled():
                save()
                state["stop"] = True
                return True
        return False

    def result(st, error=None):
        last = extra["evals"][-1] if extra["evals"] else {}
        with open(attempts_path, encoding="utf-8") as f:
            attempts = sum(1 for line in f if line.strip())
        return {"number": spec["number"], "state": st, "parzen": last.get("parzen"),
                "fd": last.get("fd"), "sigma": last.get("sigma"), "evals": extra["evals"],
                "history": trainer.history, "step": trainer.step_count, "epoch": trainer.epoch,
                "seconds": seconds0 + time.time() - t_start, "attempts": attempts, "error": error}

    def finish(st, error=None):
        r = result(st, error)
        gs = G if ema is None else _ema_generator(G, ema, cfg, train_x)
        weights = {**{f"G_eval.{k}": v for k, v in _host(gs.state_dict()).items()},
                   **{f"G.{k}": v for k, v in _host(G.state_dict()).items()},
                   **{f"D.{k}": v for k, v in _host(trainer.D.state_dict()).items()}}
        with files.atomic_write(os.path.join(tdir, "final.npz")) as f:
            numpy.savez(f, **weights)
        _write_json(res_path, r)
        return r

    try:
        while trainer.epoch < cfg["epochs"]:
            rec = trainer.train_epoch(on_step=on_step, should_stop=should_stop)
            if rec is None:
                return result("interrupted")
            if trainer.epoch % cfg["eval_every"] and trainer.epoch != cfg["epochs"]:
                continue
            G_eval = G if ema is None else _ema_generator(G, ema, cfg, train_x)
            ev = {"epoch": trainer.epoch, "step": trainer.step_count,
                  **_evaluate(trainer, G_eval, cfg, valid, threads)}
            extra["evals"].append(ev)
            final = trainer.epoch == cfg["epochs"]
            prune = bool(report(ev, final)) if report is not None else False
            save()
            if prune and not final:
                return finish("pruned")
    except FloatingPointError as e:            # diverged: deterministic, no point retrying
        return finish("fail", f"{type(e).__name__}: {e}")
    return finish("complete")


def _host(state):
    return {k: backend.to_numpy(v) for k, v in state.items()}


def _ema_generator(G, ema, cfg, train_x):
    Ge = models.Generator(cfg["z_dim"], cfg["g_hidden"], train_x.shape[1],
                          rng=numpy.random.default_rng(0))
    for p, a in zip(Ge.parameters(), ema):
        p.data = a.copy()
    return Ge


def _task_cancelled():
    """True when this runs as a Dask task that the scheduler no longer wants
    (its driver went away); False outside Dask or when unsure."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state
        w, key = get_worker(), getattr(thread_state, "key", None)
        if key is None:
            return False
        ts = w.state.tasks.get(key)
        return ts is None or ts.state in ("cancelled", "released", "forgotten")
    except Exception:       # not in a worker, or another distributed version
        return False


def run_trial_on_worker(spec, channel):
    """:func:`run_trial` inside a Dask task: reports go to the driver through
    the Queue ``channel``, decisions come back in Variables."""
    from distributed import Queue, Variable, get_client
    client = get_client()
    q = Queue(channel, client=client)
    number = spec["number"]

    def report(ev, final):
        q.put({"kind": "eval", "number": number, "final": final, **ev})
        if final:
            return False
        v = Variable(f"{channel}-{number}-{ev['step']}", client=client)
        try:
            return bool(v.get(timeout=DECISION_TIMEOUT))
        except Exception:          # no answer in time: keep training
            return False
        finally:
            with contextlib.suppress(Exception):
                v.delete()

    q.put({"kind": "start", "number": number, "host": socket.gethostname(), "pid": os.getpid()})
    return run_trial(spec, report)


# ------------------------------------------------------------------ the study

def _constraint(frozen):
    """TPE's constraint (<= 0 feasible): validation FD - fd_max."""
    fd, fd_max = frozen.user_attrs.get("fd"), frozen.user_attrs.get("fd_max")
    if fd is None or fd_max is None or not math.isfinite(fd):
        return (1e9,)
    return (float(fd) - float(fd_max) if math.isfinite(fd_max) else -1.0,)


def _slots(client):
    """(how many trials run at once, the resources each task asks for): one per
    "trial" resource when every worker declares it, else one per worker thread."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values() if _takes_n_workers(client) \
        else client.scheduler_info()["workers"].values()
    workers = list(workers)
    if workers and all("trial" in (w.get("resources") or {}) for w in workers):
        return int(sum(w["resources"]["trial"] for w in workers)), {"trial": 1}
    return sum(int(w.get("nthreads", 1)) for w in workers), None


def _takes_n_workers(client):
    import inspect
    try:
        return "n_workers" in inspect.signature(client.scheduler_info).parameters
    except (TypeError, ValueError):
        return False


def _fmt(params):
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def run_study(space, study_dir, *, n_trials=20, config=None, storage=None, study_name="npgan",
              timeout=None, scheduler=None, workers=None, threads_per_trial=1, retries=2,
              fd_max="1.5x", pruner="median", seed=0, enqueue_paper=True, dashboard_address=":8787",
              checkpoint_minutes=5.0, checkpoint_steps=0, figures=True, inject=None, out=print):
    """Run (or resume) a study until it holds ``n_trials`` finished trials
    (complete, pruned or failed), or ``timeout`` seconds have passed (then no
    new trial starts; those running finish). Returns the summary dict of
    :func:`write_results` plus "this_run" (trials finished, seconds, trials/hour).

    space: dict or JSON path (:func:`load_space`); config: the trial settings
    (:func:`trial_config`); study_dir: trial directories, results and the
    default storage ``sqlite:///STUDY_DIR/study.db``; storage: any SQLAlchemy
    URL instead. scheduler: address of an existing Dask scheduler; None starts
    a LocalCluster of ``workers`` (default cores // threads_per_trial) single-
    threaded worker processes. threads_per_trial: BLAS threads in each trial.
    retries: re-runs of a trial whose task raised; a worker that dies is
    handled by the scheduler (``distributed.scheduler.allowed-failures``, set
    to ``retries`` + 1 for the embedded cluster). fd_max: the FD bound of the
    selection rule, a number (then also the sampler's constraint) or "<f>x"
    (f times the lowest FD among the complete trials; see :func:`fd_bound`).
    pruner: "median" (Optuna's MedianPruner on the validation Parzen LL once 4
    trials have completed, never at a trial's first evaluation), "none", or an
    Optuna pruner.
    enqueue_paper: make the first trial the paper's recipe (the searched keys
    set to the paper's values) when those lie in the space. inject: extra
    spec entries for every trial (tests: "inject_kill", "stop_at_step").
    figures: write pareto.png and curves.png at the end (needs matplotlib)."""
    space = load_space(space)                      # refuse a bad space before anything starts
    cfg = trial_config(config)
    if not (pruner in ("median", "none") or hasattr(pruner, "prune")):
        raise SweepError(f"pruner must be 'median', 'none' or an Optuna pruner, got {pruner!r}")
    if isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral) or n_trials < 1:
        raise SweepError(f"n_trials must be a positive integer, got {n_trials!r}")
    fd_max = parse_fd_max(fd_max)
    if _max_batch(space) > cfg["train_size"]:
        raise SweepError(f"search space: 'batch_size' up to {_max_batch(space)} is more than the "
                         f"{cfg['train_size']} training images of a trial (train_size)")
    threads_per_trial = int(threads_per_trial)
    if threads_per_trial < 1:
        raise SweepError(f"threads_per_trial must be >= 1, got {threads_per_trial}")
    _, distributed, optuna = _require()
    t0 = time.time()
    log = Log(out, t0)
    study_dir = os.path.abspath(study_dir)
    os.makedirs(os.path.join(study_dir, "trials"), exist_ok=True)
    storage = storage or f"sqlite:///{os.path.join(study_dir, 'study.db')}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # FD <= fd_max as TPE's constraint: Trial.set_constraint from Optuna 5, constraints_func before
    new_api = hasattr(optuna.trial.Trial, "set_constraint")
    old_api = _absolute(fd_max) and math.isfinite(fd_max) and not new_api
    # a resumed study must not replay the random draws of its first session: the
    # sampler's seed moves on with the number of trials already in the study
    n_before = _count_trials(storage, study_name, optuna)
    sampler = optuna.samplers.TPESampler(seed=seed + n_before, n_startup_trials=5,
                                         **({"constraints_func": _constraint} if old_api else {}))
    if pruner == "median":      # once 4 trials completed, not at a trial's first evaluation
        # (the earliest a trial can be pruned is at step == n_warmup_steps: its second evaluation)
        prn = optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2 * cfg["eval_every"])
    else:
        prn = optuna.pruners.NopPruner() if pruner == "none" else pruner
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                sampler=sampler, pruner=prn, load_if_exists=True)
    stored_cfg = study.user_attrs.get("trial_config")
    cfg_json = json.loads(json.dumps(cfg))
    if stored_cfg is None:
        study.set_user_attr("trial_config", cfg_json)
    elif {k: v for k, v in stored_cfg.items() if k != "data_dir"} != \
            {k: v for k, v in cfg_json.items() if k != "data_dir"}:
        diff = ", ".join(f"{k}: study {stored_cfg.get(k)!r} vs now {cfg_json.get(k)!r}"
                         for k in sorted(set(stored_cfg) | set(cfg_json))
                         if k != "data_dir" and stored_cfg.get(k) != cfg_json.get(k))
        raise SweepError(f"study {study_name!r} in {storage} was run with another trial "
                         f"configuration ({diff}); use the same settings or a new --study-name")
    if study.user_attrs.get("space") not in (None, space):
        log("note: the search space differs from the one this study started with")
    study.set_user_attr("space", space)
    study.set_user_attr("fd_max", fd_max)
    TS = optuna.trial.TrialState
    finished = (TS.COMPLETE, TS.PRUNED, TS.FAIL)
    trials = study.get_trials(deepcopy=False)
    n_done = sum(t.state in finished for t in trials)
    resume = [t for t in trials if t.state == TS.RUNNING]
    log(f"study {study_name!r} in {storage}: {n_done} finished trial(s), {len(resume)} to resume, "
        f"target {n_trials}")
    if enqueue_paper and not trials:
        params = paper_params(space)
        if all(_in_spec(space[k], v) for k, v in params.items()):
            study.enqueue_trial(params)
            log("trial 0 will be the paper's recipe (" + (_fmt(params) or "all keys fixed") + ")")
        else:
            log("the paper's recipe lies outside this space: not enqueued")

    # -- the cluster
    cluster = None
    if scheduler is None:
        cluster = local_cluster(workers, threads_per_trial, retries, dashboard_address)
        client = distributed.Client(cluster)
    else:
        client = distributed.Client(scheduler)
    try:
        link = client.dashboard_link
        try:
            import bokeh  # noqa: F401
        except ImportError:
            link += "  (the dashboard needs bokeh>=3.1: pip install bokeh)"
        if _slots(client)[0] == 0:
            log("waiting for a Dask worker to join the scheduler ...")
            client.wait_for_workers(1)
        parallel, resources = _slots(client)
        log(f"Dask: {'embedded LocalCluster' if cluster else scheduler}, {parallel} trial(s) at "
            f"once, {threads_per_trial} thread(s) each; dashboard {link}")
        return _drive(study, space, cfg, study_dir, client, distributed, optuna, log, n_trials,
                      timeout, parallel, resources, retries, fd_max, threads_per_trial,
                      checkpoint_minutes, checkpoint_steps, inject or {}, resume, t0, figures)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _count_trials(storage, study_name, optuna):
    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).get_trials(
            deepcopy=False))
    except KeyError:                 # no such study yet
        return 0


def _max_batch(space):
    spec = space.get("batch_size")
    if spec is None:
        return PAPER["batch_size"]
    return spec.get("fixed", max(spec.get("choices", [spec.get("high", 0)])))


def local_cluster(workers=None, threads_per_trial=1, retries=2, dashboard_address=":8787"):
    """The embedded cluster of :func:`run_study`: a LocalCluster of ``workers``
    (default usable cores // threads_per_trial) single-threaded worker
    processes, each offering one "trial" resource, with BLAS threads set to
    ``threads_per_trial`` in their environment; a task whose worker dies is
    rescheduled up to ``retries`` + 1 times (allowed-failures)."""
    dask, distributed, _ = _require()
    n_workers = int(workers or max(1, usable_cores() // threads_per_trial))
    env = {v: str(threads_per_trial) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                               "MKL_NUM_THREADS")}
    with dask.config.set({"distributed.scheduler.allowed-failures": retries + 1}):
        return distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            dashboard_address=dashboard_address, resources={"trial": 1}, env=env, silence_logs=40)


def _in_spec(spec, v):
    if "fixed" in spec:
        return True
    if "choices" in spec:
        return any(json.dumps(v) == json.dumps(c) for c in spec["choices"])
    return spec["low"] <= v <= spec["high"]


def _drive(study, space, cfg, study_dir, client, distributed, optuna, log, n_trials, timeout,
           parallel, resources, retries, fd_max, threads, ck_minutes, ck_steps, inject, resume, t0,
           figures):
    TS = optuna.trial.TrialState
    channel = f"npgan-sweep-{uuid.uuid4().hex[:12]}"
    queue = distributed.Queue(channel, client=client)
    running = {}        # future -> number
    trial_of = {}       # number -> optuna Trial
    decisions = {}      # (number, step) -> prune?
    evals = {}          # number -> list of eval records
    started = {}        # number -> time submitted
    counts = {"complete": 0, "pruned": 0, "fail": 0}
    slots = {"n": parallel, "resources": resources, "checked": time.time()}
    span = []           # time of the first submission, of the last result

    def submit(trial, recipe):
        number = trial.number
        tdir = os.path.join(study_dir, "trials", f"{number:05d}")
        os.makedirs(tdir, exist_ok=True)
        spec = {"number": number, "recipe": recipe, "config": cfg, "dir": tdir, "threads": threads,
                "checkpoint_minutes": ck_minutes, "checkpoint_steps": ck_steps, **inject}
        if not os.path.exists(os.path.join(tdir, "recipe.json")):
            _write_json(os.path.join(tdir, "recipe.json"), {"number": number, "recipe": recipe})
        trial.set_user_attr("fd_max", fd_max)
        trial.set_user_attr("dir", tdir)
        fut = client.submit(run_trial_on_worker, spec, channel, key=f"{channel}-trial-{number}",
                            retries=retries, pure=False, resources=slots["resources"])
        running[fut] = number
        trial_of[number] = trial
        evals[number] = list(trial.user_attrs.get("evals", []))
        started[number] = time.time()
        span[:1] = span[:1] or [started[number]]
        log(f"trial {number} submitted: {_fmt(searched(recipe, space)) or '(all keys fixed)'}")

    for fr in resume:
        trial = optuna.trial.Trial(study, fr._trial_id)
        try:
            recipe = recipe_from_params(fr.params, space)
        except SweepError as e:
            log(f"trial {fr.number} cannot be resumed: {e}; marked failed")
            trial.set_user_attr("error", str(e))
            study.tell(fr.number, state=TS.FAIL)
            continue
        log(f"trial {fr.number} was running when the driver stopped: resubmitted (continues from "
            "its checkpoint)")
        submit(trial, recipe)

    def n_total():
        return sum(t.state in (TS.COMPLETE, TS.PRUNED, TS.FAIL, TS.RUNNING)
                   for t in study.get_trials(deepcopy=False))

    def handle(msg):
        n = msg["number"]
        trial = trial_of.get(n)
        if trial is None:
            return
        if n not in running.values():
            # a second run of a trial already recorded (the scheduler re-ran a task whose
            # worker it thought lost while it still ran): tell it to stop, record nothing
            if msg["kind"] == "eval" and not msg["final"]:
                distributed.Variable(f"{channel}-{n}-{msg['step']}", client=client).set(True)
            return
        if msg["kind"] == "start":
            log(f"trial {n} running on {msg['host']} (pid {msg['pid']})")
            return
        step = msg["epoch"]
        rec = {k: msg[k] for k in ("epoch", "step", "parzen", "sigma", "fd")}
        if all(e["epoch"] != step for e in evals[n]):
            evals[n].append(rec)
            trial.report(msg["parzen"], step)
            trial.set_user_attr("evals", evals[n])
            trial.set_user_attr("fd", msg["fd"])
        if msg["final"]:
            verdict = "final"
        else:
            if (n, msg["step"]) not in decisions:
                decisions[(n, msg["step"])] = bool(trial.should_prune())
            prune = decisions[(n, msg["step"])]
            distributed.Variable(f"{channel}-{n}-{msg['step']}", client=client).set(prune)
            verdict = "pruned" if prune else "continue"
        log(f"trial {n} epoch {step}: Parzen {msg['parzen']:.1f} (sigma {msg['sigma']:.3f}) "
            f"FD {msg['fd']:.2f} -> {verdict}")

    def drain():
        for msg in queue.get(batch=True):
            handle(msg)

    def finish(fut):
        n = running.pop(fut)
        span[1:] = [time.time()]
        trial = trial_of[n]
        try:
            r = fut.result()
        except Exception as e:     # raised after its retries, or KilledWorker
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            study.tell(n, state=TS.FAIL)
            counts["fail"] += 1
            log(f"trial {n} FAILED: {type(e).__name__}: {e}")
            return
        for key in ("seconds", "attempts", "step", "epoch"):
            trial.set_user_attr(key, r[key])
        if r["evals"]:
            for e in r["evals"]:          # evaluations whose report did not come (or came late)
                if r["state"] != "interrupted" and all(x["epoch"] != e["epoch"] for x in evals[n]):
                    trial.report(e["parzen"], e["epoch"])
                    evals[n].append(e)
            trial.set_user_attr("evals", r["evals"])
            trial.set_user_attr("fd", r["fd"])
            trial.set_user_attr("sigma", r["sigma"])
            if _absolute(fd_max) and math.isfinite(fd_max) and hasattr(
                    trial, "set_constraint") and r["state"] in ("complete", "pruned"):
                fd = r["fd"] if math.isfinite(r["fd"]) else 1e9
                trial.set_constraint("fd", fd - fd_max)
        extra = f" ({r['attempts']} attempts)" if r["attempts"] > 1 else ""
        if r["state"] == "complete":
            study.tell(n, r["parzen"])
            counts["complete"] += 1
            bound = fd_bound(table(study), fd_max)
            ok = "within" if r["fd"] <= bound else "OUTSIDE"
            log(f"trial {n} COMPLETE: Parzen {r['parzen']:.2f} FD {r['fd']:.2f} ({ok} the bound "
                f"{_bound_text(fd_max, bound)}), {r['seconds']:.1f} s{extra}")
        elif r["state"] == "pruned":
            if not r["evals"]:
                study.tell(n, state=TS.FAIL)
            else:
                study.tell(n, state=TS.PRUNED)
            counts["pruned"] += 1
            log(f"trial {n} PRUNED at epoch {r['epoch']}: Parzen {r['parzen']:.2f} FD "
                f"{r['fd']:.2f}, {r['seconds']:.1f} s{extra}")
        elif r["state"] == "interrupted":
            log(f"trial {n} stopped at step {r['step']} (checkpointed); left running in the study")
        else:
            trial.set_user_attr("error", r["error"])
            study.tell(n, state=TS.FAIL)
            counts["fail"] += 1
            log(f"trial {n} FAILED: {r['error']}")
        write_results(study, study_dir, fd_max)

    deadline = None if timeout is None else t0 + timeout
    stopped_asking = False
    try:
        while True:
            if time.time() - slots["checked"] > 10:       # workers come and go (batch jobs)
                n, res = _slots(client)
                if (n, res) != (slots["n"], slots["resources"]) and n > 0:
                    log(f"Dask: now {n} trial(s) at once")
                    slots.update(n=n, resources=res)
                slots["checked"] = time.time()
            while (len(running) < slots["n"] and not stopped_asking):
                if deadline is not None and time.time() > deadline:
                    stopped_asking = True
                    log(f"timeout ({timeout:g} s): no new trials; waiting for {len(running)} running")
                    break
                if n_total() >= n_trials:
                    stopped_asking = True
                    break
                trial = study.ask()
                submit(trial, suggest(trial, space))
            if not running:
                break
            drain()
            if not any(f.done() for f in running):
                try:
                    distributed.wait(list(running), timeout=0.5, return_when="FIRST_COMPLETED")
                except TimeoutError:
                    pass
            drain()                  # the reports of a trial come before its result
            for fut in [f for f in running if f.done()]:
                finish(fut)
    except KeyboardInterrupt:
        log(f"interrupted: {len(running)} trial(s) left RUNNING with their checkpoints; run the "
            "same command again to resume them")
        for fut in running:
            fut.cancel()
        raise
    finally:
        with contextlib.suppress(Exception):
            queue.close()
    elapsed = time.time() - t0
    s = write_results(study, study_dir, fd_max, figures=figures)
    n_fin = sum(counts.values())
    busy = span[1] - span[0] if len(span) == 2 else 0.0
    s["this_run"] = {"finished": n_fin, **counts, "seconds": elapsed, "trial_seconds": busy,
                     "trials_per_hour": 3600.0 * n_fin / elapsed if elapsed > 0 else None,
                     "trials_per_hour_running": 3600.0 * n_fin / busy if busy > 0 else None}
    log(f"this run: {n_fin} trial(s) finished ({counts['complete']} complete, {counts['pruned']} "
        f"pruned, {counts['fail']} failed) in {elapsed:.0f} s = "
        f"{s['this_run']['trials_per_hour'] or 0:.1f} trials/hour; "
        f"{s['this_run']['trials_per_hour_running'] or 0:.1f} trials/hour from the first "
        f"submission to the last result ({busy:.0f} s)")
    b = s["best"]
    if b is None:
        log(f"no complete trial has FD <= {_bound_text(fd_max, s['fd_bound'])}; results in "
            f"{study_dir}/results.csv")
    else:
        log(f"selected: trial {b['number']}, Parzen {b['parzen']:.2f}, FD {b['fd']:.2f}: "
            f"{_fmt(b['params'])}  (results.csv, best.json, pareto.png in {study_dir})")
    return s


# ------------------------------------------------------------------ results

def table(study):
    """One dict per trial of the study (number, state, parzen, fd, sigma,
    epoch, seconds, attempts, params, evals, error)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        u = t.user_attrs
        rows.append({"number": t.number, "state": t.state.name,
                     "parzen": t.value if t.state.name == "COMPLETE" else
                     (u["evals"][-1]["parzen"] if u.get("evals") else None),
                     "fd": u.get("fd"), "sigma": u.get("sigma"),
                     "epoch": u.get("epoch"), "seconds": u.get("seconds"),
                     "attempts": u.get("attempts"), "params": dict(t.params),
                     "evals": u.get("evals", []), "error": u.get("error"), "dir": u.get("dir")})
    return rows


def parse_fd_max(v):
    """A positive number (inf: no bound) or "<factor>x" (relative to the best
    FD) -> float or the normalised string; SweepError otherwise."""
    if isinstance(v, str):
        t = v.strip().lower()
        try:
            num = float(t[:-1] if t.endswith("x") else t)
        except ValueError:
            raise SweepError(f"fd_max must be a number or '<factor>x' (e.g. 1.5x), got {v!r}") from None
        if t.endswith("x"):
            if not (math.isfinite(num) and num >= 1):
                raise SweepError(f"fd_max {v!r}: the factor must be a finite number >= 1")
            return f"{num:g}x"
        v = num
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0 or math.isnan(v):
        raise SweepError(f"fd_max must be a positive number (inf: no bound) or '<factor>x', got {v!r}")
    return float(v)


def _absolute(fd_max):
    return not isinstance(fd_max, str)


def fd_bound(rows, fd_max):
    """The FD bound as a number: fd_max itself, or factor x the lowest FD of
    the complete trials (inf while there is none)."""
    if _absolute(fd_max):
        return fd_max
    fds = [r["fd"] for r in rows if r["state"] == "COMPLETE" and r["fd"] is not None
           and math.isfinite(r["fd"])]
    return float(fd_max[:-1]) * min(fds) if fds else math.inf


def _bound_text(fd_max, bound):
    return f"{bound:.4g}" if _absolute(fd_max) else f"{bound:.4g} = {fd_max} the best FD"


def select(rows, fd_max):
    """The selection rule: the complete trial with the highest validation
    Parzen LL among those whose validation FD <= the bound (:func:`fd_bound`;
    None if none)."""
    bound = fd_bound(rows, fd_max)
    ok = [r for r in rows if r["state"] == "COMPLETE" and r["fd"] is not None and r["fd"] <= bound
          and r["parzen"] is not None]
    return max(ok, key=lambda r: (r["parzen"], -r["number"])) if ok else None


def pareto_front(rows):
    """Complete trials not dominated in (higher Parzen, lower FD), by FD."""
    pts = [r for r in rows if r["state"] == "COMPLETE" and r["fd"] is not None]
    front = [r for r in pts if not any(
        (o["parzen"] >= r["parzen"] and o["fd"] <= r["fd"]) and
        (o["parzen"] > r["parzen"] or o["fd"] < r["fd"]) for o in pts)]
    return sorted(front, key=lambda r: r["fd"])


def write_results(study, study_dir, fd_max, figures=False):
    """results.csv, results.json, best.json (and with figures=True
    pareto.png, curves.png when matplotlib is installed) -> summary dict."""
    rows = table(study)
    best = select(rows, fd_max)
    front = pareto_front(rows)
    bound = fd_bound(rows, fd_max)
    summary = {"study": study.study_name, "fd_max": fd_max, "fd_bound": bound, "n_trials": len(rows),
               "best": best, "pareto": [r["number"] for r in front], "trials": rows}
    _write_json(os.path.join(study_dir, "results.json"), summary)
    _write_json(os.path.join(study_dir, "best.json"), best)
    keys = [k for k in KEYS if any(k in r["params"] for r in rows)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["number", "state", "parzen", "fd", "sigma", "fd_ok", "pareto", "epoch", "seconds",
                "attempts"] + keys + ["error"])
    for r in rows:
        w.writerow([r["number"], r["state"], _num(r["parzen"]), _num(r["fd"]), _num(r["sigma"]),
                    "" if r["fd"] is None else int(r["fd"] <= bound),
                    int(r["number"] in summary["pareto"]), r["epoch"] or "", _num(r["seconds"]),
                    r["attempts"] or ""] + [r["params"].get(k, "") for k in keys] + [r["error"] or ""])
    files.write_text(os.path.join(study_dir, "results.csv"), buf.getvalue())
    if figures:
        summary["figures"] = plot(rows, best, front, bound, study_dir)
    return summary


def _num(v):
    return "" if v is None else f"{v:.6g}"


def plot(rows, best, front, fd_max, study_dir):
    """pareto.png (validation Parzen against FD) and curves.png (per trial,
    both over epochs); [] without matplotlib. fd_max: the bound, a number."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = {"COMPLETE": ("o", "C0"), "PRUNED": ("x", "C7")}
    for state, (m, c) in styles.items():
        pts = [r for r in rows if r["state"] == state and r["fd"] is not None and r["parzen"] is not None]
        if pts:
            ax.scatter([r["fd"] for r in pts], [r["parzen"] for r in pts], marker=m, c=c,
                       label=state.lower() + (" (last evaluation)" if state == "PRUNED" else ""))
            for r in pts:
                ax.annotate(str(r["number"]), (r["fd"], r["parzen"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
    if front:
        ax.step([r["fd"] for r in front], [r["parzen"] for r in front], "C1-", where="post",
                label="Pareto front")
    if math.isfinite(fd_max):
        ax.axvline(fd_max, color="C3", ls="--", lw=1, label=f"FD bound {fd_max:g}")
    if best is not None:
        ax.scatter([best["fd"]], [best["parzen"]], s=160, facecolors="none", edgecolors="C3",
                   label=f"selected (trial {best['number']})")
    ax.set_xlabel("validation FD (lower is better)")
    ax.set_ylabel("validation Parzen LL, nats (higher is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(study_dir, "pareto.png"))
    files.save_figure(fig, paths[-1], dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in rows:
        if r["evals"]:
            ep = [e["epoch"] for e in r["evals"]]
            ls = "-" if r["state"] == "COMPLETE" else ":"
            axes[0].plot(ep, [e["parzen"] for e in r["evals"]], ls, marker=".", label=str(r["number"]))
            axes[1].plot(ep, [e["fd"] for e in r["evals"]], ls, marker=".")
    axes[0].set_title("validation Parzen LL per trial (dotted: not complete)")
    axes[1].set_title("validation FD per trial")
    for a in axes:
        a.set_xlabel("epoch")
    if sum(bool(r["evals"]) for r in rows) <= 20:
        axes[0].legend(fontsize=7, ncol=2, title="trial")
    fig.tight_layout()
    paths.append(os.path.join(study_dir, "curves.png"))
    files.save_figure(fig, paths[-1], dpi=90)
    plt.close(fig)
    return paths


def dask_overhead(client, n=200):
    """Seconds per trivial task submitted and gathered one at a time, and per
    task when ``n`` are submitted at once (the scheduler's round trip)."""
    t = time.perf_counter()
    for i in range(n // 4):
        client.submit(_identity, i, pure=False).result()
    serial = (time.perf_counter() - t) / (n // 4)
    t = time.perf_counter()
    client.gather(client.map(_identity, range(n), pure=False))
    batch = (time.perf_counter() - t) / n
    return {"serial_s": serial, "batched_s": batch}


def _identity(x):
    return x


if __name__ == "__main__":
    sys.exit("use examples/sweep.py")
