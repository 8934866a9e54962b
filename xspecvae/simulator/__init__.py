"""A labelled population of X-ray sources like the XMM-Newton serendipitous catalogue, folded
through real or built-in EPIC pn responses, with Poisson noise, written as a catalogue pack.

Each row of the pack is one spectrum (one source seen in one observation): counts in the source
region (source + background, Poisson), counts in a background region ``1/alpha`` times larger,
its exposure, its own ARF (vignetted at its off-axis angle) and the index of its shared RMF.
``meta`` holds ``source_id``, ``obs_id``, ``mjd``, ``ra``, ``dec``, ``label``, ``file``,
``offaxis`` (arcmin) and ``epoch`` (1, 2, ... for repeat observations of a source); ``truth``
holds every physical parameter (NaN where a class does not have it, see :data:`TRUTH`).

The model (all numbers are module constants, documented where they are defined):

- Classes and their spectra (:data:`CLASS_FRACTIONS` of a serendipitous catalogue). Every
  spectrum is absorbed by a Galactic column ``nh_gal`` (1e20-1e21 cm^-2, log-uniform).
  ``AGN``: power law (Gamma ~ N(1.9, 0.3)) absorbed at its redshift (0.05-3) by ``nh`` (30 %
  above 1e22, 10 % above 1e23, the rest 1e20-1e22) with a scattered unabsorbed fraction, plus
  a Fe K-alpha 6.4 keV (rest) line of EW ~ 100 eV. ``star``: one or two plasmas (kT 0.1-1.5
  keV). ``XRB``: disc blackbody + power law behind 1e21-3e23 cm^-2, soft (disc) or hard (power
  law, Gamma ~ 1.7) state. ``CV``: 5-40 keV plasma (Fe XXV 6.7 keV) with a partial-covering
  absorber (1e22-3e23 cm^-2) and a 6.4 keV line. ``ULX``: hot disc (1.4-2.5 keV) plus a cool
  blackbody or a soft power law of comparable flux. ``SSS``: 20-100 eV blackbody behind up to
  3e21 cm^-2 more. ``cluster``: 1-8 keV plasma at
  z = 0.05-1. ``TDE``: 40-150 eV blackbody or a steep power law at z = 0.01-0.3.
- Counts: expected source counts ``S`` from N(>S) ~ S^-1.5 (:data:`SOURCE_COUNTS`), expected
  background counts in the source region ``B`` log-normal and proportional to exposure
  (:data:`BACKGROUND_COUNTS`); the observed total ``N ~ Poisson(S + B)`` must reach
  ``min_counts`` (candidates are drawn until enough pass). With the defaults about half of the
  spectra have S / sqrt(S + B) < 2. Each spectrum is scaled so that its expected counts,
  folded through its own ARF and RMF, equal ``S``; the resulting physical normalisations and
  fluxes go to ``truth``. Channel counts are then multinomial given ``N`` (the same as
  independent Poisson counts per channel).
- Exposures 5-130 ks (log-normal, median 30 ks); off-axis angles uniform in area within 15';
  vignetting ``exp(-(theta / theta0(E))^2)`` with theta0 from 20' at 1 keV to 12' at 8 keV
  (:func:`vignetting`).
- Background: a particle spectrum (the filter-wheel-closed spectrum given as ``background``, or
  a built-in analytic one, :func:`builtin_particle_background`) plus a sky component (soft
  thermal emission and the cosmic X-ray background folded through the source's ARF and RMF),
  mixed per spectrum; or, with ``background_spectra`` (real total backgrounds such as the
  pipeline's BGSPECs), the shape of one of them drawn at random per spectrum (its index in
  ``truth["background_template"]``). Background-region counts ``Poisson(mu_b)``,
  ``alpha mu_b`` in the source region (alpha 0.05-0.3, log-uniform).
- Repeat observations: ``repeat_fraction`` of the sources are observed 2-5 times at increasing
  MJD (2000-2025; TDEs within 30-1500 days), each with its own exposure (within 0.25 dex of
  the first), off-axis angle, ARF, alpha and background. Between epochs XRBs change state (the
  second epoch always flips), TDEs fade (by 3-30 at the last epoch) and cool, AGN change their
  column (random walk of 0.4 dex per epoch), the other classes vary a little
  (:data:`VARIABILITY`; clusters not at all). Later epochs whose observed counts miss
  ``min_counts`` are dropped, as a catalogue would (``epoch`` counts the rows kept), so with
  the defaults about 9 % of the sources keep two or more.

The package's modules: :mod:`.population` (classes and their parameters), :mod:`.telescope`
(responses, area, backgrounds), :mod:`.spectra` (components, folding), :mod:`.making` (the
pack, in chunks) and :mod:`.export` (OGIP files).

Work is done in chunks of ``chunk`` rows, chunk ``k`` drawn from
``numpy.random.SeedSequence(seed).spawn(...)[k]``, so a pack is the same whether it was made in
one go or resumed after an interruption (sources never straddle chunks).
"""

from xspecvae.simulator.export import write_ogip
from xspecvae.simulator.making import DEMO_PACK, DEMO_SIZE, FLAGGED_BELOW, demo_pack, simulate_pack
from xspecvae.simulator.population import CLASS_FRACTIONS, CLASSES, SOURCE_COUNTS, TRUTH
from xspecvae.simulator.telescope import (
    BUILTIN_RMF_NAME,
    builtin_particle_background,
    vignetting,
)

__all__ = [
    "CLASSES",
    "CLASS_FRACTIONS",
    "DEMO_PACK",
    "DEMO_SIZE",
    "FLAGGED_BELOW",
    "SOURCE_COUNTS",
    "TRUTH",
    "BUILTIN_RMF_NAME",
    "simulate_pack",
    "demo_pack",
    "write_ogip",
    "vignetting",
    "builtin_particle_background",
]
