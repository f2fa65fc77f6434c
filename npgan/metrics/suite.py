"""Every sample-quality metric in one call: :func:`evaluate`.

Which classifier layer each metric looks through:

* FD, classifier score, class histogram: the penultimate layer (``features``)
  and the class probabilities, as FID / IS use Inception's last layers.
* precision / recall: the *first* hidden layer (``hidden1``). The penultimate
  layer, trained to keep only what tells the classes apart, maps some inputs
  that look like no digit onto the real digits' region: images of salt noise
  (13 % of pixels on) score precision 0.86 there against 1,500 test images,
  0.07 in the first hidden layer, while real vs disjoint real scores
  0.86-0.88 in both (uniform noise: 0 in both). The penultimate-layer values
  are reported too (``precision_penultimate``, ``recall_penultimate``).
  Limitation of any classifier layer: a featureless blob (the mean digit plus
  noise) lands among the ambiguous real digits, precision ~1 (recall ~0,
  FD large); in pixel space its precision is 0.
* nearest training image: pixel space.
"""
import time

from .. import classifier as C
from ..progress import Log
from .checks import MetricsError, check_images
from .classes import class_histogram, classes_covered, classifier_score
from .frechet import frechet_distance, feature_statistics
from .neighbours import (MAX_BLOCK_BYTES, distance_summary, knn_radii, nearest_distances,
                         precision_recall)


def _log(progress, t0):
    """Timestamped lines "[  12.3 s] ..." to ``progress`` (None: nothing)."""
    return Log(progress, t0, stamp="[{:6.1f} s] ")


class RealReference:
    """The real side of the comparison, computed once and reused for many
    sample sets.

    real: images (N, 784) float in [0, 1] (default: the 10,000 MNIST test
    images); train: G's training images (default: MNIST ``train``, the
    paper's 50,000) for the memorisation check; model: the classifier
    (default: the shipped one); k: neighbourhood size of precision/recall.
    Holds the real images' classifier outputs (``out``), their FD statistics
    (``mu``, ``sigma``), k-NN radii in both layers and their own
    nearest-training-image distances (``train_dist``)."""

    def __init__(self, real=None, train=None, model=None, k=3, data_dir=None,
                 max_block_bytes=MAX_BLOCK_BYTES, progress=None):
        from ..datasets import load_mnist
        t0 = time.time()
        say = _log(progress, t0)
        self.model = model if model is not None else C.load_classifier()
        if real is None:
            real = load_mnist("test", data_dir=data_dir)[0]
        if train is None:
            train = load_mnist("train", data_dir=data_dir)[0]
        self.k, self.max_block_bytes = k, max_block_bytes
        self.real = check_images(real, "real images", min_count=k + 1)
        self.train = check_images(train, "training images", min_count=1)
        say(f"classifier outputs of {len(self.real)} real images")
        self.out = C.classify(self.model, self.real)
        self.mu, self.sigma = feature_statistics(self.out.features)
        kw = dict(max_block_bytes=max_block_bytes, progress=progress)
        self.radii = knn_radii(self.out.hidden1, k, desc="k-NN radii (real, hidden1)", **kw)
        self.radii_penultimate = knn_radii(self.out.features, k,
                                           desc="k-NN radii (real, penultimate)", **kw)
        say("nearest training image of each real image")
        self.train_dist = nearest_distances(self.real, self.train, desc="real -> train distances",
                                            **kw)


def evaluate(samples, reference=None, splits=10, min_class_fraction=0.01, progress=None):
    """All metrics of ``samples`` (N, 784) float in [0, 1] against a
    :class:`RealReference` (built with defaults when None) -> dict:

    n, k; fd; score, score_std (over ``splits`` parts); class_counts (list
    of C ints), classes_covered (classes with >= ``min_class_fraction`` of
    the samples); precision, recall (first hidden layer) and
    precision_penultimate, recall_penultimate; nn_train (summary dict of each
    sample's pixel distance to its nearest training image: q01 ... q95,
    median, mean), nn_train_real (the same for the real images),
    frac_closer_than_real_q01 (share of samples nearer to a training image
    than 99 % of real images are); seconds.

    Needs N >= max(k + 1, splits). ``progress``: callable taking a str."""
    t0 = time.time()
    say = _log(progress, t0)
    ref = reference if reference is not None else RealReference(progress=progress)
    k = ref.k
    x = check_images(samples, "samples", min_count=max(k + 1, splits, 2))
    res = {"n": len(x), "k": k}
    say(f"classifier outputs of {len(x)} samples")
    out = C.classify(ref.model, x)
    res["fd"] = frechet_distance(*feature_statistics(out.features), ref.mu, ref.sigma)
    res["score"], res["score_std"] = classifier_score(out.log_probs, splits)
    counts = class_histogram(out.log_probs)
    res["class_counts"] = counts.tolist()
    res["classes_covered"] = classes_covered(counts, min_class_fraction)
    say(f"FD {res['fd']:.3f}, score {res['score']:.3f}; precision/recall (k={k})")
    kw = dict(max_block_bytes=ref.max_block_bytes, progress=progress)
    res["precision"], res["recall"] = precision_recall(ref.out.hidden1, out.hidden1, k,
                                                       real_radii=ref.radii, **kw)
    res["precision_penultimate"], res["recall_penultimate"] = precision_recall(
        ref.out.features, out.features, k, real_radii=ref.radii_penultimate, **kw)
    say("nearest training image of each sample")
    d = nearest_distances(x, ref.train, desc="samples -> train distances", **kw)
    res["nn_train"] = distance_summary(d)
    res["nn_train_real"] = distance_summary(ref.train_dist)
    res["frac_closer_than_real_q01"] = float((d < res["nn_train_real"]["q01"]).mean())
    res["seconds"] = time.time() - t0
    say("done")
    return res


__all__ = ["RealReference", "evaluate", "MetricsError"]
