"""The labelled / unlabelled split before UniMatch."""

import itertools

import numpy as np
import pytest

from evseg.semi.split import rank_split


def test_the_most_labelled_samples_form_the_labelled_set():
    ids = ["b/000002", "a/000001", "a/000000", "c/000005", "b/000003"]
    shares = np.array([0.5, 0.9, 0.5, 0.1, 0.7])
    labeled, unlabeled = rank_split(ids, shares, 0.5)
    # 0.9, 0.7, then the tie at 0.5 goes to the smaller id; half of 5 rounds up
    assert labeled == ["a/000001", "b/000003", "a/000000"]
    assert unlabeled == ["b/000002", "c/000005"]


def test_split_against_brute_force():
    rng = np.random.default_rng(0)
    for n, fraction in itertools.product((1, 4, 7, 10), (0.25, 0.5, 1.0)):
        ids = [f"s/{i:06d}" for i in rng.permutation(n)]
        shares = rng.choice([0.0, 0.3, 0.6], size=n)
        labeled, unlabeled = rank_split(ids, shares, fraction)
        count = int(fraction * n + 0.5)
        assert len(labeled) == count and sorted(labeled + unlabeled) == sorted(ids)
        # no unlabelled sample is better ranked than a labelled one
        for a in labeled:
            for b in unlabeled:
                sa, sb = shares[ids.index(a)], shares[ids.index(b)]
                assert sa > sb or (sa == sb and a < b)


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 ids but 1 labelled shares"):
        rank_split(["a", "b"], np.array([0.1]))
    with pytest.raises(ValueError, match="fraction must lie in"):
        rank_split(["a"], np.array([0.1]), 1.5)
