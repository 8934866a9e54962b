"""Exploring a run: every table and figure of ``explore`` and of the commands, made from a small
model (their content is checked, not the model's quality), resuming, and the map, components
and reconstructions on their own."""

import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from astropy.table import Table
from matplotlib.colors import LogNorm
from test_figures import colorbar_label, legend_labels

from xspecvae.catalog import Pack
from xspecvae.cli import main
from xspecvae.explore import (
    components,
    example_searches,
    explore,
    mean_activation,
    most_moving,
    project,
    reconstruction,
    trajectory_table,
    worst_row,
)
from xspecvae.figures import canvas
from xspecvae.latent import DEFAULT_DIVERGENCE
from xspecvae.predictive import draw, plot_checks
from xspecvae.run import load_run
from xspecvae.tables import read_table, write_table

PNG = b"\x89PNG\r\n\x1a\n"


def is_png(path):
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def recording(function, drawn: dict):
    """``function(thing, path, ...)``, which saves a figure at ``path`` and returns it, also
    putting the figure in ``drawn`` under the file's stem."""

    def record(*args, **options):
        figure = function(*args, **options)
        drawn[Path(args[1]).stem] = figure
        return figure

    return record


@pytest.fixture(scope="module")
def explored(small_run, tmp_path_factory):
    """The folder, report and figures (name -> Figure) of :func:`explore` of the small run."""
    folder = tmp_path_factory.mktemp("explore")
    drawn = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(canvas, "save", recording(canvas.save, drawn))
        patch.setattr("xspecvae.explore.steps.plot_checks", recording(plot_checks, drawn))
        report = explore(small_run, folder=folder, n_checks=120, progress=False)
    return folder, report, drawn


def test_explore_writes_the_tables(explored, small_pack):
    folder, _, _ = explored
    with Pack(small_pack) as pack:
        meta, n = pack.meta, len(pack)
    posteriors = read_table(folder / "posteriors.fits")
    assert len(posteriors["row"]) == n and posteriors["z_loc"].shape == (n, 16)
    np.testing.assert_array_equal(posteriors["source_id"], meta["source_id"])
    np.testing.assert_array_equal(posteriors["obs_id"], meta["obs_id"])
    for column in ("z_scale", "snr", "statistic", "elbo", "misfit", "nh", "hardness", "hr"):
        assert np.all(np.isfinite(posteriors[column])), column
    assert np.all(posteriors["z_scale"] > 0) and np.all(posteriors["snr"] > 0)
    # the marginal widths are never narrower than the conditional ones
    assert np.all(posteriors["z_scale"] >= posteriors["z_conditional"] * (1 - 1e-5))
    assert Table.read(folder / "posteriors.fits").meta["RUN"]  # provenance in the header

    xy = read_table(folder / "map.fits")
    assert np.all(np.isfinite(xy["x"])) and len(xy["x"]) == n

    tracks = read_table(folder / "trajectories.fits")
    ids, count = np.unique(meta["source_id"], return_counts=True)
    assert set(tracks["source_id"]) == set(ids[count > 1])
    for s in np.unique(tracks["source_id"]):
        mine = tracks["source_id"] == s
        assert np.all(np.diff(tracks["mjd"][mine]) > 0)
        assert np.isnan(tracks["step"][mine][0]) and np.all(tracks["step"][mine][1:] >= 0)
    for column in ("obs_id", "ra", "dec", "label"):  # for cross-matching
        np.testing.assert_array_equal(tracks[column], posteriors[column][tracks["row"]])

    ranked = read_table(folder / "anomalies.fits")
    np.testing.assert_array_equal(ranked["rank"], np.arange(1, n + 1))

    checks = read_table(folder / "calibration.fits")
    assert len(checks["p_value"]) == 120 and np.all(
        (0 <= checks["p_value"]) & (checks["p_value"] <= 1)
    )

    similar = read_table(folder / "similar.fits")
    for q in np.unique(similar["query_row"]):
        hits = similar["query_row"] == q
        assert np.all(np.diff(similar["divergence"][hits]) >= 0)
        assert meta["source_id"][q] not in similar["source_id"][hits]  # itself left out


def test_explore_draws_every_figure_into_one_page(explored, small_run):
    folder, report, drawn = explored
    expected = [
        "training",
        "map_class",
        "map_class_snr",
        "map_snr",
        "map_snr_snr",
        "map_nh",
        "map_nh_snr",
        "templates",
        "activation",
        "calibration",
        "ppc",
        "trajectories",
        "hardness_intensity",
    ]
    made = {p.stem for p in (folder / "figures").glob("*.png")}
    assert set(expected) <= made
    fits = sorted(p for p in (folder / "figures").glob("fit_*.png"))
    assert len(fits) >= 3  # one per class of the small catalogue
    for path in (folder / "figures").glob("*.png"):
        assert is_png(path), path
    assert set(drawn) == made  # each file's figure is inspected below
    metrics = np.genfromtxt(small_run / "metrics.csv", delimiter=",", names=True)
    loss = drawn["training"].axes[0]
    np.testing.assert_array_equal(loss.lines[0].get_xdata(), metrics["epoch"])
    np.testing.assert_allclose(loss.lines[1].get_ydata(), metrics["validation_loss"])
    legend = drawn["training"].legends[0].get_texts()
    assert [text.get_text() for text in legend] == ["training", "validation", "KL weight"]
    page = report.read_text()
    assert page.count("data:image/png;base64,") == len(made)
    titles = ["Training", "Purity", "Similarity search", "Latent map", "Decoder components"]
    titles += ["Reconstructions", "Predictive checks", "Most anomalous", "Trajectories"]
    for title in titles:
        assert title in page, title
    assert "<script" not in page and "http" not in page


def test_explore_maps_show_every_source_by_class_snr_and_column(explored):
    folder, _, drawn = explored
    table, xy = read_table(folder / "posteriors.fits"), read_table(folder / "map.fits")
    n, high = len(table["row"]), table["snr"] >= 10

    def legend(keep):
        classes, counts = np.unique(table["label"][keep], return_counts=True)
        return [f"{c} ({k:,})" for c, k in zip(classes, counts)]

    for name in ("map_class", "map_class_snr", "map_snr", "map_snr_snr", "map_nh", "map_nh_snr"):
        ax = drawn[name].axes[0]
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("PaCMAP 1", "PaCMAP 2")
        assert sum(len(points.get_offsets()) for points in ax.collections) == n, name
        every = np.concatenate([points.get_offsets()[:, 0] for points in ax.collections])
        np.testing.assert_allclose(np.sort(every), np.sort(xy["x"]))  # the map's coordinates
    assert legend_labels(drawn["map_class"].axes[0]) == legend(slice(None))
    ax = drawn["map_class_snr"].axes[0]
    assert ax.get_title() == f"Class, SNR > 10 ({high.sum():,} of {n:,} kept)"
    assert legend_labels(ax) == legend(high)
    assert len(ax.collections[-1].get_offsets()) == high.sum()  # in colour; the rest grey
    for name, label in (("map_snr", "SNR"), ("map_nh", "N_H (1e22 cm^-2)")):
        assert colorbar_label(drawn[name]) == label
        assert isinstance(drawn[name].axes[0].collections[-1].norm, LogNorm)


def test_explore_draws_the_components_and_the_brightest_fit_of_each_class(explored):
    folder, _, drawn = explored
    table = read_table(folder / "posteriors.fits")
    classes, mean = mean_activation(table["coefficients"], table["label"])
    (ax,) = drawn["templates"].axes
    assert legend_labels(ax) == [str(i) for i in range(table["coefficients"].shape[1])]
    assert ax.get_xlabel() == "Energy (keV)" and ax.get_xlim() == pytest.approx((0.2, 12.0))
    for line in ax.lines:
        assert line.get_xdata()[[0, -1]] == pytest.approx((0.2, 12.0))
    ax = drawn["activation"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(classes)
    np.testing.assert_allclose(ax.images[0].get_array(), mean)

    assert {name for name in drawn if name.startswith("fit_")} == {f"fit_{c}" for c in classes}
    for c in classes:
        top, bottom = drawn[f"fit_{c}"].axes
        row = int(top.get_title().split(", ")[0].removeprefix(f"{c}: row "))
        assert table["label"][row] == c
        assert table["snr"][row] == table["snr"][table["label"] == c].max()  # the brightest
        assert {"data", "background", "model", "credible band"} <= set(legend_labels(top))
        (band,) = [area for area in top.collections if area.get_label() == "credible band"]
        (background,) = [line for line in top.lines if line.get_label() == "background"]
        assert np.ptp(band.get_paths()[0].vertices[:, 1]) > 0
        assert np.all(background.get_ydata() >= 0) and np.any(background.get_ydata() > 0)
        assert bottom.get_xlim() == pytest.approx((0.2, 12.0))


def test_explore_draws_the_checks_and_the_most_moving_trajectories(explored, small_pack):
    folder, _, drawn = explored
    table = read_table(folder / "posteriors.fits")
    checks = read_table(folder / "calibration.fits")
    (ax,) = drawn["calibration"].axes
    assert sum(bar.get_height() for bar in ax.patches) == len(checks["p_value"])
    assert legend_labels(ax) == ["0.01 = 0.01"]
    spectrum = drawn["ppc"].axes[0]
    row = worst_row(checks)  # the worst fit, as `xspecvae check` draws
    assert checks["p_value"][checks["row"] == row][0] == checks["p_value"].min()
    assert spectrum.get_title() == f"source {row}"
    (observed,) = [line for line in spectrum.lines if line.get_label() == "observed"]
    with Pack(small_pack) as pack:
        np.testing.assert_array_equal(observed.get_ydata(), pack.read(np.array([row]))["counts"][0])

    tracks = read_table(folder / "trajectories.fits")
    sources = most_moving(tracks)
    mine = [tracks["source_id"] == s for s in sources]
    names = [f"{s} ({tracks['label'][m][0]})" for s, m in zip(sources, mine)]
    for name in ("trajectories", "hardness_intensity"):
        (ax,) = drawn[name].axes
        assert legend_labels(ax) == [*names, "first epoch"]
        arrows = [a for a in ax.texts if a.arrow_patch is not None]
        assert len(arrows) == sum(m.sum() - 1 for m in mine)  # one per step
    assert len(drawn["trajectories"].axes[0].collections[0].get_offsets()) == len(table["row"])
    (ax,) = drawn["hardness_intensity"].axes
    assert ax.get_yscale() == "log" and ax.get_ylabel().startswith("photon flux")
    assert "S 0.5-2 keV, H 2-12 keV" in ax.get_xlabel()  # the bands named
    drawable = np.isfinite(table["hardness"]) & (table["photon_flux"] > 0)
    assert len(ax.collections[0].get_offsets()) == drawable.sum()


@pytest.fixture
def tables_only(monkeypatch):
    """Reports without their figures (drawn by the tests above): what is remade is tables."""
    import xspecvae.explore.sections as exploring

    def one_section(vae, pack, run, table, xy, tables, plots, snr_min, k, divergence):
        return [exploring._table_section("Similarity search", tables["similar"], divergence)]

    monkeypatch.setattr(exploring, "_sections", one_section)


def test_explore_resumes_and_redoes_after_new_training(explored, small_run, capsys, tables_only):
    folder, _, _ = explored
    tables = sorted(folder.glob("*.fits"))
    before = {p: p.stat().st_mtime_ns for p in tables}
    explore(small_run, folder=folder, n_checks=120, progress=False)
    assert {p: p.stat().st_mtime_ns for p in tables} == before  # nothing made again
    checkpoint = small_run / "checkpoint.npz"
    later = max(before.values()) + 10**9
    os.utime(checkpoint, ns=(later, later))  # as if trained further
    explore(small_run, folder=folder, n_checks=120, progress=False)
    assert all(p.stat().st_mtime_ns > before[p] for p in tables)
    again = {p: p.stat().st_mtime_ns for p in tables}
    assert main(["report", str(small_run), "-o", str(folder), "--quiet"]) == 0  # the command
    remade = {p.stem for p in tables if p.stat().st_mtime_ns != again[p]}
    assert remade == {"calibration"}  # by default with 2000 checks, not 120
    assert f"report: {folder / 'report.html'}" in capsys.readouterr().out


def test_explore_remakes_only_the_tables_a_changed_setting_affects(
    explored, small_run, small_pack, tmp_path, tables_only
):
    folder = tmp_path / "explore"
    shutil.copytree(explored[0], folder)  # with the time stamps
    tables = {p.stem: p for p in folder.glob("*.fits")}
    with Pack(small_pack) as pack:
        settings = {"n_checks": 120, "instrument": pack.instrument}  # the default one, named
    explore(small_run, folder=folder, progress=False, **settings)  # whatever ran before
    for change, remade in (
        ({}, set()),
        ({"divergence": "bhattacharyya"}, {"similar"}),  # of the searches only
        ({"k": 5}, {"anomalies", "similar"}),
        ({"snr_min": 5.0}, {"similar"}),
        ({"n_checks": 60}, {"calibration"}),
    ):
        settings |= change
        before = {name: p.stat().st_mtime_ns for name, p in tables.items()}
        report = explore(small_run, folder=folder, progress=False, **settings)
        made = {name for name, p in tables.items() if p.stat().st_mtime_ns != before[name]}
        assert made == remade, change
    similar, header = read_table(tables["similar"], with_header=True)
    assert (header["DIVERGE"], header["K"], header["SNRMIN"]) == ("bhattacharyya", 5, 5.0)
    assert similar["rank"].max() == 5
    assert "<th>bhattacharyya</th>" in report.read_text()
    assert len(read_table(tables["calibration"])["p_value"]) == 60
    for path in tables.values():
        assert read_table(path, with_header=True)[1]["INSTRUME"] == settings["instrument"]


def test_commands_write_their_tables_and_figures(small_run, tmp_path, capsys):
    posteriors = tmp_path / "posteriors.fits"
    assert main(["encode", str(small_run), "-o", str(posteriors), "--parquet", "--quiet"]) == 0
    table = read_table(posteriors)
    np.testing.assert_array_equal(
        read_table(posteriors.with_suffix(".parquet"))["snr"], table["snr"]
    )
    refined = tmp_path / "refined.fits"
    command = ["encode", str(small_run), "-o", str(refined), "--refine-steps", "3", "--quiet"]
    assert main(command) == 0
    better, header = read_table(refined, with_header=True)
    assert header["REFINE"] == 3 and read_table(posteriors, with_header=True)[1]["REFINE"] == 0
    assert np.median(better["statistic"] / table["statistic"]) < 1  # nearer each source's mode

    assert main(["similar", str(posteriors), "--row", "3", "-k", "5"]) == 0
    similar = read_table(tmp_path / "similar.fits")
    assert len(similar["row"]) == 5 and table["source_id"][3] not in similar["source_id"]
    header = read_table(tmp_path / "similar.fits", with_header=True)[1]
    assert header["DIVERGE"] == DEFAULT_DIVERGENCE
    assert np.all(np.diff(similar["divergence"]) >= 0)
    bright = table["snr"] >= 15
    source = str(table["source_id"][0])
    search = ["similar", str(posteriors), "--source", source, "--min-snr", "15"]
    search += ["--divergence", "bhattacharyya", "-o", str(tmp_path / "s2.fits")]
    assert main(search) == 0
    hits = read_table(tmp_path / "s2.fits")["row"]
    assert np.all(bright[hits])
    assert main(["similar", str(posteriors), "--source", "no-such-source"]) == 1
    assert "no source 'no-such-source'" in capsys.readouterr().err

    assert main(["map", str(posteriors), "--whiten"]) == 0
    assert len(read_table(tmp_path / "map.fits")["x"]) == len(table["row"])
    for name in ("class", "class_snr", "snr", "snr_snr", "nh", "nh_snr"):  # as the report's
        assert is_png(tmp_path / "map" / f"{name}.png")

    assert main(["trajectory", str(posteriors)]) == 0
    assert is_png(tmp_path / "trajectories" / "map.png")
    assert is_png(tmp_path / "trajectories" / "hardness_intensity.png")
    assert main(["trajectory", str(posteriors), "--source", "-5"]) == 1
    two = [str(s) for s in np.unique(read_table(tmp_path / "trajectories.fits")["source_id"])[:2]]
    capsys.readouterr()
    assert main(["trajectory", str(posteriors), "--source", *two]) == 0  # as README writes it
    out = capsys.readouterr().out
    assert all(f"source {s}:" in out for s in two)

    assert main(["anomalies", str(posteriors), "--top", "3"]) == 0
    assert read_table(tmp_path / "anomalies.fits")["rank"][0] == 1

    checks = tmp_path / "calibration.fits"
    assert (
        main(
            ["check", str(small_run), "--rows", "50", "--draws", "16", "-o", str(checks), "--quiet"]
        )
        == 0
    )
    assert len(read_table(checks)["p_value"]) == 50
    assert len(list(tmp_path.glob("ppc_row*.png"))) == 1

    for extra in ([], ["--prior"]):
        out = tmp_path / f"samples{len(extra)}.fits"
        assert (
            main(["sample", str(small_run), "--row", "2", "-n", "7", "-o", str(out), *extra]) == 0
        )
        drawn = read_table(out)
        assert drawn["counts"].shape == (7, 84) and np.all(drawn["counts"] >= 0)
        assert np.all(drawn["counts"] == np.round(drawn["counts"]))
    posterior, prior = (
        read_table(tmp_path / "samples0.fits"),
        read_table(tmp_path / "samples1.fits"),
    )
    assert posterior["z"].std(0).mean() < 0.5 < prior["z"].std(0).mean()  # narrow around the source


def test_project_whitens_and_needs_a_few_points():
    rng = np.random.default_rng(0)
    loc = np.concatenate([rng.normal(0, 0.1, (60, 5)), rng.normal(3, 0.1, (60, 5))])
    xy = project(loc)
    assert xy.shape == (120, 2) and np.all(np.isfinite(xy))
    a, b = xy[:60].mean(0), xy[60:].mean(0)
    spread = max(xy[:60].std(0).max(), xy[60:].std(0).max())
    assert np.linalg.norm(a - b) > 3 * spread  # two clusters stay apart
    assert project(loc, np.full_like(loc, 0.5)).shape == (120, 2)
    with pytest.raises(ValueError, match="at least 4"):
        project(loc[:3])


def posterior_rows(source_id, seed=0):
    """A posterior table without labels: one observation per entry of ``source_id``, in time
    order, with 3 latent dimensions."""
    rng = np.random.default_rng(seed)
    n = len(source_id)
    return {
        "source_id": np.asarray(source_id),
        "obs_id": np.array([f"obs{i}" for i in range(n)]),
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-90, 90, n),
        "mjd": 50_000.0 + np.arange(n),
        "row": np.arange(n),
        "z_loc": rng.normal(size=(n, 3)),
        "z_scale": rng.uniform(0.2, 0.5, (n, 3)),
        "snr": rng.uniform(20, 30, n),
        "hardness": rng.uniform(-1, 1, n),
        "photon_flux": rng.lognormal(size=n),
    }


def test_trajectory_table_without_labels_keeps_the_keys_of_each_epoch():
    table = posterior_rows([7, 8, 7, 9, 8, 7])
    tracks = trajectory_table(table)
    np.testing.assert_array_equal(tracks["row"], [0, 2, 5, 1, 4])  # by source, then time
    assert "label" not in tracks
    for column in ("source_id", "obs_id", "ra", "dec", "snr", "hardness", "photon_flux"):
        np.testing.assert_array_equal(tracks[column], table[column][tracks["row"]])


def test_example_searches_leave_out_missing_neighbours():
    table = posterior_rows(np.repeat([1, 2, 3, 4], 2))  # 6 rows of other sources per query
    found = example_searches(table, 10, "kl_symmetric", 10.0)
    assert list(found["rank"]) == [1, 2, 3, 4, 5, 6]
    assert np.all(np.isfinite(found["divergence"]))
    assert sorted(found["row"]) == [2, 3, 4, 5, 6, 7]  # all but the query's own two


def test_components_activation_and_reconstruction(small_run, small_pack):
    vae, _ = load_run(small_run)
    energy, values = components(vae, n=64)
    assert energy[0] == pytest.approx(0.2) and energy[-1] == pytest.approx(12.0)
    assert values.shape == (vae.config.n_templates, 64) and np.all(values >= 0)
    classes, mean = mean_activation(np.array([[1.0, 0], [3, 2], [0, 4]]), ["b", "b", "a"])
    assert list(classes) == ["a", "b"]
    np.testing.assert_allclose(mean, [[0, 4], [2, 1]])
    with Pack(small_pack) as pack:
        fit = reconstruction(vae, pack, 5, n_draws=50)
        batch, rmf = pack.read(np.array([5])), np.asarray(pack.rmf)
        np.testing.assert_array_equal(fit["counts"], batch["counts"][0])
    lo, hi = fit["band"]
    assert np.all(lo <= fit["model"] + 1e-6) and np.all(fit["model"] <= hi + 1e-6)
    # total = source + the profiled background: above the source alone in every channel (the
    # W-statistic may put it below the observed background in a channel), by about the
    # observed background over the spectrum
    source = np.median(draw(vae.with_rmfs(rmf), batch, 50, jax.random.key(0))["source"], 0)[0]
    assert np.all(fit["model"] > source)
    good = fit["good"]
    excess, background = (fit["model"] - source)[good].sum(), fit["background"][good].sum()
    assert 0.85 < excess / background < 1.15


def test_similar_encodes_a_query_spectrum_file(small_run, small_pack, tmp_path, capsys):
    from xspecvae.simulator import write_ogip

    posteriors = tmp_path / "posteriors.fits"
    assert main(["encode", str(small_run), "-o", str(posteriors), "--quiet"]) == 0
    files = write_ogip(small_pack, tmp_path / "ogip", rows=[11])
    spectrum = next(p for p in files if "SRSPEC" in p.name)
    found = tmp_path / "found.fits"
    search = ["similar", str(posteriors), "--spectrum", str(spectrum), "-o", str(found)]
    assert main([*search, "--divergence", "kl_symmetric"]) == 0  # a distance: itself first
    hits = read_table(found)
    assert hits["row"][0] == 11 and hits["divergence"][0] == pytest.approx(0.0, abs=1e-3)
    search[-1] = str(tmp_path / "predicted.fits")  # the default: who predicts its counts
    assert main(search) == 0
    predicted = read_table(tmp_path / "predicted.fits")
    assert len(predicted["row"]) == 10 and np.all(predicted["divergence"] >= 0)
    broken = tmp_path / "broken.FTZ"
    broken.write_bytes(spectrum.read_bytes()[:2000])
    assert main(["similar", str(posteriors), "--spectrum", str(broken)]) == 1
    assert "broken.FTZ: could not be encoded" in capsys.readouterr().err
    for aux, what in (
        (".rmf", "an RMF"),
        ("SRCARF", "an ARF"),
        ("BGSPEC", "a background spectrum"),
    ):
        given = next(p for p in files if aux in p.name)  # given for the source spectrum
        assert main(["similar", str(posteriors), "--spectrum", str(given)]) == 1
        assert f"{what}, not a source spectrum" in capsys.readouterr().err


def test_similar_only_instrument_keeps_the_neighbours_of_that_instrument(explored, tmp_path):
    table = read_table(explored[0] / "posteriors.fits")
    table["instrument"] = np.where(table["row"] % 2, "mos1", table["instrument"])
    posteriors = write_table(table, tmp_path / "posteriors.fits", extname="POSTERIORS")

    def instruments(*options):
        found = tmp_path / "similar.fits"
        assert main(["similar", str(posteriors), "--row", "3", "-k", "20", *options]) == 0
        return table["instrument"][read_table(found)["row"]]

    assert set(instruments()) == {"pn", "mos1"}
    assert list(instruments("--only-instrument", "mos1")) == ["mos1"] * 20


def test_map_whiten_divides_each_dimension_by_its_rms_width(explored, tmp_path):
    posteriors = Path(shutil.copy(explored[0] / "posteriors.fits", tmp_path))
    table = read_table(posteriors)
    maps = []
    for options in ([], ["--whiten"]):
        output = tmp_path / f"map{len(options)}.fits"
        assert main(["map", str(posteriors), "-o", str(output), *options]) == 0
        maps.append(np.stack([read_table(output)[c] for c in "xy"], -1))
    plain, whitened = maps
    assert np.abs(whitened - plain).max() > 0.1 * np.abs(plain).max()
    rms = np.sqrt(np.mean(table["z_scale"].astype(np.float64) ** 2, 0))
    np.testing.assert_allclose(whitened, project(table["z_loc"] / rms), rtol=1e-4, atol=1e-4)


def test_demo_runs_the_whole_journey_then_resumes(tmp_path, monkeypatch, capsys):
    from xspecvae.simulator import making

    monkeypatch.setattr(making, "DEMO_SIZE", 300)  # the built-in demo, made small
    folder = tmp_path / "demo"
    assert main(["demo", "-o", str(folder), "--epochs", "1", "--quiet"]) == 0
    report = folder / "explore" / "report.html"
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {report}"
    assert report.stat().st_size > 10_000 and (folder / "run" / "checkpoint.npz").exists()
    made = [folder / "catalogue.h5", report, *folder.rglob("*.fits"), *folder.rglob("*.png")]
    made = {p: p.stat().st_mtime_ns for p in made}
    made[folder / "run" / "checkpoint.npz"] = (folder / "run" / "checkpoint.npz").stat().st_mtime_ns
    assert main(["demo", "-o", str(folder), "--epochs", "1"]) == 0  # resumes: nothing redone
    assert {p: p.stat().st_mtime_ns for p in made} == made
    out = capsys.readouterr().out
    assert "demo 3/3" in out and out.strip().endswith(f"report: {report}")
    assert main(["demo", "-o", str(folder), "--epochs", "2", "--quiet"]) == 1  # not ignored
    error = capsys.readouterr().err
    assert "epochs 1 -> 2" in error and "another folder" in error and "Traceback" not in error
    assert {p: p.stat().st_mtime_ns for p in made} == made
