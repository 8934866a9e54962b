"""The HTML report: one self-contained, escaped page with embedded figures and tables."""

import base64
import re

import numpy as np
import pytest
from matplotlib.image import imsave

from xspecvae.report import Section, write_report

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture
def pngs(tmp_path):
    """Three small distinct PNG files."""
    paths = []
    for i in range(3):
        path = tmp_path / f"figure{i}.png"
        imsave(path, np.full((4, 5), float(i)), vmin=0, vmax=2)
        paths.append(path)
    return paths


def test_the_report_is_one_self_contained_escaped_page(tmp_path, pngs):
    sections = [
        Section(
            "Latent map <of> classes",
            text="First paragraph & more.\n\n<script>alert('x')</script>",
            figures=pngs[:2],
            captions=["By class", "By SNR"],
        ),
        Section(
            "Quality",
            table=[
                {"class": "AGN", "precision": 0.912345, "n": np.int64(1234)},
                {"class": "star<b>", "precision": np.float32(12345.678), "n": 7, "extra": None},
            ],
        ),
        Section("Anomalies", figures=[pngs[2]], table={"rank": [1, 2], "score": [1e-7, np.nan]}),
    ]
    path = write_report(
        tmp_path / "out" / "report.html", "xspecvae report", sections, subtitle="run & pack"
    )
    assert path == tmp_path / "out" / "report.html"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]  # no temporary left
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # titles and text, escaped
    assert "<h1>xspecvae report</h1>" in page and "run &amp; pack" in page
    assert "Latent map &lt;of&gt; classes" in page and "<of>" not in page
    assert "<p>First paragraph &amp; more.</p>" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    # a table of contents linking to every section by its anchor
    anchors = re.findall(r'<a href="#([^"]+)">', page)
    assert len(anchors) == 3
    for anchor in anchors:
        assert f'<section id="{anchor}">' in page
    assert re.findall(r'<a href="#[^"]+">([^<]*)</a>', page) == [
        "Latent map &lt;of&gt; classes",
        "Quality",
        "Anomalies",
    ]
    # one data URI per figure, decoding to the very PNG bytes, in order, with captions
    encoded = DATA_URI.findall(page)
    assert [base64.b64decode(data) for data in encoded] == [p.read_bytes() for p in pngs]
    assert page.count("data:image/png;base64,") == 3
    assert "<figcaption>By class</figcaption>" in page
    # tables: every column, floats to 4 significant digits, integers whole, escaped, blanks
    assert "<th>extra</th>" in page and "<td>star&lt;b&gt;</td>" in page
    for cell in ("0.9123", "1.235e+04", ">1234<", ">7<", "1e-07", "nan"):
        assert cell in page
    assert "0.912345" not in page
    assert "<td></td>" in page
    # nothing outside the page: every src is a data URI, no address, no script
    assert "http" not in page
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))
    assert "<link" not in page and "url(" not in page


def test_a_missing_figure_is_named_and_nothing_is_written(tmp_path, pngs):
    missing = tmp_path / "nowhere" / "map.png"
    path = tmp_path / "report.html"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        write_report(path, "t", [Section("a", figures=[pngs[0], missing])])
    assert not path.exists()


def test_bad_tables_figures_and_captions_are_refused(tmp_path, pngs):
    path = tmp_path / "report.html"
    with pytest.raises(ValueError, match="unequal lengths"):
        write_report(path, "t", [Section("a", table={"x": [1, 2], "y": [1]})])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="not a PNG"):
        write_report(path, "t", [Section("a", figures=[text])])
    with pytest.raises(ValueError, match="1 captions for 2 figures"):
        write_report(path, "t", [Section("a", figures=pngs[:2], captions=["one"])])
    assert not path.exists()


def test_a_report_replaces_an_older_one(tmp_path):
    path = tmp_path / "report.html"
    path.write_text("old")
    write_report(path, "New", [Section("Only text", text="Hello")])
    page = path.read_text()
    assert "<h2>Only text</h2>" in page and "<p>Hello</p>" in page and "old" not in page
