"""A trained generator from a file, and samples from it in batches.

:func:`load_generator` reads either kind of file a run writes, with one rule:
an ``.npz`` holding the members "meta" and "sha256" is a trainer checkpoint
(:mod:`npgan.checkpoint`: G under state["G"], its moving averages under
state["ema"]["<decay>"] in ``parameters()`` order, the run's config with its z
prior); any other ``.npz`` is a Generator's state_dict (snapshots, best_<G>.npz),
whose prior is the paper's Gaussian. :func:`sample` draws from it.
"""
import numbers
import os
import zipfile

import numpy  # host-side: files, RNGs and the samples returned

from . import backend, checkpoint, models
from .checkpoint import CheckpointError
from .tensor import no_grad

__all__ = ["is_checkpoint", "load_generator", "sample"]


def _members(path):
    """The member names of the .npz at ``path``; CheckpointError if it is not one."""
    if not os.path.exists(path):
        raise CheckpointError(f"no generator file at {path}")
    try:
        f = numpy.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise CheckpointError(f"{path} is not a readable .npz (damaged or truncated?): "
                              f"{type(e).__name__}: {e}") from e
    if not isinstance(f, numpy.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} holds one array, not a Generator's state_dict or a "
                              "trainer checkpoint (.npz)")
    with f:
        return set(f.files)


def is_checkpoint(path):
    """True for a trainer checkpoint ("meta" and "sha256" members), False for another
    .npz (a Generator's state_dict); CheckpointError if ``path`` is no readable .npz."""
    return {"meta", "sha256"} <= _members(path)


def load_generator(path, which="G", G=None):
    """The Generator stored at ``path`` (in eval mode), its ``z_prior`` set to the one
    it was trained with.

    which: "G" (the trained G) or, from a trainer checkpoint, "ema<decay>" (a
    moving average of it, e.g. "ema0.9999"). G: the module to load into
    (default the paper's ``models.Generator()``). A file that is no .npz, a
    damaged checkpoint, or one with only one of "meta"/"sha256": CheckpointError;
    ``which`` not in the file: ValueError naming those it holds; arrays that do
    not fit G: KeyError / ValueError from ``load_state_dict``."""
    members = _members(path)
    G = models.Generator() if G is None else G
    if {"meta", "sha256"} <= members:
        saved = checkpoint.load(path)
        state, averages = saved["state"], saved["state"].get("ema", {})
        if which == "G":
            G.load_state_dict(state["G"])
        elif which.startswith("ema") and which[3:] in averages:
            avg = averages[which[3:]]
            names = [n for n, _ in G.named_parameters()]     # averages are in parameters() order
            if len(avg) != len(names):
                raise ValueError(f"{path}: moving average {which[3:]} has {len(avg)} arrays, "
                                 f"G has {len(names)} parameters")
            G.load_state_dict(dict(zip(names, avg)))
        else:
            have = ["G"] + [f"ema{d}" for d in averages]
            raise ValueError(f"{path} has no generator {which!r}; it has {have}")
        G.z_prior = models.run_prior(saved["config"])
    elif members & {"meta", "sha256"}:
        raise CheckpointError(f"{path} has {sorted(members & {'meta', 'sha256'})} but not both "
                              "'meta' and 'sha256': a damaged trainer checkpoint?")
    else:
        if which != "G":
            raise ValueError(f"generator {which!r} needs a trainer checkpoint; {path} holds one "
                             "Generator state_dict (its generator is 'G')")
        with numpy.load(path, allow_pickle=False) as f:
            G.load_state_dict({k: f[k] for k in f.files})
        G.z_prior = "gaussian"
    return G.eval()


def sample(G, n, batch=1000, rng=12345, sample_z=None):
    """n samples of G, a host array (n, D) of G's dtype, ``batch`` rows per call of G.

    rng: a numpy Generator or a seed (default 12345, so evaluations compare);
    sample_z(m, rng) -> (m, z_dim) z: the prior (default ``G.z_prior`` in G's
    ``z_dim``, :func:`npgan.models.z_sampler`). n or batch not a positive int: ValueError."""
    for name, v in (("n", n), ("batch", batch)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if sample_z is None:
        sample_z = models.z_sampler(getattr(G, "z_prior", "gaussian"),
                                    getattr(G, "z_dim", models.Z_DIM))
    rng = rng if isinstance(rng, numpy.random.Generator) else numpy.random.default_rng(rng)
    out = []
    with no_grad():
        for i in range(0, n, batch):
            out.append(backend.to_numpy(G(sample_z(min(batch, n - i), rng)).data))
    return numpy.concatenate(out)
