"""xspecvae: physically motivated variational autoencoders for X-ray source catalogues."""

from xspecvae.catalog import Pack
from xspecvae.instrument import Grouping, Response, builtin_pn_response
from xspecvae.ogip import (
    OGIPError,
    background_ratio,
    check_match,
    read_arf,
    read_ogip,
    read_pha,
    read_pha_rows,
    read_rmf,
)

__version__ = "0.2.0"

__all__ = [
    "OGIPError",
    "read_pha",
    "read_pha_rows",
    "read_arf",
    "read_rmf",
    "read_ogip",
    "check_match",
    "background_ratio",
    "Response",
    "Grouping",
    "builtin_pn_response",
    "Pack",
]
