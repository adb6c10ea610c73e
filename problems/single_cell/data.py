"""Single-cell time courses in: AnnData ``.h5ad``, CSV, netCDF, the HSMM myoblast data, and their checks.

Every reader returns an :class:`anndata.AnnData` (cells × features) with the time column in ``obs``;
:func:`check_time_course` turns its time column into numbers and refuses what the protocol cannot use.

HSMM (Trapnell et al. 2014, 271 cells × 47,192 genes, FPKM, 0/24/48/72 h) ships in Debian's
``r-bioc-hsmmsinglecell``: :func:`load_hsmm` fetches the package with ``apt-get download`` and unpacks it with
``dpkg -x`` into a cache folder (no R installation), then reads the ``.rda`` files with ``rdata``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..debian import fetch_package

HSMM_PACKAGE = "r-bioc-hsmmsinglecell"
HSMM_DATA = "usr/lib/R/site-library/HSMMSingleCell/data"
HSMM_FILES = ("HSMM_expr_matrix.rda", "HSMM_sample_sheet.rda", "HSMM_gene_annotation.rda")
HSMM_TIME = "Hours"


def anndata_module():
    """The ``anndata`` module, or an ImportError saying which extra installs it."""
    try:
        import anndata
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError("the single-cell adapter needs anndata: pip install -e '.[single-cell]'") from error
    return anndata


def fetch_hsmm(cache: str | os.PathLike | None = None) -> Path:
    """The folder holding the HSMM ``.rda`` files, fetched from Debian into ``cache/hsmm`` if missing
    (:func:`problems.debian.fetch_package`)."""
    return fetch_package(HSMM_PACKAGE, [f"{HSMM_DATA}/{name}" for name in HSMM_FILES], "hsmm", cache) / HSMM_DATA


def load_hsmm(cache: str | os.PathLike | None = None):
    """HSMM as AnnData: ``X`` FPKM (CSR, cells × genes), ``obs`` the sample sheet (time column ``"Hours"``),
    ``var`` the gene annotation."""
    anndata = anndata_module()
    try:
        import rdata
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError("reading HSMM needs rdata: pip install -e '.[single-cell]'") from error
    from scipy import sparse

    folder = fetch_hsmm(cache)
    expression = rdata.read_rda(str(folder / HSMM_FILES[0]))["HSMM_expr_matrix"]  # genes × cells (DataArray)
    sheet = rdata.read_rda(str(folder / HSMM_FILES[1]))["HSMM_sample_sheet"]
    genes = rdata.read_rda(str(folder / HSMM_FILES[2]))["HSMM_gene_annotation"]
    cells = [str(c) for c in expression.coords[expression.dims[1]].values]
    gene_ids = [str(g) for g in expression.coords[expression.dims[0]].values]
    obs = pd.DataFrame(sheet).loc[cells]
    obs.index = obs.index.astype(str)
    var = pd.DataFrame(genes).loc[gene_ids]
    var.index = var.index.astype(str)
    for frame in (obs, var):
        frame.columns = [str(c) for c in frame.columns]
    for frame in (obs, var):  # h5ad stores plain object/categorical columns; nullable extension types are cast
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.StringDtype):
                frame[column] = frame[column].astype(object)
            elif pd.api.types.is_extension_array_dtype(frame[column].dtype) and not isinstance(
                frame[column].dtype, pd.CategoricalDtype
            ):
                frame[column] = frame[column].astype("float64")
    matrix = sparse.csr_matrix(np.asarray(expression.values, dtype=np.float32).T)
    adata = anndata.AnnData(X=matrix, obs=obs, var=var)
    adata.uns["source"] = f"HSMMSingleCell (Debian {HSMM_PACKAGE}), Trapnell et al. 2014; FPKM"
    return adata


def read_dataset(path: str | os.PathLike, time_key: str):
    """Read an ``.h5ad`` (AnnData), ``.csv`` (one row per cell: the time column and numeric features) or ``.nc``
    (an xarray Dataset with one 2-D variable, cells × features, named ``X`` or the only 2-D one, and the time
    variable along its first dimension)."""
    anndata = anndata_module()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such dataset file: {path}")
    suffix = path.suffix.lower()
    if suffix == ".h5ad":
        try:
            return anndata.read_h5ad(path)
        except Exception as error:
            raise ValueError(f"{path} is not an AnnData .h5ad file ({type(error).__name__}: {error})") from None
    if suffix == ".csv":
        frame = pd.read_csv(path)
        if frame.empty:
            raise ValueError(f"{path} has no rows (cells): only a header, columns {list(frame.columns)[:20]}")
        if time_key not in frame.columns:
            raise ValueError(f"time column {time_key!r} not in {path}; columns: {list(frame.columns)[:20]}")
        features = frame.drop(columns=[time_key])
        bad = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
        if bad:
            raise ValueError(f"{path}: feature columns must be numeric; non-numeric: {bad[:10]}")
        obs = pd.DataFrame({time_key: frame[time_key].to_numpy()}, index=[str(i) for i in range(len(frame))])
        return anndata.AnnData(X=features.to_numpy(dtype=np.float64), obs=obs, var=pd.DataFrame(index=features.columns))
    if suffix in (".nc", ".netcdf", ".h5"):
        import xarray as xr

        with xr.open_dataset(path) as ds:
            two_d = [name for name, v in ds.data_vars.items() if v.ndim == 2]
            name = "X" if "X" in ds.data_vars else (two_d[0] if len(two_d) == 1 else None)
            if name is None:
                raise ValueError(f"{path}: need a 2-D variable named 'X' or exactly one 2-D variable; got {two_d}")
            matrix = ds[name]
            if time_key not in ds.variables:
                raise ValueError(f"time variable {time_key!r} not in {path}; variables: {list(ds.variables)}")
            time = ds[time_key]
            if time.ndim != 1 or time.dims[0] != matrix.dims[0]:
                raise ValueError(f"{path}: {time_key!r} must be 1-D along the cells dimension {matrix.dims[0]!r}")
            obs = pd.DataFrame({time_key: time.values}, index=[str(i) for i in range(matrix.shape[0])])
            var = pd.DataFrame(index=[str(v) for v in ds[matrix.dims[1]].values])
            return anndata.AnnData(X=np.asarray(matrix.values, dtype=np.float64), obs=obs, var=var)
    raise ValueError(f"unknown dataset format {suffix!r} for {path}: use .h5ad, .csv or .nc")


def numeric_times(adata, time_key: str) -> np.ndarray:
    """The time column as float64; numeric strings and categories of numbers are converted."""
    if time_key not in adata.obs.columns:
        raise ValueError(f"time column {time_key!r} not in obs; columns: {list(adata.obs.columns)}")
    column = adata.obs[time_key]
    values = column.astype(str) if isinstance(column.dtype, pd.CategoricalDtype) else column
    times = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(times)
    if bad.any():
        examples = sorted({str(v) for v in np.asarray(column)[bad]})[:5]
        raise ValueError(f"time column {time_key!r} must be numeric; {int(bad.sum())} values are not: {examples}")
    return times


def dense(matrix) -> np.ndarray:
    """A float64 dense copy of an AnnData matrix (sparse or dense)."""
    return np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix, dtype=np.float64)


def check_time_course(adata, time_key: str, min_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Checks an AnnData time course; returns per-cell times and the sorted distinct times.

    Refuses: a missing or non-numeric time column, fewer than three time points, a time point with fewer than
    ``min_cells`` cells (the embedding dimension + 1), and NaNs/Infs in the matrix.
    """
    anndata = anndata_module()
    if not isinstance(adata, anndata.AnnData):
        raise TypeError(f"expected an AnnData object; got {type(adata).__name__}")
    times = numeric_times(adata, time_key)
    distinct, counts = np.unique(times, return_counts=True)
    if distinct.size < 3:
        raise ValueError(f"need at least three time points (one held out between two); got {distinct.tolist()}")
    small = [(float(t), int(c)) for t, c in zip(distinct, counts, strict=True) if c < min_cells]
    if small:
        raise ValueError(f"time points with fewer than {min_cells} cells (embedding dimension + 1): {small}")
    matrix = adata.X
    values = matrix.data if hasattr(matrix, "data") and hasattr(matrix, "toarray") else np.asarray(matrix)
    if not np.issubdtype(np.asarray(values).dtype, np.number):
        raise ValueError("the expression matrix must be numeric")
    finite = np.isfinite(values)
    if not finite.all():
        raise ValueError(f"the expression matrix has {int((~finite).sum())} NaN/Inf entries")
    return times, distinct
