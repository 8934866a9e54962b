"""What the latent space is good for, on simulated (labelled) catalogues: the exploration figures
of benchmarks/RESULTS.md.

    python benchmarks/exploration.py purity RUN [--pack PACK] [--json OUT]
    python benchmarks/exploration.py anomaly FOLDER [--hide SSS] [--n 10000] [--epochs 30]

``purity``: encode the run's pack, then (1) the purity of the 10 nearest neighbours (own other
observations left out) under every divergence and under the Euclidean distance of the 4XMM
hardness ratios, for all sources and for those of model SNR >= 10; (2) the step divergences of
the sources seen several times, for the classes that change between epochs (XRB state flips,
TDE fading, AGN column) against the steady ones (clusters, which the simulator keeps fixed).

``anomaly``: simulate a training catalogue without the class ``--hide``, train a model on it,
simulate a test catalogue where that class makes 3 % of the spectra, and report where its
spectra rank among the anomalies (misfit, isolation, combined). Resumes what is done in FOLDER.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from xspecvae.catalog import Pack
from xspecvae.evaluation import purity
from xspecvae.latent import DIVERGENCES, anomalies, encode, trajectories
from xspecvae.run import Run, load_run
from xspecvae.simulator import CLASS_FRACTIONS, simulate_pack
from xspecvae.train import TrainOptions, train


def purity_figures(run: Path, pack: Path | None, k: int = 10, snr: float = 10.0) -> dict:
    vae, info = load_run(run)
    with Pack(pack or info["pack"], info["instrument"]) as p:
        table = encode(vae, p, progress=True)
        labels, source, mjd = (np.asarray(p.meta[c]) for c in ("label", "source_id", "mjd"))
        state = np.asarray(p.truth["state"])
    posterior = (table["z_loc"], table["z_scale"], table["z_conditional"])
    features = {d: (d, *posterior) for d in DIVERGENCES if d != "hellinger"}  # as Bhattacharyya
    features["hardness ratios"] = ("euclidean", table["hr"], None)
    out = {"n": len(labels), "k": k, "n_snr": int((table["snr"] >= snr).sum())}
    for cut, keep in (("all", None), ("snr", table["snr"] >= snr)):
        started = time.perf_counter()
        out[cut] = purity(features, labels, k=k, groups=source, keep=keep)
        out[f"{cut}_seconds"] = time.perf_counter() - started
    steps = trajectories({**table, "source_id": source, "mjd": mjd})
    later = ~np.isnan(steps["step"])
    rows, previous = steps["row"][later], steps["row"][np.flatnonzero(later) - 1]
    kinds = {
        "XRB, state changed": (labels[rows] == "XRB") & (state[rows] != state[previous]),
        "XRB, same state": (labels[rows] == "XRB") & (state[rows] == state[previous]),
        "TDE (fading)": labels[rows] == "TDE",
        "AGN (column walk)": labels[rows] == "AGN",
        "cluster (steady)": labels[rows] == "cluster",
        "star": labels[rows] == "star",
    }
    step = steps["step"][later]
    out["steps"] = {
        name: {"n": int(m.sum()), "median": float(np.median(step[m])) if m.any() else None}
        for name, m in kinds.items()
    }
    return out


def anomaly_figures(folder: Path, hide: str, n: int, epochs: int) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    seen = {c: w for c, w in CLASS_FRACTIONS.items() if c != hide}
    train_pack = simulate_pack(folder / "train.h5", n, seed=11, fractions=seen)
    run = folder / "run"
    resume = Run(run).started  # a finished run returns at once
    train(train_pack, run, options=TrainOptions(epochs=epochs), resume=resume)
    mixed = dict(CLASS_FRACTIONS, **{hide: 0.03 / 0.97 * sum(CLASS_FRACTIONS.values())})
    test_pack = simulate_pack(folder / "test.h5", n // 2, seed=12, fractions=mixed)
    vae, _ = load_run(run)
    with Pack(test_pack) as p:
        table = encode(vae, p, progress=True)
        table["source_id"] = np.asarray(p.meta["source_id"])
        labels = np.asarray(p.meta["label"])
    ranks = anomalies(table)
    hidden = labels == hide
    bright = table["snr"] >= 10
    out = {"hidden": hide, "n_test": len(labels), "n_hidden": int(hidden.sum())}
    out["n_hidden_snr10"] = int((hidden & bright).sum())
    for name in ("misfit_rank", "isolation_rank", "rank"):
        r = ranks[name] / len(labels)
        out[name] = {
            "median_percentile": float(100 * np.median(r[hidden])),
            "median_percentile_snr10": float(100 * np.median(r[hidden & bright])),
            "top_1pct": float(np.mean(r[hidden] <= 0.01)),
            "top_5pct": float(np.mean(r[hidden] <= 0.05)),
            "top_5pct_snr10": float(np.mean(r[hidden & bright] <= 0.05)),
            "share_of_top_1pct": float(np.mean(hidden[r <= 0.01])),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="what", required=True)
    p = commands.add_parser("purity")
    p.add_argument("run", type=Path)
    p.add_argument("--pack", type=Path)
    a = commands.add_parser("anomaly")
    a.add_argument("folder", type=Path)
    a.add_argument("--hide", default="SSS")
    a.add_argument("--n", type=int, default=10_000)
    a.add_argument("--epochs", type=int, default=30)
    for sub in (p, a):
        sub.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.what == "purity":
        figures = purity_figures(args.run, args.pack)
    else:
        figures = anomaly_figures(args.folder, args.hide, args.n, args.epochs)
    figures["seconds"] = time.perf_counter() - started
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
