"""Quality of a trained VAE on a simulated (labelled) pack: the figures of benchmarks/RESULTS.md.

    python benchmarks/quality.py RUN [--pack PACK] [--epochs N] [--json OUT]

Trains RUN on PACK (the demo catalogue, made if absent) first if RUN holds no finished run
(resuming an interrupted one), then prints the validation-loss curve and
:func:`xspecvae.latent.quality` on the run's held-out rows.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from xspecvae.catalog import Pack
from xspecvae.evaluation import quality
from xspecvae.run import Run, load_run
from xspecvae.simulator import DEMO_PACK, demo_pack
from xspecvae.train import TrainOptions, split_rows, train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--pack", type=Path, default=Path(DEMO_PACK))
    parser.add_argument("--epochs", type=int, default=TrainOptions.epochs)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not args.pack.exists():
        demo_pack(args.pack)
    started = time.perf_counter()
    resume = Run(args.run).started
    train(args.pack, args.run, options=TrainOptions(epochs=args.epochs), resume=resume)
    vae, info = load_run(args.run)
    lines = Run(args.run).metrics_path.read_text().splitlines()
    with Pack(info["pack"], info["instrument"]) as pack:
        (train_rows,), (val_rows,) = split_rows(len(pack), TrainOptions(**info["options"]))
        figures = quality(vae, pack, train_rows, val_rows)
    figures["seconds"] = time.perf_counter() - started
    print("\n".join(lines))
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"metrics": lines, "quality": figures}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
