"""Noisy-region selection of SeCo's semantic connectivity correction, SCC (reference/seco_unimatch.md §2).

A region classifier trained briefly ("early learning") fits clean PSA labels before it memorises noisy ones, so the
per-region cross-entropy against the PSA label is bimodal. Two rules turn these losses into new region labels:

* ``paper_rule`` (§2.1): a 1-D two-component Gaussian mixture is fitted by EM to the losses min-max normalised to
  [0, 1], as DivideMix does (scikit-learn's GaussianMixture with max_iter=10, tol=1e-2, reg_covar=5e-4).
  η = posterior of the high-mean component. η < τ_ns keeps the PSA label (clean set); η >= τ_ns is noisy (the paper
  writes "η < τ_ns" and "η > τ_ns", leaving η = τ_ns open: we count it as noisy). A noisy region whose top softmax
  probability is > τ_cr takes the argmax class (corrected set); the rest are dropped (-1).
* ``code_rule`` (§2.2): what the released code runs instead (``both_loss`` with ratio = 0.5, no mixture).

Initialisation differs from scikit-learn's (k-means with random restarts): 2-means (Lloyd) started from the minimum
and the maximum value, run until the assignment stops changing, so that the fit is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TINY = 10 * np.finfo(np.float64).eps  # added to component masses so that an empty component cannot divide by 0


@dataclass
class TwoGaussians:
    """1-D mixture of two Gaussians; each field has shape (2,)."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    def log_joint(self, x: np.ndarray) -> np.ndarray:
        """(N, 2) log(w_k N(x; μ_k, σ_k²)), never exponentiated, so far-out points stay finite."""
        x = np.asarray(x, dtype=np.float64)[:, None]
        return (np.log(self.weights) - 0.5 * np.log(2 * np.pi * self.variances)
                - (x - self.means) ** 2 / (2 * self.variances))

    def posterior_high(self, x: np.ndarray) -> np.ndarray:
        """(N,) posterior probability of the component with the larger mean (η)."""
        log_joint = self.log_joint(np.atleast_1d(x))
        high = int(np.argmax(self.means))
        return np.exp(log_joint[:, high] - np.logaddexp(log_joint[:, 0], log_joint[:, 1]))


def _values(values: np.ndarray, name: str = "values") -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or inf")
    return x


def log_likelihood(values: np.ndarray, model: TwoGaussians) -> float:
    """Mean log-likelihood per value (scikit-learn's lower bound, which EM never decreases)."""
    log_joint = model.log_joint(_values(values))
    return float(np.mean(np.logaddexp(log_joint[:, 0], log_joint[:, 1])))


def _m_step(x: np.ndarray, resp: np.ndarray, reg_covar: float) -> TwoGaussians:
    mass = resp.sum(0) + _TINY
    means = resp.T @ x / mass
    variances = (resp * (x[:, None] - means) ** 2).sum(0) / mass + reg_covar
    if not (variances > 0).all():
        raise ValueError("a component collapsed onto a single value; use reg_covar > 0")
    return TwoGaussians(mass / len(x), means, variances)


def two_means_init(values: np.ndarray, reg_covar: float = 5e-4) -> TwoGaussians:
    """Mixture from 2-means started at (min, max), ties to the lower centre. In 1-D each cluster is a run of the
    sorted values, one holding the minimum and one the maximum, so neither is ever empty."""
    x = _values(values)
    centres = np.array([x.min(), x.max()])
    if centres[0] == centres[1]:
        raise ValueError("need at least 2 distinct values to fit two Gaussians")
    upper = np.zeros(len(x), dtype=bool)
    while True:
        new_upper = np.abs(x - centres[1]) < np.abs(x - centres[0])
        centres = np.array([x[~new_upper].mean(), x[new_upper].mean()])
        if np.array_equal(new_upper, upper):
            break
        upper = new_upper
    return _m_step(x, np.stack([~upper, upper], axis=1).astype(np.float64), reg_covar)


def em_step(values: np.ndarray, model: TwoGaussians, reg_covar: float = 5e-4) -> TwoGaussians:
    """One E step (responsibilities under ``model``) and one M step; ``reg_covar`` is added to each variance."""
    x = _values(values)
    log_joint = model.log_joint(x)
    resp = np.exp(log_joint - np.logaddexp(log_joint[:, :1], log_joint[:, 1:]))
    return _m_step(x, resp, reg_covar)


def fit_two_gaussians(values: np.ndarray, max_iter: int = 10, tol: float = 1e-2,
                      reg_covar: float = 5e-4) -> TwoGaussians:
    """EM fit of two Gaussians, components returned in increasing mean.

    As scikit-learn: each iteration evaluates the mean log-likelihood of the current model, then runs E+M; it stops
    once that value changed by less than ``tol`` since the previous iteration (so after 2 iterations at the
    earliest), or after ``max_iter`` iterations.
    """
    if max_iter < 1 or tol < 0 or reg_covar < 0:
        raise ValueError(f"need max_iter >= 1, tol >= 0, reg_covar >= 0; got {max_iter}, {tol}, {reg_covar}")
    x = _values(values)
    model = two_means_init(x, reg_covar)
    previous = -np.inf
    for _ in range(max_iter):
        current = log_likelihood(x, model)
        model = em_step(x, model, reg_covar)
        if abs(current - previous) < tol:
            break
        previous = current
    order = np.argsort(model.means, kind="stable")
    return TwoGaussians(model.weights[order], model.means[order], model.variances[order])


def normalise_losses(losses: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1], as DivideMix does before its fit; all-equal losses give zeros."""
    x = _values(losses, "losses")
    span = x.max() - x.min()
    return np.zeros_like(x) if span == 0 else (x - x.min()) / span


def correct_labels(eta: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, noise_threshold: float = 0.6,
                   correction_threshold: float = 0.95) -> np.ndarray:
    """The paper's selection from given η: clean (η < τ_ns) keeps its label, noisy (η >= τ_ns) takes the argmax
    class if its probability is > τ_cr, else -1."""
    eta, labels = np.asarray(eta, dtype=np.float64), np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n = len(eta)
    if eta.shape != (n,) or labels.shape != (n,) or probabilities.ndim != 2 or probabilities.shape[0] != n:
        raise ValueError(f"need eta (N,), labels (N,), probabilities (N, K); got {eta.shape}, {labels.shape}, "
                         f"{probabilities.shape}")
    corrected = np.where(probabilities.max(1) > correction_threshold, probabilities.argmax(1), -1)
    return np.where(eta < noise_threshold, labels, corrected).astype(np.int64)


def paper_rule(losses: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, noise_threshold: float = 0.6,
               correction_threshold: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(new labels int64 with -1 = dropped, η) by the paper's rule; losses need 2 distinct values (ValueError)."""
    normalised = normalise_losses(losses)
    eta = fit_two_gaussians(normalised).posterior_high(normalised)
    return correct_labels(eta, probabilities, labels, noise_threshold, correction_threshold), eta


def code_rule(losses: np.ndarray, predictions: np.ndarray, ratio: float = 0.5) -> np.ndarray:
    """New labels (int64, -1 = dropped) by the released ``both_loss`` filter.

    Class threshold = the ``ratio`` quantile (numpy's linear interpolation; 0.5 is the median) of the losses of the
    regions predicted as that class; global threshold = mean over all regions of their class's threshold. A region
    is dropped iff its loss exceeds both; kept regions take their predicted class, as the code swaps in pred_id.
    """
    predictions = np.asarray(predictions)
    if predictions.size == 0 and np.asarray(losses).size == 0:  # no region, nothing to filter
        return np.zeros(0, dtype=np.int64)
    x = _values(losses, "losses")
    if predictions.shape != x.shape or not np.issubdtype(predictions.dtype, np.integer) or (predictions < 0).any():
        raise ValueError(f"predictions must be non-negative integers of shape {x.shape}, got {predictions.dtype} "
                         f"{predictions.shape}")
    if not 0 <= ratio <= 1:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
    classes, inverse = np.unique(predictions, return_inverse=True)
    class_threshold = np.array([np.quantile(x[inverse == i], ratio) for i in range(len(classes))])[inverse]
    dropped = (x > class_threshold) & (x > class_threshold.mean())
    return np.where(dropped, -1, predictions).astype(np.int64)


def region_outcomes(labels: np.ndarray, new_labels: np.ndarray, pixels: np.ndarray,
                    class_names: list[str]) -> dict:
    """Per class of the input label: how many regions, and how many of their pixels, were kept (same label),
    relabelled (another class) and dropped (-1). Classes without regions are left out."""
    labels, new_labels, pixels = np.asarray(labels), np.asarray(new_labels), np.asarray(pixels, np.int64)
    if not labels.shape == new_labels.shape == pixels.shape or labels.ndim != 1:
        raise ValueError(f"need labels, new labels and pixels of one shape (N,), got {labels.shape}, "
                         f"{new_labels.shape}, {pixels.shape}")
    outcome = np.where(new_labels < 0, "dropped", np.where(new_labels == labels, "kept", "relabelled"))
    table = {}
    for cls in np.unique(labels):
        of_class = labels == cls
        table[class_names[int(cls)]] = {
            **{f"regions_{k}": int((of_class & (outcome == k)).sum()) for k in ("kept", "relabelled", "dropped")},
            **{f"pixels_{k}": int(pixels[of_class & (outcome == k)].sum()) for k in ("kept", "relabelled", "dropped")}}
    return table
