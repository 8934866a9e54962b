"""compare: spectra set against a reference catalogue, on a small model."""

import numpy as np
import pytest

from xspecvae.catalog import Pack
from xspecvae.cli import main
from xspecvae.compare import compare, source_name
from xspecvae.simulator import simulate_pack
from xspecvae.tables import read_table


@pytest.fixture(scope="module")
def compared(small_run, small_pack, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    target = simulate_pack(folder / "target.h5", 8, seed=11, progress=False)
    report = compare(
        small_run, target, folder / "out", models=("powerlaw",), n_shown=2, k=5, progress=False
    )
    return target, folder / "out", report


def test_tables_account_for_every_spectrum(compared, small_pack):
    target, out, _ = compared
    sources = read_table(out / "sources.fits")
    fits = read_table(out / "fits.fits")
    posteriors = read_table(out / "posteriors.fits")
    with Pack(target) as t, Pack(small_pack) as ref:
        n, n_ref, files = len(t), len(ref), t.meta["file"]
        labels = np.asarray(ref.meta["label"]).astype(str)
    assert len(sources["row"]) == len(fits["row"]) == n
    assert len(read_table(out / "reference.fits")["row"]) == n_ref
    np.testing.assert_allclose(sources["w_dof"], posteriors["statistic"] / posteriors["dof"])
    np.testing.assert_allclose(
        sources["powerlaw_w_dof"], fits["powerlaw_statistic"] / fits["powerlaw_dof"]
    )
    assert np.all(np.isfinite(fits["powerlaw_gamma"])) and np.all(fits["powerlaw_error"] == "")
    with Pack(target) as t:
        assert fits["powerlaw_total"].shape == fits["decoder_total"].shape == (n, t.grid.n_channel)
    # the decoder fitted (latent optimised) is at least as good as the encoder's guess
    assert np.all(fits["decoder_statistic"] <= posteriors["statistic"] + 1e-2)
    assert sources["neighbours"].shape == (n, 5)
    assert np.all((sources["neighbours"] >= 0) & (sources["neighbours"] < n_ref))
    first = labels[sources["neighbours"][0]]
    assert sources["nearest_class"][0] in first and str(sources["neighbour_classes"][0]).startswith(
        sources["nearest_class"][0]
    )
    np.testing.assert_array_equal(sources["file"], files)
    placed = read_table(out / "map.fits")
    assert np.sum(placed["set"] == "target") == n and np.sum(placed["set"] == "reference") == n_ref


def test_figures_and_report(compared):
    _, out, report = compared
    shown = sorted(p.name for p in (out / "figures").glob("fit_*.png"))
    assert len(shown) == 2
    for name in ("map.png", "map_snr.png", "statistic.png", *shown):
        assert (out / "figures" / name).stat().st_size > 5000, name
    page = report.read_text()
    for title in ("Fit statistics", "Shown spectra", "Place in the map", "Reconstructions"):
        assert title in page
    assert page.count("data:image/png;base64,") == 3 + len(shown)


def test_a_second_run_reuses_the_fits_and_the_command_works(compared, small_run, capsys):
    target, out, _ = compared
    before = (out / "fits.fits").stat().st_mtime_ns
    assert (
        main(
            [
                "compare",
                str(small_run),
                str(target),
                "-o",
                str(out),
                "--fit",
                "powerlaw",
                "--show",
                "nothing-matches",
                "-k",
                "5",
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "fits.fits").stat().st_mtime_ns == before
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.html'}"
    # other models: the fits are made again, not read back without their columns
    assert (
        main(["compare", str(small_run), str(target), "-o", str(out), "--fit", "diskbb", "--quiet"])
        == 0
    )
    assert "diskbb_t_in" in read_table(out / "fits.fits")
    assert "diskbb_w_dof" in read_table(out / "sources.fits")


def test_source_names():
    assert source_name("/d/P0760940101PNS003SRSPEC0001.FTZ") == "src 0001"
    assert source_name("/data/ngc7793_ulx4/PN_spectrum_grp20.fits") == "ngc7793_ulx4"
