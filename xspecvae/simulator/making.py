"""Making a simulated pack: chunks of sources drawn, folded and written, resumable."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from xspecvae.catalog import QUALITY_BREAKS, Grid, PackWriter, made_already
from xspecvae.simulator.population import (
    _FLOATS,
    ALPHA_RANGE,
    BACKGROUND_COUNTS,
    CLASSES,
    EXPOSURE,
    OFFAXIS_MAX,
    PARTICLE_FRACTION,
    SOURCE_COUNTS,
    _class_weights,
    _epochs,
    _first_epochs,
    _loguniform,
    _owner,
    _row_parameters,
    _source_parameters,
)
from xspecvae.simulator.spectra import _fold, _spectra
from xspecvae.simulator.telescope import Telescope, vignetting

#: Spectra in the built-in demo catalogue (:func:`demo_pack`).
DEMO_SIZE = 20_000
#: Where `xspecvae simulate` and `xspecvae train` without a pack write the demo catalogue.
DEMO_PACK = "xspecvae-demo.h5"
#: keV below which pn pipeline products flag channels bad (see ``flagged_fraction``), where
#: the analysis grid starts a bin.
(FLAGGED_BELOW,) = QUALITY_BREAKS["pn"]


def simulate_pack(
    path: str | Path,
    n: int = 20_000,
    *,
    seed: int = 0,
    rmfs: str | Path | Iterable[str | Path] = (),
    arf: str | Path | None = None,
    background: str | Path | None = None,
    background_spectra: Sequence[str | Path] = (),
    absorption: str | Path | None = None,
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
    _check_options(n, chunk, repeat_fraction, flagged_fraction, counts_slope)
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
    provenance = dict(command="simulate", options=options, model=_model())
    draw = dict(min_counts=min_counts, repeat_fraction=repeat_fraction, weights=weights)
    draw |= dict(flagged_fraction=flagged_fraction, counts_slope=counts_slope)
    instrument = Telescope.build(rmfs, arf, background, absorption, background_spectra)
    if made_already(path, provenance, overwrite):
        return Path(path)
    with PackWriter(path, provenance=provenance, resume=resume) as writer:
        _add_instrument(writer, instrument)
        _write_chunks(writer, instrument, n, seed, chunk, progress, draw)
    return Path(path)


def _check_options(
    n: int, chunk: int, repeat_fraction: float, flagged_fraction: float, counts_slope: float
) -> None:
    """A ValueError for an option out of its range."""
    if n < 1 or chunk < 1:
        raise ValueError("n and chunk must be positive")
    if not 0 <= repeat_fraction <= 1:
        raise ValueError("repeat_fraction must be between 0 and 1")
    if not 0 <= flagged_fraction <= 1:
        raise ValueError("flagged_fraction must be between 0 and 1")
    if counts_slope < 0:
        raise ValueError("counts_slope must be >= 0")


def _model() -> dict:
    """The simulation's fixed settings, recorded in the pack's provenance."""
    return dict(
        source_counts=SOURCE_COUNTS,
        background_counts=BACKGROUND_COUNTS,
        exposure=EXPOSURE,
        alpha=ALPHA_RANGE,
        offaxis_max=OFFAXIS_MAX,
    )


def _add_instrument(writer: PackWriter, instrument: Telescope) -> None:
    """The grid and the RMFs, refused if a resumed pack holds others."""
    writer.add_grid(instrument.grid)
    indices = [
        writer.add_rmf("pn", name, matrix)
        for name, matrix in zip(instrument.names, instrument.matrices)
    ]
    if indices != list(range(len(indices))):
        raise ValueError("the pack holds other RMFs; start it afresh (resume=False)")


def _write_chunks(
    writer: PackWriter,
    instrument: Telescope,
    n: int,
    seed: int,
    chunk: int,
    progress: bool,
    draw: dict,
) -> None:
    """The chunks not yet in the pack, each from its own seed (``draw``: the options of
    :func:`_simulate_chunk`)."""
    done = len(writer.committed("pn", "source_id"))
    sequence = np.random.SeedSequence(seed)
    lattice = int(sequence.generate_state(1)[0])
    seeds = sequence.spawn(-(-n // chunk))
    with tqdm(total=n, initial=done, unit="spectra", disable=not progress, desc="simulate") as bar:
        for k in range(done // chunk, len(seeds)):
            size = min(chunk, n - k * chunk)
            rng = np.random.default_rng(seeds[k])
            rows = _simulate_chunk(
                instrument, rng, size, first_row=k * chunk, lattice=lattice, **draw
            )
            writer.append("pn", **rows)
            bar.update(size)


def demo_pack(path: str | Path = DEMO_PACK, *, progress: bool = True) -> Path:
    """The built-in demo catalogue: :data:`DEMO_SIZE` spectra on the built-in pn response,
    seed 0, default options."""
    return simulate_pack(path, DEMO_SIZE, seed=0, progress=progress)


def _simulate_sources(
    instrument: Telescope,
    rng: np.random.Generator,
    m: int,
    *,
    min_counts: float,
    repeat_fraction: float,
    weights: np.ndarray,
    counts_slope: float,
) -> dict:
    """``m`` sources whose first epochs pass the cut, with all their epochs whose observed
    counts pass it too: a dict of per-row arrays."""
    first = _first_epochs(rng, m, min_counts, counts_slope)
    labels = np.asarray(CLASSES)[rng.choice(len(CLASSES), size=m, p=weights)]
    params = _source_parameters(rng, labels)
    source, epoch, mjd = _epochs(rng, labels, repeat_fraction)
    row = _row_parameters(rng, labels, params, source, epoch, mjd)
    label = labels[source]
    later = epoch > 1
    owner = _owner(source)
    seen = _observing(instrument, rng, first, source, later, owner)
    centre = np.sqrt(instrument.edges[1:] * instrument.edges[:-1])
    arf = (instrument.arf * vignetting(centre, seen["offaxis"])).astype(np.float32)
    spectra = _spectra(instrument, label, row)
    folded = _fold(instrument, spectra["observed"] * arf, seen["rmf_index"])
    per_flux = seen["exposure"] * folded.astype(float).sum(axis=1)  # counts per unit flux
    flux = np.where(later, 0.0, first["S"][source] / np.maximum(per_flux, 1e-300))
    flux = flux[owner] * row["flux_factor"]
    expected = flux * per_flux
    total = np.where(later, 0, first["N"][source])
    total[later] = rng.poisson(expected[later] + seen["background"][later])
    # the rest only for the rows kept
    k = np.flatnonzero(~later | (total >= min_counts))
    seen = {name: values[k] for name, values in seen.items()}
    source_counts = (flux[k] * seen["exposure"])[:, None] * folded[k].astype(float)
    counts, background, template = _region_counts(
        instrument, rng, total[k], source_counts, arf[k], seen
    )
    kept = source[k]
    return dict(
        source=kept,
        epoch=np.arange(k.size) - np.searchsorted(kept, kept) + 1,  # renumbered after the cut
        mjd=mjd[k],
        label=label[k],
        offaxis=seen["offaxis"],
        exposure=seen["exposure"],
        alpha=seen["alpha"],
        rmf_index=seen["rmf_index"],
        arf=arf[k],
        counts=counts.astype(np.float32),
        background=background.astype(np.float32),
        truth=_truth(row, k, flux[k], spectra, expected[k], seen, template),
    )


def _observing(
    instrument: Telescope,
    rng: np.random.Generator,
    first: dict[str, np.ndarray],
    source: np.ndarray,
    later: np.ndarray,
    owner: np.ndarray,
) -> dict:
    """How each row is observed: exposure, off-axis angle, background scaling ``alpha``,
    particle share of the background, RMF and expected background counts (a later epoch's
    exposure and background close to its first epoch's)."""
    n = source.size
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
    return dict(
        exposure=exposure,
        offaxis=offaxis,
        alpha=alpha,
        particle_fraction=particle_fraction,
        rmf_index=rmf_index,
        background=background,
    )


def _region_counts(
    instrument: Telescope,
    rng: np.random.Generator,
    total: np.ndarray,
    source_counts: np.ndarray,
    arf: np.ndarray,
    seen: dict[str, np.ndarray],
):
    """The counts of the source region (``total`` of them, source and background) and of the
    background region, and each row's background template (None without templates)."""
    rmf_index, particle_fraction = seen["rmf_index"], seen["particle_fraction"]
    sky = _fold(instrument, instrument.sky.astype(np.float32) * arf, rmf_index)
    sky = sky.astype(float)
    sky /= np.maximum(sky.sum(axis=1, keepdims=True), 1e-300)
    shape = (
        particle_fraction[:, None] * instrument.particle + (1 - particle_fraction[:, None]) * sky
    )
    template = None
    if instrument.templates is not None:  # drawn only then: other packs stay as they were
        template = rng.integers(0, len(instrument.templates), total.size)
        shape = instrument.templates[template]
    background_counts = seen["background"][:, None] * shape  # in the source region
    probability = source_counts + background_counts
    probability /= probability.sum(axis=1, keepdims=True)
    counts = rng.multinomial(total, probability)
    return counts, rng.poisson(background_counts / seen["alpha"][:, None]), template


def _truth(
    row: dict[str, np.ndarray],
    k: np.ndarray,
    flux: np.ndarray,
    spectra: dict,
    expected: np.ndarray,
    seen: dict[str, np.ndarray],
    template: np.ndarray | None,
) -> dict:
    """The truth of the kept rows ``k``: their parameters, fluxes, expected counts and SNR."""
    truth = {name: row[name][k] for name in (*_FLOATS, "state", "flux_factor")}
    truth["state"] = truth["state"].astype(str)
    background = seen["background"]
    truth.update(
        photon_flux=flux * spectra["photon_flux"][k],
        photon_flux_unabsorbed=flux,
        energy_flux=flux * spectra["energy_flux"][k],
        expected_counts=expected,
        expected_background=background,
        snr=expected / np.sqrt(expected + background),
        particle_fraction=seen["particle_fraction"],
    )
    if template is not None:
        truth.update(background_template=template, particle_fraction=np.full(k.size, np.nan))
    for name, values in spectra["coefficient"].items():
        truth[f"norm_{name}"] = flux * values[k]
    return truth


def _simulate_chunk(
    instrument: Telescope,
    rng: np.random.Generator,
    size: int,
    *,
    first_row: int,
    min_counts: float,
    repeat_fraction: float,
    weights: np.ndarray,
    lattice: int,
    flagged_fraction: float = 0.0,
    counts_slope: float,
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


def _flags(grid: Grid, rng: np.random.Generator, size: int, fraction: float) -> np.ndarray:
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


def _positions(
    source_id: np.ndarray, offset: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
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
