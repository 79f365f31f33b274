"""Bootstrap intervals and win/tie/loss counts."""

from __future__ import annotations

import math
import time

import numpy as np

from master_sdk.experiments.stats import bootstrap_ci, paired_bootstrap_ci, win_tie_loss


def test_bootstrap_interval_holds_the_mean_and_is_repeatable() -> None:
    """The interval contains the mean, narrows with n, and is the same on every call."""
    rng = np.random.default_rng(1)
    small = rng.random(50)
    large = rng.random(5000)
    mean, low, high = bootstrap_ci(small)
    assert low <= mean <= high
    assert bootstrap_ci(small) == (mean, low, high)
    _, low2, high2 = bootstrap_ci(large)
    assert high2 - low2 < high - low


def test_bootstrap_ignores_nan_and_handles_tiny_samples() -> None:
    """NaN values are left out; one value has no interval; none gives NaN."""
    mean, low, high = bootstrap_ci(np.array([1.0, np.nan]))
    assert mean == 1.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([])))


def test_paired_interval_is_narrower_than_unpaired_for_correlated_cases() -> None:
    """Pairing removes the per-case difficulty both versions share."""
    rng = np.random.default_rng(2)
    difficulty = rng.random(400)
    a = difficulty
    b = difficulty + 0.05
    delta, low, high = paired_bootstrap_ci(a, b)
    assert abs(delta - 0.05) < 1e-9
    assert high - low < 1e-6


def test_win_tie_loss_counts_pairs_where_b_is_higher() -> None:
    """wins: b > a; losses: b < a; pairs with a NaN are skipped."""
    a = np.array([0.0, 1.0, 1.0, np.nan])
    b = np.array([1.0, 1.0, 0.0, 1.0])
    assert win_tie_loss(a, b) == (1, 1, 1)


def test_bootstrap_of_ten_thousand_values_is_fast() -> None:
    """A 10,000-case score gets its interval in well under a second."""
    values = np.random.default_rng(3).random(10_000)
    started = time.perf_counter()
    bootstrap_ci(values)
    assert time.perf_counter() - started < 1.0
