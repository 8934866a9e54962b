"""Catalogue tables in the astronomers' formats: FITS binary tables (TOPCAT,
``astropy.table.Table.read``) and Parquet.

Every table the package writes (posteriors, searches, maps, trajectories, anomalies, checks,
fits) is a dict of equal-length columns (vector columns such as ``z_loc`` are ``(N, D)``) keyed
by ``source_id`` and ``obs_id`` and carrying ``ra``/``dec`` where known, so it cross-matches
with other catalogues by position. In the files, every column has its unit (TUNITn) and a
description (TCOMMn), every table an EXTNAME and a header naming what made it (CREATOR, DATE
and the settings its maker passes), and the identity columns take 4XMM's names (:data:`IN_FILES`:
``SRCID``, ``OBS_ID``, ``SRC_NUM``, ``RA``, ``DEC``); :func:`read_table` gives the package's
names back. A run's tables are cached (:func:`cached_table`): reused while the run is unchanged
and their header (:func:`made_by` and the settings) matches, remade otherwise.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning
from numpy.typing import ArrayLike

from xspecvae import __version__
from xspecvae.errors import InputError
from xspecvae.files import write_atomic

if TYPE_CHECKING:
    from xspecvae.catalog import Pack  # the packs whose tables these are
    from xspecvae.run import Run  # the run folders whose products these tables are

__all__ = [
    "COLUMNS",
    "IDENTITY",
    "IN_FILES",
    "POSTERIOR",
    "cached_table",
    "describe",
    "identity_columns",
    "made_by",
    "read_table",
    "tables_folder",
    "write_table",
]

#: Columns of a pack's metadata copied into the tables (those present).
IDENTITY = (
    "source_id",
    "catalogue_id",
    "obs_id",
    "src_num",
    "ra",
    "dec",
    "mjd",
    "label",
    "file",
    "epoch",
)

#: The package's names of the identity columns and their 4XMM names in the files.
IN_FILES = {
    "source_id": "SRCID",
    "catalogue_id": "SRCID_CAT",
    "obs_id": "OBS_ID",
    "src_num": "SRC_NUM",
    "ra": "RA",
    "dec": "DEC",
}

_NH = "1e22 cm-2"
_FLUX = "ph / (cm2 s)"
#: Unit (astropy's notation, "" for none) and description of every column the package writes.
COLUMNS = {
    # identity
    "source_id": ("", "source id: 4XMM SRCID where SRCID_CAT, else the package's own"),
    "catalogue_id": ("", "true where SRCID comes from the catalogue given to pack"),
    "obs_id": ("", "XMM-Newton observation id (OBS_ID)"),
    "src_num": ("", "pipeline source number in the observation (-1: not a PPS file)"),
    "ra": ("deg", "right ascension (J2000) of the source region"),
    "dec": ("deg", "declination (J2000) of the source region"),
    "mjd": ("d", "MJD of the start of the observation"),
    "label": ("", "class (simulated or given packs only)"),
    "file": ("", "spectrum file the row was read from"),
    "epoch": ("", "observation number of the source (1, 2, ...)"),
    "row": ("", "row of the spectrum in its pack (or table)"),
    "instrument": ("", "instrument section of the pack (pn, mos1, mos2, ...)"),
    # posterior (latent.encode)
    "z_loc": ("", "posterior mean of the latent vector"),
    "z_scale": ("", "posterior marginal standard deviations of the latent vector"),
    "z_conditional": ("", "posterior conditional standard deviations (others at the mean)"),
    "norm_loc": ("", "posterior mean of ln(count rate through the reference response)"),
    "norm_scale": ("", "posterior standard deviation of that log rate"),
    "nh": (_NH, "absorbing column of the decoder at the posterior mean"),
    "redshift": ("", "redshift of the decoder at the posterior mean"),
    "coefficients": ("", "DeepONet branch weights of the templates"),
    "line_ew": (
        "keV",
        "rest-frame equivalent widths of the decoder's lines (Config.line_energies)",
    ),
    "photon_flux": (_FLUX, "absorbed model photon flux, 0.2-12 keV"),
    "hardness": ("", "model (H-S)/(H+S) of photon flux, S 0.5-2 keV, H 2-12 keV"),
    "source_counts": ("ct", "expected source counts, source region, good channels"),
    "total_counts": ("ct", "expected source + background counts, source region"),
    "snr": ("", "model SNR: source_counts / sqrt(total_counts)"),
    "statistic": ("", "fit statistic at the posterior mean (W-stat or C-stat)"),
    "dof": ("", "degrees of freedom of the statistic (good channels)"),
    "elbo": ("", "evidence lower bound of the spectrum (nats)"),
    "misfit": ("", "(E_q[deviance] + 2 KL) / dof: about 1 where the model explains it"),
    "hr": ("", "4XMM HR1-HR4 of net counts (bands 0.2-0.5-1-2-4.5-12 keV)"),
    # search, map, trajectory, anomalies
    "query_row": ("", "row of the query in the posterior table"),
    "query_label": ("", "class of the query"),
    "rank": ("", "rank (1: nearest, or most anomalous)"),
    "divergence": ("", "divergence of the posterior from the query's (DIVERGE)"),
    "x": ("", "PaCMAP coordinate 1"),
    "y": ("", "PaCMAP coordinate 2"),
    "set": ("", "which table the point comes from"),
    "step": ("", "divergence from the previous epoch's posterior (DIVERGE)"),
    "n_epochs": ("", "observations of the source in the table"),
    "isolation": ("", "mean divergence to the k nearest posteriors"),
    "isolation_rank": ("", "rank by isolation (1: most isolated)"),
    "misfit_rank": ("", "rank by misfit (1: worst)"),
    # predictive checks and samples
    "p_value": ("", "posterior predictive p-value of the fit statistic"),
    "statistic_rep": ("", "mean statistic of replicated data at the draws"),
    "z": ("", "latent vector drawn"),
    "log_norm": ("", "ln(count rate) drawn"),
    "source": ("ct", "expected source counts per channel, source region"),
    "background": ("ct", "expected background counts per channel, background region"),
    "counts": ("ct", "replicated counts per channel, source region"),
    "background_counts": ("ct", "replicated counts per channel, background region"),
    # comparison with classical fits (compare)
    "name": ("", "short name of the spectrum file"),
    "w_dof": ("", "statistic / dof of the encoder's fit"),
    "best_model": ("", "classical model with the lowest statistic / dof"),
    "best_w_dof": ("", "statistic / dof of that model"),
    "neighbours": ("", "rows of the k nearest reference posteriors"),
    "nearest_divergence": ("", "divergence to the nearest reference posterior"),
    "neighbour_classes": ("", "classes of those neighbours, with counts"),
    "nearest_class": ("", "most common class among them"),
}
#: Columns ``<model>_<key>`` of fit tables (compare.fit_table): the key's unit and description.
FIT_COLUMNS = {
    "statistic": ("", "fit statistic (W-stat or C-stat)"),
    "dof": ("", "degrees of freedom (-1: the fit failed)"),
    "w_dof": ("", "statistic / dof"),
    "error": ("", "why the fit failed (empty when it did not)"),
    "total": ("ct", "expected counts per channel in the source region"),
    "nh": (_NH, "absorbing column"),
    "gamma": ("", "photon index"),
    "powerlaw_norm": ("ph / (cm2 s keV)", "power law photons at 1 keV"),
    "pl_norm": ("ph / (cm2 s keV)", "power law photons at 1 keV"),
    "diskbb_norm": ("", "diskbb normalisation, (R_in/km / (D/10 kpc))^2 cos i"),
    "disk_norm": ("", "diskbb normalisation, (R_in/km / (D/10 kpc))^2 cos i"),
    "t_in": ("keV", "inner disc temperature"),
}


def describe(name: str) -> tuple[str, str]:
    """Unit and description of a column the package writes; a name it does not know is a bug
    and raises ``KeyError``."""
    if name in COLUMNS:
        return COLUMNS[name]
    for key in sorted(FIT_COLUMNS, key=len, reverse=True):  # pl_norm before norm
        unit, text = FIT_COLUMNS[key]
        for suffix, what in ((f"_{key}_err", f"1-sigma error of {text}"), (f"_{key}", text)):
            if f"_{name}".endswith(suffix):
                model = f"_{name}".removesuffix(suffix).lstrip("_")
                return unit, f"{model}: {what}" if model else what
    raise KeyError(f"column {name!r} has no unit or description in xspecvae.tables.COLUMNS")


def _format(path: Path) -> str:
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "fits"


def write_table(
    columns: dict, path: str | os.PathLike, *, extname: str, header: dict | None = None
) -> Path:
    """Write ``columns`` to ``path`` (``.parquet`` or ``.pq``: Parquet, otherwise FITS, gzipped
    when the name ends in ``.gz``) atomically, as the table ``extname``, each column with its
    unit and description (:func:`describe`); ``header`` (short keys, scalar values: the
    settings that made it) goes into the FITS header or the Parquet metadata."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder: give a file name for the table")
    if path.exists() and not _written_here(path):
        raise InputError(path, "exists and is not a table of xspecvae: remove it or choose another")
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{path}: columns of different lengths {lengths}")
    table = Table({IN_FILES.get(k, k): np.asarray(v) for k, v in columns.items()})
    for key, column in zip(columns, table.itercols()):
        unit, column.description = describe(key)
        column.unit = unit or None
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    table.meta.update(EXTNAME=extname, CREATOR=f"xspecvae {__version__}", DATE=now)
    table.meta.update(header or {})
    if _format(path) == "fits":
        hdu = fits.table_to_hdu(table)
        for i, column in enumerate(table.itercols(), 1):  # descriptions where TOPCAT shows them
            hdu.header.set(f"TCOMM{i}", column.description, after=f"TFORM{i}")
        buffer = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
        data = buffer.getvalue()
        write_atomic(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    else:  # the Parquet writer wants a file name
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ImportError(
                f"{path}: Parquet needs pyarrow (pip install 'xspecvae[parquet]')"
            ) from None
        with tempfile.TemporaryDirectory() as folder:
            table.write(Path(folder) / "table.parquet", format="parquet")
            write_atomic(path, (Path(folder) / "table.parquet").read_bytes())
    return path


#: Columns every posterior table has (what the commands that read one need).
POSTERIOR = ("row", "z_loc", "z_scale")


def _written_here(path: Path) -> bool:
    """Whether ``path`` is a table :func:`write_table` wrote (its CREATOR), so may be replaced."""
    try:
        if _format(path) == "fits":  # the header alone
            creator = fits.getval(path, "CREATOR", ext=1)
        else:
            creator = read_table(path, with_header=True)[1].get("CREATOR", "")
    except (OSError, ValueError, TypeError, KeyError, IndexError):  # InputError: a ValueError
        return False
    return str(creator).startswith("xspecvae")


def read_table(
    path: str | os.PathLike, *, with_header: bool = False, required: Sequence[str] = ()
) -> dict | tuple[dict, dict]:
    """A table written by :func:`write_table` (or any FITS/Parquet table) as numpy columns;
    with ``with_header``, also its header keywords: ``(columns, header)``. A file that is not
    a table, or lacks a ``required`` column, is refused with an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        with warnings.catch_warnings():  # a foreign table's unit and NULL notes
            warnings.simplefilter("ignore", AstropyWarning)
            table = Table.read(path, format=_format(path))
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise InputError(path, f"not a readable table ({exc})") from None
    missing = [n for n in required if IN_FILES.get(n, n) not in table.colnames]
    if missing:
        what = "a posterior table (xspecvae encode)" if required == POSTERIOR else "the table"
        raise InputError(path, f"not {what}: no column {', '.join(missing)}")
    table.convert_bytestring_to_unicode()  # FITS strings come back as bytes
    ours = {v: k for k, v in IN_FILES.items()}
    columns = {ours.get(name, name): np.asarray(table[name]) for name in table.colnames}
    return (columns, dict(table.meta)) if with_header else columns


def made_by(run: str | os.PathLike, info: dict, pack: Pack) -> dict:
    """Header keywords naming the run that made a table (absolute path, and the ``run_id`` of
    its ``config.json`` ``info``), the pack it read (absolute path and :attr:`Pack.identity`)
    and the kind of posterior widths (``WIDTHS``: marginal; tables made before 2026-12-06 have
    none, their widths were the curvature's diagonal), so that cached tables of either kind
    are not mixed."""
    return {
        "RUN": str(Path(run).resolve()),  # however the user spelled it
        "RUNID": info.get("run_id") or "none",
        "PACK": str(Path(pack.path).resolve()),
        "PACKID": pack.identity or "none",
        "WIDTHS": "marginal",
    }


def identity_columns(meta: dict, rows: ArrayLike) -> dict[str, np.ndarray]:
    """The :data:`IDENTITY` columns of a pack's ``meta`` at ``rows`` (those it has; a pack made
    without a catalogue has ``catalogue_id`` false: every source id is the package's own)."""
    rows = np.asarray(rows)
    found = {k: np.asarray(meta[k])[rows] for k in IDENTITY if k in meta}
    if "source_id" in found and "catalogue_id" not in found:
        found["catalogue_id"] = np.zeros(len(rows), bool)
    return {k: found[k] for k in IDENTITY if k in found}


def cached_table(
    path: Path,
    model: Run,
    make: Callable[[], dict],
    *,
    header: dict,
    parquet: bool = False,
    progress: bool = True,
) -> dict:
    """The table at ``path`` if written after the ``model`` was saved and made with the
    same ``header`` (the settings it depends on), otherwise made by ``make`` and written (FITS
    with ``header``, and Parquet beside it with ``parquet``)."""
    if _is_cached(path, model, header):
        return read_table(path)
    if progress:
        print(f"{path.parent.name}: {path.stem}", flush=True)
    table = make()
    name = path.name.split(".")[0].upper()
    write_table(table, path, extname=name, header=header)
    if parquet:
        write_table(table, path.with_suffix(".parquet"), extname=name, header=header)
    return table


def _is_cached(path: Path, model: Run, header: dict) -> bool:
    """Whether :func:`cached_table` would reuse the table at ``path`` (its header only read)."""
    if not model.is_current(path):
        return False
    try:
        stored = fits.getheader(path, 1)
    except (OSError, IndexError):
        return False
    return all(str(stored.get(k)) == str(v) for k, v in header.items())


def tables_folder(model: Run, header: dict) -> Path:
    """Where the cached tables of the run ``model`` are: ``RUN/explore``, unless only the
    folder beside the run (``RUN/../explore``, where ``xspecvae demo`` writes its report)
    holds a current posterior table made with ``header``."""
    own, beside = model.explore_folder, model.beside_folder
    found = [_is_cached(f / "posteriors.fits", model, header) for f in (own, beside)]
    return beside if found == [False, True] else own
