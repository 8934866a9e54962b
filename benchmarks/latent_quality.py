"""Is the latent space a better way into a catalogue than hardness ratios? Measured on a
catalogue the model was not built around.

    python benchmarks/latent_quality.py FOLDER [--protocol A B] [--tag NAME]
        [--set FIELD=VALUE ...] [--option FIELD=VALUE ...] [--refine-steps N]
    python benchmarks/latent_quality.py FOLDER --summary

The catalogue comes from ``benchmarks/independent.py``, a generator written apart from
``xspecvae.simulator`` (numpy and astropy only, its own spectral models, parameter ranges and
counts distribution), as PPS-like pn files through the real sdY6 RMF, the real SRCARFs of
0760940101 and backgrounds shaped like its BGSPECs, read back with ``xspecvae pack``. Two
protocols:

- **A**, the talk's workflow: train on that catalogue, encode it.
- **B**, the README's real-data recipe: train on ``xspecvae simulate`` through the same
  responses (sdY6, SRCARF 0001 vignetted, the BGSPEC shapes, tbabs, 80 % flagged below
  0.3 keV), encode the independent catalogue.

For each, on the same rows: purity@10 and the kNN vote of the 10 nearest neighbours (a
source's own other observations left out) under every divergence, the Euclidean distance of the
posterior means, the 4XMM hardness ratios and the raw-shape baseline (square roots of each
spectrum's share of net counts), over all spectra and over those above 500 net counts; the
encoder's median W/dof per counts range; the correlation of each latent dimension with log
counts; what the fit leaves at the Fe K lines of bright line sources; and the thinning test
(bright spectra thinned to 300 net counts: are their neighbours still of their class, and how
near is their own original); the trajectories (does the step between epochs tell a change of
spectral state from one of flux alone); the median counts of the neighbours of faint spectra
(are they placed near bright sources of their shape, or near other faint ones); and, with the
labels, an
information ceiling: out-of-fold accuracy of a logistic regression and a small MLP on each
description (``probes``). Every step is kept in FOLDER and skipped when done, so the
command resumes; ``--tag`` keeps the runs of one model variant (``--set`` changes a
:class:`~xspecvae.vae.Config` field, ``--option`` a :class:`~xspecvae.train.TrainOptions` one)
apart from the others. ``--summary`` prints the key figures of every tag side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from astropy.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import independent  # noqa: E402  (the generator beside this file)

import xspecvae  # noqa: E402
from xspecvae.catalog import PER_SOURCE, Pack, grids_of, hardness_ratios  # noqa: E402
from xspecvae.evaluation import (  # noqa: E402
    counts_correlation,
    fit_by_counts,
    line_residual,
    nearest,
    net_counts,
    purity,
    shape_features,
)
from xspecvae.latent import (  # noqa: E402
    DIVERGENCES,
    Index,
    encode,
    trajectories,
)
from xspecvae.likelihood import LIKELIHOODS  # noqa: E402
from xspecvae.products import ingest  # noqa: E402
from xspecvae.run import Run, load_run  # noqa: E402
from xspecvae.simulator import simulate_pack  # noqa: E402
from xspecvae.train import TrainOptions, train  # noqa: E402
from xspecvae.vae import Config, thin  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xmm"
RMF = "responses/epn_e3_ef20_sdY6_v19.0.rmf"
ABSORPTION = "absorption/xsect_tbabs_wilm.fits"
PPS = "pps_0760940101"
#: Protocol A trains on about 1,500 spectra: as many steps as the demo's 40 epochs of 18,000.
OPTIONS_A = dict(epochs=250, batch_size=128, kl_warmup_epochs=30)
#: Protocol B trains as the README recipe does (80 epochs since 2026-12-07; 40 before).
OPTIONS_B = dict(epochs=80)
SIMULATED = 20_000
COUNTS_SLOPE = 1.0  # of protocol B's simulation: the README recipe's --counts-slope
K = 10
BRIGHT = 500.0  # net counts of the "bright" subset
THIN_FROM, THIN_TO = 3_000.0, 300.0  # thinning test: spectra above, thinned to (net counts)
#: Rest energies (keV) of the Fe K line of each line class, and whether it is redshifted.
FE_K = {"agn": (6.40, True), "cv": (6.70, False), "cluster": (6.70, True)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--protocol", nargs="+", choices=("A", "B"), default=["A", "B"])
    parser.add_argument("--tag", default="default", help="subfolder of this model variant")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--option", action="append", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--refine-steps", type=int, default=None, help="default: the model's")
    parser.add_argument(
        "--counts-slope", type=float, default=COUNTS_SLOPE, help="protocol B's simulate option"
    )
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--summary", action="store_true", help="print every tag's figures")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary(args.folder))
        return 0
    config = Config(**_fields(Config, args.set))
    changes = _fields(TrainOptions, args.option)
    ogip, truth = catalogue(args.folder, args.data)
    for protocol in args.protocol:
        started = time.perf_counter()
        if protocol == "A":
            options = TrainOptions(**{**OPTIONS_A, **changes})
            pack = pack_catalogue(args.folder / "independent.h5", ogip, args.data)
            run = args.folder / args.tag / "A"
            _train(pack, run, config, options, args.data)
        else:
            code = _simulator_digest()
            sim = args.folder / f"simulated-slope{args.counts_slope:g}-{code}.h5"
            simulation(sim, args.data, args.counts_slope)
            grid = args.folder / f"independent-sim-grid-{code}.h5"
            pack = pack_catalogue(grid, ogip, args.data, sim)
            run = args.folder / args.tag / "B"
            _train(sim, run, config, TrainOptions(**{**OPTIONS_B, **changes}), args.data)
        figures = evaluate(run, pack, truth, args.refine_steps)
        figures["seconds"] = time.perf_counter() - started
        figures["config"] = dataclasses.asdict(config)
        out = run / f"figures-refine{figures['refine_steps']}.json"
        out.write_text(json.dumps(figures, indent=1))
        print(f"protocol {protocol} ({out}):")
        print(markdown(figures))
    return 0


def _fields(cls, pairs: list[str]) -> dict:
    """``FIELD=VALUE`` pairs for a dataclass, each VALUE parsed as JSON (else a string, for a
    string field only: ``lines=False`` is refused, ``lines=false`` meant)."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in defaults:
            raise SystemExit(f"{cls.__name__} has no field {name!r}; it has {sorted(defaults)}")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            if not isinstance(defaults[name], str):
                raise SystemExit(f"{pair}: not a JSON value (true/false, a number)") from None
            out[name] = value
    return out


# ---------------------------------------------------------------------------------------------
# The steps (each skipped when its output exists)


def catalogue(folder: Path, data: Path) -> tuple[Path, Table]:
    """The independent catalogue's OGIP files and its truth table."""
    ogip = independent.generate(folder / "catalogue", data=data)
    return ogip, Table.read(folder / "catalogue" / "truth.fits", hdu=1)


def pack_catalogue(path: Path, ogip: Path, data: Path, like: Path | None = None) -> Path:
    """The catalogue read back by ``xspecvae pack`` (on the grids of ``like`` if given)."""
    if not path.exists():
        grids = grids_of(like) if like is not None else ()
        result = ingest([ogip], path, rmf_dirs=[data / "responses"], grids=grids, progress=False)
        if result.rejected:
            raise RuntimeError(f"{len(result.rejected)} spectra rejected: {result.rejected[:3]}")
    return path


def simulation(path: Path, data: Path, counts_slope: float) -> Path:
    """The README recipe's simulation through the real responses."""
    if not path.exists():
        simulate_pack(
            path,
            SIMULATED,
            rmfs=[data / RMF],
            arf=data / PPS / "P0760940101PNS003SRCARF0001.FTZ",
            background_spectra=sorted((data / PPS).glob("P0760940101PNS003BGSPEC*.FTZ")),
            absorption=data / ABSORPTION,
            flagged_fraction=0.8,
            counts_slope=counts_slope,
        )
    return path


def _simulator_digest() -> str:
    """A digest of the package's code, in the simulation's file name: a cached simulation made
    by other code (the simulator, its physics, folding, absorption, the pack writer) is not
    reused."""
    files = sorted(Path(xspecvae.__file__).parent.rglob("*.py"))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:10]


def _train(pack: Path, run: Path, config: Config, options: TrainOptions, data: Path) -> None:
    if Run(run).epochs_done() >= options.epochs:
        return
    resume = Run(run).started
    train(pack, run, config=config, options=options, absorption=data / ABSORPTION, resume=resume)


# ---------------------------------------------------------------------------------------------
# The figures


def evaluate(run: Path, pack_path: Path, truth: Table, refine_steps: int | None) -> dict:
    """Every figure of one trained run on the packed independent catalogue."""
    vae, _ = load_run(run)
    if refine_steps is not None:
        vae = vae.with_refinement(refine_steps)
    with Pack(pack_path) as pack:
        data = pack.read()
        started = time.perf_counter()
        table = encode(vae, pack)
        encode_rate = len(pack) / (time.perf_counter() - started)
        names = np.array([Path(f).name for f in pack.meta["file"]])
        grid = pack.grid
        rmf = vae.with_rmfs(pack.rmf)
    order = {name: i for i, name in enumerate(np.asarray(truth["file"]).astype(str))}
    t = truth[[order[n] for n in names]]
    labels = np.asarray(t["label"]).astype(str)
    groups = np.asarray(t["source"])
    net = net_counts(data)
    features = _features(
        table["z_loc"], table["z_scale"], table["hr"], shape_features(data), table["z_conditional"]
    )
    bright = net >= BRIGHT
    figures = {
        "run": str(run),
        "refine_steps": vae.config.refine_steps,
        "n": len(labels),
        "n_bright": int(bright.sum()),
        "classes": {c: int(n) for c, n in zip(*np.unique(labels, return_counts=True))},
        "encode_spectra_per_s": encode_rate,
        "all": _strip(purity(features, labels, k=K, groups=groups)),
        "bright": _strip(purity(features, labels, k=K, groups=groups, keep=bright)),
        "fit_by_counts": fit_by_counts(table["statistic"], table["dof"], net),
        "counts_correlation": counts_correlation(table["z_loc"], net).tolist(),
        "lines": _lines(rmf, data, table, t, net, grid),
        "thinning": _thinning(rmf, data, table, labels, groups, net, grid),
        "faint_neighbours": faint_neighbours(features, groups, net),
        "trajectories": state_changes(table, t),
        "probes": probes(_probe_features(table, shape_features(data)), labels, groups, net),
    }
    figures["max_counts_correlation"] = float(np.max(np.abs(figures["counts_correlation"])))
    np.savez_compressed(  # for further study of the same rows
        run / f"table-refine{vae.config.refine_steps}.npz",
        label=labels,
        source=groups,
        net=net,
        **{k: table[k] for k in ("z_loc", "z_scale", "z_conditional", "hr", "statistic", "dof")},
        snr=table["snr"],
    )
    return figures


def state_changes(table: dict, truth: Table) -> dict[str, dict[str, float]]:
    """Trajectories of the sources seen more than once: how well the step between epochs
    (under each divergence) tells a change of spectral state from a change of flux alone (the
    generator's ``variability``): the AUC, the chance that a state change's step is the larger,
    and the median steps of both."""
    out = {}
    kind = np.asarray(truth["variability"]).astype(str)
    epochs = {"source_id": np.asarray(truth["source"]), "mjd": np.asarray(truth["mjd_obs"])}
    for how in ("kl_symmetric", "bhattacharyya", "wasserstein", "predictive"):
        steps = trajectories({**table, **epochs}, divergence=how)
        later = np.flatnonzero(np.isfinite(steps["step"]))
        rows, step = steps["row"][later], steps["step"][later]
        state, flux = step[kind[rows] == "state"], step[kind[rows] == "flux"]
        out[how] = {
            "auc": float(np.mean(state[:, None] > flux[None, :])),
            "state_median": float(np.median(state)),
            "flux_median": float(np.median(flux)),
            "n": [len(state), len(flux)],
        }
    return out


def faint_neighbours(features: dict, groups, net, k: int = K) -> dict[str, float]:
    """Median net counts of the ``k`` nearest neighbours of the spectra under 300 counts, per
    description: whether a faint source is placed near bright sources of its shape (the raw
    shape does, its Poisson noise being about isotropic) or near other faint ones (a posterior
    shrunk towards the prior is)."""
    faint = np.flatnonzero(net < 300)
    out = {}
    for name, feature in features.items():
        rows = nearest(feature, faint, k, groups=groups)
        out[name] = float(np.median(net[rows[rows >= 0]]))
    return out


def _probe_features(table, shape) -> dict:
    return {
        "latent means": table["z_loc"],
        "latent means and log widths": np.hstack([table["z_loc"], np.log(table["z_scale"])]),
        "hardness ratios": table["hr"],
        "raw shape": shape,
    }


def probes(features: dict, labels, groups, net, folds: int = 5) -> dict:
    """An information ceiling, with the labels: out-of-fold accuracy (folds by source, so a
    source's epochs are never on both sides) of a logistic regression and of a small MLP
    (scikit-learn, standardised inputs) on each description, over all spectra and above
    :data:`BRIGHT` counts. A kNN purity cannot be above what these reach by much."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classifiers = {
        "logistic": lambda: LogisticRegression(max_iter=3000),
        "mlp": lambda: MLPClassifier(
            (128, 64), alpha=1e-2, max_iter=600, early_stopping=True, random_state=0
        ),
    }
    labels, bright, out = np.asarray(labels).astype(str), net >= BRIGHT, {}
    for name, x in features.items():
        for kind, make in classifiers.items():
            guess = np.empty(len(labels), labels.dtype)
            for fit_rows, test in GroupKFold(folds).split(x, labels, groups):
                model = make_pipeline(StandardScaler(), make()).fit(x[fit_rows], labels[fit_rows])
                guess[test] = model.predict(x[test])
            right = guess == labels
            out[f"{name}, {kind}"] = {
                "accuracy": float(right.mean()),
                "balanced": float(np.mean([right[labels == c].mean() for c in set(labels)])),
                "bright": float(right[bright].mean()),
            }
    return out


def _features(loc, scale, hr, shape, conditional) -> dict:
    features = {
        d: (d, loc, scale, conditional) for d in DIVERGENCES if d not in ("hellinger", "euclidean")
    }
    features["euclidean (means)"] = ("euclidean", loc, None)  # Hellinger orders as Bhattacharyya
    features["hardness ratios"] = ("euclidean", hr, None)
    features["raw shape"] = ("euclidean", shape, None)
    return features


def _strip(figures: dict) -> dict:
    return {
        name: {k: v for k, v in f.items() if k != "per_class"} | {"per_class": f["per_class"]}
        for name, f in figures.items()
    }


def _model_counts(vae, batch: dict) -> np.ndarray:
    """Expected counts in the source region (B, C) at the posterior mean (background profiled
    as the likelihood does)."""
    q = vae.posterior(batch)
    _, source = vae.decode(q.z_loc, q.norm_loc, batch)
    fit = LIKELIHOODS[vae.config.likelihood](
        source, batch["alpha"], batch["counts"], batch["background"], batch["good"]
    )
    return np.asarray(fit.rates[..., 0])


def _lines(vae, data, table, truth, net, grid) -> dict:
    """What the encoder's fit leaves at the Fe K line of the bright line sources: the residual
    in sigma over the bins within 0.15 keV of the observed line energy."""
    labels = np.asarray(truth["label"]).astype(str)
    redshift = np.nan_to_num(np.asarray(truth["redshift"], np.float64))
    out = {}
    for label, (energy, shifted) in FE_K.items():
        rows = np.flatnonzero((labels == label) & (net >= THIN_FROM))
        if not len(rows):
            continue
        batch = {k: jnp.asarray(data[k][rows]) for k in PER_SOURCE}
        model = _model_counts(vae, batch)
        observed = energy / (1 + redshift[rows]) if shifted else np.full(len(rows), energy)
        sigma = line_residual(
            data["counts"][rows],
            model,
            data["good"][rows],
            grid.channel_lo,
            grid.channel_hi,
            observed,
            0.15,
        )
        out[f"{label} {energy:g} keV"] = {
            "n": len(rows),
            "median_sigma": float(np.nanmedian(sigma)),
            "max_sigma": float(np.nanmax(sigma)),
            "above_3_sigma": float(np.nanmean(sigma > 3)),
        }
    return out


def _thinning(vae, data, table, labels, groups, net, grid, seed: int = 0) -> dict:
    """Bright spectra thinned to about ``THIN_TO`` net counts (binomial thinning: a shorter
    exposure of the same source) and encoded: the purity of their neighbours among the
    catalogue (their own source left out), beside the same for hardness ratios and the raw
    shape of the thinned counts, and the rank of their own original among all rows."""
    rows = np.flatnonzero(net >= THIN_FROM)
    if not len(rows):
        return {"n": 0}
    batch = {k: data[k][rows] for k in PER_SOURCE}
    thinned = thin(jax.random.key(seed), batch, THIN_TO / net[rows])
    q = vae.posterior(thinned)
    thinned = {k: np.asarray(v) for k, v in thinned.items()}
    loc, scale = np.asarray(q.z_loc), np.asarray(q.z_scale)
    conditional = np.asarray(q.conditional[:, :-1])
    hr = hardness_ratios(thinned, grid.channel_lo, grid.channel_hi)
    divergences = ("kl_symmetric", "bhattacharyya", "wasserstein", "match", "predictive")
    queries = {
        **{d: (loc, scale, conditional) for d in divergences},
        "euclidean (means)": (loc, None, None),
        "hardness ratios": (hr, None, None),
        "raw shape": (shape_features(thinned), None, None),
    }
    reference = _features(
        table["z_loc"], table["z_scale"], table["hr"], shape_features(data), table["z_conditional"]
    )
    out = {"n": len(rows), "net_counts_thinned": float(np.median(net_counts(thinned)))}
    for name, (q_loc, q_scale, q_conditional) in queries.items():
        how, ref_loc, ref_scale, *ref_conditional = reference[name]
        ref_scale = np.ones_like(ref_loc) if ref_scale is None else ref_scale
        ref_conditional = ref_conditional[0] if ref_conditional else None
        q_scale = np.ones_like(q_loc) if q_scale is None else q_scale
        index = Index(ref_loc, ref_scale, groups, ref_conditional)
        near, _ = index.search(
            q_loc,
            q_scale,
            K,
            divergence=how,
            exclude_groups=groups[rows],
            conditional=q_conditional,
        )
        purity_ = np.mean(labels[near] == labels[rows, None], 1)
        # the original's rank among all rows (own source kept): 1 is nearest
        every, _ = Index(ref_loc, ref_scale, conditional=ref_conditional).search(
            q_loc, q_scale, len(ref_loc), divergence=how, conditional=q_conditional
        )
        rank = 1 + np.argmax(every == rows[:, None], 1)
        out[name] = {
            "purity": float(np.mean(purity_)),
            "original_rank_median": float(np.median(rank)),
            "original_in_top_10": float(np.mean(rank <= K)),
        }
    return out


def markdown(f: dict) -> str:
    """The figures of one protocol as a markdown table."""
    lines = [
        f"{f['n']} spectra ({f['n_bright']} above {BRIGHT:g} net counts), refine steps "
        f"{f['refine_steps']}, encode {f['encode_spectra_per_s']:,.0f} spectra/s",
        "",
        "| nearness | purity@10 | balanced | kNN acc. | kNN bal. | purity > 500 | balanced > 500 |"
        " thinned: purity | thinned: own original in top 10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, a in f["all"].items():
        b, t = f["bright"][name], f["thinning"].get(name, {})
        thinned = f"{t['purity']:.3f} | {t['original_in_top_10']:.2f}" if t else " | "
        lines.append(
            f"| {name} | {a['mean']:.3f} | {a['balanced']:.3f} | {a['knn']:.3f} | "
            f"{a['knn_balanced']:.3f} | {b['mean']:.3f} | {b['balanced']:.3f} | {thinned} |"
        )
    if "probes" in f:
        lines += ["", f"| probe (out of fold) | accuracy | balanced | > {BRIGHT:g} counts |"]
        lines.append("| --- | ---: | ---: | ---: |")
        for name, p in f["probes"].items():
            lines.append(
                f"| {name} | {p['accuracy']:.3f} | {p['balanced']:.3f} | {p['bright']:.3f} |"
            )
    if "faint_neighbours" in f:
        near = ", ".join(f"{n} {c:,.0f}" for n, c in f["faint_neighbours"].items())
        lines += ["", f"median counts of the neighbours of spectra under 300 counts: {near}"]
    if "trajectories" in f:
        auc = ", ".join(f"{n} {t['auc']:.3f}" for n, t in f["trajectories"].items())
        lines += ["", f"trajectories, state changes against flux-only changes (AUC): {auc}"]
    fits = " / ".join(
        f"{r['lo']:g}-{r['hi']:g}: {r['median']:.2f} ({r['n']})" for r in f["fit_by_counts"]
    )
    lines += ["", f"encoder median W/dof by net counts: {fits}"]
    lines.append(f"max |corr(latent dim, log counts)|: {f['max_counts_correlation']:.2f}")
    for name, line in f["lines"].items():
        lines.append(
            f"{name}: {line['n']} sources > {THIN_FROM:g} counts, residual median "
            f"{line['median_sigma']:.1f} sigma, max {line['max_sigma']:.1f}, "
            f"{100 * line['above_3_sigma']:.0f} % above 3 sigma"
        )
    return "\n".join(lines)


def summary(folder: Path) -> str:
    """Key figures of every tag and protocol found in ``folder``, one line each: purity@10
    under ``predictive`` (the default divergence since 2026-12-07; blank in runs evaluated
    before), the symmetric KL (the default before), the reverse KL, ``match``, the Euclidean
    distance of the means, hardness ratios and the raw shape; balanced, and above 500 counts,
    under both defaults; W/dof per counts range; the brightness correlation; the thinning test
    (own original among the 10 nearest under ``predictive``); the residual at the CVs' Fe XXV line;
    the trajectories' AUC (state against flux-only changes, symmetric KL) where measured."""
    lines = [
        "| tag | protocol | refine | purity (predictive) | sym. KL | KL rev. | match | Eucl. | "
        "HR | raw | balanced (predictive / sym. KL) | HR bal. | > 500 (predictive / sym. KL) | "
        "HR > 500 | W/dof by counts | max corr | thinned: own in top 10 | CV Fe XXV resid. "
        "(sigma) | trajectories AUC |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    blank = {"mean": math.nan, "balanced": math.nan}
    for path in sorted(folder.glob("*/*/figures-refine*.json")):
        f = json.loads(path.read_text())
        a, b = f["all"], f["bright"]
        pa, pb = a.get("predictive", blank), b.get("predictive", blank)
        fits = "/".join(f"{r['median']:.2f}" for r in f["fit_by_counts"])
        thinned = f["thinning"].get("predictive", {}).get("original_in_top_10", math.nan)
        cv = f["lines"].get("cv 6.7 keV", {}).get("median_sigma", math.nan)
        auc = f.get("trajectories", {}).get("kl_symmetric", {}).get("auc", math.nan)
        lines.append(
            f"| {path.parts[-3]} | {path.parts[-2]} | {f['refine_steps']} | "
            f"{pa['mean']:.3f} | {a['kl_symmetric']['mean']:.3f} | "
            f"{a['kl_reverse']['mean']:.3f} | {a['match']['mean']:.3f} | "
            f"{a['euclidean (means)']['mean']:.3f} | {a['hardness ratios']['mean']:.3f} | "
            f"{a['raw shape']['mean']:.3f} | "
            f"{pa['balanced']:.3f} / {a['kl_symmetric']['balanced']:.3f} | "
            f"{a['hardness ratios']['balanced']:.3f} | "
            f"{pb['mean']:.3f} / {b['kl_symmetric']['mean']:.3f} | "
            f"{b['hardness ratios']['mean']:.3f} | {fits} | "
            f"{f['max_counts_correlation']:.2f} | {thinned:.2f} | {cv:.1f} | {auc:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
