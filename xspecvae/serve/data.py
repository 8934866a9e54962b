"""What ``xspecvae serve`` shows, as plain data (no Bokeh): the map's columns and colours, the
spectrum and summary of one source, its nearest posteriors, a selection as a file.

:class:`Catalogue` opens a run on its pack once and keeps what every page shares: the posterior
table and its PaCMAP map (cached as ``xspecvae report`` caches them, in ``RUN/explore`` by
default, so that a report's tables are reused), the search :class:`~xspecvae.latent.Index`
and, on first use, the anomaly ranking; a source's reconstruction is computed once per row.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt
from astropy.table import Table

from xspecvae.errors import InputError
from xspecvae.explore import (
    TRACK,
    anomaly_table,
    map_table,
    posterior_table,
    reconstruction,
    similar_table,
)
from xspecvae.latent import (
    DEFAULT_DIVERGENCE,
    STEP_DIVERGENCE,
    Index,
    of_table,
    trajectories,
)
from xspecvae.run import Run, load_run, run_pack
from xspecvae.tables import IDENTITY, IN_FILES, cached_table, made_by, tables_folder, write_table

if TYPE_CHECKING:
    from xspecvae.catalog import Pack
    from xspecvae.vae import VAE

__all__ = [
    "COLOURS",
    "Catalogue",
    "Colouring",
    "colours",
    "epochs",
    "map_columns",
    "parse_rows",
    "selection_file",
    "selection_table",
    "similar",
    "spectrum_panel",
    "summary",
    "trajectory",
]

#: The anomaly ranking's settings: those of ``xspecvae report``, whose table is reused.
ANOMALY_K, ANOMALY_DIVERGENCE = 10, STEP_DIVERGENCE


class Catalogue:
    """``run`` on ``pack`` (default: the run's own), its tables cached in ``folder`` (default
    :func:`~xspecvae.tables.tables_folder`: ``RUN/explore``, or the demo's report beside the
    run)."""

    def __init__(
        self,
        run: str | os.PathLike,
        pack_path: str | os.PathLike | None = None,
        folder: str | os.PathLike | None = None,
        *,
        instrument: str | None = None,
        progress: bool = False,
    ) -> None:
        self.run = Path(run)
        self.vae, info = load_run(self.run)
        self.pack = run_pack(info, pack_path, instrument)
        self.progress = progress
        self.origin = made_by(self.run, info, self.pack) | {"INSTRUME": self.pack.instrument}
        self.folder = Path(folder) if folder else tables_folder(Run(self.run), self.origin)
        self.table = self._cached(
            "posteriors", lambda: posterior_table(self.vae, self.pack, progress=progress)
        )
        xy = self._cached("map", lambda: map_table(self.table))
        self.xy = np.stack([xy["x"], xy["y"]], -1)
        self.index = of_table(self.table)
        self.spectrum = lru_cache(maxsize=256)(self._spectrum)

    def _cached(self, name: str, make: Callable[[], dict], **settings) -> dict:
        return cached_table(
            self.folder / f"{name}.fits",
            Run(self.run),
            make,
            header=self.origin | settings,
            progress=self.progress,
        )

    def __len__(self) -> int:
        return len(self.table["row"])

    @cached_property
    def map_columns(self) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """:func:`map_columns` of the catalogue, made once for every page."""
        return map_columns(self.table, self.xy)

    @cached_property
    def anomalies(self) -> dict:
        """:func:`~xspecvae.explore.anomaly_table` of the catalogue, most anomalous first."""
        return self._cached(
            "anomalies",
            lambda: anomaly_table(self.table, ANOMALY_K, ANOMALY_DIVERGENCE),
            DIVERGE=ANOMALY_DIVERGENCE,
            K=ANOMALY_K,
        )

    def row(self, value: int | str) -> int:
        """``value`` as a row of the table, or an :class:`InputError` saying why not."""
        return check_row(value, len(self))

    def _spectrum(self, row: int) -> dict:
        return spectrum_panel(self.vae, self.pack, self.row(row))

    def selection(self, rows: Sequence[int] | np.ndarray, kind: str) -> bytes:
        """:func:`selection_file` of ``rows``, its header naming the run and pack it came
        from (their ids, not their paths)."""
        header = {k: self.origin[k] for k in ("RUNID", "PACKID")} | {"NROWS": len(rows)}
        return selection_file(self.table, rows, kind, header)

    def close(self) -> None:
        self.pack.close()


def check_row(value: int | str, n: int) -> int:
    """``value`` (int or text) as a row in ``[0, n)``, or an :class:`InputError`."""
    try:
        row = int(str(value).strip())
    except ValueError:
        raise InputError("row", f"{str(value)[:40]!r} is not a row number") from None
    if not 0 <= row < n:
        raise InputError("row", f"{row} is not a row of the table (0 to {n - 1})")
    return row


def parse_rows(text: str, n: int) -> np.ndarray:
    """Rows written ``3,7,10-12`` (ranges inclusive), each in ``[0, n)``, sorted and unique;
    an :class:`InputError` for anything else, or for no row at all."""
    rows = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        first, dash, last = part.partition("-")
        if dash:
            lo, hi = check_row(first, n), check_row(last, n)
            if hi < lo:
                raise InputError("rows", f"range {part!r} runs backwards")
            rows.extend(range(lo, hi + 1))
        else:
            rows.append(check_row(part, n))
    if not rows:
        raise InputError("rows", "no row given")
    return np.unique(rows)


# ---------------------------------------------------------------------------------------------
# The map


def _misfit(table: dict[str, np.ndarray]) -> np.ndarray:
    return np.asarray(table["statistic"], float) / np.maximum(np.asarray(table["dof"]), 1)


#: What the map can be coloured by: name -> (values of a table, kind: class, linear or log).
COLOURS = {
    "class": (lambda t: t["label"], "class"),
    "SNR": (lambda t: t["snr"], "log"),
    "nh": (lambda t: t["nh"], "log"),
    "hardness": (lambda t: t["hardness"], "linear"),
    "misfit (statistic/dof)": (_misfit, "log"),
    "instrument": (lambda t: t["instrument"], "class"),
}


def colour_options(table: dict[str, np.ndarray]) -> list[str]:
    """The :data:`COLOURS` a table has (class only where it is labelled)."""
    labelled = "label" in table and len(np.unique(table["label"])) > 1
    return [c for c in COLOURS if c != "class" or labelled]


class Colouring(NamedTuple):
    """The map's colours as a colour mapper draws them: ``values`` (one number per row),
    ``palette`` (hex colours spread evenly from ``low`` to ``high``; NaN takes the first), and
    the ``legend``: ``(text, colour)`` per class, or at the low and high ends of a scale."""

    values: np.ndarray
    palette: list[str]
    low: float
    high: float
    legend: list[tuple[str, str]]

    def rgb(self) -> np.ndarray:
        """Each row's colour (n, 3 in 0-255) as Bokeh's ``LinearColorMapper`` draws it: the
        palette's entry of its value between ``low`` and ``high`` (clipped), NaN the first."""
        from matplotlib.colors import to_rgba_array

        table = np.round(255 * to_rgba_array(self.palette)[:, :3]).astype(int)
        n = len(self.palette)
        where = (np.asarray(self.values, float) - self.low) / (self.high - self.low) * n
        index = np.clip(np.nan_to_num(np.floor(where), nan=0.0), 0, n - 1).astype(int)
        return table[index]


def colours(table: dict[str, np.ndarray], by: str) -> Colouring:
    """The :class:`Colouring` of ``table`` by :data:`COLOURS` ``by``: a class's code (its place
    among the sorted names), or a value between the 2nd and 98th percentiles (log scales over
    the positive values). Numbers rather than colours, so the browser receives a binary
    column."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    if by not in COLOURS:
        raise InputError("colour", f"unknown {by!r}; known: {', '.join(COLOURS)}")
    get, kind = COLOURS[by]
    values = np.asarray(get(table))
    if kind == "class":
        names, codes = np.unique(values.astype(str), return_inverse=True)
        palette = [to_hex(colormaps["tab10"](i % 10)) for i in range(len(names))]
        legend = list(zip(names.tolist(), palette))
        return Colouring(codes.astype(np.float32), palette, -0.5, len(names) - 0.5, legend)
    x = np.asarray(values, float)
    if kind == "log":
        x = np.log10(np.where(x > 0, x, np.nan))
    lo, hi = np.nanpercentile(x, [2, 98]) if np.isfinite(x).any() else (0.0, 1.0)
    hi = max(hi, lo + 1e-12)
    palette = [to_hex(c) for c in colormaps["viridis"](np.linspace(0, 1, 256))]
    ends = (lo, hi) if kind == "linear" else (10**lo, 10**hi)
    legend = [(f"{by} {e:.3g}", palette[i]) for e, i in zip(ends, (0, -1))]
    return Colouring(x.astype(np.float32), palette, float(lo), float(hi), legend)


def map_columns(
    table: dict[str, npt.ArrayLike], xy: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
    """The map's data source (coordinates, the table's row, and what the hover shows), every
    column a number so that the browser receives it as binary; and, for the hover's text
    columns, how to show each number (:func:`_as_numbers`)."""
    n = len(xy)
    columns = {
        "x": np.asarray(xy[:, 0], float),
        "y": np.asarray(xy[:, 1], float),
        "row": np.arange(n, dtype=np.int32),
        "snr": np.asarray(table["snr"], np.float32),
    }
    shown = {}
    for name, values in (
        ("source_id", table["source_id"]),
        ("obs_id", table["obs_id"]),
        ("label", table.get("label", np.full(n, "-"))),
    ):
        columns[name], shown[name] = _as_numbers(values)
    return columns, shown


#: Integers a float64 holds exactly.
_EXACT = 2**53


def _as_numbers(values: npt.ArrayLike) -> tuple[np.ndarray, dict]:
    """Identifiers as numbers and how to write them back: integers (or strings of digits, all
    of one width or none starting with 0) as themselves, ``{"width": w}`` to zero-pad to;
    anything else as codes into ``{"names": [...]}``, its sorted distinct values."""
    values = np.asarray(values)
    if values.dtype.kind in "iu" and (values.size == 0 or np.abs(values).max() < _EXACT):
        return values.astype(np.float64), {"width": 0, "names": []}
    text = values.astype(str)
    widths = np.char.str_len(text)
    digits = text.size > 0 and np.char.isdigit(text).all() and widths.max() <= 15
    if digits and (widths.min() == widths.max() or not np.char.startswith(text, "0").any()):
        width = int(widths.max()) if widths.min() == widths.max() else 0
        return text.astype(np.int64).astype(np.float64), {"width": width, "names": []}
    names, codes = np.unique(text, return_inverse=True)
    return codes.astype(np.float64), {"width": 0, "names": names.tolist()}


# ---------------------------------------------------------------------------------------------
# A source


def spectrum_panel(vae: VAE, pack: Pack, row: int) -> dict[str, np.ndarray]:
    """One spectrum against energy, per keV: the observed ``counts`` (``error``: Poisson), the
    ``model`` (the :func:`~xspecvae.explore.reconstruction`'s median expected total counts)
    with its 90% band ``band_lo``, ``band_hi``, the scaled ``background``; channel edges
    ``lo``, ``hi`` and ``energy`` (their geometric mean), ``good``."""
    fit = reconstruction(vae, pack, row)
    lo, hi = np.asarray(fit["channel_lo"], float), np.asarray(fit["channel_hi"], float)
    width = hi - lo
    counts = np.asarray(fit["counts"], float)
    return {
        "lo": lo,
        "hi": hi,
        "energy": np.sqrt(lo * hi),
        "counts": counts / width,
        "error": np.sqrt(counts) / width,
        "model": np.asarray(fit["model"], float) / width,
        "band_lo": np.asarray(fit["band"][0], float) / width,
        "band_hi": np.asarray(fit["band"][1], float) / width,
        "background": np.asarray(fit["background"], float) / width,
        "good": np.asarray(fit["good"], bool),
    }


#: The summary of a source: label shown -> column of the posterior table.
SUMMARY = {
    "SRCID": "source_id",
    "OBS_ID": "obs_id",
    "SRC_NUM": "src_num",
    "RA (deg)": "ra",
    "DEC (deg)": "dec",
    "MJD": "mjd",
    "class": "label",
    "instrument": "instrument",
    "model SNR": "snr",
    "nh (1e22 cm-2)": "nh",
    "redshift": "redshift",
    "hardness": "hardness",
    "statistic / dof": None,
    "misfit": "misfit",
    "ln rate (posterior)": "norm_loc",
}


#: Formats of the columns a summary gives more digits (positions to 0.04 arcsec).
PRECISE = {"ra": ".5f", "dec": ".5f", "mjd": ".3f"}


def _text(value: object, spec: str) -> str:
    return format(value, spec) if isinstance(value, float | np.floating) else str(value)


def summary(table: dict[str, np.ndarray], row: int) -> dict[str, str]:
    """What a source's panel lists, as text: its ids, position, the decoder's column and
    redshift, the fit, and its posterior (``z`` mean +- sd per dimension)."""
    row = check_row(row, len(table["row"]))
    out = {"row": str(row)}
    for name, column in SUMMARY.items():
        value = _misfit(table)[row] if column is None else None
        if column is not None and column in table:
            value = np.asarray(table[column])[row]
        if value is not None:
            out[name] = _text(value, PRECISE.get(column, ".4g"))
    loc, scale = np.asarray(table["z_loc"])[row], np.asarray(table["z_scale"])[row]
    out["z (posterior)"] = ", ".join(f"{m:.2f}±{s:.2f}" for m, s in zip(loc, scale))
    return out


def epochs(table: dict[str, np.ndarray], row: int) -> np.ndarray:
    """All the rows of the source of ``row`` (its observations), in time order."""
    row = check_row(row, len(table["row"]))
    same = np.flatnonzero(np.asarray(table["source_id"]) == np.asarray(table["source_id"])[row])
    if "mjd" in table:
        same = same[np.argsort(np.asarray(table["mjd"])[same], kind="stable")]
    return same


def trajectory(
    table: dict[str, np.ndarray], row: int, divergence: str = STEP_DIVERGENCE
) -> dict[str, np.ndarray]:
    """The observations of the source of ``row`` in time order (:func:`epochs`): ``row``,
    ``obs_id``, ``mjd`` (where known), ``step`` (the ``divergence`` of each posterior from
    the previous epoch's, NaN at the first; :func:`~xspecvae.latent.trajectories`), and the
    model's ``hardness`` and ``photon_flux`` (its hardness-intensity track; NaN where the table
    lacks them)."""
    rows = epochs(table, row)
    when = np.asarray(table["mjd"])[rows] if "mjd" in table else np.arange(len(rows), dtype=float)
    posterior = ("z_loc", "z_scale", "z_conditional")
    one = {"source_id": np.zeros(len(rows), int), "mjd": when}
    one |= {c: np.asarray(table[c])[rows] for c in posterior if c in table}
    steps = trajectories(one, divergence=divergence)
    step = np.full(len(rows), np.nan)
    step[steps["row"]] = steps["step"]
    out = {"row": rows, "obs_id": np.asarray(table["obs_id"])[rows].astype(str)}
    out |= {"mjd": when} if "mjd" in table else {}
    out["step"] = step
    missing = np.full(len(rows), np.nan)
    return out | {c: np.asarray(table[c], float)[rows] if c in table else missing for c in TRACK}


def similar(
    index: Index,
    table: dict[str, np.ndarray],
    row: int,
    *,
    k: int = 10,
    divergence: str = DEFAULT_DIVERGENCE,
    min_snr: float = 0.0,
) -> dict[str, np.ndarray]:
    """:func:`~xspecvae.explore.similar_table` of ``row`` (SNR >= ``min_snr``), its ids as
    text for the page."""
    row = check_row(row, len(table["row"]))
    bright = bool(np.any(np.asarray(table["snr"]) >= min_snr))  # else an empty list
    search = dict(divergence=divergence, min_snr=min_snr if bright else 0.0, index=index)
    found = similar_table(table, row, int(k) if bright else 1, **search)
    found = {c: v if bright else v[:0] for c, v in found.items()}
    for column in ("source_id", "obs_id", "label"):
        if column in found:
            found[column] = found[column].astype(str)
    return found


# ---------------------------------------------------------------------------------------------
# A selection

#: Columns of a downloaded selection (those the table has): the identity columns of every
#: table but the file name (a path on the server) and the epoch, then the posterior's.
SELECTED = (
    *(c for c in IDENTITY if c not in ("file", "epoch")),
    "row",
    "instrument",
    "z_loc",
    "z_scale",
    "norm_loc",
    "norm_scale",
    "nh",
    "redshift",
    "photon_flux",
    "hardness",
    "snr",
    "statistic",
    "dof",
    "misfit",
)


def selection_table(table: dict[str, np.ndarray], rows: npt.ArrayLike) -> dict[str, np.ndarray]:
    """The :data:`SELECTED` columns of ``rows`` of ``table``."""
    rows = np.asarray(rows, int)
    return {c: np.asarray(table[c])[rows] for c in SELECTED if c in table}


def selection_file(
    table: dict[str, np.ndarray], rows: npt.ArrayLike, kind: str, header: dict | None = None
) -> bytes:
    """:func:`selection_table` as a file: ``fits`` (the package's tables, 4XMM names, units,
    ``header`` in the FITS header), ``votable`` (the same, ``header`` as PARAMs; for SAMP) or
    ``csv`` (4XMM names; vector columns as ``Z_LOC_1``, ``Z_LOC_2``, ...)."""
    chosen = selection_table(table, rows)
    if kind in ("fits", "votable"):
        with tempfile.TemporaryDirectory() as folder:
            path = write_table(chosen, Path(folder) / "s.fits", extname="SELECTION", header=header)
            if kind == "fits":
                return path.read_bytes()
            return _votable(Table.read(path, format="fits"), header or {})
    if kind != "csv":
        raise InputError("format", f"unknown {kind!r}; fits, votable or csv")
    flat = {}
    for name, values in chosen.items():
        name = IN_FILES.get(name, name)
        if values.ndim == 2:
            flat |= {f"{name}_{i + 1}": values[:, i] for i in range(values.shape[1])}
        else:
            flat[name] = values
    text = io.StringIO()
    Table(flat).write(text, format="ascii.csv")
    return text.getvalue().encode()


def _votable(table: Table, header: dict) -> bytes:
    """``table`` as a VOTable whose PARAMs are ``header`` (which TOPCAT shows with it)."""
    from astropy.io.votable import from_table
    from astropy.io.votable.tree import Param

    votable = from_table(table)
    params = votable.get_first_table().params
    for key, value in header.items():
        if isinstance(value, int):
            params.append(Param(votable, name=key, datatype="long", value=value))
        else:
            params.append(
                Param(votable, name=key, datatype="char", arraysize="*", value=str(value))
            )
    out = io.BytesIO()
    votable.to_xml(out)
    return out.getvalue()
