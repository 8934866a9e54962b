"""``xspecvae serve``: the data it shows against the library, its HTTP handler, and the page in
a real browser (headless Chromium through Selenium; skipped with the reason where either is
missing, failed instead when ``XSPECVAE_REQUIRE_BROWSER=1``, as CI sets it).
``XSPECVAE_SCREENSHOT=PATH`` saves a screenshot of the page there (docs/serve.png)."""

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from xspecvae.cli import main
from xspecvae.errors import InputError
from xspecvae.explore import reconstruction
from xspecvae.latent import DEFAULT_DIVERGENCE, conditional_widths
from xspecvae.serve import data
from xspecvae.tables import read_table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return tmp_path_factory.mktemp("serve") / "explore"


@pytest.fixture(scope="module")
def catalogue(small_run, small_pack, tables):
    opened = data.Catalogue(small_run, small_pack, tables)
    yield opened
    opened.close()


def expected_similar(catalogue, row, k=10, divergence=DEFAULT_DIVERGENCE, min_snr=0.0):
    table = catalogue.table
    rows, _ = catalogue.index.search(
        table["z_loc"][row],
        table["z_scale"][row],
        k,
        divergence=divergence,
        keep=table["snr"] >= min_snr,
        exclude_groups=[table["source_id"][row]],
        conditional=conditional_widths(table)[row],
    )
    return rows[rows >= 0].tolist()


def a_repeated_row(catalogue) -> int:
    """A bright row whose source was observed more than once."""
    ids, counts = np.unique(catalogue.table["source_id"], return_counts=True)
    rows = np.flatnonzero(np.isin(catalogue.table["source_id"], ids[counts > 1]))
    return int(rows[np.argmax(catalogue.table["snr"][rows])])


# ---------------------------------------------------------------------------------------------
# The data, against the library


def test_catalogue_reuses_its_cached_tables(catalogue, small_run, small_pack, tables):
    n = len(catalogue)
    assert n == 600 and catalogue.xy.shape == (n, 2)
    made = {p.name: p.stat().st_mtime_ns for p in tables.glob("*.fits")}
    assert {"posteriors.fits", "map.fits"} <= set(made)
    again = data.Catalogue(small_run, small_pack, tables)
    again.close()
    assert {p.name: p.stat().st_mtime_ns for p in tables.glob("*.fits")} == made
    np.testing.assert_array_equal(again.xy, catalogue.xy)


def test_a_run_finds_the_demo_s_tables_beside_it(
    catalogue, small_run, small_pack, tmp_path, monkeypatch
):
    """``xspecvae demo`` writes its report's tables to ``DEMO/explore`` beside ``DEMO/run``:
    ``serve DEMO/run`` reuses them rather than encoding again."""
    from xspecvae.run import Run
    from xspecvae.tables import tables_folder

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    assert tables_folder(Run(run), catalogue.origin) == run / "explore"  # nothing cached yet
    monkeypatch.chdir(small_pack.parent)  # the demo names its pack relative to the cwd
    data.Catalogue(run, Path(small_pack.name), tmp_path / "explore").close()
    made = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "explore").glob("*.fits")}
    found = data.Catalogue(run)  # the run's own pack, by its absolute path
    found.close()
    assert found.folder == tmp_path / "explore" and not (run / "explore").exists()
    assert {p.name: p.stat().st_mtime_ns for p in found.folder.glob("*.fits")} == made
    other = catalogue.origin | {"PACKID": "another pack"}
    assert tables_folder(Run(run), other) == run / "explore"  # not this pack's tables: not used


def written(number, shown) -> str:
    """An identifier as the map's hover writes it back (``app.WRITTEN``)."""
    if shown["names"]:
        return shown["names"][int(number)]
    return str(int(number)).zfill(shown["width"])


def test_map_columns_and_colours(catalogue):
    table = catalogue.table
    columns, shown = data.map_columns(table, catalogue.xy)
    assert all(len(v) == len(table["row"]) for v in columns.values())
    assert all(np.asarray(v).dtype.kind in "fi" for v in columns.values())  # sent as binary
    for name in ("source_id", "obs_id", "label"):
        back = [written(v, shown[name]) for v in columns[name]]
        assert back == np.asarray(table[name]).astype(str).tolist()
    options = data.colour_options(table)
    assert options == list(data.COLOURS)  # labelled: class first
    for by in options:
        colouring = data.colours(table, by)
        assert len(colouring.values) == len(table["row"]) and colouring.legend
        assert all(c.startswith("#") for c in colouring.palette)
        assert colouring.low < colouring.high
    classes = data.colours(table, "class")
    names = np.unique(np.asarray(table["label"]).astype(str))
    assert dict(classes.legend) == dict(zip(names, classes.palette))
    assert np.array_equal(names[classes.values.astype(int)], np.asarray(table["label"]).astype(str))
    snr = data.colours(table, "SNR")
    np.testing.assert_allclose(snr.values, np.log10(table["snr"]), rtol=1e-6)
    with pytest.raises(InputError, match="unknown 'colour'"):
        data.colours(table, "colour")


@pytest.mark.parametrize(
    "ids, width",
    [
        (["0760940101", "0001930301"], 10),  # OBS_IDs: one width, leading zeros kept
        (["206010101010001", "7"], 0),  # digits of several widths, none zero-led
        (["007", "12"], None),  # zero-led digits of several widths: names
        (["4XMM J000001.2-000002", "NGC 7793 P13"], None),
        ([206010101010001, 3], 0),  # integers
    ],
)
def test_identifiers_travel_as_numbers(ids, width):
    table = {"snr": np.ones(2), "source_id": np.asarray(ids), "obs_id": ["a", "b"]}
    columns, shown = data.map_columns(table, np.zeros((2, 2)))
    assert columns["source_id"].dtype == np.float64
    assert [written(v, shown["source_id"]) for v in columns["source_id"]] == [str(i) for i in ids]
    assert (shown["source_id"]["names"] == []) == (width is not None)
    if width is not None:
        assert shown["source_id"]["width"] == width
    assert [written(v, shown["label"]) for v in columns["label"]] == ["-", "-"]


def test_spectrum_is_the_reconstruction_per_kev(catalogue):
    row = 3
    panel = catalogue.spectrum(row)
    fit = reconstruction(catalogue.vae, catalogue.pack, row)
    width = fit["channel_hi"] - fit["channel_lo"]
    np.testing.assert_allclose(panel["counts"] * width, fit["counts"])
    np.testing.assert_allclose(panel["model"] * width, fit["model"], rtol=1e-6)
    np.testing.assert_allclose(panel["band_hi"] * width, fit["band"][1], rtol=1e-6)
    np.testing.assert_allclose(panel["background"] * width, fit["background"], rtol=1e-6)
    assert catalogue.spectrum(row) is panel  # decoded once
    for bad in (-1, 600, "x"):
        with pytest.raises(InputError, match="row"):
            catalogue.spectrum(bad)


def test_summary_and_epochs(catalogue):
    table = catalogue.table
    row = a_repeated_row(catalogue)
    facts = data.summary(table, row)
    assert facts["SRCID"] == str(table["source_id"][row])
    assert facts["OBS_ID"] == str(table["obs_id"][row])
    assert abs(float(facts["RA (deg)"]) - table["ra"][row]) < 1e-5
    assert len(facts["z (posterior)"].split(",")) == table["z_loc"].shape[1]
    seen = data.epochs(table, row)
    assert row in seen and len(seen) > 1
    assert np.all(table["source_id"][seen] == table["source_id"][row])
    assert np.all(np.diff(table["mjd"][seen]) >= 0)


def test_a_source_s_trajectory_is_the_library_s(catalogue):
    from xspecvae.explore import trajectory_table

    table = catalogue.table
    row = a_repeated_row(catalogue)
    for divergence in ("kl_symmetric", "wasserstein", "match"):
        steps = data.trajectory(table, row, divergence)
        every = trajectory_table(table, divergence)
        mine = every["source_id"] == table["source_id"][row]
        np.testing.assert_array_equal(steps["row"], data.epochs(table, row))
        np.testing.assert_array_equal(steps["row"], every["row"][mine])
        np.testing.assert_allclose(steps["step"], every["step"][mine], rtol=1e-6)
        assert np.isnan(steps["step"][0]) and np.isfinite(steps["step"][1:]).all()
        np.testing.assert_allclose(steps["hardness"], every["hardness"][mine])
        np.testing.assert_allclose(steps["photon_flux"], every["photon_flux"][mine])
    ids, counts = np.unique(table["source_id"], return_counts=True)
    once = int(np.flatnonzero(table["source_id"] == ids[counts == 1][0])[0])
    alone = data.trajectory(table, once)
    assert alone["row"].tolist() == [once] and np.isnan(alone["step"]).all()


def test_similar_is_the_index_search(catalogue):
    table, row = catalogue.table, 11
    for divergence, min_snr in (("predictive", 0.0), ("wasserstein", 10.0), ("match", 0.0)):
        found = data.similar(
            catalogue.index, table, row, k=7, divergence=divergence, min_snr=min_snr
        )
        assert found["row"].tolist() == expected_similar(catalogue, row, 7, divergence, min_snr)
        assert np.all(found["snr"] >= min_snr) and found["rank"].tolist()[:1] == [1]
        assert str(table["source_id"][row]) not in found["source_id"]
    with pytest.raises(InputError, match="at least one"):
        data.similar(catalogue.index, table, row, k=0)
    none = data.similar(catalogue.index, table, row, min_snr=1e9)  # the slider at its top
    assert set(none) == set(found) and all(len(v) == 0 for v in none.values())


def test_rows_and_selection_files(catalogue, tmp_path):
    assert data.parse_rows("5, 2,7-9,2", 600).tolist() == [2, 5, 7, 8, 9]
    for bad, why in (("", "no row"), ("1,x", "not a row"), ("9-7", "backwards"), ("600", "0 to")):
        with pytest.raises(InputError, match=why):
            data.parse_rows(bad, 600)
    rows = [4, 9, 30]
    path = tmp_path / "s.fits"
    path.write_bytes(data.selection_file(catalogue.table, rows, "fits"))
    back = read_table(path)
    assert back["source_id"].tolist() == catalogue.table["source_id"][rows].tolist()
    np.testing.assert_allclose(back["z_loc"], catalogue.table["z_loc"][rows])
    csv = Table.read(io.BytesIO(data.selection_file(catalogue.table, rows, "csv")), format="csv")
    assert csv["SRCID"].tolist() == catalogue.table["source_id"][rows].tolist()
    np.testing.assert_allclose(csv["z_loc_2"], catalogue.table["z_loc"][rows, 1], rtol=1e-5)


def box(xy, pad=1e-9) -> dict:
    """A box selection's geometry (as Bokeh sends it) around the points ``xy`` (n, 2)."""
    (x0, y0), (x1, y1) = np.min(xy, 0) - pad, np.max(xy, 0) + pad
    return {"type": "rect", "x0": x0, "x1": x1, "y0": y0, "y1": y1}


def test_page_without_a_browser(catalogue):
    from bokeh.document import Document
    from bokeh.events import SelectionGeometry

    from xspecvae.serve.app import Page

    page, doc = Page(catalogue), Document()
    page.attach(doc)
    assert len(doc.get_model_by_name("map_source").data["x"]) == 600
    row = a_repeated_row(catalogue)
    one = box(catalogue.xy[[row]])  # a box around that one point
    page.map._trigger_event(SelectionGeometry(page.map, geometry=one, final=True))
    assert f"<td>{catalogue.table['source_id'][row]}</td>" in page.info.text
    assert list(page.similar.source.data["row"]) == expected_similar(catalogue, row)
    seen = data.epochs(catalogue.table, row)
    np.testing.assert_array_equal(page.track.data["x"], catalogue.xy[seen, 0])  # its trajectory
    np.testing.assert_array_equal(page.steps.source.data["row"], seen)
    np.testing.assert_array_equal(page.here.data["hardness"], [catalogue.table["hardness"][row]])
    page.divergence.value = "hellinger"
    assert list(page.similar.source.data["row"]) == expected_similar(
        catalogue, row, 10, "hellinger"
    )
    steps = data.trajectory(catalogue.table, row)["step"]  # the search's divergence only
    np.testing.assert_array_equal(page.steps.source.data["step"], steps)
    page._filter("value_throttled", 0, 10.0)
    drawn = page.source.data["row"]
    assert len(drawn) == np.sum(catalogue.table["snr"] >= 10)
    assert np.all(catalogue.table["snr"][drawn] >= 10)
    assert np.all(np.asarray(page.similar.source.data["snr"]) >= 10)
    page.anomalies.source.selected.indices = [0]  # the most anomalous, one click
    assert page.current == int(catalogue.anomalies["row"][0])
    page.tapped.data = {"row": [7]}  # what a tap on the map sends
    assert page.current == 7 and list(page.shown.data["x"]) == [catalogue.xy[7, 0]]
    page.tapped.data = {"row": [600]}
    assert page.current == 7 and "0 to 599" in page.status.text


def test_a_large_map_draws_some_points_and_shades_them_all(catalogue):
    """With fewer points drawn than sources: the shading holds the rest, a zoom draws the
    view's, a box selects every source inside it (drawn or not, then drawn), combined with
    the selection by the keys held; that is what the page's downloads post; a clear, a reset
    or the button empties it; forged events change nothing."""
    from bokeh.document import Document
    from bokeh.events import ButtonClick, PanStart, RangesUpdate, Reset, SelectionGeometry

    from xspecvae.serve import detail
    from xspecvae.serve.app import Page

    xy = catalogue.xy
    page, doc = Page(catalogue, points=100), Document()
    page.attach(doc)
    drawn = np.asarray(page.source.data["row"])
    assert len(drawn) == 100 and len(set(drawn)) == 100
    np.testing.assert_array_equal(page.source.data["x"], xy[drawn, 0])
    image = page.density.data["image"][0].view(np.uint8).reshape(*detail.SHAPE[::-1], 4)
    assert (image[..., 3] > 0).sum() > 100  # more pixels shaded than points drawn
    assert "100 of the 600" in page.detail.text

    (x0, x1), (y0, y1) = np.percentile(xy, [30, 70], axis=0).T
    page.map._trigger_event(RangesUpdate(page.map, x0=x0, x1=x1, y0=y0, y1=y1))
    inside = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0)
                            & (xy[:, 1] <= y1))  # fmt: skip
    assert 0 < len(inside) <= 100  # this view's every source drawn, no shading
    assert sorted(page.source.data["row"]) == inside.tolist()
    assert page.density.data["image"] == [] and "all" in page.detail.text
    for ends in ((None, 1.0, 0.0, float("nan")), (10**400, 1, 0, 1), ("a", 1, 0, 1)):
        page.map._trigger_event(RangesUpdate(page.map, **dict(zip(("x0", "x1", "y0", "y1"), ends))))
        assert sorted(page.source.data["row"]) == inside.tolist()  # a forged event: ignored

    page.map._trigger_event(RangesUpdate(page.map, **page.view.around(xy)._asdict()))
    middle = {"type": "rect", "x0": x0, "x1": x1, "y0": y0, "y1": y1}
    drawn, before = np.asarray(page.source.data["row"]), page.current
    page.source.selected.indices = np.flatnonzero(np.isin(drawn, inside)).tolist()  # the browser
    page.map._trigger_event(SelectionGeometry(page.map, geometry=middle, final=True))  # then this
    assert page.chosen.tolist() == inside.tolist() and len(inside) > np.isin(drawn, inside).sum()
    assert page.current == before  # no source opened on the way
    assert page.selection.data["row"].tolist() == inside.tolist()
    assert f"{len(inside)} selected" in page.status.text
    assert set(inside) <= set(page.source.data["row"])  # the selected are drawn now

    def drag(geometry, shift=False, ctrl=False):
        keys = {"shift": shift, "ctrl": ctrl, "alt": False}
        page.map._trigger_event(PanStart(page.map, sx=0, sy=0, x=0, y=0, modifiers=keys))
        page.map._trigger_event(SelectionGeometry(page.map, geometry=geometry, final=True))

    corner = box(xy[np.argsort(xy[:, 0])[:40]])
    cornered = detail.rows_inside(xy, corner, np.ones(len(xy), bool))
    drag(corner, shift=True)  # Shift adds
    assert page.chosen.tolist() == np.union1d(inside, cornered).tolist()
    drag(corner, shift=True, ctrl=True)  # Shift and Ctrl take away
    assert page.chosen.tolist() == np.setdiff1d(inside, cornered).tolist()
    drag(corner)  # neither replaces
    assert page.chosen.tolist() == cornered.tolist()
    assert np.isin(cornered, page.selection.data["row"]).all()
    drag([1, 2])  # forged: ignored
    assert page.chosen.tolist() == cornered.tolist()

    page.source.selected.indices = [10**6]  # stale (points redrawn since) or forged: dropped
    assert len(page.chosen) == 0  # what is left of it is an empty selection
    drag(corner)
    page.map._trigger_event(Reset(page.map))  # the toolbar's reset
    assert len(page.chosen) == 0 and len(page.selection.data["row"]) == 0
    drag(corner)
    clear = doc.get_model_by_name("clear")
    clear._trigger_event(ButtonClick(clear))
    assert len(page.chosen) == 0 and page.status.text == "0 selected"


class TopcatLike:
    """A SAMP hub of the test's own (found through ``SAMP_HUB``, set by ``monkeypatch``), and,
    once :meth:`connect` is called, a client that loads tables as TOPCAT does: ``got`` holds
    the last table and its name."""

    def __init__(self, folder, monkeypatch):
        from pyvo.samp import SAMPHubServer, SAMPIntegratedClient

        self.lockfile = folder / "samp-hub"
        monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{self.lockfile.as_uri()}")
        self.hub = SAMPHubServer(web_profile=False, lockfile=str(self.lockfile))
        self.client = SAMPIntegratedClient(name="topcat-like")
        self.got = {}

    def connect(self) -> None:
        from astropy.io.votable import parse

        def load(private_key, sender, message, mtype, params, extra):
            path = urllib.request.url2pathname(params["url"][7:])
            self.got["table"] = Table.read(path)
            self.got["params"] = parse(path).get_first_table().params
            self.got["name"] = params["name"]
            self.client.reply(message, {"samp.status": "samp.ok", "samp.result": {}})

        self.client.connect()
        self.client.bind_receive_call("table.load.votable", load)

    def stop(self) -> None:
        if self.client.is_connected:
            self.client.disconnect()
        self.hub.stop()


def test_a_selection_goes_to_topcat_over_samp(catalogue, tmp_path, monkeypatch):
    from bokeh.document import Document

    from xspecvae.serve.app import Page

    page = Page(catalogue)
    page.attach(Document())
    page._send()
    assert page.status.text == "select sources first (box or lasso)"
    rows = [3, 8, 21]
    topcat = TopcatLike(tmp_path, monkeypatch)
    assert page.samp(rows).startswith("SAMP: no hub is running")
    topcat.hub.start()
    try:
        assert page.samp(rows).startswith("SAMP: no client that loads tables")
        topcat.connect()
        assert page.samp(rows) == "3 sources sent to topcat-like"
        table = topcat.got["table"]
        assert table["SRCID"].tolist() == catalogue.table["source_id"][rows].tolist()
        np.testing.assert_allclose(table["z_loc"], catalogue.table["z_loc"][rows], rtol=1e-6)
        assert str(table["RA"].unit) == "deg" and topcat.got["name"].endswith("selection")
        params = {p.name: p.value for p in topcat.got["params"]}  # where it came from
        assert params["RUNID"] == catalogue.origin["RUNID"] and params["NROWS"] == 3
    finally:
        topcat.stop()


# ---------------------------------------------------------------------------------------------
# The server


@pytest.fixture(scope="module")
def server(catalogue):
    from xspecvae.serve import running

    port = free_port()
    with running(catalogue, port=port):
        yield f"http://127.0.0.1:{port}/"


def fetch(url, body=None):
    """(status, body) of a GET, or of a POST of the form ``body``."""
    form = None if body is None else urllib.parse.urlencode(body).encode()
    try:
        with urllib.request.urlopen(url, form, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_downloads_and_bad_requests(server, catalogue):
    status, body = fetch(server + "download/selection.csv?rows=3,5-6")
    assert status == 200
    csv = Table.read(io.BytesIO(body), format="csv")
    assert csv["SRCID"].tolist() == catalogue.table["source_id"][[3, 5, 6]].tolist()
    status, body = fetch(server + "download/selection.fits", {"rows": "1,2"})
    assert status == 200 and body[:6] == b"SIMPLE"
    bad = {
        "download/selection.csv?rows=600": (400, "0 to 599"),
        "download/selection.csv?rows=1;drop": (400, "not a row number"),
        "download/selection.csv": (400, "no row given"),
        "download/../../etc/passwd": (404, "no file"),
        "download/selection.exe?rows=1": (404, "no file"),
    }
    for path, (code, why) in bad.items():
        status, body = fetch(server + path)
        text = body.decode()
        assert status == code and why in text and text.count("\n") == 1, (path, text)
        assert "Traceback" not in text
    assert fetch(server + "download/selection.csv?rows=0")[0] == 200  # still alive


def test_page_is_served_from_the_package(server):
    status, body = fetch(server)
    page = body.decode()
    assert status == 200 and "/static/js/bokeh" in page
    assert "cdn.bokeh.org" not in page and "https://" not in page.split("<body")[0]


def test_local_by_default_and_other_hosts_explicit():
    from xspecvae.cli import build_parser
    from xspecvae.serve.server import origins

    assert build_parser().parse_args(["serve", "run"]).host == "127.0.0.1"
    assert origins("127.0.0.1", 80) == ["127.0.0.1:80", "localhost:80"]
    assert origins("192.168.1.5", 8765) == ["192.168.1.5:8765"]
    assert f"{socket.gethostname()}:1" in origins("0.0.0.0", 1)


def test_cli_refuses_a_bad_run_and_a_taken_port(tmp_path, small_run, tables, capsys):
    assert main(["serve", str(tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("xspecvae serve: ") and "\n" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(small_run), "--tables", str(tables), "--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"xspecvae serve: 127.0.0.1:{port}: ") and "\n" not in err
    assert main(["serve", str(small_run), "--tables", str(tables), "--points", "0"]) == 1
    assert capsys.readouterr().err.strip() == (
        "xspecvae serve: --points: 0: at least one point must be drawn"
    )


def test_the_command_serves_until_interrupted(small_run, small_pack, tables, catalogue):
    """``xspecvae serve`` itself, as a user starts it (on the tables the fixture cached)."""
    port = free_port()
    command = ["serve", str(small_run), str(small_pack), "--tables", str(tables)]
    process = subprocess.Popen(
        [sys.executable, "-m", "xspecvae", *command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith(f"serving 600 sources at http://127.0.0.1:{port}/"), line
        assert fetch(f"http://127.0.0.1:{port}/")[0] == 200
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(180) == 0
    finally:
        process.kill()
        process.stdout.close()


# ---------------------------------------------------------------------------------------------
# In a real browser


def _missing(reason: str):
    if os.environ.get("XSPECVAE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (XSPECVAE_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
    except ImportError:
        _missing("selenium is not installed (pip install '.[test]')")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        _missing("chromium and chromedriver are not installed (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(flag)  # no sandbox: containers run as root
    options.add_argument("--enable-unsafe-swiftshader")  # WebGL on the CPU
    options.add_argument("--window-size=1300,1250")
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(chromedriver))
    except WebDriverException as err:
        _missing(f"chromium did not start: {str(err).strip().splitlines()[0]}")
    downloads = tmp_path_factory.mktemp("downloads")
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    yield driver
    driver.quit()


MODEL = "Bokeh.documents[0].get_model_by_name('{}')"

#: Selects rows arguments[0] as a box around those points would in the page (which of its
#: points are drawn; the box's geometry is not sent).
SELECT = """
const source = Bokeh.documents[0].get_model_by_name('map_source');
const drawn = Array.from(source.data.row);
source.selected.indices = arguments[0].map((row) => drawn.indexOf(row));
"""

#: Clicks the button whose text holds arguments[0], wherever it is in the shadow DOMs.
CLICK = """
const text = arguments[0];
function find(root) {
  for (const el of root.querySelectorAll('*')) {
    if (el.tagName == 'BUTTON' && el.textContent.includes(text)) return el;
    const inner = el.shadowRoot && find(el.shadowRoot);
    if (inner) return inner;
  }
}
const button = find(document); button.click(); return button.textContent;
"""


def wait(driver, script: str, timeout: float = 60):
    """The first truthy value of ``script`` in the page (polled)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
        lambda d: d.execute_script(script)
    )


def test_the_page_in_a_browser(browser, server, catalogue):
    table = catalogue.table
    browser.get(server)
    source = MODEL.format("map_source")
    n = wait(browser, f"return Bokeh.documents.length && {source} && {source}.data.x.length")
    assert n == len(table["row"]) == 600
    srcs = browser.execute_script("return [...document.scripts].map(s => s.src).filter(s => s)")
    assert srcs and all(s.startswith(server) for s in srcs), srcs  # BokehJS from the server

    row = a_repeated_row(catalogue)
    browser.execute_script(f"{MODEL.format('tapped_source')}.data = {{row: [{row}]}}")  # a tap
    info = MODEL.format("source_info")
    cell = f"<td>{table['source_id'][row]}</td>"
    wait(browser, f"return {info}.text.includes({cell!r})")
    similar = MODEL.format("similar_source")
    listed = f"return {similar}.data.row && Array.from({similar}.data.row)"
    expected = expected_similar(catalogue, row)
    wait(browser, f"{listed}.join() == {','.join(map(str, expected))!r}")
    browser.execute_script(f"{MODEL.format('divergence')}.value = 'wasserstein'")
    expected = expected_similar(catalogue, row, 10, "wasserstein")
    wait(browser, f"{listed}.join() == {','.join(map(str, expected))!r}")
    epochs = len(data.epochs(table, row))
    wait(browser, f"return {MODEL.format('spectrum_source')}.data.energy.length > 0")
    if os.environ.get("XSPECVAE_SCREENSHOT"):
        browser.save_screenshot(os.environ["XSPECVAE_SCREENSHOT"])

    steps = MODEL.format("trajectory_source")
    wait(browser, f"return {steps}.data.row && {steps}.data.row.length == {epochs}")

    rows = [2, 40, 41, row]
    browser.execute_script(SELECT, rows)
    wait(browser, f"return {MODEL.format('status')}.text == '4 selected'")  # the server knows
    for kind in ("fits", "csv"):
        browser.execute_script(CLICK, f"selection as {kind.upper()}")
        saved = browser.downloads / f"selection.{kind}"
        wait(browser, f"return {MODEL.format('status')}.text.includes('saved')")
        got = Table.read(saved, format="fits" if kind == "fits" else "csv")
        browser.execute_script(f"{MODEL.format('status')}.text = ''")
        assert sorted(got["SRCID"].tolist()) == sorted(table["source_id"][rows].tolist())


def test_a_link_opens_on_a_source(browser, server, catalogue):
    table, row = catalogue.table, 17
    browser.get(f"{server}?row={row}")
    info = MODEL.format("source_info")
    wait(browser, f"return Bokeh.documents.length && {info} && {info}.text.includes('SRCID')")
    assert f"<td>{table['source_id'][row]}</td>" in browser.execute_script(f"return {info}.text")
    shown = browser.execute_script(f"return Array.from({MODEL.format('shown_source')}.data.x)")
    assert shown == pytest.approx([catalogue.xy[row, 0]])  # ringed on the map
    browser.get(f"{server}?row=600")  # not a row: said, and the page lives
    status = MODEL.format("status")
    text = wait(browser, f"return Bokeh.documents.length && {status} && {status}.text")
    assert "0 to 599" in text


def test_a_selection_goes_over_samp_from_the_page(
    browser, server, catalogue, tmp_path, monkeypatch
):
    """The button's send runs in a thread of its own and says its outcome in the page."""
    topcat = TopcatLike(tmp_path, monkeypatch)
    topcat.hub.start()
    try:
        topcat.connect()
        browser.get(server)
        source, status = MODEL.format("map_source"), MODEL.format("status")
        wait(browser, f"return Bokeh.documents.length && {source} && {source}.data.x.length")
        browser.execute_script(SELECT, [5, 6])
        wait(browser, f"return {status}.text == '2 selected'")
        browser.execute_script(CLICK, "send to TOPCAT")
        wait(browser, f"return {status}.text.includes('sources sent to topcat-like')")
        assert (
            topcat.got["table"]["SRCID"].tolist() == catalogue.table["source_id"][[5, 6]].tolist()
        )
    finally:
        topcat.stop()


#: The page position (CSS pixels, from the map canvas's top left) of point arguments[0], and
#: the canvas element to click.
WHERE = """
const doc = Bokeh.documents[0];
const fig = doc.get_model_by_name('map'), source = doc.get_model_by_name('map_source');
const view = Bokeh.index.query_one((v) => v.model === fig);
const i = Array.from(source.data.row).indexOf(arguments[0]);
const sx = view.frame.x_scale.compute(source.data.x[i]);
const sy = view.frame.y_scale.compute(source.data.y[i]);
const el = view.canvas_view.events_el;
const box = el.getBoundingClientRect();
return [el, sx - box.width / 2, sy - box.height / 2];
"""


#: The text of the tooltips showing in the page, wherever they are in the shadow DOMs.
TOOLTIP = """
const found = [];
function walk(root) {
  for (const el of root.querySelectorAll('*')) {
    if (String(el.className).includes('tooltip') && el.offsetParent) found.push(el.innerText);
    if (el.shadowRoot) walk(el.shadowRoot);
  }
}
walk(document);
return found.join(' ').trim();
"""


def test_a_click_on_the_map_shows_that_source(browser, server, catalogue):
    """A real click (Selenium's pointer) on a point: the tap tool sends its row, the page
    shows it; nothing is selected."""
    from selenium.webdriver.common.action_chains import ActionChains

    table = catalogue.table
    browser.get(server)
    source, info = MODEL.format("map_source"), MODEL.format("source_info")
    wait(browser, f"return Bokeh.documents.length && {source} && {source}.data.x.length")
    xy = catalogue.xy
    far = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy)) * 1e9
    row = int(np.argmax(far.min(1)))  # the most isolated point: a click cannot miss it
    element, dx, dy = browser.execute_script(WHERE, row)
    ActionChains(browser).move_to_element_with_offset(element, dx, dy).perform()
    tip = wait(browser, TOOLTIP)  # the hover writes the ids sent as numbers back as text
    for name, value in (("SRCID", "source_id"), ("OBS_ID", "obs_id"), ("class", "label")):
        assert f"{name}:{table[value][row]}" in "".join(tip.split()), tip
    ActionChains(browser).move_to_element_with_offset(element, dx, dy).click().perform()
    cell = f"<td>{table['source_id'][row]}</td>"
    wait(browser, f"return {info}.text.includes({cell!r})")
    assert browser.execute_script(f"return {source}.selected.indices.length") == 0


@pytest.fixture(scope="module")
def sparse_server(catalogue):
    """A server whose maps draw at most 100 of the 600 sources as points."""
    from xspecvae.serve import running

    port = free_port()
    with running(catalogue, port=port, points=100):
        yield f"http://127.0.0.1:{port}/"


#: Makes the box select the map's drag tool; the canvas element, its size and the map frame's
#: left, top, width and height (CSS pixels from the canvas's top left).
FRAME = """
const fig = Bokeh.documents[0].get_model_by_name('map');
const view = Bokeh.index.query_one((v) => v.model === fig);
const tools = fig.toolbar.tools;
fig.toolbar.active_drag = tools.find((t) => t.constructor.__name__ == 'BoxSelectTool');
const el = view.canvas_view.events_el, box = el.getBoundingClientRect(), f = view.frame.bbox;
return [el, box.width, box.height, f.left, f.top, f.width, f.height];
"""

#: The map coordinates of the canvas points arguments[0], and the map's ranges.
TO_MAP = """
const fig = Bokeh.documents[0].get_model_by_name('map');
const {x_scale, y_scale} = Bokeh.index.query_one((v) => v.model === fig).frame;
const ranges = [fig.x_range.start, fig.x_range.end, fig.y_range.start, fig.y_range.end];
return [arguments[0].map(([sx, sy]) => [x_scale.invert(sx), y_scale.invert(sy)]), ranges];
"""


def test_a_large_map_in_a_browser(browser, sparse_server, catalogue):
    """100 points drawn and every source shaded; a box dragged with the pointer selects every
    source inside it, drawn or not, and they download; a second box dragged with Shift held
    adds its sources; a wheel zoom draws the smaller view's."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.keys import Keys

    xy = catalogue.xy
    browser.get(sparse_server)
    source, density = MODEL.format("map_source"), MODEL.format("density_source")
    status = MODEL.format("status")
    wait(browser, f"return Bokeh.documents.length && {source} && {source}.data.x.length == 100 "
                  f"&& {density}.data.image.length == 1")  # fmt: skip
    element, width, height, left, top, w, h = browser.execute_script(FRAME)

    def drag(u0, v0, u1, v1, shift=False) -> set[int]:
        """Drags the box tool from (u0, v0) to (u1, v1) (shares of the frame), downloads the
        selection; its rows, once checked against the box in map coordinates to a pixel."""
        corners = [(left + u0 * w, top + v0 * h), (left + u1 * w, top + v1 * h)]
        (a, b), _ = browser.execute_script(TO_MAP, corners)
        moves = ActionChains(browser)
        if shift:
            moves.key_down(Keys.SHIFT)
        moves.move_to_element_with_offset(element, corners[0][0] - width / 2,
                                          corners[0][1] - height / 2)  # fmt: skip
        moves.click_and_hold().move_by_offset(20, 20)
        moves.move_to_element_with_offset(element, corners[1][0] - width / 2,
                                          corners[1][1] - height / 2)  # fmt: skip
        moves.release()
        if shift:
            moves.key_up(Keys.SHIFT)
        browser.execute_script(f"{status}.text = ''")
        moves.perform()
        said = wait(browser, f"return {status}.text.endsWith(' selected') && {status}.text")
        saved = browser.downloads / "selection.csv"
        saved.unlink(missing_ok=True)
        browser.execute_script(CLICK, "selection as CSV")
        wait(browser, f"return {status}.text.includes('saved')")
        got = Table.read(saved, format="csv")
        rows = set(got[[c for c in got.colnames if c.lower() == "row"][0]].tolist())
        assert said == f"{len(rows)} selected"
        pixel = np.abs(np.subtract(b, a)) / [abs(u1 - u0) * w, abs(v1 - v0) * h]
        return rows, lambda grow: within(a, b, grow * pixel)

    def within(a, b, pad) -> set[int]:
        (x0, y0), (x1, y1) = np.minimum(a, b) - pad, np.maximum(a, b) + pad
        return set(np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0)
                                  & (xy[:, 1] <= y1)).tolist())  # fmt: skip

    rows, first = drag(0.25, 0.3, 0.7, 0.75)
    drawn = browser.execute_script(f"return Array.from({source}.data.row)")
    assert first(-1) <= rows <= first(1) and len(rows) > len(rows & set(drawn))
    more, second = drag(0.03, 0.1, 0.22, 0.9, shift=True)  # Shift: another box added
    assert rows | second(-1) <= more <= rows | second(1) and len(more) > len(rows)

    browser.execute_script(f"{status}.text = ''")
    middle = ScrollOrigin.from_element(
        element, round(left + w / 2 - width / 2), round(top + h / 2 - height / 2)
    )
    for _ in range(6):
        ActionChains(browser).scroll_from_origin(middle, 0, -200).perform()  # zoom in
    wait(browser, f"return {MODEL.format('detail')}.text.startsWith('all ')", 30)
    _, (x0, x1, y0, y1) = browser.execute_script(TO_MAP, [])
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    drawn = browser.execute_script(f"return Array.from({source}.data.row)")
    assert sorted(drawn) == np.flatnonzero(inside).tolist() and 0 < len(drawn) <= 100
    assert browser.execute_script(f"return {density}.data.image.length") == 0
