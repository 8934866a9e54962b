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
  a Fe K-alpha 6.4 keV (rest) line of EW ~ 100 eV. ``star``: one or two plasmas (kT 0.2-1.5
  keV). ``XRB``: disc blackbody + power law behind 1e21-1e23 cm^-2, soft (disc) or hard (power
  law, Gamma ~ 1.7) state. ``CV``: 5-40 keV plasma (Fe XXV 6.7 keV) with a partial-covering
  absorber and a 6.4 keV line. ``ULX``: hot disc (1.4-2.5 keV) plus a cool blackbody or a soft
  power law of comparable flux. ``SSS``: 30-100 eV blackbody. ``cluster``: 1-8 keV plasma at
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

Work is done in chunks of ``chunk`` rows, chunk ``k`` drawn from
``numpy.random.SeedSequence(seed).spawn(...)[k]``, so a pack is the same whether it was made in
one go or resumed after an interruption (sources never straddle chunks).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import numpy as np
from scipy.special import ndtr, ndtri
from tqdm import tqdm

from xspecvae import physics
from xspecvae.catalog import QUALITY_BREAKS, Grid, Pack, PackWriter, made_already, resumable
from xspecvae.errors import InputError
from xspecvae.instrument import Response, builtin_pn_area, builtin_pn_response
from xspecvae.ogip import (
    OGIPError,
    check_energy_match,
    read_arf,
    read_pha,
    read_rmf,
    write_arf,
    write_pha,
    write_rmf,
)

__all__ = [
    "CLASSES",
    "CLASS_FRACTIONS",
    "DEMO_SIZE",
    "TRUTH",
    "BUILTIN_RMF_NAME",
    "simulate_pack",
    "demo_pack",
    "write_ogip",
    "vignetting",
    "builtin_particle_background",
]

CLASSES = ("AGN", "star", "cluster", "XRB", "CV", "ULX", "SSS", "TDE")
#: Default class fractions, roughly those of identified serendipitous XMM sources at high
#: Galactic latitude: AGN the large majority, then coronal stars and galaxy clusters; X-ray
#: binaries, cataclysmic variables, ULXs, supersoft sources and TDEs rare.
CLASS_FRACTIONS = {
    "AGN": 0.69,
    "star": 0.14,
    "cluster": 0.08,
    "XRB": 0.03,
    "CV": 0.03,
    "ULX": 0.015,
    "SSS": 0.01,
    "TDE": 0.005,
}
#: Spectra in the built-in demo catalogue (:func:`demo_pack`).
DEMO_SIZE = 20_000
#: keV below which pn pipeline products flag channels bad (see ``flagged_fraction``), where
#: the analysis grid starts a bin.
(FLAGGED_BELOW,) = QUALITY_BREAKS["pn"]

#: Pack name of the built-in response (:func:`xspecvae.instrument.builtin_pn_response`).
BUILTIN_RMF_NAME = "builtin_pn.rmf"

#: Expected source counts (analysis band): N(>S) ~ S^-slope between these limits.
SOURCE_COUNTS = dict(minimum=20.0, maximum=1e5, slope=1.5)
#: Expected background counts in the source region: log10 B ~ N(log10(median * T / 30 ks), dex).
BACKGROUND_COUNTS = dict(median=100.0, dex=0.4)
#: Exposure (s): log-normal of this median and log-sigma, truncated to the range.
EXPOSURE = dict(median=30e3, sigma=0.7, minimum=5e3, maximum=130e3)
ALPHA_RANGE = (0.05, 0.3)  # source / background region area ratio, log-uniform
OFFAXIS_MAX = 15.0  # arcmin, uniform in area
PARTICLE_FRACTION = (0.3, 0.8)  # particle share of the background counts, uniform
MJD_RANGE = (51544.0, 60676.0)  # 2000-01-01 to 2025-01-01
#: Rows per call of a compiled spectral model (fixed, so each model compiles once per grid).
BLOCK = 64

_KEV_TO_ERG = 1.602176634e-9
_FLOATS = (
    "nh_gal",
    "nh",
    "redshift",
    "gamma",
    "scatter_fraction",
    "line_energy",
    "line_ew",
    "line_sigma",
    "kt",
    "kt2",
    "plasma2_fraction",
    "abundance",
    "t_in",
    "disc_fraction",
    "bb_kt",
    "cover_nh",
    "cover_fraction",
)
#: Truth columns: parameters (NaN where not applicable; columns in 1e22 cm^-2, keV, rest-frame
#: line energies and EWs), the XRB ``state``, the epoch's flux relative to the first epoch,
#: fluxes in 0.2-12 keV (observed frame; photons/cm^2/s, absorbed and not; erg/cm^2/s
#: absorbed), component normalisations in :mod:`xspecvae.physics` units, expected source and
#: background counts in the source region, S / sqrt(S + B), and the particle share of the
#: background.
TRUTH = (
    *_FLOATS,
    "state",
    "flux_factor",
    "photon_flux",
    "photon_flux_unabsorbed",
    "energy_flux",
    "norm_powerlaw",
    "norm_blackbody",
    "norm_diskbb",
    "norm_plasma",
    "norm_plasma2",
    "norm_line",
    "expected_counts",
    "expected_background",
    "snr",
    "particle_fraction",
)


# ---------------------------------------------------------------------------------------------
# Public API


def simulate_pack(
    path,
    n: int = 20_000,
    *,
    seed: int = 0,
    rmfs=(),
    arf=None,
    background=None,
    background_spectra=(),
    absorption=None,
    min_counts: float = 200,
    repeat_fraction: float = 0.1,
    chunk: int = 4096,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    fractions: dict | None = None,
    flagged_fraction: float = 0.0,
    counts_slope: float = SOURCE_COUNTS["slope"],
) -> Path:
    """Simulate ``n`` spectra into the pack ``path`` (see the module docstring).

    Parameters
    ----------
    rmfs : RMF files (one or more, same channels and energies); each spectrum gets one at
        random. Empty: the built-in pn response.
    arf : an ARF on the (first) RMF's energy grid, vignetted per source; None: the built-in pn
        effective area.
    background : a particle background spectrum (e.g. ``PN_FWC.fits.gz``) on the RMF channels;
        None: the built-in analytic shape.
    background_spectra : real background spectra on the RMF channels (e.g. PPS ``BGSPEC``
        files); each simulated spectrum takes the shape of one of them, drawn at random,
        instead of the particle + sky mix (``background`` is then not used).
    absorption : a cross-section table (FITS, ENERGY and SIGMA); None: Morrison & McCammon.
    min_counts : minimum observed total counts (source region, analysis band) of a spectrum.
    repeat_fraction : share of the sources observed 2-5 times.
    chunk : rows per chunk (the unit of randomness and of resuming).
    resume : continue ``<path>.partial`` if it was made with the same options.
    overwrite : replace a pack at ``path`` made otherwise (refused by default); one made with
        these very options is returned as it is.
    fractions : class fractions (label -> weight); default :data:`CLASS_FRACTIONS`.
    flagged_fraction : share of the spectra whose bins below :data:`FLAGGED_BELOW` keV are
        flagged bad (``good`` False), as in pn pipeline products (their QUALITY flags).
    counts_slope : ``s`` of the expected source counts, N(>S) ~ S^-s (0: log-uniform). A
        catalogue's 1.5 leaves few bright spectra (0.05 % above 3,000 counts); a training set
        for a model that must also fit the bright end wants a flatter one (0.5: 8 %).
    """
    if n < 1 or chunk < 1:
        raise ValueError("n and chunk must be positive")
    if not 0 <= repeat_fraction <= 1:
        raise ValueError("repeat_fraction must be between 0 and 1")
    if not 0 <= flagged_fraction <= 1:
        raise ValueError("flagged_fraction must be between 0 and 1")
    if counts_slope < 0:
        raise ValueError("counts_slope must be >= 0")
    weights = _class_weights(fractions)
    rmfs = [Path(p) for p in ([rmfs] if isinstance(rmfs, str | Path) else rmfs)]
    options = dict(
        n=int(n),
        seed=int(seed),
        rmfs=[str(p.resolve()) for p in rmfs],
        arf=None if arf is None else str(Path(arf).resolve()),
        background=None if background is None else str(Path(background).resolve()),
        background_spectra=[str(Path(b).resolve()) for b in background_spectra],
        absorption=None if absorption is None else str(Path(absorption).resolve()),
        min_counts=float(min_counts),
        repeat_fraction=float(repeat_fraction),
        chunk=int(chunk),
        fractions=dict(zip(CLASSES, weights.tolist())),
        flagged_fraction=float(flagged_fraction),
    )
    if counts_slope != SOURCE_COUNTS["slope"]:  # packs made with the default stay resumable
        options["counts_slope"] = float(counts_slope)
    provenance = dict(
        command="simulate",
        options=options,
        model=dict(
            source_counts=SOURCE_COUNTS,
            background_counts=BACKGROUND_COUNTS,
            exposure=EXPOSURE,
            alpha=ALPHA_RANGE,
            offaxis_max=OFFAXIS_MAX,
        ),
    )
    instrument = _Instrument.build(rmfs, arf, background, absorption, background_spectra)
    if made_already(path, provenance, overwrite):
        return Path(path)
    resume = resume and resumable(path, provenance)
    writer = PackWriter(path, provenance=provenance, resume=resume)
    try:
        writer.add_grid(instrument.grid)
        indices = [
            writer.add_rmf("pn", name, matrix)
            for name, matrix in zip(instrument.names, instrument.matrices)
        ]
        if indices != list(range(len(indices))):
            raise ValueError("the pack holds other RMFs; start it afresh (resume=False)")
        done = len(writer.committed("pn", "source_id"))
        sequence = np.random.SeedSequence(seed)
        lattice = int(sequence.generate_state(1)[0])
        seeds = sequence.spawn(-(-n // chunk))
        with tqdm(
            total=n, initial=done, unit="spectra", disable=not progress, desc="simulate"
        ) as bar:
            for k in range(done // chunk, len(seeds)):
                size = min(chunk, n - k * chunk)
                rows = _simulate_chunk(
                    instrument,
                    np.random.default_rng(seeds[k]),
                    size,
                    first_row=k * chunk,
                    min_counts=min_counts,
                    repeat_fraction=repeat_fraction,
                    weights=weights,
                    lattice=lattice,
                    flagged_fraction=flagged_fraction,
                    counts_slope=counts_slope,
                )
                writer.append("pn", **rows)
                bar.update(size)
    except BaseException:
        writer.file.close()  # keep the partial pack for resuming
        raise
    return writer.close()


def demo_pack(path="xspecvae-demo.h5", *, progress: bool = True) -> Path:
    """The built-in demo catalogue: :data:`DEMO_SIZE` spectra on the built-in pn response,
    seed 0, default options: about 15 s on 2 CPU cores, a 66 MB pack."""
    return simulate_pack(path, DEMO_SIZE, seed=0, progress=progress)


def _ogip_names(obs_ids) -> list[dict[str, str]]:
    """PPS-like file names of each row's source spectrum, background and ARF: the rows of an
    observation numbered 1, 2, ... as 4-digit hexadecimal source numbers."""
    seen: Counter = Counter()
    names = []
    for obs_id in map(str, obs_ids):
        seen[obs_id] += 1
        stem, src = f"P{obs_id}PNS001", f"{seen[obs_id]:04X}"
        names.append({k: f"{stem}{k}{src}.FTZ" for k in ("SRSPEC", "BGSPEC", "SRCARF")})
    return names


def write_ogip(
    pack_path, directory, *, instrument: str = "pn", rows=None, rmfs=(), overwrite: bool = False
) -> list[Path]:
    """Write rows of a pack as OGIP files that ``xspecvae pack`` reads back.

    Per row: ``P<obs_id>PNS001SRSPEC<src>.FTZ`` (source spectrum), ``...BGSPEC<src>.FTZ``
    (background, BACKSCAL = 1/alpha) and ``...SRCARF<src>.FTZ`` (ARF on the full RMF energy
    grid, zero outside the model grid), ``src`` a 4-digit hex number counting the rows of an
    observation; plus each RMF used, once, under its pack name. Counts are put on the first
    RMF channel of each analysis bin (QUALITY and GROUPING 0), so that grouping the channels
    gives the pack's counts back exactly.

    The full RMFs come from ``rmfs`` (files named like the pack's RMFs), else from the paths in
    the pack's provenance; the built-in response is made again. Files already in
    ``directory`` under those names are refused unless ``overwrite``. Returns the paths written.
    """
    from astropy.time import Time

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with Pack(pack_path, instrument) as pack:
        grid = pack.grid
        selected = np.arange(pack.n) if rows is None else np.arange(pack.n)[rows]
        selected = np.atleast_1d(selected)
        batch = pack.read(selected) if selected.size else None
        meta = {k: v[selected] for k, v in pack.meta.items()}
        names = pack.rmf_names
        known = [Path(p) for p in ([rmfs] if isinstance(rmfs, str | Path) else rmfs)]
        known += [Path(p) for p in pack.provenance.get("options", {}).get("rmfs", [])]
        written: list[Path] = []
        responses: dict[int, Response] = {}
        files = _ogip_names(meta["obs_id"])
        used = [] if batch is None else [names[i] for i in np.unique(batch["rmf_index"])]
        there = [directory / n for n in [*used, *(n for f in files for n in f.values())]]
        there = [path for path in there if path.exists()]
        if there and not overwrite:
            raise InputError(
                there[0],
                f"exists, with {len(there) - 1} more files this export would replace; "
                "write elsewhere or pass --overwrite",
            )
        if batch is not None:
            for index in np.unique(batch["rmf_index"]):
                response = _full_response(names[index], known)
                if not np.allclose(grid.regroup(response), pack.rmf[index], rtol=1e-4, atol=1e-7):
                    raise ValueError(f"{names[index]} is not the RMF the pack was made with")
                responses[int(index)] = response
                edges = response.energy_edges
                written.append(
                    write_rmf(
                        directory / names[index],
                        edges[:-1],
                        edges[1:],
                        response.matrix,
                        response.channel_lo,
                        response.channel_hi,
                        first_channel=grid.first_channel,
                        header=dict(TELESCOP="XMM", INSTRUME="EPN"),
                    )
                )
        for i, names_i in enumerate(files):
            obs_id = str(meta["obs_id"][i])
            response = responses[int(batch["rmf_index"][i])]
            alpha = float(np.median(batch["alpha"][i]))
            mjd = float(meta["mjd"][i])
            header = dict(
                TELESCOP="XMM",
                INSTRUME="EPN",
                FILTER="Medium",
                OBJECT=str(meta["label"][i]),
                OBS_ID=obs_id,
                SRC_RA=float(meta["ra"][i]),
                SRC_DEC=float(meta["dec"][i]),
                RESPFILE=names[int(batch["rmf_index"][i])],
                ANCRFILE=names_i["SRCARF"],
                BACKFILE=names_i["BGSPEC"],
            )
            if np.isfinite(mjd):
                header["MJD-OBS"] = mjd
                header["DATE-OBS"] = Time(mjd, format="mjd", scale="tt").isot
            exposure = float(batch["exposure"][i])
            for kind, values, backscal, hduclas2 in (
                ("SRSPEC", batch["counts"][i], 1.0, "TOTAL"),
                ("BGSPEC", batch["background"][i], 1.0 / alpha, "BKG"),
            ):
                channels = np.zeros(grid.grouping.n_channel, dtype=np.int64)
                channels[grid.grouping.start] = np.rint(values).astype(np.int64)
                extra = dict(header, HDUCLAS2=hduclas2)
                quality = None
                if kind == "BGSPEC":
                    extra.update(BACKFILE="none", ANCRFILE="none")
                elif not batch["good"][i].all():  # the bad bins' channels, QUALITY 5
                    quality = np.zeros(grid.grouping.n_channel, dtype=np.int16)
                    for j in np.flatnonzero(~batch["good"][i]):
                        quality[grid.grouping.start[j] : grid.grouping.stop[j]] = 5
                written.append(
                    write_pha(
                        directory / names_i[kind],
                        channels,
                        exposure=exposure,
                        backscal=backscal,
                        first_channel=grid.first_channel,
                        header=extra,
                        quality=quality,
                    )
                )
            area = np.zeros(grid.n_rmf_energy)
            area[grid.rows[0] : grid.rows[1]] = batch["arf"][i]
            edges = response.energy_edges
            written.append(
                write_arf(
                    directory / names_i["SRCARF"],
                    edges[:-1],
                    edges[1:],
                    area,
                    header=dict(TELESCOP="XMM", INSTRUME="EPN"),
                )
            )
    return written


def vignetting(energy, offaxis) -> np.ndarray:
    """Fraction of the on-axis effective area at ``offaxis`` arcmin: a simple model,
    ``exp(-(theta / theta0(E))^2)`` with theta0 falling linearly in log E from 20' at 1 keV
    to 12' at 8 keV (20' below 1 keV, extrapolated above 8 keV). About 0.8 at 1 keV and 0.5
    at 8 keV at 10', 0.57 and 0.21 at 15'. Shapes: ``energy`` (E,), ``offaxis`` (...) ->
    (..., E)."""
    energy = np.asarray(energy, dtype=float)
    theta0 = 20.0 - 8.0 * np.clip(np.log(energy) / np.log(8.0), 0.0, None)
    theta = np.asarray(offaxis, dtype=float)[..., None]
    return np.exp(-((theta / theta0) ** 2))


def builtin_particle_background(channel_lo, channel_hi) -> np.ndarray:
    """Analytic EPIC pn particle (filter-wheel-closed) background shape per channel (counts,
    arbitrary scale) for channels ``channel_lo``..``channel_hi`` keV: a continuum
    ``0.12 E^-0.35`` per keV, detector noise rising below 0.3 keV, and the fluorescence lines
    Al K-alpha 1.49, Ni K-alpha 7.47, Cu K-alpha 8.04, Zn K-alpha 8.63 and Cu K-beta 8.90 keV
    (equivalent widths read off the pn FWC spectrum) at the pn resolution."""
    lo, hi = np.asarray(channel_lo, dtype=float), np.asarray(channel_hi, dtype=float)
    centre = np.maximum(0.5 * (lo + hi), 1e-3)
    width = hi - lo
    continuum = 0.12 * centre**-0.35
    noise = 235.0 * np.exp(-centre / 0.06)
    shape = (continuum + noise) * width
    sigma = np.sqrt(0.12 * 3.65e-3 * centre + 0.035**2)  # as builtin_pn_response
    for energy, ew in ((1.487, 0.45), (7.472, 0.33), (8.040, 2.9), (8.630, 0.55), (8.900, 0.24)):
        flux = ew * 0.12 * energy**-0.35
        line = ndtr((hi - energy) / sigma) - ndtr((lo - energy) / sigma)
        shape = shape + flux * line
    return shape


# ---------------------------------------------------------------------------------------------
# The instrument: grid, responses, effective area, cross-sections, background shapes


@dataclass(eq=False)
class _Instrument:
    grid: Grid
    names: list
    responses: list  # full responses (Response)
    matrices: list  # regrouped (E, C) float32
    arf: np.ndarray  # (E,) on-axis effective area on the model grid
    edges: np.ndarray  # (E + 1,) model grid
    band: np.ndarray  # (E,) share of each bin inside physics.FLUX_BAND
    sigma_gal: np.ndarray  # (E,) cm^2 per H
    sigma_log_energy: np.ndarray  # fine log grid for redshifted absorbers
    sigma_table: np.ndarray
    particle: np.ndarray  # (C,) summing to 1
    sky: np.ndarray  # (E,) sky photon spectrum (arbitrary scale)
    templates: np.ndarray | None  # (T, C) real background shapes summing to 1, or None

    @classmethod
    def build(cls, rmfs, arf, background, absorption, background_spectra=()) -> _Instrument:
        if rmfs:
            read = [read_rmf(p) for p in rmfs]
            for rmf in read:
                if rmf.includes_arf:
                    raise OGIPError(rmf.path, "includes an effective area; give a pure RMF")
            responses = [Response.from_ogip(r) for r in read]
            names = [r.path.name for r in read]
            first_channel = read[0].first_channel
        else:
            read = []
            responses = [builtin_pn_response()]
            names = [BUILTIN_RMF_NAME]
            first_channel = 0
        if len(set(names)) != len(names):
            raise ValueError(f"RMF file names must differ: {names}")
        grid = Grid.from_response("pn", responses[0], first_channel=first_channel)
        matrices = []
        for name, response in zip(names, responses):
            try:
                matrices.append(grid.regroup(response))
            except ValueError as err:
                raise ValueError(f"{name} does not fit the grid of {names[0]}: {err}") from None
        full_edges = responses[0].energy_edges
        if arf is not None:
            area = read_arf(arf)
            if read:
                check_energy_match(area, read[0])
            elif area.energy_lo.size != full_edges.size - 1 or not np.allclose(
                area.energy_lo, full_edges[:-1], rtol=1e-5
            ):
                raise OGIPError(area.path, "ARF energy grid differs from the built-in response's")
            full_area = area.specresp
        else:
            full_area = builtin_pn_area(np.sqrt(full_edges[1:] * full_edges[:-1]))
        edges = grid.energy_edges
        cross = (
            physics.CrossSection.morrison_mccammon()
            if absorption is None
            else physics.CrossSection.from_fits(absorption)
        )
        fine = np.geomspace(0.01, 100.0, 16_001)

        def shape(path) -> np.ndarray:
            """A background spectrum file on the analysis bins."""
            pha = read_pha(path)
            if pha.n_channel != grid.grouping.n_channel or pha.first_channel != first_channel:
                raise OGIPError(
                    pha.path,
                    f"{pha.n_channel} channels from {pha.first_channel}; the RMF has "
                    f"{grid.grouping.n_channel} from {first_channel}",
                )
            binned = np.maximum(grid.group(pha.counts), 0.0)
            if not np.all(np.isfinite(binned)) or binned.sum() <= 0:
                raise OGIPError(pha.path, "no background counts in the analysis band")
            return binned / binned.sum()

        templates = np.stack([shape(p) for p in background_spectra]) if background_spectra else None
        if background is not None:
            particle = shape(background)
        else:
            r = responses[0]
            particle = grid.group(builtin_particle_background(r.channel_lo, r.channel_hi))
        if not np.all(np.isfinite(particle)) or particle.sum() <= 0:
            raise ValueError("the particle background has no counts in the analysis band")
        instrument = cls(
            grid=grid,
            names=names,
            responses=responses,
            matrices=matrices,
            arf=grid.cut(np.asarray(full_area, dtype=float)),
            edges=edges,
            band=physics.band_share(edges),
            sigma_gal=cross.on(edges),
            sigma_log_energy=np.log(np.sqrt(fine[1:] * fine[:-1])),
            sigma_table=cross.on(fine),
            particle=np.maximum(particle, 0) / np.maximum(particle, 0).sum(),
            sky=np.zeros(len(edges) - 1),
            templates=templates,
        )
        instrument.sky = instrument._sky()
        return instrument

    def _sky(self) -> np.ndarray:
        """Sky background photons: local hot bubble (0.1 keV plasma), Galactic halo (0.25 keV
        plasma behind 2e20 cm^-2) and the cosmic X-ray background (power law 1.42 behind
        2e20 cm^-2), each a third of the 0.2-2 keV photons."""
        one = np.ones(1)
        parts = [
            _evaluate("plasma", self.edges, 0 * one, 0.1 * one, one)[0],
            _evaluate("plasma", self.edges, 0 * one, 0.25 * one, one)[0],
            _evaluate("powerlaw", self.edges, 0 * one, 1.42 * one)[0],
        ]
        soft = physics.band_share(self.edges, 0.2, 2.0)
        screen = np.exp(-0.02e22 * self.sigma_gal)
        parts = [p / (p @ soft) for p in parts]
        return parts[0] + screen * (parts[1] + parts[2])

    def sigma_at(self, redshift) -> np.ndarray:
        """Cross-sections (rows, E) at the rest-frame energies of the model bins."""
        log_e = np.log(np.sqrt(self.edges[1:] * self.edges[:-1]))
        x = log_e[None, :] + np.log1p(np.asarray(redshift, dtype=float))[:, None]
        return np.interp(x, self.sigma_log_energy, self.sigma_table)


# ---------------------------------------------------------------------------------------------
# Spectral components (photons/cm^2/s per bin, normalisation 1)


@partial(jax.jit, static_argnames="kind")
def _block(kind, edges, z, a, b):
    one = jax.numpy.ones_like(a)
    if kind == "powerlaw":
        return physics.redshifted(physics.powerlaw, edges, z, a, one)
    if kind == "blackbody":
        return physics.redshifted(physics.blackbody, edges, z, a, one)
    if kind == "diskbb":
        return physics.redshifted(physics.diskbb, edges, z, a, one)
    if kind == "plasma":
        return physics.redshifted(physics.plasma, edges, z, a, one, b)
    if kind == "line":
        return physics.redshifted(physics.gaussian_line, edges, z, a, b, one)
    raise ValueError(kind)


def _evaluate(kind, edges, z, a, b=None) -> np.ndarray:
    """A component for each row (z, a, b), computed BLOCK rows at a time: (rows, E)."""
    z, a = np.asarray(z, np.float32), np.asarray(a, np.float32)
    b = np.ones_like(a) if b is None else np.asarray(b, np.float32)
    rows = z.size
    out = np.empty((rows, len(edges) - 1), dtype=np.float32)
    if rows == 0:
        return out
    padded = -(-rows // BLOCK) * BLOCK
    z, a, b = (np.resize(v, padded) for v in (z, a, b))  # pads with valid values
    edges = jax.numpy.asarray(edges, dtype=jax.numpy.float32)
    for start in range(0, rows, BLOCK):
        part = slice(start, start + BLOCK)
        values = np.asarray(_block(kind, edges, z[part], a[part], b[part]))
        out[start : start + BLOCK] = values[: rows - start]
    return out


# ---------------------------------------------------------------------------------------------
# Drawing the population


def _class_weights(fractions) -> np.ndarray:
    fractions = CLASS_FRACTIONS if fractions is None else dict(fractions)
    unknown = set(fractions) - set(CLASSES)
    if unknown:
        raise ValueError(f"unknown classes {sorted(unknown)}; known: {list(CLASSES)}")
    weights = np.array([float(fractions.get(c, 0.0)) for c in CLASSES])
    if np.any(weights < 0) or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise ValueError("class fractions must be non-negative with a positive sum")
    return weights / weights.sum()


def _loguniform(rng, lo, hi, size):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _truncated_normal(rng, mean, sd, lo, hi, size):
    a, b = ndtr((lo - mean) / sd), ndtr((hi - mean) / sd)
    return mean + sd * ndtri(rng.uniform(a, b, size))


def _first_epochs(rng, m: int, min_counts: float, slope: float) -> dict:
    """Exposure, expected source and background counts and observed total counts of ``m``
    first observations that pass the ``min_counts`` cut (candidates drawn until enough do);
    source counts from N(>S) ~ S^-slope (log-uniform for 0)."""
    found: list[dict] = []
    got, acceptance = 0, 0.3
    while got < m:
        size = max(256, int(1.3 * (m - got) / acceptance))
        exposure = _exposures(rng, size)
        lo, hi = SOURCE_COUNTS["minimum"], SOURCE_COUNTS["maximum"]
        if slope > 0:
            cut = 1.0 - (lo / hi) ** slope
            source = lo * (1.0 - rng.uniform(0, cut, size)) ** (-1.0 / slope)
        else:
            source = _loguniform(rng, lo, hi, size)
        background = BACKGROUND_COUNTS["median"] * exposure / 30e3
        background = background * 10 ** rng.normal(0.0, BACKGROUND_COUNTS["dex"], size)
        total = rng.poisson(source + background)
        keep = total >= min_counts
        acceptance = max(keep.mean(), 1e-3)
        found.append(dict(exposure=exposure, S=source, B=background, N=total, keep=keep))
        got += int(keep.sum())
    out = {k: np.concatenate([f[k][f["keep"]] for f in found])[:m] for k in found[0]}
    del out["keep"]
    return out


def _exposures(rng, size):
    e = EXPOSURE
    log_lo, log_hi = np.log(e["minimum"]), np.log(e["maximum"])
    return np.exp(_truncated_normal(rng, np.log(e["median"]), e["sigma"], log_lo, log_hi, size))


def _source_parameters(rng, labels) -> dict:
    """Parameters of each source at its first epoch, plus what its later epochs need."""
    m = labels.size
    p = {name: np.full(m, np.nan) for name in _FLOATS}
    p["state"] = np.full(m, "", dtype=object)
    extra = {
        name: np.full(m, np.nan)
        for name in (
            "soft_t_in",
            "soft_gamma",
            "soft_disc",
            "hard_t_in",
            "hard_gamma",
            "hard_disc",
            "fade",
        )
    }
    p.update(extra)
    p["nh_gal"] = _loguniform(rng, 0.01, 0.1, m)
    for label in CLASSES:
        idx = np.flatnonzero(labels == label)
        k = idx.size
        values = {}
        if label == "AGN":
            segments = np.array([[20, 21], [21, 22], [22, 23], [23, 24]])
            pick = rng.choice(4, size=k, p=[0.35, 0.35, 0.2, 0.1])
            log_nh = rng.uniform(segments[pick, 0], segments[pick, 1])
            values = dict(
                nh=10 ** (log_nh - 22),
                redshift=0.05 + 2.95 * rng.beta(2.0, 3.5, k),
                gamma=_truncated_normal(rng, 1.9, 0.3, 1.2, 2.8, k),
                scatter_fraction=_loguniform(rng, 0.005, 0.05, k),
                line_energy=np.full(k, 6.4),
                line_ew=_truncated_normal(rng, 0.1, 0.03, 0.03, 0.2, k),
                line_sigma=rng.uniform(0.01, 0.05, k),
            )
        elif label == "star":
            kt = _loguniform(rng, 0.2, 0.7, k)
            two = rng.random(k) < 0.6
            kt2 = np.minimum(kt * _loguniform(rng, 1.5, 4.0, k), 1.5)
            values = dict(
                kt=kt,
                kt2=np.where(two, kt2, np.nan),
                plasma2_fraction=np.where(two, rng.uniform(0.2, 0.7, k), np.nan),
                abundance=_loguniform(rng, 0.1, 1.0, k),
            )
        elif label == "XRB":
            values = dict(
                nh=_loguniform(rng, 0.1, 10.0, k),
                soft_t_in=_loguniform(rng, 0.5, 2.0, k),
                soft_gamma=_truncated_normal(rng, 2.4, 0.2, 2.0, 3.0, k),
                soft_disc=rng.uniform(0.75, 0.95, k),
                hard_t_in=_loguniform(rng, 0.15, 0.5, k),
                hard_gamma=_truncated_normal(rng, 1.7, 0.15, 1.3, 2.1, k),
                hard_disc=rng.uniform(0.02, 0.2, k),
                state=np.where(rng.random(k) < 0.5, "soft", "hard").astype(object),
            )
        elif label == "CV":
            values = dict(
                kt=_loguniform(rng, 5.0, 40.0, k),
                abundance=_loguniform(rng, 0.3, 1.0, k),
                cover_nh=_loguniform(rng, 1.0, 20.0, k),
                cover_fraction=rng.uniform(0.3, 0.9, k),
                line_energy=np.full(k, 6.4),
                line_ew=rng.uniform(0.05, 0.15, k),
                line_sigma=np.full(k, 0.01),
            )
        elif label == "ULX":
            cool_bb = rng.random(k) < 0.6
            values = dict(
                nh=_loguniform(rng, 0.03, 1.0, k),
                t_in=_loguniform(rng, 1.4, 2.5, k),
                disc_fraction=rng.uniform(0.4, 0.7, k),
                bb_kt=np.where(cool_bb, _loguniform(rng, 0.15, 0.4, k), np.nan),
                gamma=np.where(cool_bb, np.nan, rng.uniform(2.5, 3.5, k)),
            )
        elif label == "SSS":
            values = dict(bb_kt=_loguniform(rng, 0.03, 0.1, k), nh=_loguniform(rng, 1e-3, 0.05, k))
        elif label == "cluster":
            values = dict(
                kt=_loguniform(rng, 1.0, 8.0, k),
                abundance=rng.uniform(0.2, 0.5, k),
                redshift=_loguniform(rng, 0.05, 1.0, k),
            )
        elif label == "TDE":
            thermal = rng.random(k) < 0.75
            values = dict(
                redshift=_loguniform(rng, 0.01, 0.3, k),
                bb_kt=np.where(thermal, rng.uniform(0.04, 0.15, k), np.nan),
                gamma=np.where(thermal, np.nan, rng.uniform(3.0, 5.0, k)),
                fade=_loguniform(rng, 3.0, 30.0, k),
            )
        for name, value in values.items():
            p[name][idx] = value
    return p


def _epochs(rng, labels, repeat_fraction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: source index, epoch (1, 2, ...) and MJD, increasing over a source's epochs
    (TDEs re-observed within 30-1500 days, other sources any time until 2025)."""
    m = labels.size
    count = np.where(rng.random(m) < repeat_fraction, rng.integers(2, 6, m), 1)
    source = np.repeat(np.arange(m), count)
    epoch = np.arange(source.size) - (np.cumsum(count) - count)[source] + 1
    tde = labels == "TDE"
    start = rng.uniform(MJD_RANGE[0], np.where(tde, MJD_RANGE[1] - 1500.0, MJD_RANGE[1]), m)
    u = rng.random(source.size)
    offset = np.where(tde[source], 30.0 + 1470.0 * u, u * (MJD_RANGE[1] - start)[source])
    offset[epoch == 1] = 0.0
    offset = offset[np.lexsort((offset, source))]  # increasing within each source
    return source, epoch, start[source] + offset


def _owner(source: np.ndarray) -> np.ndarray:
    """Row of each row's first epoch (rows grouped by source, in source order)."""
    return np.searchsorted(source, source)


def _since_first(values: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` over a source's epochs after its first."""
    total = np.cumsum(values)
    return total - total[_owner(source)]


#: Epoch-to-epoch flux scatter (dex) of each class (TDEs fade instead; clusters are steady).
VARIABILITY = dict(AGN=0.2, star=0.2, cluster=0.0, XRB=0.3, CV=0.1, ULX=0.15, SSS=0.1, TDE=0.0)


def _row_parameters(rng, labels, params, source, epoch, mjd) -> dict:
    """Parameters per row (epoch), with the drift of later epochs and the flux factor (the
    epoch's unabsorbed flux over the first epoch's)."""
    label = labels[source]
    n = source.size
    row = {k: v[source].copy() for k, v in params.items()}
    later = epoch > 1
    dex = np.array([VARIABILITY[c] for c in label], dtype=float)
    factor = np.where(later, 10 ** (dex * rng.normal(0.0, 1.0, n)), 1.0)
    # AGN: the column walks by 0.4 dex per epoch; the slope jitters by 0.1
    agn = label == "AGN"
    steps = np.where(later, rng.normal(0.0, 0.4, n), 0.0)
    log_nh = np.log10(np.where(agn, row["nh"], 1.0)) + 22.0 + _since_first(steps, source)
    row["nh"] = np.where(agn, 10 ** (np.clip(log_nh, 20.0, 24.5) - 22.0), row["nh"])
    jitter = rng.normal(0.0, 0.1, n)
    row["gamma"] = np.where(agn & later, np.clip(row["gamma"] + jitter, 1.2, 2.8), row["gamma"])
    # XRB: the state flips at the second epoch, then with probability 1/2 at each later one
    xrb = label == "XRB"
    flip = (epoch == 2) | (later & (rng.random(n) < 0.5))
    soft = (row["state"] == "soft") ^ (_since_first(flip.astype(int), source) % 2 == 1)
    row["state"] = np.where(xrb, np.where(soft, "soft", "hard"), row["state"]).astype(object)
    for name in ("t_in", "gamma", "disc"):
        target = "disc_fraction" if name == "disc" else name
        chosen = np.where(soft, row[f"soft_{name}"], row[f"hard_{name}"])
        row[target] = np.where(xrb, chosen, row[target])
    # TDE: fades by `fade` at the last epoch, log-linearly in time, and cools (L ~ T^4)
    tde = label == "TDE"
    owner = _owner(source)
    first = np.flatnonzero(epoch == 1)
    last_mjd = np.maximum.reduceat(mjd, first)[source] if n else mjd
    progress = np.where(later, (mjd - mjd[owner]) / np.maximum(last_mjd - mjd[owner], 1e-9), 0)
    fading = np.where(tde, row["fade"], 1.0) ** -progress
    factor = np.where(tde, fading, factor)
    row["bb_kt"] = np.where(tde, np.maximum(row["bb_kt"] * fading**0.25, 0.02), row["bb_kt"])
    row["gamma"] = np.where(tde, row["gamma"] - 0.5 * np.log10(fading), row["gamma"])
    row["flux_factor"] = factor
    for name in ("soft_t_in", "soft_gamma", "soft_disc", "hard_t_in", "hard_gamma", "hard_disc"):
        del row[name]
    del row["fade"]
    return row


# ---------------------------------------------------------------------------------------------
# Spectra, folding and counts


def _spectra(instrument: _Instrument, label: np.ndarray, p: dict) -> dict:
    """Observed photon spectra (rows, E) per unit unabsorbed 0.2-12 keV photon flux, the
    component normalisations per unit flux, and the observed photon and energy fluxes per
    unit flux."""
    edges, band = instrument.edges, instrument.band
    n, n_energy = label.size, edges.size - 1
    z = np.nan_to_num(p["redshift"], nan=0.0)
    disc = np.nan_to_num(p["disc_fraction"])
    second = np.nan_to_num(p["plasma2_fraction"])
    has_bb, has_gamma = np.isfinite(p["bb_kt"]), np.isfinite(p["gamma"])
    # each component's share of the unabsorbed band flux
    share = {
        "powerlaw": np.select(
            [label == "AGN", label == "XRB", label == "ULX", label == "TDE"],
            [1.0, 1.0 - disc, (1.0 - disc) * has_gamma, 1.0 * has_gamma],
            0.0,
        ),
        "blackbody": np.select(
            [label == "SSS", label == "ULX", label == "TDE"],
            [1.0, (1.0 - disc) * has_bb, 1.0 * has_bb],
            0.0,
        ),
        "diskbb": np.where((label == "XRB") | (label == "ULX"), disc, 0.0),
        "plasma": np.select(
            [label == "star", (label == "CV") | (label == "cluster")], [1.0 - second, 1.0], 0.0
        ),
        "plasma2": np.where(label == "star", second, 0.0),
    }
    arguments = {
        "powerlaw": ("gamma", None),
        "blackbody": ("bb_kt", None),
        "diskbb": ("t_in", None),
        "plasma": ("kt", "abundance"),
        "plasma2": ("kt2", "abundance"),
    }
    continuum = np.zeros((n, n_energy), dtype=np.float32)
    coefficient = {name: np.zeros(n) for name in (*share, "line")}
    raw_plasma = None
    for name, fraction in share.items():
        rows = np.flatnonzero(fraction > 0)
        if rows.size == 0:
            continue
        a, b = arguments[name]
        kind = "plasma" if name == "plasma2" else name
        raw = _evaluate(kind, edges, z[rows], p[a][rows], None if b is None else p[b][rows])
        c = fraction[rows] / np.maximum(raw.astype(float) @ band, 1e-300)
        coefficient[name][rows] = c
        continuum[rows] += (c[:, None] * raw).astype(np.float32)
        if name == "plasma":
            raw_plasma = (rows, raw)
    # lines: EW (rest frame) against the power law (AGN) or the plasma continuum (CV)
    lines = np.zeros_like(continuum)
    rows = np.flatnonzero(np.isfinite(p["line_ew"]))
    if rows.size:
        energy = p["line_energy"][rows]
        density = np.where(
            label[rows] == "AGN", coefficient["powerlaw"][rows] * energy ** -p["gamma"][rows], 0.0
        )
        if raw_plasma is not None:  # plasma continuum density at the line, from its bin
            plasma_rows, raw = raw_plasma
            position = np.full(n, -1)
            position[plasma_rows] = np.arange(plasma_rows.size)
            thermal = position[rows] >= 0
            bins = np.clip(np.searchsorted(edges, energy / (1 + z[rows])) - 1, 0, n_energy - 1)
            per_kev = raw[np.maximum(position[rows], 0), bins] / np.diff(edges)[bins]
            per_kev = coefficient["plasma"][rows] * per_kev
            density = np.where(thermal & (label[rows] != "AGN"), per_kev, density)
        c = p["line_ew"][rows] * density
        coefficient["line"][rows] = c
        raw = _evaluate("line", edges, z[rows], energy, p["line_sigma"][rows])
        lines[rows] = (c[:, None] * raw).astype(np.float32)
    total = (continuum.astype(float) @ band) + (lines.astype(float) @ band)
    scale = 1.0 / total
    continuum *= scale[:, None].astype(np.float32)
    lines *= scale[:, None].astype(np.float32)
    for name in coefficient:
        coefficient[name] = np.where(coefficient[name] > 0, coefficient[name] * scale, np.nan)
    # absorption: Galactic for all; intrinsic at the source's redshift (AGN: all but a
    # scattered fraction); partial covering for CVs. Lines escape the intrinsic absorber.
    transmission = np.ones((n, n_energy), dtype=np.float32)
    rows = np.flatnonzero(np.isfinite(p["nh"]))
    if rows.size:
        sigma = instrument.sigma_at(z[rows])
        covered = np.where(
            label[rows] == "AGN", 1.0 - np.nan_to_num(p["scatter_fraction"][rows]), 1.0
        )
        transmission[rows] = np.asarray(physics.partial_covering(sigma, p["nh"][rows], covered))
    rows = np.flatnonzero(np.isfinite(p["cover_nh"]))
    if rows.size:
        transmission[rows] *= np.asarray(
            physics.partial_covering(
                instrument.sigma_gal, p["cover_nh"][rows], p["cover_fraction"][rows]
            )
        )
    galactic = np.asarray(physics.absorption(instrument.sigma_gal, p["nh_gal"]), dtype=np.float32)
    observed = galactic * (transmission * continuum + lines)
    centre = np.sqrt(edges[1:] * edges[:-1])
    return dict(
        observed=observed,
        coefficient=coefficient,
        photon_flux=observed.astype(float) @ band,
        energy_flux=(observed.astype(float) * centre) @ band * _KEV_TO_ERG,
    )


def _fold(instrument: _Instrument, weighted: np.ndarray, rmf_index: np.ndarray) -> np.ndarray:
    """Counts per second per channel (rows, C) of photons x area ``weighted`` (rows, E)."""
    out = np.empty((weighted.shape[0], instrument.grid.n_channel), dtype=np.float32)
    for index, matrix in enumerate(instrument.matrices):
        rows = np.flatnonzero(rmf_index == index)
        if rows.size:
            out[rows] = weighted[rows] @ matrix
    return out


def _simulate_sources(
    instrument, rng, m, *, min_counts, repeat_fraction, weights, counts_slope
) -> dict:
    """``m`` sources whose first epochs pass the cut, with all their epochs whose observed
    counts pass it too: a dict of per-row arrays."""
    first = _first_epochs(rng, m, min_counts, counts_slope)
    labels = np.asarray(CLASSES)[rng.choice(len(CLASSES), size=m, p=weights)]
    params = _source_parameters(rng, labels)
    source, epoch, mjd = _epochs(rng, labels, repeat_fraction)
    row = _row_parameters(rng, labels, params, source, epoch, mjd)
    label = labels[source]
    n = source.size
    later = epoch > 1
    owner = _owner(source)
    exposure = first["exposure"][source]  # later epochs: similar exposures (0.25 dex)
    exposure = np.where(later, exposure * 10 ** rng.normal(0.0, 0.25, n), exposure)
    exposure = np.clip(exposure, EXPOSURE["minimum"], EXPOSURE["maximum"])
    offaxis = OFFAXIS_MAX * np.sqrt(rng.random(n))
    alpha = _loguniform(rng, *ALPHA_RANGE, n)
    particle_fraction = rng.uniform(*PARTICLE_FRACTION, n)
    rmf_index = rng.integers(0, len(instrument.matrices), n).astype(np.int32)
    background = first["B"][source] * np.where(
        later, exposure / exposure[owner] * 10 ** rng.normal(0.0, 0.15, n), 1.0
    )
    centre = np.sqrt(instrument.edges[1:] * instrument.edges[:-1])
    arf = (instrument.arf * vignetting(centre, offaxis)).astype(np.float32)
    spectra = _spectra(instrument, label, row)
    folded = _fold(instrument, spectra["observed"] * arf, rmf_index)
    per_flux = exposure * folded.astype(float).sum(axis=1)  # counts per unit flux
    flux = np.where(later, 0.0, first["S"][source] / np.maximum(per_flux, 1e-300))
    flux = flux[owner] * row["flux_factor"]
    expected = flux * per_flux
    total = np.where(later, 0, first["N"][source])
    total[later] = rng.poisson(expected[later] + background[later])
    keep = ~later | (total >= min_counts)
    # the rest only for the rows kept
    k = np.flatnonzero(keep)
    sky = _fold(instrument, instrument.sky.astype(np.float32) * arf[k], rmf_index[k])
    sky = sky.astype(float)
    sky /= np.maximum(sky.sum(axis=1, keepdims=True), 1e-300)
    shape = (
        particle_fraction[k, None] * instrument.particle + (1 - particle_fraction[k, None]) * sky
    )
    if instrument.templates is not None:  # drawn only then: other packs stay as they were
        template = rng.integers(0, len(instrument.templates), k.size)
        shape = instrument.templates[template]
    source_counts = (flux[k] * exposure[k])[:, None] * folded[k].astype(float)
    background_counts = background[k, None] * shape  # in the source region
    probability = source_counts + background_counts
    probability /= probability.sum(axis=1, keepdims=True)
    counts = rng.multinomial(total[k], probability)
    background_region = rng.poisson(background_counts / alpha[k, None])
    truth = {name: row[name][k] for name in (*_FLOATS, "state", "flux_factor")}
    truth["state"] = truth["state"].astype(str)
    truth.update(
        photon_flux=flux[k] * spectra["photon_flux"][k],
        photon_flux_unabsorbed=flux[k],
        energy_flux=flux[k] * spectra["energy_flux"][k],
        expected_counts=expected[k],
        expected_background=background[k],
        snr=expected[k] / np.sqrt(expected[k] + background[k]),
        particle_fraction=particle_fraction[k],
    )
    if instrument.templates is not None:
        truth.update(background_template=template, particle_fraction=np.full(k.size, np.nan))
    for name, values in spectra["coefficient"].items():
        truth[f"norm_{name}"] = flux[k] * values[k]
    kept = source[k]
    return dict(
        source=kept,
        epoch=np.arange(k.size) - np.searchsorted(kept, kept) + 1,  # renumbered after the cut
        mjd=mjd[k],
        label=label[k],
        offaxis=offaxis[k],
        exposure=exposure[k],
        alpha=alpha[k],
        rmf_index=rmf_index[k],
        arf=arf[k],
        counts=counts.astype(np.float32),
        background=background_region.astype(np.float32),
        truth=truth,
    )


def _simulate_chunk(
    instrument,
    rng,
    size,
    *,
    first_row,
    min_counts,
    repeat_fraction,
    weights,
    lattice,
    flagged_fraction=0.0,
    counts_slope,
) -> dict:
    """``size`` rows (spectra) for :meth:`PackWriter.append`, rows ``first_row`` onwards."""
    parts, have, sources = [], 0, 0
    while have < size:
        need = size - have
        # a few sources too many (cheaper than a second pass): truncated below
        m = math.ceil(need / (1.0 + repeat_fraction)) + 16
        part = _simulate_sources(
            instrument,
            rng,
            m,
            min_counts=min_counts,
            repeat_fraction=repeat_fraction,
            weights=weights,
            counts_slope=counts_slope,
        )
        take = min(need, part["source"].size)
        part = _take(part, take)
        part["source"] = part["source"] + sources
        sources += m
        parts.append(part)
        have += take
    rows = {k: _concatenate([p[k] for p in parts]) for k in parts[0]}
    source_id = first_row + rows["source"]
    ids, owner = np.unique(source_id, return_inverse=True)
    ra, dec = (v[owner] for v in _positions(ids, lattice, rng))
    c = instrument.grid.n_channel
    meta = dict(
        source_id=source_id.astype(np.int64),
        obs_id=np.array([f"09{first_row + i:08d}" for i in range(size)]),
        mjd=rows["mjd"],
        ra=ra,
        dec=dec,
        label=rows["label"].astype(str),
        file=np.full(size, "simulated"),
        offaxis=rows["offaxis"],
        epoch=rows["epoch"].astype(np.int32),
    )
    return dict(
        counts=rows["counts"],
        background=rows["background"],
        alpha=np.repeat(rows["alpha"][:, None], c, axis=1).astype(np.float32),
        exposure=rows["exposure"],
        arf=rows["arf"],
        rmf_index=rows["rmf_index"],
        meta=meta,
        truth=rows["truth"],
        good=_flags(instrument.grid, rng, size, flagged_fraction),
    )


def _flags(grid, rng, size: int, fraction: float) -> np.ndarray:
    """``good`` (size, C): False below :data:`FLAGGED_BELOW` keV in a ``fraction`` of rows
    (no random draw when the fraction is 0, so that such packs stay as they were)."""
    good = np.ones((size, grid.n_channel), bool)
    if fraction > 0:
        flagged = rng.random(size) < fraction
        good[flagged] = grid.channel_lo >= FLAGGED_BELOW - 1e-9
    return good


def _take(part: dict, size: int) -> dict:
    return {k: _take(v, size) if isinstance(v, dict) else v[:size] for k, v in part.items()}


def _concatenate(values: list):
    if isinstance(values[0], dict):
        return {k: _concatenate([v[k] for v in values]) for k in values[0]}
    return np.concatenate(values)


#: Positions: points of a Fibonacci lattice of 2^24 points on the sphere (about 3' apart),
#: picked by a bijective hash of the source id, moved by up to 0.5' at random; so sources are
#: spread over the sky and never within 2' of each other (for source ids below 2^24).
_LATTICE_BITS = 24


def _positions(source_id, offset: int, rng) -> tuple[np.ndarray, np.ndarray]:
    size = 1 << _LATTICE_BITS
    index = np.asarray(source_id, dtype=np.uint64) * np.uint64(0x9E3779B1) + np.uint64(offset)
    index = (index % np.uint64(size)).astype(float)
    sin_dec = 1.0 - (2.0 * index + 1.0) / size
    dec = np.degrees(np.arcsin(sin_dec))
    ra = np.degrees(np.mod(index * math.pi * (3.0 - math.sqrt(5.0)), 2 * math.pi))
    shift = rng.uniform(-0.5, 0.5, (2, index.size)) / 60.0
    dec = np.clip(dec + shift[1], -90.0, 90.0)
    ra = np.mod(ra + shift[0] / np.maximum(np.cos(np.radians(dec)), 1e-3), 360.0)
    return ra, dec


def _full_response(name: str, known: list) -> Response:
    """The full (not regrouped) response a pack names: built-in, or a file among ``known``."""
    if name == BUILTIN_RMF_NAME:
        return builtin_pn_response()
    for path in known:
        if path.name == name and path.is_file():
            return Response.from_ogip(read_rmf(path))
    raise ValueError(f"RMF {name} of the pack not found: pass its file in rmfs")
