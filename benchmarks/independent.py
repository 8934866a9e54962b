"""An independent generator of labelled XMM-Newton EPIC pn pipeline (PPS) products.

    python benchmarks/independent.py OUT [--single 1200] [--repeated 150] [--epochs 3]
                                         [--seed 7] [--data DIR] [--save-expected] [--quiet]

Writes ``OUT/ogip/`` (``P<OBSID>PNS003SRSPEC<NNNN>.FTZ`` with its ``BGSPEC`` and ``SRCARF``
siblings, gzip-compressed FITS laid out as the pipeline writes them) and ``OUT/truth.fits``
(one row per source spectrum). It is written from scratch, independently of xspecvae's own
simulator: it imports nothing of xspecvae, only numpy, scipy and astropy, and reads the real
files itself (its own RMF, ARF and spectrum readers; its own spectral models and FITS writers),
so that a model trained on the package's simulations can be judged on data it was not designed
around. The package is used only to validate the output (``xspecvae pack``, its fits).

Inputs (``--data``, default ``$XSPECVAE_DATA`` or ``../shared/data/xmm`` beside the project)
-------------------------------------------------------------------------------------------
* ``responses/epn_e3_ef20_sdY6_v19.0.rmf``: the canned pn RMF (2067 energies x 4096 channels),
  read into a dense float64 matrix from its variable-length ``F_CHAN``/``N_CHAN``/``MATRIX``
  columns; channel numbers start at ``TLMIN`` of ``F_CHAN`` (else the first EBOUNDS channel,
  else 1). Spectra name it ``RESPFILE = 'epn_e3_ef20_sdY6.rmf'`` (no version suffix, as PPS).
* the 112 real pn source ARFs ``pps_0760940101/P0760940101PNS003SRCARF*.FTZ``: each spectrum
  uses one, drawn at random (its energy grid must equal the RMF's), copied into its own SRCARF.
  The source and background ``BACKSCAL`` of that same real source (its SRSPEC/BGSPEC pair)
  become the spectrum's, so region areas and ARF (encircled energy) belong together.
* the real ``BGSPEC`` files give the background *shape*: 8 templates, each the sum of 14 of the
  112 (a seeded random partition), smoothed over channels by a Gaussian whose width grows with
  energy (3 channels below 1 keV, 6 at 1-4 keV, 12 above 4 keV; the instrumental lines, whose
  width is the resolution, survive), renormalised inside the selection window. The background
  *rate* per unit region area is that of the real BGSPEC of the source drawn (counts / exposure /
  BACKSCAL in 0.2-12 keV) times 10^N(0, 0.15).
* ``absorption/xsect_tbabs_wilm.fits``: tbabs photoabsorption cross-section per H atom (Wilms
  et al. abundances). Its SIGMA column says ``cm^2`` but holds units of 1e-22 cm^2 (608 at 0.1
  keV, 1.74 at 1 keV): the scale is recognised from the value at 1 keV. Interpolated in log-log,
  extrapolated from the end slopes outside 0.1-20 keV. All columns below are in 1e22 cm^-2.

Spectra (photons/cm^2/s per RMF energy bin)
-------------------------------------------
Continua are integrated over each RMF energy bin by 4-point Gauss-Legendre quadrature together
with their absorption; lines are integrated exactly (differences of the normal CDF; a line of
zero width goes whole into the bin holding it) and multiplied by the bin's mean absorption. A
line's flux is ``EW x`` the local continuum (photon density at its energy, after any intrinsic
absorption/covering, before Galactic absorption), so the EWs below are those one would measure;
at redshift z line energies and widths scale by 1/(1+z), observed EWs by 1/(1+z).

Classes (singles: fractions exact up to rounding, then shuffled)
---------------------------------------------------------------
1. ``agn`` 30 %: power law, photon index N(1.9, 0.2) truncated to 1.4-2.6; redshift 0.02-2.5
   (25 % log-uniform 0.02-0.3, 75 % uniform 0.3-2.5); intrinsic column at z, log-uniform in one
   of three ranges: 40 % 1e20-1e21 (unabsorbed), 15 % 1e21-1e22, 45 % 1e22-1e24 (absorbed);
   absorbed ones (>= 1e22) have an unabsorbed scattered power law of 0.5-5 % (log-uniform);
   Fe K-alpha at 6.4 keV rest, EW 50-250 eV (log-uniform, against the local continuum), sigma
   0-50 eV (uniform); 40 % of those below 1e22 have a soft excess: a blackbody of kT 0.1-0.2 keV
   (rest, uniform) whose 0.2-2 keV rest-frame energy flux is 0.1-0.8 (log-uniform) of the power
   law's; Galactic column 1e20-1.6e21 (log-uniform, every class but the Galactic ones below).
   ``norm``: power-law photons/cm^2/s/keV at 1 keV (observed frame). State: ``unabsorbed`` /
   ``absorbed`` (intrinsic column below / above 1e22).
2. ``star`` 20 %: coronal plasma, 60 % two-temperature: kT1 0.15-0.8 keV (log-uniform), kT2
   between max(0.5, 1.8 kT1) and 2 keV (log-uniform), EM2/EM1 0.2-3 (log-uniform); abundance
   0.1-1 solar (log-uniform); column 3e19-1e21 (log-uniform). ``norm``: emission measure of
   the first component (arbitrary units). State ``quiescent`` or ``flare``.
3. ``xrb`` 13 %: multicolour disc (T(r) = T_in (r/r_in)^-3/4, integrated numerically over
   r_in-1000 r_in in log r, 64 Gauss-Legendre nodes) plus a power law, column 1e21-3e23
   (log-uniform); half ``soft``: T_in 0.5-2 keV (log-uniform), index 2-3, disc 60-95 % of the
   unabsorbed 0.5-10 keV energy flux; half ``hard``: T_in 0.3-0.8 keV, index 1.4-2, disc 2-20 %.
   ``norm``: unabsorbed 0.5-10 keV energy flux (keV/cm^2/s).
4. ``cv`` 12 %: one-temperature plasma kT 5-50 keV (log-uniform), abundance 0.3-1 (uniform),
   with Fe XXV 6.70 / Fe XXVI 6.97 keV from the plasma line table and a fluorescent 6.40 keV
   line of EW 50-180 eV (log-uniform); partial covering: column 1e22-3e23 (log-uniform) over a
   fraction 0.3-0.55 (``low_cover``) or 0.65-0.95 (``high_cover``), half each; interstellar
   column 1e20-3e21. ``norm``: emission measure.
5. ``sss`` 10 %: blackbody kT 20-90 eV (uniform), column 1e20-3.2e21 (10^20-10^21.5,
   log-uniform). ``norm``: emitting area (arbitrary units). State ``on`` / ``fading``.
6. ``cluster`` 15 %: plasma kT 1.5-10 keV (log-uniform), redshift 0.05-0.8 (uniform),
   abundance 0.2-0.6 (uniform). Treated as a point source (the real point-source ARFs and
   regions). ``norm``: emission measure. State ``steady``; never among the repeated sources.

Plasma model (stars, CVs, clusters): thermal bremsstrahlung of H and He, photon density
``g(E/kT) exp(-E/kT) / (E sqrt(kT))`` with the Born-approximation thermally averaged Gaunt
factor ``g = sqrt(3)/pi exp(u/2) K0(u/2)``, ``u = E/kT``; plus 34 lines at their real energies
(C VI 0.37, N VII 0.50, O VII 0.57, O VIII 0.65/0.77, the Fe L complex Fe XVII-XXIV 0.73-1.17,
Ne IX 0.92, Ne X 1.02, Mg XI 1.35, Mg XII 1.47, Si XIII 1.86, Si XIV 2.01, S XV 2.46, S XVI 2.62,
Ar XVII 3.14, Ca XIX 3.90, Fe XXV 6.70, Fe XXVI 6.97, Fe XXV K-beta 7.88 ...) whose EW against
the component's own continuum is ``abundance x EW_peak x exp(-(log10(kT/kT_peak)/w)^2 / 2)``
with a peak temperature and widths (below/above the peak) per ion set to the shape of the
ionisation balance (e.g. O VIII peaks at 0.3 keV with 300 eV at solar abundance, Fe XXV at 4
keV with 1 keV, Fe XXVI at 15 keV with 350 eV): see ``PLASMA_LINES``. These are approximations
written for this generator, not an atomic code; they give Fe-L-dominated spectra at 0.5-1 keV,
Fe XXV EWs of 200-490 eV (10-90 %) for the clusters and 50-620 eV (Fe XXVI 70-280 eV) for the
CVs, falling with kT above 5 keV.

Counts
------
Expected counts per channel = exposure x (photons x ARF) @ RMF, inside the pipeline's event
selection PI 200:12000 eV (channels 40-2399 whole, 1/5 of channel 2400; no counts outside, as in
the real products). The expected *net* source counts in that window (the 0.2-12 keV band) are
log-uniform between 60 and 20,000 for singles and for the first epoch of repeated sources, the
normalisation being set from that target through the spectrum's own ARF and exposure. Exposures:
per observation log-uniform 11.5-120 ks, per source 0.87-1.0 of it (10-120 ks). Background:
expected counts in the background region = rate x exposure x BACKSCAL_bg x template shape; in the
source region alpha = BACKSCAL_src/BACKSCAL_bg times that. Source region counts ~
Poisson(source + alpha x background), background region counts ~ Poisson(background); integers.

QUALITY as the pipeline sets it (``specgroup setbad=0.0:0.32``): 1 for the channels whose lower
edge is below 0.32 keV (channels 0-60, as on every real pn SRSPEC), else 0. GROUPING as
``specgroup mincounts=20 oversample=3 lastbin=addtogroup``: bad channels alone, then groups of at
least 20 counts and a third of the FWHM (measured on the RMF's own rows), the last incomplete
group added to the one before.

Observations and repeats
------------------------
Sources are grouped into fake observations of 25-100 sources (each its own 10-digit OBS_ID, its own
pointing, exposure and dates): singles into fields of their own (40-100 sources), repeated sources
into fields of 25-50 (fewer if there are fewer) observed ``--epochs`` times (OBS_IDs of one
proposal, ``..0101``, ``..0201``, ..., DATE-OBS 20-800 days later each time, all within 2001-2024).
Field centres are > 1 deg apart, sources within 13 arcmin of the centre and > 1.2 arcmin from one
another; each epoch of a repeated source is within 0.4 arcsec of its true position (so within 1
arcsec of one another). Repeated sources are drawn from the variable classes (no clusters). Half of
them change state between epochs (``variability = 'state'``): XRBs flip soft/hard each epoch, AGN
change their column by a factor 10^(0.8-1.2) (and back), stars flare in one later epoch (hot
component 1.5-2.5 x hotter, capped at 5 keV, 3-10 x its emission measure; a one-temperature star
gains a 1.5-3.5 keV component), CVs change covering fraction between the two ranges, supersoft
sources fade (kT x 0.65-0.85 per epoch); the other half (``'flux'``) vary only in normalisation,
10^N(0, 0.25) relative to the first epoch. The expected net counts of a later epoch follow from its
own norm, exposure and ARF, the norm being pulled to the nearest bound where they would leave
60-20,000 (``flux_factor`` is the norm relative to epoch 0 as written).

Truth: ``OUT/truth.fits`` (extension ``TRUTH``, units in TUNITn and descriptions in the TTYPEn
comments; ``TEMPLATES`` lists the real BGSPECs summed into each background template). The
arguments are recorded in its header (``GENARGS``): a second call with the same arguments finds
them and returns at once. The catalogue is built in a temporary folder beside OUT and moved into
place when complete, so a killed run leaves no half catalogue; runs are byte-identical for one
seed. ``--save-expected`` also writes ``OUT/expected.npz`` (each spectrum's photon spectrum and
expected source and background counts per channel) for validation. The default catalogue takes
20-55 s on two shared cores (load-dependent; a fifth of it gzip), the tests' 55 spectra ~3 s.

Simplifications, knowingly: no Compton reflection hump in AGN (only the 6.4 keV line); the
plasma continuum is H/He bremsstrahlung (no recombination or two-photon continua, which matter
below ~0.5 keV for the coolest stars) and the line EWs are smooth functions of kT, not an atomic
code; CVs are one-temperature; the XRB power law has no low-energy rollover; supersoft sources
are pure blackbodies (no edges); clusters are point sources; no pile-up, no vignetting beyond
what the real ARFs hold, no MOS.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from scipy import special

__all__ = ["CLASSES", "generate", "main", "read_arf", "read_rmf"]

VERSION = "1"
RMF_NAME = "epn_e3_ef20_sdY6_v19.0.rmf"
RESPFILE = "epn_e3_ef20_sdY6.rmf"  # PPS names canned RMFs without the version suffix
REAL = "pps_0760940101"
CLASSES = ("agn", "star", "xrb", "cv", "sss", "cluster")
FRACTIONS = {"agn": 0.30, "star": 0.20, "xrb": 0.13, "cv": 0.12, "sss": 0.10, "cluster": 0.15}
VARIABLE = ("agn", "star", "xrb", "cv", "sss")  # classes of the repeated sources
COUNTS_RANGE = (60.0, 20000.0)
PI_WINDOW = (200.0, 12000.0)  # eV, the pipeline's event selection (DSVAL2 = '200:12000')
BAD_BELOW = 0.32  # keV, specgroup setbad=0.0:0.32
N_TEMPLATES, PER_TEMPLATE = 8, 14
KEV = 1.602176634e-9  # erg

# ---------------------------------------------------------------------------------------------
# Plasma emission lines: (name, rest energy keV, kT_peak keV, width below, width above (dex),
# EW at the peak for solar abundance in eV, against the component's own continuum).
PLASMA_LINES = (
    ("C VI", 0.368, 0.12, 0.20, 0.25, 200.0),
    ("N VII", 0.500, 0.18, 0.20, 0.25, 80.0),
    ("O VII", 0.569, 0.17, 0.15, 0.20, 350.0),
    ("O VIII", 0.654, 0.30, 0.20, 0.30, 300.0),
    ("Fe XVII", 0.727, 0.45, 0.15, 0.20, 250.0),
    ("O VIII b", 0.775, 0.30, 0.20, 0.30, 60.0),
    ("Fe XVII", 0.826, 0.45, 0.15, 0.20, 450.0),
    ("Fe XVIII", 0.873, 0.65, 0.15, 0.20, 250.0),
    ("Fe XIX", 0.917, 0.80, 0.15, 0.20, 250.0),
    ("Ne IX", 0.922, 0.30, 0.15, 0.20, 150.0),
    ("Fe XX", 0.965, 1.00, 0.15, 0.20, 200.0),
    ("Fe XXI", 1.009, 1.10, 0.15, 0.20, 150.0),
    ("Ne X", 1.022, 0.55, 0.20, 0.30, 150.0),
    ("Fe XXII", 1.053, 1.30, 0.15, 0.20, 120.0),
    ("Fe XXIII", 1.129, 1.50, 0.15, 0.20, 100.0),
    ("Fe XXIV", 1.168, 1.80, 0.15, 0.25, 100.0),
    ("Ne X b", 1.211, 0.55, 0.20, 0.30, 25.0),
    ("Mg XI", 1.352, 0.55, 0.15, 0.25, 120.0),
    ("Mg XII", 1.472, 0.95, 0.20, 0.30, 90.0),
    ("Mg XI b", 1.579, 0.55, 0.15, 0.25, 15.0),
    ("Si XIII", 1.865, 0.90, 0.15, 0.30, 180.0),
    ("Si XIV", 2.006, 1.80, 0.20, 0.35, 120.0),
    ("Si XIII b", 2.183, 0.90, 0.15, 0.30, 25.0),
    ("S XV", 2.461, 1.40, 0.15, 0.30, 150.0),
    ("S XVI", 2.623, 2.60, 0.20, 0.35, 80.0),
    ("S XV b", 2.884, 1.40, 0.15, 0.30, 20.0),
    ("Ar XVII", 3.140, 2.00, 0.20, 0.35, 60.0),
    ("Ar XVIII", 3.323, 3.50, 0.20, 0.35, 30.0),
    ("Ca XIX", 3.902, 3.00, 0.20, 0.35, 50.0),
    ("Ca XX", 4.108, 5.00, 0.20, 0.35, 20.0),
    ("Fe XXV", 6.700, 4.00, 0.30, 0.45, 1000.0),
    ("Fe XXVI", 6.966, 15.0, 0.25, 0.50, 350.0),
    ("Ni XXVII", 7.805, 6.00, 0.30, 0.45, 60.0),
    ("Fe XXV b", 7.881, 4.00, 0.30, 0.45, 80.0),
)
_LINE_E = np.array([line[1] for line in PLASMA_LINES])
_LINE_TP = np.array([line[2] for line in PLASMA_LINES])
_LINE_WLO = np.array([line[3] for line in PLASMA_LINES])
_LINE_WHI = np.array([line[4] for line in PLASMA_LINES])
_LINE_EW = np.array([line[5] for line in PLASMA_LINES])
#: truth columns: EW of these (summed) lines, rest frame, of the whole plasma
EW_COLUMNS = {
    "ew_o7": ("O VII",),
    "ew_o8": ("O VIII",),
    "ew_fel": (
        "Fe XVII",
        "Fe XVIII",
        "Fe XIX",
        "Fe XX",
        "Fe XXI",
        "Fe XXII",
        "Fe XXIII",
        "Fe XXIV",
    ),
    "ew_ne10": ("Ne X",),
    "ew_mg11": ("Mg XI",),
    "ew_si13": ("Si XIII",),
    "ew_s15": ("S XV",),
    "ew_fe25": ("Fe XXV",),
    "ew_fe26": ("Fe XXVI",),
}


def line_ews(kt: float, abundance: float) -> np.ndarray:
    """EW (eV) of each plasma line against the continuum of a plasma at ``kt`` keV."""
    x = np.log10(kt / _LINE_TP)
    w = np.where(x < 0, _LINE_WLO, _LINE_WHI)
    return abundance * _LINE_EW * np.exp(-0.5 * (x / w) ** 2)


# ---------------------------------------------------------------------------------------------
# Readers


@dataclass
class Rmf:
    path: Path
    e_lo: np.ndarray
    e_hi: np.ndarray
    channel: np.ndarray  # channel numbers
    ch_lo: np.ndarray
    ch_hi: np.ndarray
    matrix: np.ndarray  # (E, C) float64
    first_channel: int


def read_rmf(path) -> Rmf:
    """A dense redistribution matrix from an OGIP RMF (``MATRIX`` or ``SPECRESP MATRIX``):
    variable- or fixed-length ``F_CHAN``/``N_CHAN``/``MATRIX`` columns, channels numbered from
    ``TLMIN`` of ``F_CHAN``, else the first EBOUNDS channel, else 1."""
    path = Path(path)
    with fits.open(path, memmap=False) as hdul:
        matrix_hdu = None
        for hdu in hdul[1:]:
            if hdu.name in ("MATRIX", "SPECRESP MATRIX") or hdu.header.get("HDUCLAS2") == (
                "RSP_MATRIX"
            ):
                matrix_hdu = hdu
                break
        if matrix_hdu is None:
            raise ValueError(f"{path}: no MATRIX extension")
        ebounds = hdul["EBOUNDS"]
        header = matrix_hdu.header
        names = [n.upper() for n in matrix_hdu.columns.names]
        col = names.index("F_CHAN") + 1
        if f"TLMIN{col}" in header:
            first = int(header[f"TLMIN{col}"])
        elif "CHANNEL" in [n.upper() for n in ebounds.columns.names]:
            first = int(ebounds.data["CHANNEL"][0])
        else:
            first = 1
        n_chan_total = int(header.get("DETCHANS", len(ebounds.data)))
        data = matrix_hdu.data
        e_lo = np.asarray(data["ENERG_LO"], np.float64)
        e_hi = np.asarray(data["ENERG_HI"], np.float64)
        dense = np.zeros((len(e_lo), n_chan_total))
        n_grp = np.asarray(data["N_GRP"]).reshape(len(e_lo), -1)[:, 0]
        f_chan, n_chan, values = data["F_CHAN"], data["N_CHAN"], data["MATRIX"]
        for i in range(len(e_lo)):
            ng = int(n_grp[i])
            if ng == 0:
                continue
            starts = np.atleast_1d(f_chan[i])[:ng]
            counts = np.atleast_1d(n_chan[i])[:ng]
            row = np.atleast_1d(values[i]).astype(np.float64)
            pos = 0
            for start, n in zip(starts, counts):
                a = int(start) - first
                dense[i, a : a + int(n)] = row[pos : pos + int(n)]
                pos += int(n)
        eb = ebounds.data
        channel = (
            np.asarray(eb["CHANNEL"], int)
            if "CHANNEL" in [n.upper() for n in ebounds.columns.names]
            else np.arange(first, first + n_chan_total)
        )
        ch_lo = np.asarray(eb["E_MIN"], np.float64)
        ch_hi = np.asarray(eb["E_MAX"], np.float64)
    return Rmf(path, e_lo, e_hi, channel, ch_lo, ch_hi, dense, first)


@dataclass
class Arf:
    path: Path
    e_lo: np.ndarray
    e_hi: np.ndarray
    specresp: np.ndarray
    raw: np.ndarray  # the table as read (float32), copied into the files written


def read_arf(path) -> Arf:
    with fits.open(path, memmap=False) as hdul:
        hdu = hdul["SPECRESP"]
        raw = np.array(hdu.data)
        return Arf(
            Path(path),
            np.asarray(raw["ENERG_LO"], np.float64),
            np.asarray(raw["ENERG_HI"], np.float64),
            np.asarray(raw["SPECRESP"], np.float64),
            raw,
        )


def read_spectrum(path) -> dict:
    """COUNTS, EXPOSURE and BACKSCAL of an OGIP spectrum (keyword BACKSCAL)."""
    with fits.open(path, memmap=False) as hdul:
        hdu = hdul["SPECTRUM"]
        counts = np.asarray(hdu.data["COUNTS"], np.float64)
        return {
            "counts": counts,
            "exposure": float(hdu.header["EXPOSURE"]),
            "backscal": float(hdu.header["BACKSCAL"]),
        }


class CrossSection:
    """Photoabsorption cross-section per H atom in units of 1e-22 cm^2 (columns in 1e22 cm^-2)."""

    def __init__(self, path):
        with fits.open(path, memmap=False) as hdul:
            table = hdul[1].data
            energy = np.asarray(table["ENERGY"], np.float64)
            sigma = np.asarray(table["SIGMA"], np.float64)
        order = np.argsort(energy)
        energy, sigma = energy[order], sigma[order]
        at_1kev = np.exp(np.interp(0.0, np.log(energy), np.log(sigma)))
        # a cross-section per H atom at 1 keV is ~2e-22 cm^2: a value of order 1 means the
        # table is in units of 1e-22 cm^2 whatever its TUNIT says
        scale = 1.0 if at_1kev > 1e-10 else 1e22
        self.log_e = np.log(energy)
        self.log_s = np.log(sigma * scale)
        lo = slice(0, 20)
        hi = slice(-20, None)
        self.slope_lo = np.polyfit(self.log_e[lo], self.log_s[lo], 1)[0]
        self.slope_hi = np.polyfit(self.log_e[hi], self.log_s[hi], 1)[0]

    def __call__(self, e) -> np.ndarray:
        le = np.log(np.asarray(e, np.float64))
        out = np.interp(le, self.log_e, self.log_s)
        below, above = le < self.log_e[0], le > self.log_e[-1]
        out = np.where(below, self.log_s[0] + self.slope_lo * (le - self.log_e[0]), out)
        out = np.where(above, self.log_s[-1] + self.slope_hi * (le - self.log_e[-1]), out)
        return np.exp(out)


# ---------------------------------------------------------------------------------------------
# Energy grid, integration, spectral shapes

_GL_X, _GL_W = np.polynomial.legendre.leggauss(4)
_R_X, _R_W = np.polynomial.legendre.leggauss(64)
DISC_R_OUT = 1000.0  # outer disc radius in units of the inner one


class EnergyGrid:
    """The RMF's energy bins, with quadrature nodes for integrating over each bin."""

    def __init__(self, lo, hi, xs: CrossSection):
        self.lo, self.hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        self.mid = 0.5 * (self.lo + self.hi)
        half = 0.5 * (self.hi - self.lo)
        self.nodes = self.mid[:, None] + half[:, None] * _GL_X
        self.weights = half[:, None] * _GL_W
        self.xs = xs
        self.sigma = xs(self.nodes)  # Galactic (z = 0) cross-sections at the nodes

    def integrate(self, f):
        return np.sum(f * self.weights, axis=1)

    def mean(self, f):
        return self.integrate(f) / (self.hi - self.lo)

    def line(self, mu: float, sigma: float, flux: float) -> np.ndarray:
        """A Gaussian line of total ``flux`` integrated exactly over the bins."""
        out = np.zeros_like(self.lo)
        if flux == 0 or not np.isfinite(mu):
            return out
        if sigma <= 1e-7:
            i = np.searchsorted(self.hi, mu, side="right")
            if 0 <= i < len(out) and self.lo[i] <= mu:
                out[i] = flux
            return out
        return flux * (special.ndtr((self.hi - mu) / sigma) - special.ndtr((self.lo - mu) / sigma))

    def band(self, photons, lo, hi, energy=True) -> float:
        """Energy (keV/cm^2/s) or photon flux of per-bin ``photons`` in lo-hi keV (bins cut
        at the band edges in proportion)."""
        overlap = np.clip(np.minimum(self.hi, hi) - np.maximum(self.lo, lo), 0, None)
        part = overlap / (self.hi - self.lo)
        return float(np.sum(photons * part * (self.mid if energy else 1.0)))


def powerlaw(e, gamma):
    return np.power(e, -gamma)


def blackbody(e, kt):
    """Photon density of a blackbody, E^2 / (exp(E/kT) - 1) (arbitrary units)."""
    x = np.asarray(e) / kt
    with np.errstate(over="ignore"):
        return np.where(x < 700, np.asarray(e) ** 2 / np.expm1(np.minimum(x, 700)), 0.0)


def bremsstrahlung(e, kt):
    """Thermal bremsstrahlung photon density per unit emission measure (arbitrary units):
    g(u) exp(-u) / (E sqrt(kT)), u = E/kT, g the Born thermally averaged Gaunt factor
    sqrt(3)/pi exp(u/2) K0(u/2)."""
    u = np.asarray(e, np.float64) / kt
    gaunt_exp = np.sqrt(3.0) / np.pi * special.k0e(0.5 * u) * np.exp(-np.minimum(u, 700.0))
    return np.where(u < 700, gaunt_exp / (np.asarray(e) * np.sqrt(kt)), 0.0)


def disc_blackbody(e, t_in):
    """Multicolour disc: the sum over radii r_in..1000 r_in of 2 pi r dr times the blackbody
    photon density at T(r) = t_in (r/r_in)^-3/4 (integrated in ln r; arbitrary units)."""
    e = np.asarray(e, np.float64)
    a, b = 0.0, np.log(DISC_R_OUT)
    lnr = 0.5 * (b - a) * _R_X + 0.5 * (b + a)
    w = 0.5 * (b - a) * _R_W
    r = np.exp(lnr)
    temp = t_in * r**-0.75
    flat = e.reshape(-1)
    out = np.zeros_like(flat)
    for tj, rj, wj in zip(temp, r, w):  # 2 pi r dr = 2 pi r^2 d ln r
        out += wj * 2 * np.pi * rj**2 * blackbody(flat, tj)
    return out.reshape(e.shape)


# ---------------------------------------------------------------------------------------------
# Class models: each returns per-bin photons for norm = 1, and derived truth


class Spectrum:
    """A spectrum being built: a continuum at the quadrature nodes and lines per bin."""

    def __init__(self, grid: EnergyGrid):
        self.grid = grid
        self.continuum = np.zeros_like(grid.nodes)
        self.lines = np.zeros_like(grid.lo)

    def add(self, continuum=None, line=None):
        if continuum is not None:
            self.continuum = self.continuum + continuum
        if line is not None:
            self.lines = self.lines + line

    def absorb(self, factor_at_nodes):
        self.continuum = self.continuum * factor_at_nodes
        self.lines = self.lines * self.grid.mean(factor_at_nodes)

    def bins(self):
        return self.grid.integrate(self.continuum) + self.lines


def _plasma(grid: EnergyGrid, components, abundance, z):
    """Plasma emission (components: [(emission measure, kT)]) in the observed frame at
    redshift z: continuum at the nodes, lines per bin, and the truth EWs (rest frame)."""
    zp1 = 1.0 + z
    spec = Spectrum(grid)
    line_flux = np.zeros(len(PLASMA_LINES))
    line_cont = np.zeros(len(PLASMA_LINES))
    for em, kt in components:
        spec.add(continuum=em * bremsstrahlung(grid.nodes * zp1, kt))
        cont = em * bremsstrahlung(_LINE_E, kt)  # rest-frame continuum at the lines
        ew = line_ews(kt, abundance) * 1e-3  # keV, rest
        line_flux += ew * cont / zp1  # observed-frame flux: observed EW x observed density
        line_cont += cont
    for (_, e0, *_), flux in zip(PLASMA_LINES, line_flux):
        if flux > 0 and e0 / zp1 < grid.hi[-1]:
            spec.add(line=grid.line(e0 / zp1, 0.0, flux))
    names = [line[0] for line in PLASMA_LINES]
    ew_rest = 1e3 * line_flux * zp1 / np.where(line_cont > 0, line_cont, np.inf)
    truth = {
        key: float(sum(ew_rest[i] for i, n in enumerate(names) if n in members))
        for key, members in EW_COLUMNS.items()
    }
    return spec, truth


def model_agn(grid: EnergyGrid, p: dict):
    zp1 = 1.0 + p["redshift"]
    e = grid.nodes
    trans = np.exp(-p["nh_int"] * grid.xs(e * zp1))
    scat = 0.0 if not np.isfinite(p["scatter_frac"]) else p["scatter_frac"]
    pl = powerlaw(e, p["gamma"])
    spec = Spectrum(grid)
    spec.add(continuum=pl * (trans + scat))
    se = 0.0
    if np.isfinite(p["soft_excess_kt"]):
        # bb scaled to soft_excess_ratio x the power law's 0.2-2 keV (rest) energy flux
        band = (0.2 / zp1, 2.0 / zp1)
        bb_bins = grid.integrate(blackbody(e * zp1, p["soft_excess_kt"]))
        pl_bins = grid.integrate(pl)
        se = p["soft_excess_ratio"] * grid.band(pl_bins, *band) / grid.band(bb_bins, *band)
        spec.add(continuum=se * blackbody(e * zp1, p["soft_excess_kt"]) * (trans + scat))
    mu = 6.4 / zp1

    def local(x):  # absorbed continuum density at x keV (observed)
        t = np.exp(-p["nh_int"] * grid.xs(x * zp1))
        c = powerlaw(x, p["gamma"]) * (t + scat)
        if se:
            c = c + se * blackbody(x * zp1, p["soft_excess_kt"]) * (t + scat)
        return float(c)

    flux = p["fe_ew"] * 1e-3 / zp1 * local(mu)
    spec.add(line=grid.line(mu, p["fe_sigma"] * 1e-3 / zp1, flux))
    spec.absorb(np.exp(-p["nh_gal"] * grid.sigma))
    return spec.bins(), {}


def model_star(grid, p):
    comps = [(1.0, p["kt1"])]
    if np.isfinite(p["kt2"]):
        comps.append((p["em_ratio"], p["kt2"]))
    spec, truth = _plasma(grid, comps, p["abundance"], 0.0)
    spec.absorb(np.exp(-p["nh_gal"] * grid.sigma))
    return spec.bins(), truth


def model_cluster(grid, p):
    spec, truth = _plasma(grid, [(1.0, p["kt1"])], p["abundance"], p["redshift"])
    spec.absorb(np.exp(-p["nh_gal"] * grid.sigma))
    return spec.bins(), truth


def model_cv(grid, p):
    spec, truth = _plasma(grid, [(1.0, p["kt1"])], p["abundance"], 0.0)

    def cover(x):
        return p["cover_frac"] * np.exp(-p["nh_pc"] * grid.xs(x)) + 1.0 - p["cover_frac"]

    spec.absorb(cover(grid.nodes))
    local = float(bremsstrahlung(6.4, p["kt1"]) * cover(6.4))
    spec.add(line=grid.line(6.4, 0.0, p["fe_ew"] * 1e-3 * local))
    spec.absorb(np.exp(-p["nh_gal"] * grid.sigma))
    return spec.bins(), truth


def model_xrb(grid, p):
    e = grid.nodes
    disc = disc_blackbody(e, p["t_in"])
    pl = powerlaw(e, p["gamma"])
    fd = grid.band(grid.integrate(disc), 0.5, 10.0)
    fp = grid.band(grid.integrate(pl), 0.5, 10.0)
    spec = Spectrum(grid)
    spec.add(continuum=p["disc_frac"] * disc / fd + (1.0 - p["disc_frac"]) * pl / fp)
    spec.absorb(np.exp(-p["nh_gal"] * grid.sigma))
    return spec.bins(), {}


def model_sss(grid, p):
    spec = Spectrum(grid)
    spec.add(continuum=blackbody(grid.nodes, p["bb_kt"]))
    spec.absorb(np.exp(-p["nh_gal"] * grid.sigma))
    return spec.bins(), {}


MODELS = {
    "agn": model_agn,
    "star": model_star,
    "xrb": model_xrb,
    "cv": model_cv,
    "sss": model_sss,
    "cluster": model_cluster,
}

# ---------------------------------------------------------------------------------------------
# Parameters: draws, states, variability

PARAMETERS = {  # name: (unit, description)
    "redshift": ("", "redshift (AGN, cluster)"),
    "nh_gal": ("10**22 cm-2", "Galactic / interstellar column (tbabs, wilm)"),
    "nh_int": ("10**22 cm-2", "AGN intrinsic column at the source redshift"),
    "scatter_frac": ("", "AGN scattered (unabsorbed) fraction"),
    "gamma": ("", "photon index (AGN, XRB)"),
    "fe_ew": ("eV", "6.4 keV line EW, rest, vs local continuum"),
    "fe_sigma": ("eV", "Fe K-alpha 6.4 keV Gaussian sigma, rest frame"),
    "soft_excess_kt": ("keV", "AGN soft-excess blackbody kT, rest frame"),
    "soft_excess_ratio": ("", "soft excess/PL, 0.2-2 keV rest energy flux"),
    "kt1": ("keV", "plasma temperature (star first, CV, cluster)"),
    "kt2": ("keV", "star second plasma temperature"),
    "em_ratio": ("", "star emission measure EM2/EM1"),
    "abundance": ("", "metal abundance, solar (star, CV, cluster)"),
    "nh_pc": ("10**22 cm-2", "CV partial-covering column"),
    "cover_frac": ("", "CV covering fraction"),
    "t_in": ("keV", "XRB disc inner temperature"),
    "disc_frac": ("", "XRB disc share, unabs. 0.5-10 keV en. flux"),
    "bb_kt": ("keV", "supersoft blackbody kT"),
}
EW_DESCRIPTION = "EW, rest, vs plasma continuum"


def _logu(rng, lo, hi):
    return float(10 ** rng.uniform(np.log10(lo), np.log10(hi)))


def _blank() -> dict:
    return {k: float("nan") for k in PARAMETERS}


def draw(label: str, rng: np.random.Generator) -> tuple[dict, str]:
    """Parameters and state of a new source of class ``label``."""
    p = _blank()
    if label in ("agn", "cluster"):  # extragalactic: the Galactic column
        p["nh_gal"] = _logu(rng, 0.01, 0.16)
    if label == "agn":
        p["redshift"] = (
            _logu(rng, 0.02, 0.3) if rng.random() < 0.25 else float(rng.uniform(0.3, 2.5))
        )
        g = rng.normal(1.9, 0.2)
        while not 1.4 <= g <= 2.6:
            g = rng.normal(1.9, 0.2)
        p["gamma"] = float(g)
        u = rng.random()
        if u < 0.40:
            p["nh_int"] = _logu(rng, 0.01, 0.1)
        elif u < 0.55:
            p["nh_int"] = _logu(rng, 0.1, 1.0)
        else:
            p["nh_int"] = _logu(rng, 1.0, 100.0)
        p["scatter_frac"] = _logu(rng, 0.005, 0.05) if p["nh_int"] >= 1.0 else float("nan")
        p["fe_ew"] = _logu(rng, 50.0, 250.0)
        p["fe_sigma"] = float(rng.uniform(0.0, 50.0))
        if p["nh_int"] < 1.0 and rng.random() < 0.4:
            p["soft_excess_kt"] = float(rng.uniform(0.1, 0.2))
            p["soft_excess_ratio"] = _logu(rng, 0.1, 0.8)
    elif label == "star":
        p["nh_gal"] = _logu(rng, 0.003, 0.1)
        p["kt1"] = _logu(rng, 0.15, 0.8)
        if rng.random() < 0.6:
            p["kt2"] = _logu(rng, max(0.5, 1.8 * p["kt1"]), 2.0)
            p["em_ratio"] = _logu(rng, 0.2, 3.0)
        p["abundance"] = _logu(rng, 0.1, 1.0)
    elif label == "xrb":
        p["nh_gal"] = _logu(rng, 0.1, 30.0)
        _xrb_state(p, "soft" if rng.random() < 0.5 else "hard", rng)
    elif label == "cv":
        p["nh_gal"] = _logu(rng, 0.01, 0.3)
        p["kt1"] = _logu(rng, 5.0, 50.0)
        p["abundance"] = float(rng.uniform(0.3, 1.0))
        p["nh_pc"] = _logu(rng, 1.0, 30.0)
        p["cover_frac"] = float(rng.uniform(*(0.3, 0.55) if rng.random() < 0.5 else (0.65, 0.95)))
        p["fe_ew"] = _logu(rng, 50.0, 180.0)
        p["fe_sigma"] = 0.0
    elif label == "sss":
        p["nh_gal"] = _logu(rng, 0.01, 0.316)
        p["bb_kt"] = float(rng.uniform(0.020, 0.090))
    elif label == "cluster":
        p["kt1"] = _logu(rng, 1.5, 10.0)
        p["redshift"] = float(rng.uniform(0.05, 0.8))
        p["abundance"] = float(rng.uniform(0.2, 0.6))
    else:
        raise ValueError(label)
    return p, state_of(label, p)


def _xrb_state(p: dict, state: str, rng) -> None:
    if state == "soft":
        p["t_in"] = _logu(rng, 0.5, 2.0)
        p["gamma"] = float(rng.uniform(2.0, 3.0))
        p["disc_frac"] = float(rng.uniform(0.6, 0.95))
    else:
        p["t_in"] = _logu(rng, 0.3, 0.8)
        p["gamma"] = float(rng.uniform(1.4, 2.0))
        p["disc_frac"] = float(rng.uniform(0.02, 0.2))


def state_of(label: str, p: dict, flare: bool = False, fading: bool = False) -> str:
    if label == "agn":
        return "absorbed" if p["nh_int"] >= 1.0 else "unabsorbed"
    if label == "star":
        return "flare" if flare else "quiescent"
    if label == "xrb":
        return "soft" if p["disc_frac"] >= 0.5 else "hard"
    if label == "cv":
        return "high_cover" if p["cover_frac"] >= 0.6 else "low_cover"
    if label == "sss":
        return "fading" if fading else "on"
    return "steady"


def epochs_of(label: str, p0: dict, kind: str, n: int, rng) -> list[tuple[dict, str, float]]:
    """(parameters, state, norm factor before clipping) of each of ``n`` epochs of a repeated
    source: ``kind`` 'flux' (normalisation only) or 'state' (see the module docstring)."""
    out = [(dict(p0), state_of(label, p0), 1.0)]
    if kind == "flux":
        for _ in range(1, n):
            out.append((dict(p0), state_of(label, p0), float(10 ** rng.normal(0.0, 0.25))))
        return out
    flare_epoch = int(rng.integers(1, n)) if n > 1 else -1
    step = float(rng.uniform(0.8, 1.2))  # AGN: log10 of the change of column
    direction = 1.0 if rng.random() < 0.5 else -1.0
    if label == "agn":  # stay within 1e20-1e24
        log_nh = np.log10(p0["nh_int"]) + 22.0
        if log_nh + step > 24.0:
            direction = -1.0
        elif log_nh - step < 20.0:
            direction = 1.0
    for e in range(1, n):
        p = dict(p0)
        factor = float(10 ** rng.normal(0.0, 0.15))
        flare = fading = False
        if label == "xrb":
            current = out[-1][1]
            _xrb_state(p, "hard" if current == "soft" else "soft", rng)
            p["nh_gal"] = p0["nh_gal"]
        elif label == "agn":
            if e % 2 == 1:
                p["nh_int"] = float(np.clip(p0["nh_int"] * 10 ** (direction * step), 0.01, 100.0))
                if p["nh_int"] >= 1.0 and not np.isfinite(p["scatter_frac"]):
                    p["scatter_frac"] = _logu(rng, 0.005, 0.05)
        elif label == "star":
            if e == flare_epoch:
                flare = True
                if np.isfinite(p0["kt2"]):
                    p["kt2"] = float(min(p0["kt2"] * rng.uniform(1.5, 2.5), 5.0))
                    p["em_ratio"] = float(p0["em_ratio"] * rng.uniform(3.0, 10.0))
                else:
                    p["kt2"] = float(rng.uniform(1.5, 3.5))
                    p["em_ratio"] = float(rng.uniform(2.0, 8.0))
        elif label == "cv":
            current = out[-1][0]["cover_frac"]
            band = (0.3, 0.55) if current >= 0.6 else (0.65, 0.95)
            p["cover_frac"] = float(rng.uniform(*band))
        elif label == "sss":
            fading = True
            p["bb_kt"] = float(out[-1][0]["bb_kt"] * rng.uniform(0.65, 0.85))
            factor = 1.0
        out.append((p, state_of(label, p, flare=flare, fading=fading), factor))
    return out


# ---------------------------------------------------------------------------------------------
# Sky


def _unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)


def _offset(ra0, dec0, xi, eta):
    """Inverse gnomonic projection: the position at standard coordinates xi, eta (degrees)
    about ra0, dec0."""
    xi, eta = np.radians(xi), np.radians(eta)
    d0 = np.radians(dec0)
    rho = np.hypot(xi, eta)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.where(
            rho > 0,
            np.arcsin(
                np.cos(c) * np.sin(d0) + eta * np.sin(c) * np.cos(d0) / np.where(rho > 0, rho, 1)
            ),
            d0,
        )
    ra = np.radians(ra0) + np.arctan2(
        xi * np.sin(c), rho * np.cos(d0) * np.cos(c) - eta * np.sin(d0) * np.sin(c)
    )
    return float(np.degrees(ra) % 360.0), float(np.degrees(dec))


def _project(ra0, dec0, ra, dec):
    """Gnomonic projection: standard coordinates (degrees) of ra, dec about ra0, dec0."""
    a, d, a0, d0 = map(np.radians, (ra, dec, ra0, dec0))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    return float(np.degrees(xi)), float(np.degrees(eta))


def _field_centres(n: int, rng) -> list[tuple[float, float]]:
    centres, vectors = [], []
    min_cos = np.cos(np.radians(1.0))
    while len(centres) < n:
        ra = float(rng.uniform(0.0, 360.0))
        dec = float(
            np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-70)), np.sin(np.radians(70)))))
        )
        v = _unit(ra, dec)
        if vectors and np.max(np.asarray(vectors) @ v) > min_cos:
            continue
        centres.append((ra, dec))
        vectors.append(v)
    return centres


def _field_positions(ra0, dec0, n, rng, radius=13.0 / 60, min_sep=1.2 / 60):
    """n positions within ``radius`` deg of the centre, > ``min_sep`` deg apart."""
    pts = []
    tries = 0
    while len(pts) < n:
        tries += 1
        if tries > 200000:
            raise RuntimeError("cannot place the sources of a field")
        r = radius * np.sqrt(rng.random())
        t = rng.uniform(0, 2 * np.pi)
        xi, eta = r * np.cos(t), r * np.sin(t)
        if pts and np.min(np.hypot(*(np.asarray(pts) - (xi, eta)).T)) < min_sep:
            continue
        pts.append((xi, eta))
    return [_offset(ra0, dec0, xi, eta) + (xi, eta) for xi, eta in pts]


# ---------------------------------------------------------------------------------------------
# Instrument: loaded once


class Inputs:
    """The real files the generator builds on."""

    def __init__(self, data: Path, rng):
        self.data = data
        self.rmf = read_rmf(data / "responses" / RMF_NAME)
        self.xs = CrossSection(data / "absorption" / "xsect_tbabs_wilm.fits")
        self.grid = EnergyGrid(self.rmf.e_lo, self.rmf.e_hi, self.xs)
        real = data / REAL
        arfs = sorted(real.glob("P*PNS003SRCARF*.FTZ"))
        if not arfs:
            raise FileNotFoundError(f"{real}: no pn SRCARF files")
        self.arfs, self.pairs = [], []
        for path in arfs:
            arf = read_arf(path)
            if len(arf.e_lo) != len(self.rmf.e_lo) or not (
                np.allclose(arf.e_lo, self.rmf.e_lo, rtol=1e-6)
                and np.allclose(arf.e_hi, self.rmf.e_hi, rtol=1e-6)
            ):
                raise ValueError(f"{path.name}: its energy grid differs from the RMF's")
            src = read_spectrum(Path(str(path).replace("SRCARF", "SRSPEC")))
            bkg = read_spectrum(Path(str(path).replace("SRCARF", "BGSPEC")))
            self.arfs.append(arf)
            self.pairs.append((src, bkg))
        n_chan = len(self.rmf.channel)
        index = self.rmf.channel - self.rmf.channel[0]
        # the PI selection window (PI in eV = 5 x channel for the pn's 4096 channels)
        width = 20480.0 / n_chan
        lo, hi = index * width, (index + 1) * width
        self.window = (
            np.clip(np.minimum(hi, PI_WINDOW[1] + 1) - np.maximum(lo, PI_WINDOW[0]), 0, None)
            / width
        )
        self.in_window = np.flatnonzero(self.window > 0)
        self.last = int(self.in_window[-1]) + 1
        self.quality = (self.rmf.ch_lo < BAD_BELOW).astype(np.int16)
        self.folding = self.rmf.matrix[:, : self.last] * self.window[: self.last]
        self.fwhm = _rmf_fwhm(self.rmf)
        # real background rates per unit area and per second in the window
        self.bg_rate = np.array(
            [
                np.sum(b["counts"] * self.window) / (b["exposure"] * b["backscal"])
                for _, b in self.pairs
            ]
        )
        perm = rng.permutation(len(self.pairs))
        self.templates, self.template_members = [], []
        for t in range(N_TEMPLATES):
            members = perm[t * PER_TEMPLATE : (t + 1) * PER_TEMPLATE]
            if len(members) == 0:
                members = perm[:PER_TEMPLATE]
            total = np.sum([self.pairs[m][1]["counts"] for m in members], axis=0)
            shape = _smooth(total, self.window, self.rmf.ch_lo)
            self.templates.append(shape / np.sum(shape))
            self.template_members.append(
                [arfs[m].name.replace("SRCARF", "BGSPEC") for m in members]
            )


def _rmf_fwhm(rmf: Rmf) -> np.ndarray:
    """FWHM (keV) of the redistribution at each channel energy, measured on the RMF's rows."""
    widths, centres = [], []
    ch_w = rmf.ch_hi - rmf.ch_lo
    for i in range(0, len(rmf.e_lo), 4):
        row = rmf.matrix[i]
        p = int(np.argmax(row))
        if row[p] <= 0:
            continue
        half = row[p] / 2
        a = p
        while a > 0 and row[a - 1] >= half:
            a -= 1
        b = p
        while b < len(row) - 1 and row[b + 1] >= half:
            b += 1
        widths.append(np.sum(ch_w[a : b + 1]))
        centres.append(0.5 * (rmf.e_lo[i] + rmf.e_hi[i]))
    mid = 0.5 * (rmf.ch_lo + rmf.ch_hi)
    return np.interp(mid, centres, widths)


def _smooth(counts, window, ch_lo):
    """Gaussian smoothing over channels inside the selection window (normalised convolution,
    so the window's edges are not dimmed), wider at higher energies."""
    from scipy.ndimage import gaussian_filter1d

    inside = (window > 0).astype(float)
    out = np.zeros_like(counts, dtype=float)
    bands = ((0.0, 1.0, 3.0), (1.0, 4.0, 6.0), (4.0, np.inf, 12.0))
    for lo, hi, sigma in bands:
        num = gaussian_filter1d(counts * inside, sigma, mode="constant")
        den = gaussian_filter1d(inside, sigma, mode="constant")
        sm = np.where(den > 1e-6, num / np.where(den > 1e-6, den, 1), 0.0)
        sel = (ch_lo >= lo) & (ch_lo < hi)
        out[sel] = sm[sel]
    return out * window


def group_channels(counts, quality, ch_lo, ch_hi, fwhm, mincounts=20, oversample=3.0):
    """GROUPING as specgroup (mincounts, oversample, lastbin=addtogroup): bad channels alone."""
    n = len(counts)
    grouping = np.ones(n, np.int16)
    good = np.flatnonzero(quality == 0)
    if len(good) == 0:
        return grouping
    cum = np.concatenate([[0], np.cumsum(counts)])
    i = int(good[0])
    previous = None
    while i < n:
        need_c = np.searchsorted(cum, cum[i] + mincounts, side="left")  # cum[j] >= ...
        need_w = np.searchsorted(ch_hi, ch_lo[i] + fwhm[i] / oversample, side="left") + 1
        j = int(max(need_c, need_w, i + 1))
        if j > n:  # the rest cannot make a group: add it to the previous one
            if previous is not None:
                grouping[i:] = -1
            else:
                grouping[i] = 1
                grouping[i + 1 :] = -1
            break
        grouping[i] = 1
        grouping[i + 1 : j] = -1
        previous = i
        i = j
    return grouping


# ---------------------------------------------------------------------------------------------
# FITS writer: headers of 80-character cards and big-endian binary tables in 2880-byte blocks
# (FITS standard 4.0), written here rather than through astropy, which spends ~20 ms a file.

_BLOCK = 2880
_TFORM = {"I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


class Header:
    """An ordered set of cards: ``h[key] = value`` or ``h[key] = (value, comment)``."""

    def __init__(self):
        self.cards: dict[str, tuple] = {}

    def __setitem__(self, key, value):
        self.cards[key] = value if isinstance(value, tuple) else (value, "")

    def __getitem__(self, key):
        return self.cards[key][0]

    def update(self, other: Header):
        self.cards.update(other.cards)


def _format_value(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return ("T" if value else "F").rjust(20)
    if isinstance(value, (int, np.integer)):
        return str(int(value)).rjust(20)
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            raise ValueError("FITS header values must be finite")
        return f"{float(value):.14E}".rjust(20)
    text = str(value).replace("'", "''")
    if len(text) > 68:
        raise ValueError(f"header string too long: {text!r}")
    return ("'" + text.ljust(8) + "'").ljust(20)


def _card(key: str, value, comment: str = "") -> str:
    if len(key) > 8:
        raise ValueError(f"keyword too long: {key}")
    card = f"{key:<8}= {_format_value(value)}"
    if comment:
        card += " / " + comment
    return card[:80].ljust(80)


def _header_bytes(cards: list[tuple]) -> bytes:
    text = "".join(_card(k, v, c) for k, v, c in cards) + "END".ljust(80)
    text += " " * (-len(text) % _BLOCK)
    return text.encode("ascii")


def _primary(header: Header) -> bytes:
    cards = [
        ("SIMPLE", True, "file does conform to FITS standard"),
        ("BITPIX", 8, "number of bits per data pixel"),
        ("NAXIS", 0, "number of data axes"),
        ("EXTEND", True, "FITS dataset may contain extensions"),
    ]
    return _header_bytes(cards + [(k, v, c) for k, (v, c) in header.cards.items()])


def _table(name: str, columns: list[tuple], header: Header) -> bytes:
    """A BINTABLE extension. ``columns``: (name, tform, unit, array, comment)."""
    n = len(columns[0][3])
    dtype = []
    for cname, tform, *_ in columns:
        if tform.endswith("A"):
            dtype.append((cname, f"S{int(tform[:-1])}"))
        else:
            dtype.append((cname, _TFORM[tform]))
    table = np.zeros(n, dtype=dtype)
    for cname, tform, _, array, *_ in columns:
        if tform.endswith("A"):
            table[cname] = [str(v).encode("ascii") for v in array]
        else:
            table[cname] = np.asarray(array)
    cards = [
        ("XTENSION", "BINTABLE", "binary table extension"),
        ("BITPIX", 8, "8-bit bytes"),
        ("NAXIS", 2, "2-dimensional binary table"),
        ("NAXIS1", table.dtype.itemsize, "width of table in bytes"),
        ("NAXIS2", n, "number of rows in table"),
        ("PCOUNT", 0, "size of special data area"),
        ("GCOUNT", 1, "one data group (required keyword)"),
        ("TFIELDS", len(columns), "number of fields in each row"),
    ]
    for i, (cname, tform, unit, _, *comment) in enumerate(columns, start=1):
        cards.append((f"TTYPE{i}", cname, comment[0] if comment else ""))
        cards.append((f"TFORM{i}", tform, "data format of field"))
        if unit:
            cards.append((f"TUNIT{i}", unit, "physical unit of field"))
    cards.append(("EXTNAME", name, "The name of this table"))
    cards += [(k, v, c) for k, (v, c) in header.cards.items()]
    data = table.tobytes()
    return _header_bytes(cards) + data + b"\0" * (-len(data) % _BLOCK)


def _write_gz(path: Path, parts: list[bytes]) -> None:
    path.write_bytes(gzip.compress(b"".join(parts), compresslevel=6, mtime=0))


_PROC = {
    "SEQ_ID": ("000000", "Pipeline sequence"),
    "PROCREV": ("1", "Processing revision"),
    "PPSVERS": ("independent-" + VERSION, "PPS configuration"),
    "SASVERS": ("none", "SAS version used in pipeline processing"),
    "ODSVER": ("17.0", "ODS version"),
    "ORIGIN": ("xspecvae-independent", "Origin of FITS file"),
    "ODFVER": ("002", "ODF_VERSION"),
}
CREATOR = "independent.py (xspecvae benchmarks)"


def _date(mjd: float) -> str:
    t = _dt.datetime(1858, 11, 17) + _dt.timedelta(days=mjd)
    return t.strftime("%Y-%m-%dT%H:%M:%S")


@dataclass
class Observation:
    obs_id: str
    ra: float
    dec: float
    mjd: float
    duration: float
    exposure: float
    object: str
    pa: float

    def primary(self, content: str) -> bytes:
        h = Header()
        h["CREATOR"] = (CREATOR, "name of code that created this file")
        h["DATE"] = (_date(self.mjd + 3.0), "creation date")
        h["FILTER"] = ("Thin1", "Filter ID")
        h["FRMTIME"] = (73, "[ms] Frame Time, nearest integer")
        h["TELESCOP"] = ("XMM", "Telescope (mission) name")
        h["INSTRUME"] = ("EPN", "Instrument name")
        h["OBS_MODE"] = ("POINTING", "Observation mode (pointing or slew)")
        h["OBS_ID"] = (self.obs_id, "Observation identifier")
        h["EXP_ID"] = (self.obs_id + "003", "Exposure identifier")
        h["EXPIDSTR"] = ("S003", "Exposure identifier (Xnnn)")
        h["DATAMODE"] = ("IMAGING", "Instrument mode (IMAGING, TIMING, BURST, etc.)")
        h["SUBMODE"] = ("PrimeFullWindow", "Guest Observer mode")
        h["OBJECT"] = (self.object, "Name of observed object")
        start, stop = _date(self.mjd), _date(self.mjd + self.duration / 86400.0)
        h["DATE-OBS"] = (start, "Start Time (UTC) of exposure")
        h["DATE-END"] = (stop, "End Time (UTC) of exposure")
        h["DATE_OBS"] = (start + ".000", "Date observations were made")
        h["DATE_END"] = (stop + ".000", "Date observations ended")
        h["DURATION"] = (self.duration, "[s] Duration of observation")
        h["TIMESYS"] = ("TT", "XMM time will be TT (Terrestial Time)")
        h["MJDREF"] = (50814.0, "[d] 1998-01-01T00:00:00 (TT) expressed in MJD")
        h["TIMEZERO"] = (0, "Clock correction (if not zero)")
        h["TIMEUNIT"] = ("s", "All times in s unless specified otherwise")
        h["CLOCKAPP"] = (True, "Clock correction applied")
        h["TIMEREF"] = ("LOCAL", "Reference location of photon arrival times")
        h["TASSIGN"] = ("SATELLITE", "Location of time assignment")
        h["RA_OBJ"] = (self.ra, "[deg] Ra of the observed object")
        h["DEC_OBJ"] = (self.dec, "[deg] Dec of the observed object")
        h["RA_NOM"] = (self.ra, "[deg] Ra of boresight")
        h["DEC_NOM"] = (self.dec, "[deg] Dec of boresight")
        h["EQUINOX"] = (2000.0, "Equinox for sky coordinate x/y axes")
        h["RADECSYS"] = ("FK5", "World coord. system for this file")
        for ax, ctype, val, delt in (
            ("X", "RA---TAN", self.ra, -1.38888888888889e-05),
            ("Y", "DEC--TAN", self.dec, 1.38888888888889e-05),
        ):
            h[f"REF{ax}CTYP"] = (ctype, "WCS Coord. type")
            h[f"REF{ax}CRPX"] = (25921, "WCS axis reference pixel of projected image")
            h[f"REF{ax}CRVL"] = (val, "[deg] WCS coord. at ref. pixel")
            h[f"REF{ax}CDLT"] = (delt, "[deg/pix] WCS increment at ref. pixel")
            h[f"REF{ax}LMIN"] = (1, "WCS minimum legal QPOE projected image axis value")
            h[f"REF{ax}LMAX"] = (51840, "WCS maximum legal QPOE projected image axis value")
            h[f"REF{ax}CUNI"] = ("deg", "WCS Physical units of axis")
        h["AVRG_PNT"] = ("MEDIAN", "Meaning of PNT values (mean or median)")
        h["RA_PNT"] = (self.ra, "[deg] Actual (mean) pointing RA of the optical axis")
        h["DEC_PNT"] = (self.dec, "[deg] Actual (mean) pointing Dec of the optical axis")
        h["PA_PNT"] = (self.pa, "[deg] Actual (mean) measured position angle")
        h["REVOLUT"] = (str(int(1 + (self.mjd - 51560) / 2.0)), "Satellite Revolution Number")
        h["PROCDATE"] = (_date(self.mjd + 2.0), "Processing date")
        for key, (value, comment) in _PROC.items():
            h[key] = (value, comment)
        h["CONTENT"] = (content, "Contents of file")
        return _primary(h)

    def sky(self, ra, dec):
        xi, eta = _project(self.ra, self.dec, ra, dec)
        return 25921 + xi / -1.38888888888889e-05, 25921 + eta / 1.38888888888889e-05

    def gtis(self) -> list[bytes]:
        """One GTI table per pn CCD, the same intervals (the exposure plus dead time, with
        two short gaps)."""
        t0 = (self.mjd - 50814.0) * 86400.0 + 1000.0
        third = self.exposure / 0.97 / 3.0
        gap = 0.05 * self.duration / 3.0
        starts = t0 + np.arange(3) * (third + gap)
        stops = starts + third
        out = []
        for i in range(12):
            h = Header()
            h["CCDID"] = (i + 1, "CCD ID")
            h["HDUCLASS"] = ("OGIP", "format conforms to OGIP standard")
            h["HDUCLAS1"] = ("GTI", "table contains Good Time Intervals")
            h["HDUCLAS2"] = ("STANDARD", "standard Good Time Interval table")
            h["ONTIME"] = (float(np.sum(stops - starts)), "[s] sum of all Good Time Intervals")
            h["TSTART"] = (float(starts[0]), "[s] Lower bound of first GTI")
            h["TSTOP"] = (float(stops[-1]), "[s] Uppler bound of last GTI")
            columns = [
                ("START", "D", "s", starts, "lower GTI boundary"),
                ("STOP", "D", "s", stops, "upper GTI boundary"),
            ]
            out.append(_table(f"GTI{i:03d}05", columns, h))
        return out


@dataclass
class SourceRecord:
    src_num: int
    ra: float
    dec: float
    exposure: float
    backscal_src: float
    backscal_bg: float
    ccd: int


def _source_keywords(h: Header, s: SourceRecord) -> None:
    h["SRCNUM"] = (s.src_num, "EPIC source list number")
    h["SRC_RA"] = (s.ra, "RA of source")
    h["SRC_DEC"] = (s.dec, "DEC of source")
    h["SRC_CRA"] = (s.ra, "Corrected RA of source")
    h["SRC_CDEC"] = (s.dec, "Corrected DEC of source")
    for key in ("EP_FLAG", "PN_FLAG", "M1_FLAG", "M2_FLAG"):
        h[key] = ("FFTFFFFFFFFF", f"{key[:2]} automatic source flag")
    radius = round(float(np.sqrt(s.backscal_src / np.pi)), 1)
    h["EXTRRAD"] = (radius, "Source extraction radius (0.05 arcsec)")


def _spectrum(channel, counts, grouping, quality, s: SourceRecord, kind: str, names) -> bytes:
    columns = [
        ("CHANNEL", "I", "", channel, "The name of this column"),
        ("COUNTS", "J", "count", counts, "The name of this column"),
    ]
    if kind == "source":
        columns += [
            ("GROUPING", "I", "", grouping, "Group constraint"),
            ("QUALITY", "I", "", quality, "Quality flag of this channel (0=good)"),
        ]
    h = Header()
    h["TELESCOP"] = ("XMM", "Telescope (mission) name")
    h["INSTRUME"] = ("EPN", "Instrument name")
    h["FILTER"] = ("Thin1", "Filter ID")
    h["HDUCLASS"] = ("OGIP", "Format conforms to OGIP/GSFC conventions")
    h["HDUCLAS1"] = ("SPECTRUM", "File contains a spectrum")
    h["HDUCLAS2"] = ("TOTAL", "File contains gross counts")
    h["HDUCLAS3"] = ("COUNT", "Spectrum is stored as counts")
    h["HDUVERS1"] = ("1.1.0", "Version of format")
    h["AREASCAL"] = (1.0, "Nominal scaling factor for data")
    h["CORRSCAL"] = (1.0, "Nominal scaling factor for correction file")
    h["POISSERR"] = (True, "Poisson errors appropriate")
    h["SYS_ERR"] = (0, "Global systematic error")
    h["CHANTYPE"] = ("PI", "Type of channel data")
    h["DETCHANS"] = (len(channel), "Total number of detector channels available")
    h["QUALITY"] = (0, "All channels have good quality")
    if kind == "background":
        h["GROUPING"] = (0, "No data grouping done")
    h["SPECDELT"] = (5, "Spectral channel size, ie the binning factor")
    h["SPECPIX"] = (0, "The rebinned channel correspondsing to SPECVAL")
    h["SPECVAL"] = (2.0, "Original chan value at center of rebinned chan")
    subspace = (
        ("CCDNR", str(s.ccd), "", ""),
        ("PI", "200:12000", "eV", ""),
        ("POS(X,Y)", "TABLE", "", ":REGION"),
        ("PATTERN", ":4", "", ""),
        ("FLAG", "0", "", ""),
        ("TIME", "TABLE", "s", f":GTI{s.ccd - 1:03d}05"),
    )
    for i, (typ, val, unit, ref) in enumerate(subspace, start=1):
        h[f"DSTYP{i}"] = (typ, "data subspace descriptor: name")
        if unit:
            h[f"DSUNI{i}"] = (unit, "data subspace descriptor: units")
        h[f"DSVAL{i}"] = (val, "data subspace descriptor: value")
        if ref:
            h[f"DSREF{i}"] = (ref, "data subspace descriptor: reference")
    h["MTYPE1"] = ("POS", "DM Keyword: Descriptor name")
    h["MFORM1"] = "X,Y"
    h["EXPOSURE"] = (s.exposure, "Weighted live time of CCDs in the extraction region")
    backscal = s.backscal_src if kind == "source" else s.backscal_bg
    if float(backscal).is_integer():  # the pipeline writes region areas as integers
        backscal = int(backscal)
    h["BACKSCAL"] = (backscal, "Scaling factor for background")
    _source_keywords(h, s)
    if kind == "source":
        h["CCDNR"] = (s.ccd, "Source CCD number")
        h["ANCRFILE"] = (names["arf"], "ancillary response")
        h["RESPFILE"] = (RESPFILE, "response matrix")
        h["BACKFILE"] = (names["bkg"], "background spectrum")
    h["TLMIN1"] = int(channel[0])
    h["TLMAX1"] = int(channel[-1])
    return _table("SPECTRUM", columns, h)


def _region(obs: Observation, s: SourceRecord, kind: str) -> bytes:
    x, y = obs.sky(s.ra, s.dec)
    r_src = float(np.sqrt(s.backscal_src / np.pi))
    if kind == "source":
        rows = [("CIRCLE", x, y, r_src)]
    else:  # a circle of the background area 3 arcmin away (towards the field centre)
        d = np.hypot(x - 25921, y - 25921)
        ux, uy = ((25921 - x) / d, (25921 - y) / d) if d > 1 else (1.0, 0.0)
        r = float(np.sqrt(s.backscal_bg / np.pi))
        rows = [("CIRCLE", x + 3600 * ux, y + 3600 * uy, r), ("!CIRCLE", x, y, 1.5 * r_src)]
    columns = [
        ("SHAPE", "16A", "", [r[0] for r in rows], "label for field   1"),
        ("X", "E", "", [r[1] for r in rows], "label for field   2"),
        ("Y", "E", "", [r[2] for r in rows], "label for field   3"),
        ("R", "E", "", [r[3] for r in rows], "label for field   4"),
    ]
    h = Header()
    h["HDUVERS"] = "1.0.0"
    h["HDUCLASS"] = "ASC"
    h["HDUCLAS1"] = "REGION"
    h["HDUCLAS2"] = "STANDARD"
    h["MTYPE1"] = "pos"
    h["MFORM1"] = "X,Y"
    return _table("REGION", columns, h)


def _arf(arf: Arf, s: SourceRecord) -> bytes:
    columns = [
        ("ENERG_LO", "E", "keV", arf.raw["ENERG_LO"]),
        ("ENERG_HI", "E", "keV", arf.raw["ENERG_HI"]),
        ("SPECRESP", "E", "cm2", arf.raw["SPECRESP"]),
    ]
    h = Header()
    h["TELESCOP"] = ("XMM", "mission/satellite name")
    h["INSTRUME"] = ("EPN", "instrument/detector name")
    h["FILTER"] = ("", "filter in use")
    h["ARFVERSN"] = ("1992a", "OGIP classification of FITS format")
    h["HDUCLASS"] = ("OGIP", "Format conforms to OGIP standard")
    h["HDUCLAS1"] = ("RESPONSE", "dataset relates to spectral response")
    h["HDUCLAS2"] = ("SPECRESP", "dataset is a spectral response matrix")
    h["HDUVERS1"] = ("1.0.0", "Obsolete - included for backwards compatibility")
    h["HDUVERS2"] = ("1.1.0", "Obsolete - included for backwards compatibility")
    h["HDUVERS"] = ("1.1.0", "the version of the HDUCLAS2 format in use")
    _source_keywords(h, s)
    return _table("SPECRESP", columns, h)


# ---------------------------------------------------------------------------------------------
# The catalogue


def _default_data() -> Path:
    env = os.environ.get("XSPECVAE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "xmm"


def _arguments(single, repeated, epochs, seed, data, save_expected) -> str:
    arguments = {
        "version": VERSION,
        "single": int(single),
        "repeated": int(repeated),
        "epochs": int(epochs),
        "seed": int(seed),
        "data": str(Path(data).resolve()),
        "save_expected": bool(save_expected),
    }
    return json.dumps(arguments, sort_keys=True)


def _complete(out: Path, arguments: str) -> bool:
    truth = out / "truth.fits"
    if not (truth.is_file() and (out / "ogip").is_dir()):
        return False
    try:
        with fits.open(truth) as hdul:
            return hdul["TRUTH"].header.get("GENARGS") == arguments
    except (OSError, KeyError):
        return False


def _remove_stale(out: Path) -> None:
    """Remove the temporary folders of killed runs (their process is gone)."""
    for folder in out.glob(".independent-*-*"):
        try:
            pid = int(folder.name.split("-")[1])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass


def _labels(n: int, fractions: dict, rng) -> list[str]:
    names = list(fractions)
    weights = np.array([fractions[k] for k in names])
    weights = weights / weights.sum()
    counts = np.floor(weights * n).astype(int)
    for i in np.argsort(-(weights * n - counts))[: n - counts.sum()]:
        counts[i] += 1
    labels = [k for k, c in zip(names, counts) for _ in range(c)]
    return [labels[i] for i in rng.permutation(n)]


def _split(n: int, lo: int, hi: int, rng) -> list[int]:
    sizes = []
    while n > 0:
        k = int(rng.integers(lo, hi + 1))
        if n - k < lo and n - k > 0:
            k = n if n <= hi else n - lo
        k = min(k, n)
        sizes.append(k)
        n -= k
    return sizes


def generate(
    out,
    *,
    single: int = 1200,
    repeated: int = 150,
    epochs: int = 3,
    seed: int = 7,
    data=None,
    progress: bool = True,
    save_expected: bool = False,
) -> Path:
    """Write the catalogue (see the module docstring) under ``out``; return ``out/ogip``.
    ``save_expected`` also writes ``out/expected.npz``: each spectrum's photon spectrum on the
    RMF energy grid (photons/cm^2/s per bin) and expected source and source-region background
    counts per channel, for validation."""
    out = Path(out)
    data = Path(data) if data is not None else _default_data()
    if epochs < 1 or single < 0 or repeated < 0 or single + repeated == 0:
        raise ValueError("need epochs >= 1 and some sources")
    arguments = _arguments(single, repeated, epochs, seed, data, save_expected)
    if _complete(out, arguments):
        return out / "ogip"
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    inputs = Inputs(data, np.random.default_rng([seed, 1]))
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    work = Path(tempfile.mkdtemp(prefix=f".independent-{os.getpid()}-", dir=out))
    try:
        rows, expected = _build(
            inputs, work / "ogip", single, repeated, epochs, rng, progress, save_expected
        )
        _write_truth(work / "truth.fits", rows, inputs, arguments)
        if save_expected:
            np.savez_compressed(work / "expected.npz", **expected)
        for name in ("truth.fits", "expected.npz"):
            (out / name).unlink(missing_ok=True)  # no truth: the old catalogue is not complete
        if (out / "ogip").exists():
            shutil.rmtree(out / "ogip")
        (work / "ogip").rename(out / "ogip")
        if save_expected:
            (work / "expected.npz").rename(out / "expected.npz")
        (work / "truth.fits").rename(out / "truth.fits")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if progress:
        print(
            f"independent: {len(rows)} spectra in {time.perf_counter() - started:.1f} s -> {out}",
            flush=True,
        )
    return out / "ogip"


def _build(inputs: Inputs, folder: Path, n_single, n_rep, n_epochs, rng, progress, save_expected):
    folder.mkdir(parents=True)
    # sources: (label, variability); singles first, then the repeated ones
    sources = [(label, "none") for label in _labels(n_single, FRACTIONS, rng)]
    rep_labels = _labels(n_rep, {k: FRACTIONS[k] for k in VARIABLE}, rng)
    kinds = ["state"] * (n_rep // 2) + ["flux"] * (n_rep - n_rep // 2)
    kinds = [kinds[i] for i in rng.permutation(n_rep)]
    sources += list(zip(rep_labels, kinds))
    # fields: singles in fields observed once, repeated ones in fields observed n_epochs times
    single_sizes = _split(n_single, 40, 100, rng) if n_single else []
    rep_sizes = _split(n_rep, 25, 50, rng) if n_rep else []
    centres = _field_centres(len(single_sizes) + len(rep_sizes), rng)
    observations = []  # (Observation, [(source index, epoch)])
    positions = {}
    groups, first = [], 0
    for size in single_sizes:
        groups.append((list(range(first, first + size)), False))
        first += size
    for size in rep_sizes:
        groups.append((list(range(first, first + size)), True))
        first += size
    proposals = rng.choice(np.arange(10000, 99999), size=len(centres), replace=False)
    for field, (members, is_rep) in enumerate(groups):
        ra0, dec0 = centres[field]
        size = len(members)
        for idx, pos in zip(members, _field_positions(ra0, dec0, size, rng)):
            positions[idx] = pos[:2]
        # first DATE-OBS 2001-2023, the last epoch no later than mid-2024
        last_start = max(52000.0, 60450.0 - (n_epochs - 1 if is_rep else 0) * 800.0)
        mjd = float(rng.uniform(51910.0, last_start))
        for e in range(n_epochs if is_rep else 1):
            duration = float(10 ** rng.uniform(np.log10(11.5e3), np.log10(1.2e5)))
            obs = Observation(
                obs_id=f"{int(proposals[field]):06d}{e + 1:02d}01",
                ra=ra0,
                dec=dec0,
                mjd=mjd,
                duration=duration * 1.08,
                exposure=duration,
                object=f"FIELD-{field:03d}",
                pa=float(rng.uniform(0, 360)),
            )
            observations.append((obs, [(i, e) for i in members]))
            mjd += float(rng.uniform(20.0, 800.0))
    # parameters of every epoch of every source
    params = {}
    for idx, (label, kind) in enumerate(sources):
        p0, state = draw(label, rng)
        if kind == "none":
            params[idx] = [(p0, state, 1.0)]
        else:
            params[idx] = epochs_of(label, p0, kind, n_epochs, rng)
    norm0 = {}
    rows, expected = [], {"files": [], "photons": [], "source": [], "background": []}
    n_arf = len(inputs.arfs)
    for k, (obs, members) in enumerate(observations):
        gtis = obs.gtis()
        src_nums = np.cumsum(1 + (rng.random(len(members)) < 0.15).astype(int))
        for (idx, epoch), num in zip(members, src_nums):
            label, kind = sources[idx]
            p, state, factor = params[idx][epoch]
            ra, dec = positions[idx]
            if kind != "none":  # each epoch within 0.4 arcsec of the true position
                r = 0.4 / 3600 * np.sqrt(rng.random())
                t = rng.uniform(0, 2 * np.pi)
                ra, dec = _offset(ra, dec, r * np.cos(t), r * np.sin(t))
            j = int(rng.integers(n_arf))
            src_real, bkg_real = inputs.pairs[j]
            exposure = obs.exposure * float(rng.uniform(0.87, 1.0))
            record = SourceRecord(
                int(num),
                ra,
                dec,
                exposure,
                src_real["backscal"],
                bkg_real["backscal"],
                int(rng.integers(1, 13)),
            )
            photons, derived = MODELS[label](inputs.grid, p)
            unit = (photons * inputs.arfs[j].specresp * exposure) @ inputs.folding
            unit_total = float(np.sum(unit))
            if epoch == 0:
                target = _logu(rng, *COUNTS_RANGE)
                norm = target / unit_total
                norm0[idx] = norm
            else:
                norm = norm0[idx] * factor
                total = norm * unit_total
                if not COUNTS_RANGE[0] <= total <= COUNTS_RANGE[1]:
                    norm *= np.clip(total, *COUNTS_RANGE) / total
            mu = np.zeros(len(inputs.window))
            mu[: inputs.last] = norm * unit
            template = int(rng.integers(N_TEMPLATES))
            rate = inputs.bg_rate[j] * float(10 ** rng.normal(0.0, 0.15))
            mu_bg = rate * exposure * record.backscal_bg * inputs.templates[template]
            alpha = record.backscal_src / record.backscal_bg
            counts = rng.poisson(mu + alpha * mu_bg)
            bcounts = rng.poisson(mu_bg)
            base = f"P{obs.obs_id}PNS003"
            names = {
                "src": f"{base}SRSPEC{num:04X}.FTZ",
                "bkg": f"{base}BGSPEC{num:04X}.FTZ",
                "arf": f"{base}SRCARF{num:04X}.FTZ",
            }
            _write_products(folder, names, inputs, obs, gtis, record, counts, bcounts, j)
            ph = norm * photons
            good = inputs.quality == 0
            row = dict(
                file=names["src"],
                label=label,
                source=idx,
                epoch=epoch,
                state=state,
                variability=kind,
                obs_id=obs.obs_id,
                src_num=int(num),
                ra=ra,
                dec=dec,
                date_obs=_date(obs.mjd),
                mjd_obs=obs.mjd,
                exposure=exposure,
                backscal_src=record.backscal_src,
                backscal_bg=record.backscal_bg,
                alpha=alpha,
                arf_file=inputs.arfs[j].path.name,
                arf_written=names["arf"],
                background_file=names["bkg"],
                background_template=template,
                background_rate=rate,
                expected_net_counts=float(np.sum(mu)),
                expected_net_counts_good=float(np.sum(mu[good])),
                expected_background_counts=float(alpha * np.sum(mu_bg)),
                expected_background_region_counts=float(np.sum(mu_bg)),
                counts=int(np.sum(counts)),
                background_counts=int(np.sum(bcounts)),
                norm=norm,
                flux_factor=norm / norm0[idx],
                flux_soft=inputs.grid.band(ph, 0.5, 2.0) * KEV,
                flux_hard=inputs.grid.band(ph, 2.0, 10.0) * KEV,
                flux_total=inputs.grid.band(ph, 0.2, 12.0) * KEV,
                **p,
                **{key: derived.get(key, float("nan")) for key in EW_COLUMNS},
            )
            rows.append(row)
            if save_expected:
                expected["files"].append(names["src"])
                expected["photons"].append(ph.astype(np.float32))
                expected["source"].append(mu.astype(np.float32))
                expected["background"].append((alpha * mu_bg).astype(np.float32))
        if progress:
            print(
                f"independent: observation {k + 1}/{len(observations)} {obs.obs_id}: "
                f"{len(members)} sources ({len(rows)} spectra)",
                flush=True,
            )
    if save_expected:
        expected = {k: np.asarray(v) for k, v in expected.items()}
    return rows, expected


def _write_products(folder, names, inputs: Inputs, obs: Observation, gtis, s, counts, bcounts, j):
    rmf = inputs.rmf
    grouping = group_channels(counts, inputs.quality, rmf.ch_lo, rmf.ch_hi, inputs.fwhm)
    source = _spectrum(rmf.channel, counts, grouping, inputs.quality, s, "source", names)
    background = _spectrum(rmf.channel, bcounts, None, None, s, "background", names)
    _write_gz(
        folder / names["src"],
        [obs.primary("EPIC SOURCE SPECTRUM"), source, _region(obs, s, "source"), *gtis],
    )
    _write_gz(
        folder / names["bkg"],
        [
            obs.primary("EPIC SOURCE BACKGROUND SPECTRUM"),
            background,
            _region(obs, s, "background"),
            *gtis,
        ],
    )
    _write_gz(
        folder / names["arf"],
        [obs.primary("EPIC ANCILLARY RESPONSE FUNCTION"), _arf(inputs.arfs[j], s)],
    )


_TRUTH_DESCRIPTIONS = {
    "file": ("", "SRSPEC base name"),
    "label": ("", "class: agn star xrb cv sss cluster"),
    "source": ("", "source index (same for every epoch)"),
    "epoch": ("", "epoch of the source, 0 first"),
    "state": ("", "spectral state"),
    "variability": ("", "none (single), flux or state (repeated)"),
    "obs_id": ("", "OBS_ID"),
    "src_num": ("", "source number (hex in file names)"),
    "ra": ("deg", "SRC_RA"),
    "dec": ("deg", "SRC_DEC"),
    "date_obs": ("", "DATE-OBS"),
    "mjd_obs": ("d", "MJD of DATE-OBS"),
    "exposure": ("s", "EXPOSURE"),
    "backscal_src": ("", "source BACKSCAL (0.05 arcsec pixels)"),
    "backscal_bg": ("", "background BACKSCAL"),
    "alpha": ("", "BACKSCAL source / background"),
    "arf_file": ("", "real SRCARF used (and its BACKSCAL pair)"),
    "arf_written": ("", "ANCRFILE written"),
    "background_file": ("", "BACKFILE written"),
    "background_template": ("", "row of the TEMPLATES extension"),
    "background_rate": ("count/s", "per unit BACKSCAL in the PI window"),
    "expected_net_counts": ("count", "expected source counts, 0.2-12 keV window"),
    "expected_net_counts_good": ("count", "the same over QUALITY=0 channels"),
    "expected_background_counts": ("count", "exp. background counts, source region"),
    "expected_background_region_counts": ("count", "exp. counts, background region"),
    "counts": ("count", "counts in the SRSPEC"),
    "background_counts": ("count", "counts in the BGSPEC"),
    "norm": ("", "class normalisation (see docstring)"),
    "flux_factor": ("", "norm relative to epoch 0"),
    "flux_soft": ("erg/cm2/s", "observed (absorbed) 0.5-2 keV flux"),
    "flux_hard": ("erg/cm2/s", "observed (absorbed) 2-10 keV flux"),
    "flux_total": ("erg/cm2/s", "observed (absorbed) 0.2-12 keV flux"),
    **PARAMETERS,
    **{
        k: ("eV", f"{v[0] if len(v) == 1 else 'Fe L'} {EW_DESCRIPTION}")
        for k, v in EW_COLUMNS.items()
    },
}


def _write_truth(path: Path, rows: list[dict], inputs: Inputs, arguments: str) -> None:
    columns = []
    for name in rows[0]:
        values = [r[name] for r in rows]
        unit, _ = _TRUTH_DESCRIPTIONS[name]
        if isinstance(values[0], str):
            width = max(1, max(len(v) for v in values))
            columns.append(fits.Column(name, f"{width}A", array=values))
        elif isinstance(values[0], (int, np.integer)) and not isinstance(values[0], bool):
            columns.append(fits.Column(name, "K", unit or None, array=np.asarray(values, np.int64)))
        else:
            columns.append(
                fits.Column(name, "D", unit or None, array=np.asarray(values, np.float64))
            )
    hdu = fits.BinTableHDU.from_columns(columns, name="TRUTH")
    for i, name in enumerate(rows[0], start=1):
        hdu.header.comments[f"TTYPE{i}"] = _TRUTH_DESCRIPTIONS[name][1]
    hdu.header["GENARGS"] = arguments  # the generator's arguments (JSON)
    hdu.header["GENVERS"] = (VERSION, "independent.py version")
    hdu.header["RESPFILE"] = (RESPFILE, "RMF named by the spectra")
    members = [",".join(m) for m in inputs.template_members]
    templates = fits.BinTableHDU.from_columns(
        [
            fits.Column("template", "K", array=np.arange(len(members))),
            fits.Column("members", f"{max(len(m) for m in members)}A", array=members),
        ],
        name="TEMPLATES",
    )
    fits.HDUList([fits.PrimaryHDU(), hdu, templates]).writeto(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--single", type=int, default=1200)
    parser.add_argument("--repeated", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--save-expected", action="store_true", help="also write expected.npz")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    folder = generate(
        args.out,
        single=args.single,
        repeated=args.repeated,
        epochs=args.epochs,
        seed=args.seed,
        data=args.data,
        progress=not args.quiet,
        save_expected=args.save_expected,
    )
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
