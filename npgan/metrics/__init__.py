"""Sample-quality metrics, on npgan alone: the Parzen window of the paper's
Table 1 (:mod:`npgan.metrics.parzen`), mode coverage on the 2-D ring of
Gaussians (:mod:`npgan.metrics.modes`), and, in the reference MNIST
classifier's features (:mod:`npgan.classifier`), Fréchet distance, classifier
score, classes covered, precision/recall and nearest training images.

    from npgan.metrics import parzen
    r = parzen.evaluate(samples, test_x, valid_x)   # sigma on valid, LL +- se on test

    from npgan import metrics
    ref = metrics.RealReference()              # test-set features, training images
    r = metrics.evaluate(samples, ref)         # samples (N, 784) float in [0, 1]
    r["fd"], r["score"], r["classes_covered"], r["precision"], r["recall"], r["nn_train"]

Building blocks (arrays in, numbers out): :func:`frechet_distance` (from means
and covariances; :func:`frechet_terms`: its unclamped parts),
:func:`frechet_distance_from_features`, :func:`classifier_score`,
:func:`class_histogram`, :func:`classes_covered`, :func:`cluster_agreement` (an
unsupervised code against labels), :func:`precision_recall`,
:func:`knn_radii`, :func:`nearest_distances`, :func:`nearest_indices`.
Bad inputs raise :class:`MetricsError`.

Squared distances, in the Parzen window and the neighbour metrics alike,
come in blocks from one GEMM helper (``npgan._kernels.reference.gemm_sqdist``,
beside the Parzen window's NumPy reference); long loops report through
:mod:`npgan.progress`.
"""
from .checks import MetricsError, check_images, check_features
from .frechet import feature_statistics, frechet_distance, frechet_distance_from_features, \
    frechet_terms, trace_sqrt_product
from .classes import classifier_score, class_histogram, classes_covered
from .agreement import best_assignment, confusion, cluster_agreement
from .neighbours import knn_radii, nearest_distances, nearest_indices, manifold_coverage, precision_recall, \
    distance_summary
from .suite import RealReference, evaluate
from . import modes, parzen

__all__ = ["MetricsError", "check_images", "check_features", "feature_statistics",
           "frechet_distance", "frechet_distance_from_features", "frechet_terms",
           "trace_sqrt_product",
           "classifier_score", "class_histogram", "classes_covered", "best_assignment", "confusion",
           "cluster_agreement", "knn_radii",
           "nearest_distances", "nearest_indices", "manifold_coverage", "precision_recall", "distance_summary",
           "RealReference", "evaluate", "modes", "parzen"]
