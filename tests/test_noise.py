"""SCC noisy-region selection (evseg.refine.noise): analytic cases, hand-computed tables and brute-force loops."""

import math

import numpy as np
import pytest

from evseg.refine.noise import (TwoGaussians, code_rule, correct_labels, em_step, fit_two_gaussians, log_likelihood,
                                normalise_losses, paper_rule, two_means_init)


def textbook_density(x, mean, variance):
    return math.exp(-(x - mean) ** 2 / (2 * variance)) / math.sqrt(2 * math.pi * variance)


# ------------------------------------------------------------------------------------------------ mixture model

def test_posterior_high_matches_direct_formula():
    model = TwoGaussians(np.array([0.3, 0.7]), np.array([0.8, 0.2]), np.array([0.02, 0.05]))  # high mean first
    points = [-0.1, 0.2, 0.45, 0.5, 0.8, 1.1]
    eta = model.posterior_high(np.array(points))
    for x, got in zip(points, eta):
        high = 0.3 * textbook_density(x, 0.8, 0.02)
        low = 0.7 * textbook_density(x, 0.2, 0.05)
        assert got == pytest.approx(high / (high + low), rel=1e-12)


def test_posterior_high_far_out_points_are_0_or_1_not_nan():
    model = TwoGaussians(np.array([0.5, 0.5]), np.array([0.0, 1.0]), np.array([1e-4, 1e-4]))
    # Out here both textbook densities underflow to 0, so the naive ratio would be 0/0.
    assert textbook_density(50.0, 1.0, 1e-4) == 0.0 and textbook_density(50.0, 0.0, 1e-4) == 0.0
    eta = model.posterior_high(np.array([50.0, -50.0, 0.5, 1e6]))
    assert not np.isnan(eta).any()
    assert eta[0] == 1.0 and eta[1] == 0.0 and eta[3] == 1.0
    assert eta[2] == pytest.approx(0.5, abs=1e-12)  # equidistant, equal weights and variances


def test_two_means_init_runs_lloyd_to_convergence():
    # From centres (0, 10), 5.2 first joins the upper cluster (5.2 vs 4.8); the centres move to 3 and 7.6, and 5.2
    # moves down (2.2 vs 2.4). A single assignment from (min, max) would have given {5.2, 10} as the upper cluster.
    model = two_means_init(np.array([0, 4, 4, 4, 5.2, 10]), reg_covar=1e-3)
    np.testing.assert_allclose(model.weights, [5 / 6, 1 / 6], rtol=1e-12)
    np.testing.assert_allclose(model.means, [3.44, 10.0], rtol=1e-12)
    lower_variance = (3.44 ** 2 + 3 * 0.56 ** 2 + 1.76 ** 2) / 5
    np.testing.assert_allclose(model.variances, [lower_variance + 1e-3, 1e-3], rtol=1e-9)


def test_two_means_init_ties_go_to_the_lower_centre():
    model = two_means_init(np.array([0.0, 1.0, 2.0]), reg_covar=0.0)  # 1 is equidistant from 0 and 2
    np.testing.assert_allclose(model.means, [0.5, 2.0])
    np.testing.assert_allclose(model.weights, [2 / 3, 1 / 3])


def brute_force_em_step(values, weights, means, variances, reg_covar):
    resp = []
    for x in values:
        joint = [weights[k] * textbook_density(x, means[k], variances[k]) for k in range(2)]
        resp.append([j / sum(joint) for j in joint])
    new_weights, new_means, new_variances = [], [], []
    for k in range(2):
        mass = sum(r[k] for r in resp)
        mean = sum(r[k] * x for r, x in zip(resp, values)) / mass
        variance = sum(r[k] * (x - mean) ** 2 for r, x in zip(resp, values)) / mass + reg_covar
        new_weights.append(mass / len(values))
        new_means.append(mean)
        new_variances.append(variance)
    return new_weights, new_means, new_variances


def test_em_step_matches_brute_force():
    values = [0.05, 0.1, 0.12, 0.3, 0.55, 0.7, 0.8, 0.95, 1.0]
    start = TwoGaussians(np.array([0.6, 0.4]), np.array([0.2, 0.7]), np.array([0.01, 0.04]))
    got = em_step(np.array(values), start, reg_covar=5e-4)
    weights, means, variances = brute_force_em_step(values, [0.6, 0.4], [0.2, 0.7], [0.01, 0.04], 5e-4)
    np.testing.assert_allclose(got.weights, weights, rtol=1e-10)
    np.testing.assert_allclose(got.means, means, rtol=1e-10)
    np.testing.assert_allclose(got.variances, variances, rtol=1e-10)
    assert got.weights.sum() == pytest.approx(1.0)


def test_log_likelihood_is_the_mean_log_density():
    model = TwoGaussians(np.array([0.25, 0.75]), np.array([0.0, 2.0]), np.array([1.0, 0.5]))
    values = [-1.0, 0.3, 1.7, 4.0]
    expected = sum(math.log(0.25 * textbook_density(x, 0, 1) + 0.75 * textbook_density(x, 2, 0.5))
                   for x in values) / 4
    assert log_likelihood(np.array(values), model) == pytest.approx(expected, rel=1e-12)


def test_em_never_decreases_the_log_likelihood():
    # The guarantee holds for plain EM; reg_covar > 0 moves the variance off the M-step maximiser, so test it at 0.
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.gamma(2.0, 0.1, 150), rng.uniform(0.4, 1.0, 60)])
    model = TwoGaussians(np.array([0.5, 0.5]), np.array([0.45, 0.5]), np.array([0.3, 0.3]))  # a poor start
    history = [log_likelihood(values, model)]
    for _ in range(40):
        model = em_step(values, model, reg_covar=0.0)
        history.append(log_likelihood(values, model))
    assert (np.diff(history) >= -1e-12).all()
    assert history[-1] > history[0] + 0.1  # it did move


def test_fit_recovers_a_well_separated_mixture():
    rng = np.random.default_rng(0)
    values = rng.permutation(np.concatenate([rng.normal(0.1, 0.03, 700), rng.normal(0.8, 0.05, 300)]))
    model = fit_two_gaussians(values, reg_covar=0.0)
    np.testing.assert_allclose(model.weights, [0.7, 0.3], atol=0.02)
    np.testing.assert_allclose(model.means, [0.1, 0.8], atol=0.01)
    np.testing.assert_allclose(np.sqrt(model.variances), [0.03, 0.05], atol=0.005)
    with_reg = fit_two_gaussians(values)  # default reg_covar=5e-4 inflates each variance by that much
    np.testing.assert_allclose(with_reg.variances, model.variances + 5e-4, atol=1e-5)


def test_fit_stopping_rule():
    rng = np.random.default_rng(1)
    values = rng.uniform(0, 1, 50)
    init = two_means_init(values)
    one = fit_two_gaussians(values, max_iter=1)
    np.testing.assert_allclose(one.means, np.sort(em_step(values, init).means))
    # The first change is measured from -inf, so even an infinite tol runs two iterations.
    two = fit_two_gaussians(values, tol=np.inf)
    np.testing.assert_allclose(two.means, np.sort(em_step(values, em_step(values, init)).means))
    many = fit_two_gaussians(values, max_iter=200, tol=0.0)
    assert not np.allclose(many.means, two.means)


def test_fit_returns_components_in_increasing_mean():
    model = fit_two_gaussians(np.array([5.0, 5.1, 4.9, 0.0, 0.1, -0.1, 0.05]))
    assert model.means[0] < model.means[1]
    assert model.weights[0] == pytest.approx(4 / 7, abs=1e-3)


def test_normalise_losses():
    np.testing.assert_allclose(normalise_losses(np.array([2.0, 4.0, 3.0, 6.0])), [0, 0.5, 0.25, 1])
    np.testing.assert_array_equal(normalise_losses(np.array([0.7, 0.7, 0.7])), [0, 0, 0])


# ------------------------------------------------------------------------------------------------ paper rule

def test_correct_labels_boundaries():
    eta = np.array([0.59, 0.6, 0.6, 0.61, 0.6, 0.1])
    probabilities = np.array([[0.01, 0.99, 0.0],   # clean: keeps label 2 despite the confident classifier
                              [0.96, 0.02, 0.02],  # η exactly τ_ns counts as noisy -> relabelled to 0
                              [0.50, 0.30, 0.20],  # η exactly τ_ns, unconfident -> dropped
                              [0.0, 0.05, 0.95],   # noisy, probability exactly τ_cr is not > τ_cr -> dropped
                              [0.0, 0.0, 1.0],     # noisy, confident and agreeing with its label -> keeps 2
                              [0.2, 0.3, 0.5]])
    labels = np.array([2, 1, 1, 0, 2, 1])
    got = correct_labels(eta, probabilities, labels)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [2, 0, -1, -1, 2, 1])


def test_paper_rule_hand_case():
    losses = np.array([0.02, 2.3, 0.05, 0.03, 2.1, 0.04, 2.5, 0.01, 0.06, 2.2])
    noisy = losses > 1
    probabilities = np.full((10, 4), 0.25)
    probabilities[1] = [0.01, 0.01, 0.97, 0.01]   # noisy, confident -> 2
    probabilities[4] = [0.6, 0.2, 0.1, 0.1]       # noisy, unconfident -> dropped
    probabilities[6] = [0.0, 0.99, 0.01, 0.0]     # noisy, confident -> 1
    probabilities[9] = [0.05, 0.0, 0.0, 0.95]     # noisy, exactly τ_cr -> dropped
    probabilities[0] = [0.0, 0.0, 0.0, 1.0]       # clean: confidence does not matter
    labels = np.array([0, 3, 1, 1, 2, 0, 3, 2, 1, 0])
    new, eta = paper_rule(losses, probabilities, labels)
    assert (eta[noisy] > 1 - 1e-9).all() and (eta[~noisy] < 1e-9).all()
    np.testing.assert_array_equal(new, [0, 2, 1, 1, -1, 0, 1, 2, 1, -1])
    assert new.dtype == np.int64


def test_paper_rule_eta_is_invariant_to_loss_scale():
    rng = np.random.default_rng(5)
    losses = np.concatenate([rng.exponential(0.1, 40), rng.uniform(1, 3, 10)])
    probabilities = rng.dirichlet(np.ones(3), 50)
    labels = rng.integers(0, 3, 50)
    _, eta = paper_rule(losses, probabilities, labels)
    _, eta_scaled = paper_rule(7 * losses + 3, probabilities, labels)
    np.testing.assert_allclose(eta, eta_scaled, atol=1e-9)


# ------------------------------------------------------------------------------------------------ code rule

def test_code_rule_hand_table():
    # class 0: losses 0.1, 0.2, 0.3           -> median 0.2
    # class 1: losses 0.6, 0.8, 1.0, 1.4      -> median (0.8 + 1.0) / 2 = 0.9 (even count, interpolated)
    # class 2: losses 0.05, 0.7               -> median 0.375
    # global = (3 * 0.2 + 4 * 0.9 + 2 * 0.375) / 9 = 0.55
    losses = np.array([0.3, 0.6, 0.05, 1.0, 0.1, 0.8, 0.7, 0.2, 1.4])
    predictions = np.array([0, 1, 2, 1, 0, 1, 2, 0, 1])
    expected = [0,    # 0.3 > 0.2 (class) but < 0.55 (global): kept
                1,    # 0.6 > 0.55 (global) but < 0.9 (class): kept
                2,
                -1,   # 1.0 > 0.9 and > 0.55: dropped
                0,
                1,
                -1,   # 0.7 > 0.375 and > 0.55: dropped
                0,    # equal to its class median: not above it
                -1]
    got = code_rule(losses, predictions)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def brute_force_code_rule(losses, predictions):
    def median(xs):
        xs, n = sorted(xs), len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    by_class = {}
    for loss, c in zip(losses, predictions):
        by_class.setdefault(c, []).append(loss)
    threshold = {c: median(v) for c, v in by_class.items()}
    global_threshold = sum(threshold[c] for c in predictions) / len(predictions)
    return [-1 if loss > threshold[c] and loss > global_threshold else c for loss, c in zip(losses, predictions)]


@pytest.mark.parametrize("seed", range(5))
def test_code_rule_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    losses = rng.exponential(1.0, n).round(2)  # rounding makes ties with the medians
    predictions = rng.integers(0, 6, n)
    expected = brute_force_code_rule(losses.tolist(), predictions.tolist())
    np.testing.assert_array_equal(code_rule(losses, predictions), expected)


def test_code_rule_ratio_quantile():
    # class 1 at ratio 0.25: linear position 0.75 between 0.6 and 0.8 -> 0.75; class 0 alone: 1.0; global = 0.8
    losses = np.array([0.6, 0.8, 1.0, 1.4, 1.0])
    predictions = np.array([1, 1, 1, 1, 0])
    np.testing.assert_array_equal(code_rule(losses, predictions, ratio=0.25), [1, 1, -1, -1, 0])
    np.testing.assert_array_equal(code_rule(losses, predictions, ratio=1.0), [1, 1, 1, 1, 0])


# ------------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("values,message", [
    ([0.3, 0.3, 0.3], "2 distinct values"),
    ([0.1, np.nan, 0.5], "NaN or inf"),
    ([0.1, np.inf, 0.5], "NaN or inf"),
    ([], "non-empty 1-D"),
    ([[0.1, 0.2], [0.3, 0.4]], "non-empty 1-D"),
])
def test_fit_rejects_degenerate_values(values, message):
    with pytest.raises(ValueError, match=message):
        fit_two_gaussians(np.array(values))


def test_bad_input_messages():
    with pytest.raises(ValueError, match="max_iter >= 1"):
        fit_two_gaussians(np.array([0.0, 1.0]), max_iter=0)
    with pytest.raises(ValueError, match="collapsed"):
        sharp = TwoGaussians(np.array([0.5, 0.5]), np.array([0.0, 1.0]), np.array([1e-6, 1e-6]))
        em_step(np.array([0.0, 1.0, 1.0]), sharp, reg_covar=0.0)  # responsibilities exactly 0/1 -> variance 0
    with pytest.raises(ValueError, match="NaN or inf"):
        normalise_losses(np.array([0.0, np.inf]))
    with pytest.raises(ValueError, match="2 distinct values"):
        paper_rule(np.array([0.5, 0.5]), np.full((2, 2), 0.5), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"probabilities \(N, K\)"):
        paper_rule(np.array([0.1, 0.9]), np.full((3, 2), 0.5), np.array([0, 1]))
    with pytest.raises(ValueError, match="ratio must lie"):
        code_rule(np.array([0.1, 0.2]), np.array([0, 1]), ratio=1.5)
    with pytest.raises(ValueError, match="non-negative integers"):
        code_rule(np.array([0.1, 0.2]), np.array([0, -1]))
    with pytest.raises(ValueError, match="non-negative integers"):
        code_rule(np.array([0.1, 0.2]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="NaN or inf"):
        code_rule(np.array([0.1, np.nan]), np.array([0, 1]))
    assert code_rule(np.array([]), np.array([], dtype=np.int64)).shape == (0,)
