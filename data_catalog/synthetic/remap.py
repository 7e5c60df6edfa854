"""Smooth remapping from one point set on the sphere to another (Shepard weights, Wendland kernel).

Smooth large-scale fields are evaluated on a few thousand "helper" points and carried to the fine
cells by one sparse matrix product, built once:

    f(p) = Σ_j w_j(p) f_j / Σ_j w_j(p),   w_j(p) = (1 − d_j/r)⁴₊ (4 d_j/r + 1)   (Wendland C²)

with d_j the chord distance from ``p`` to helper point j and r the support radius. The weights depend
on 3D positions only, so the result has no seam anywhere, and it is C² wherever it is defined.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree


def wendland(d: np.ndarray) -> np.ndarray:
    """Wendland's C² kernel of compact support on [0, 1]."""
    d = np.clip(d, 0.0, 1.0)
    return (1.0 - d) ** 4 * (4.0 * d + 1.0)


def shepard_matrix(source: np.ndarray, target: np.ndarray, radius: float) -> sparse.csr_matrix:
    """Row-normalized weights ``(len(target), len(source))`` from source points to target points
    (both unit vectors ``(·, 3)``), support ``radius`` (chord length). Raises if a target point has no
    source point within ``radius``."""
    k = 16
    while True:
        dist, idx = cKDTree(source).query(target, k=min(k, len(source)), distance_upper_bound=radius)
        if k >= len(source) or np.isinf(dist[:, -1]).all():
            break
        k *= 2
    found = np.isfinite(dist)
    rows = np.broadcast_to(np.arange(len(target))[:, None], dist.shape)[found]
    weights = sparse.csr_matrix((wendland(dist[found] / radius), (rows, idx[found])),
                                shape=(len(target), len(source)))
    totals = np.asarray(weights.sum(axis=1)).ravel()
    if np.any(totals <= 0):
        raise ValueError(f"shepard_matrix: {int(np.sum(totals <= 0))} target points have no source point "
                         f"within radius {radius:.4g}; increase it")
    return (sparse.diags(1.0 / totals) @ weights).tocsr()
