"""Source identities: one id per position across observations, or the catalogue's SRCID where
the (OBS_ID, SRC_NUM) of a spectrum is in it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from xspecvae.catalog import PackWriter, match_positions
from xspecvae.errors import InputError
from xspecvae.products.finding import _is_fits, _source_number


def _assign_source_ids(writer: PackWriter, sections: list[str], radius: float, given: dict) -> int:
    """One source id per position (across instruments and observations), or the catalogue's
    (``given``: (obs_id, src_num) -> SRCID) where known, with ``catalogue_id`` saying which
    are the catalogue's (found there, or matched by position to a spectrum that was) and
    ``src_num``, the pipeline source number; returns how many rows were found in the
    catalogue."""

    def column(name: str) -> np.ndarray:
        return np.concatenate([writer.committed(s, name) for s in sections])

    ids = match_positions(column("ra"), column("dec"), radius)
    numbers = np.array([_source_number(Path(f)) for f in column("file").astype(str)], np.int64)
    keys = zip(column("obs_id").astype(str), numbers.tolist())
    known = np.array([given.get(key, -1) for key in keys], np.int64)
    if given:
        ids = _with_given_ids(ids, known)
    start = 0
    for section in sections:
        n = writer.rows(section)
        part = slice(start, start + n)
        writer.set_column(section, "source_id", ids[part])
        writer.set_column(section, "catalogue_id", np.isin(ids[part], known[known >= 0]))
        writer.set_column(section, "src_num", numbers[part])
        start += n
    return int(np.sum(known >= 0))


def _with_given_ids(groups: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Source ids from position ``groups`` (0, 1, ...) and catalogue ids ``known`` (-1 where
    none): a row keeps its catalogue id; the other rows of its group take the group's most
    frequent one; groups without any keep their number, shifted past the catalogue ids if
    the two could be confused."""
    has = known >= 0
    chosen = np.full(groups.max() + 1, -1, np.int64)
    if has.any():
        pairs, count = np.unique(np.stack([groups[has], known[has]], 1), axis=0, return_counts=True)
        best = np.lexsort((-count, pairs[:, 0]))  # per group, the most frequent id first
        first = np.r_[True, pairs[best][1:, 0] != pairs[best][:-1, 0]]
        chosen[pairs[best][first, 0]] = pairs[best][first, 1]
    own = groups.astype(np.int64)
    if has.any() and known[has].min() <= groups.max():
        own = own + known[has].max() + 1
    return np.where(has, known, np.where(chosen[groups] >= 0, chosen[groups], own))


def catalogue_ids(path: str | Path) -> dict[tuple[str, int], int]:
    """``(OBS_ID, SRC_NUM) -> SRCID`` from a catalogue table (FITS or any format astropy
    reads, e.g. the 4XMM catalogue or an extract); rows without an observation are skipped."""
    from astropy.table import Table

    try:  # a FITS catalogue is memory-mapped: only three of its columns are read
        with warnings.catch_warnings():  # about units and columns this does not use
            warnings.simplefilter("ignore")
            table = Table.read(path, **({"memmap": True} if _is_fits(Path(path)) else {}))
        names = {c.upper(): c for c in table.colnames}
        srcid, obs, num = (table[names[c]] for c in ("SRCID", "OBS_ID", "SRC_NUM"))
    except KeyError as err:
        raise InputError(path, f"a catalogue needs columns SRCID, OBS_ID, SRC_NUM: {err}") from None
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read as a catalogue table: {err}") from None
    ok = ~(np.ma.getmaskarray(srcid) | np.ma.getmaskarray(obs) | np.ma.getmaskarray(num))
    keys = zip([str(o).strip().zfill(10) for o in obs[ok]], np.asarray(num[ok], int).tolist())
    return dict(zip(keys, np.asarray(srcid[ok], np.int64).tolist()))
