"""Pipeline products into a pack: find spectra, their backgrounds, ARFs and RMFs, and account
for every input file.

Source spectra are the PPS ``SRSPEC`` files (``P<obsid><inst><expo>SRSPEC<src>.FTZ``) and any
other OGIP spectrum that no spectrum names as its background. Each is read with the files its
header names (BACKFILE, ANCRFILE: looked up beside it; RESPFILE: see :func:`find_rmf`), put on
the instrument's analysis grid and appended to the pack, or rejected with the reason. The
report next to the pack lists every input file as ``packed``, ``rejected``, ``used`` (a
background or ARF of a packed spectrum), ``unused`` or ``ignored`` (not a FITS file).

Modules: :mod:`.finding` (file roles, RMFs), :mod:`.workers` (reading in processes),
:mod:`.placing` (onto the grid), :mod:`.ids` (source identities), :mod:`.ingestion`.
"""

from xspecvae.products.finding import PPS_NAME, find_rmf, locate_rmf
from xspecvae.products.ids import catalogue_ids
from xspecvae.products.ingestion import Ingestion, ingest

__all__ = ["ingest", "catalogue_ids", "find_rmf", "locate_rmf", "Ingestion", "PPS_NAME"]
