"""Catalogue packs: many spectra on one analysis grid per instrument, in one HDF5 file.

A pack is what training and exploration read. Layout (schema version 1)::

    /                       attrs: format, schema_version, xspecvae_version, provenance (JSON)
    /instruments/<name>/    attrs: n (committed rows), first_channel, n_rmf_energy
        channel_lo, channel_hi        (C,)    analysis bins (keV)
        channel_start, channel_stop   (C,)    runs of RMF channels summed into each bin
        energy_edges                  (E+1,)  model energy grid (keV)
        rmf_rows                      (2,)    the RMF energy rows kept for it
        rmf (R, E, C) float32, rmf_names (R,) shared responses, regrouped
        counts, background, alpha     (N, C)  float32
        good                          (N, C)  bool, False for bins holding a bad-quality channel
        exposure (N,) float64, arf (N, E) float32, rmf_index (N,) int32
        meta/<column>  (N,)   source_id, obs_id, mjd, ra, dec, label, file, counts, ...
        truth/<column> (N,)   true parameters of simulated sources (NaN where not applicable)

Rows are appended in batches; a batch is committed when the section's ``n`` attribute is
updated, so a pack interrupted mid-batch is resumed from its last committed row. A pack is
built under ``<name>.partial`` and renamed when complete.

Modules: :mod:`.layout` (format, schema, errors), :mod:`.grid`, :mod:`.writing`,
:mod:`.reading` and :mod:`.sources` (positions matched, hardness ratios).
"""

from xspecvae.catalog.grid import QUALITY_BREAKS, Grid
from xspecvae.catalog.layout import CHUNK_ROWS, PER_SOURCE, SCHEMA_VERSION, PackError
from xspecvae.catalog.reading import Pack, grids_of
from xspecvae.catalog.sources import BANDS_4XMM, band_matrix, hardness_ratios, match_positions
from xspecvae.catalog.writing import PackWriter, append_pack, made_already, resumable

__all__ = [
    "BANDS_4XMM",
    "CHUNK_ROWS",
    "PER_SOURCE",
    "QUALITY_BREAKS",
    "SCHEMA_VERSION",
    "Grid",
    "grids_of",
    "Pack",
    "PackWriter",
    "append_pack",
    "band_matrix",
    "hardness_ratios",
    "match_positions",
    "PackError",
    "made_already",
    "resumable",
]
