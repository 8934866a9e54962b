"""Figures of the exploration, each written as a PNG from plain numpy arrays.

Every function takes the arrays the caller computed (no knowledge of the VAE), writes a PNG at
``path`` (parent folders created, written atomically) with matplotlib's object-oriented API on
the Agg canvas (no pyplot state), and returns the :class:`~matplotlib.figure.Figure`. Energies
are in keV on log axes over :data:`FLUX_BAND`, spectra in counts per keV.
"""

from xspecvae.figures.canvas import DPI
from xspecvae.figures.charts import histogram, training_curves, versus
from xspecvae.figures.maps import (
    MAP_VIEWS,
    hardness_intensity,
    latent_map,
    map_figures,
    trajectory_figures,
    trajectory_map,
)
from xspecvae.figures.spectra import activation, spectrum_fit, templates

__all__ = [
    "DPI",
    "MAP_VIEWS",
    "activation",
    "hardness_intensity",
    "histogram",
    "latent_map",
    "map_figures",
    "spectrum_fit",
    "templates",
    "trajectory_figures",
    "trajectory_map",
    "training_curves",
    "versus",
]
