"""Listwise (softmax) fit of a linear ranker's weights: the hybrid's default weight fit.

Each query has a candidate pool with a feature row per candidate and the candidates that are
right answers. The weights ``w`` maximise the mean log-probability that a softmax over the
pool's scores ``F @ w`` puts on its right answers (a conditional logit, as ListNet / the
sampled-softmax losses of retrieval), minus ``l2 * |w|^2``:

    L(w) = mean_q log( sum_{i in gold_q} exp(s_qi) / sum_{i in pool_q} exp(s_qi) ) - l2 |w|^2

Unlike coordinate ascent on MRR, this objective is smooth in ``w`` and, where each pool has
one right answer, concave (one optimum, found by L-BFGS from zero weights; with several right
answers it is the log of a sum and L-BFGS finds a local optimum). It uses every right
answer's whole score margin instead of its rank alone, and it never rewards weights that
leave a ranking to ties, whose order (by catalog row) says nothing about the query. Queries
whose pool holds no right answer say nothing about the weights and are left out.
"""

from __future__ import annotations

import numpy as np
import torch

L2 = 1e-4
"""Default penalty on the squared weights: enough to keep the optimum finite when the valid
pools can be separated (the objective then grows without bound), too small to shrink the
weights that matter (chosen by cross-validation over valid dialogs)."""


def fit_listwise(features: list[np.ndarray], gold: list[np.ndarray], *, l2: float = L2,
                 sample_weight: np.ndarray | None = None, max_iter: int = 500) -> np.ndarray:
    """Weights maximising the mean softmax log-likelihood of the right answers (module doc).

    Args:
        features: per query, float [n_q, k] (finite).
        gold: per query, bool [n_q]: the right answers in the pool.
        l2: penalty on the squared weights (> 0 keeps the optimum finite).
        sample_weight: per query weight (default 1 each).
        max_iter: L-BFGS iterations.
    Returns:
        float64 [k]; zeros when no query has a right answer in its pool.
    Raises:
        ValueError: mismatched lengths or widths, a feature that is not finite, or bad
            sample weights.
    """
    if len(features) != len(gold):
        raise ValueError(f"{len(features)} feature matrices but {len(gold)} gold masks")
    widths = {f.shape[1] for f in features if f.ndim == 2}
    if len(widths) > 1 or any(f.ndim != 2 for f in features):
        raise ValueError(f"feature matrices must be 2-D with one width, got widths {widths}")
    k = widths.pop() if widths else 0
    weight = np.ones(len(features)) if sample_weight is None else np.asarray(sample_weight, float)
    if weight.shape != (len(features),) or not np.isfinite(weight).all() or (weight < 0).any():
        raise ValueError(f"sample_weight must hold {len(features)} finite weights >= 0, got "
                         f"shape {weight.shape}")
    for q, (f, g) in enumerate(zip(features, gold, strict=True)):
        if len(g) != len(f):
            raise ValueError(f"query {q}: {len(f)} candidates but a gold mask of {len(g)}")
        if not np.isfinite(f).all():
            raise ValueError(f"query {q}: its features hold values that are not finite")
    used = [q for q, g in enumerate(gold) if g.any() and weight[q] > 0]
    if not used or k == 0:
        return np.zeros(k)
    n = max(len(features[q]) for q in used)
    F = np.zeros((len(used), n, k))
    valid = np.zeros((len(used), n), dtype=bool)
    right = np.zeros((len(used), n), dtype=bool)
    for i, q in enumerate(used):
        m = len(features[q])
        F[i, :m], valid[i, :m], right[i, :m] = features[q], True, gold[q]
    Ft, vt, rt = torch.from_numpy(F), torch.from_numpy(valid), torch.from_numpy(right)
    qw = torch.from_numpy(weight[used] / weight[used].sum())
    w = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=max_iter, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        s = Ft @ w
        everything = torch.logsumexp(s.masked_fill(~vt, -torch.inf), dim=1)
        answers = torch.logsumexp(s.masked_fill(~rt, -torch.inf), dim=1)
        value = -(qw * (answers - everything)).sum() + l2 * (w * w).sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(loss)
    return w.detach().numpy().copy()
