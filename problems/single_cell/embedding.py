"""The embedding the methods work in, fitted on training cells only (no leakage from the held-out time point).

``"pca"`` (default): per-cell normalisation to the median total of the training cells, ``log1p``, the
``n_top_genes`` genes of highest variance among the training cells, and PCA (scikit-learn) to ``n_components``
dimensions (5, as in the field's trajectory benchmarks). ``"raw"``: the features as they are (simulated or
already-embedded data). ``"obsm:KEY"``: an embedding already in ``adata.obsm[KEY]`` (computed by the user, maybe on
every cell: then the held-out cells took part in it, which the report says).

scanpy is not used: these three steps are a few lines of numpy and scikit-learn, and scanpy would bring numba,
umap and a large dependency tree for them.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA

from .data import dense


class Embedding:
    """Fit on training cells, then :meth:`transform` any cells of the same matrix."""

    def __init__(self, kind: str = "pca", n_components: int = 5, n_top_genes: int = 2000, seed: int = 0):
        if not (kind in ("pca", "raw") or kind.startswith("obsm:")):
            raise ValueError(f"embedding must be 'pca', 'raw' or 'obsm:KEY'; got {kind!r}")
        if not (isinstance(n_components, int) and n_components >= 1):
            raise ValueError(f"n_components must be a positive integer; got {n_components!r}")
        if not (isinstance(n_top_genes, int) and n_top_genes >= 1):
            raise ValueError(f"n_top_genes must be a positive integer; got {n_top_genes!r}")
        self.kind, self.n_components, self.n_top_genes, self.seed = kind, n_components, n_top_genes, seed

    def unfitted(self) -> Embedding:
        """A fresh embedding with the same settings (each fold fits its own)."""
        return Embedding(self.kind, self.n_components, self.n_top_genes, self.seed)

    def features(self, adata) -> np.ndarray:
        """The matrix this embedding starts from, dense float64."""
        if self.kind.startswith("obsm:"):
            key = self.kind[5:]
            if key not in adata.obsm:
                raise ValueError(f"obsm has no {key!r}; keys: {list(adata.obsm.keys())}")
            values = dense(adata.obsm[key])
            if values.ndim != 2:
                raise ValueError(f"obsm[{key!r}] must be 2-D (cells × dims); got shape {values.shape}")
        else:
            values = dense(adata.X)
        finite = np.isfinite(values)
        if not finite.all():
            raise ValueError(f"the {self.kind} input has {int((~finite).sum())} NaN/Inf entries")
        return values

    def dimension(self, n_features: int) -> int:
        return n_features if self.kind != "pca" else min(self.n_components, n_features)

    def _log_normalise(self, x: np.ndarray) -> np.ndarray:
        totals = x.sum(axis=1, keepdims=True)
        if (x < 0).any():
            raise ValueError("the pca embedding normalises counts/expression: the matrix must be non-negative")
        if (totals <= 0).any():
            raise ValueError(f"{int((totals <= 0).sum())} cells have zero total expression")
        return np.log1p(x / totals * self.target_sum)

    def fit(self, x: np.ndarray) -> Embedding:
        """Fit on training cells ``x`` (cells × features)."""
        if self.kind != "pca":
            self.fitted = True
            return self
        self.target_sum = float(np.median(x.sum(axis=1)))
        logged = self._log_normalise(x)
        variance = logged.var(axis=0)
        order = np.argsort(-variance, kind="stable")
        self.genes = np.sort(order[: min(self.n_top_genes, int((variance > 0).sum()))])
        if self.genes.size < self.n_components:
            raise ValueError(f"only {self.genes.size} genes vary among the training cells; need {self.n_components}")
        self.pca = PCA(self.n_components, svd_solver="full", random_state=self.seed).fit(logged[:, self.genes])
        self.fitted = True
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if not getattr(self, "fitted", False):
            raise RuntimeError("call fit() first")
        if self.kind != "pca":
            return x
        return self.pca.transform(self._log_normalise(x)[:, self.genes])

    @property
    def explained_variance_ratio(self) -> list[float]:
        return self.pca.explained_variance_ratio_.tolist() if self.kind == "pca" else []
