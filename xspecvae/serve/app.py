"""The page of ``xspecvae serve``: a Bokeh document built from :mod:`xspecvae.serve.data`.

The map (WebGL) is the centre. It shades every source of the view and draws at most
:data:`~xspecvae.serve.detail.POINTS` of them as points, redrawn by the server after each pan
or zoom (:mod:`xspecvae.serve.detail`), so that a catalogue of any size loads and moves as
fast as a small one. Tapping a point (or opening ``/?row=N``) shows that source (spectrum,
summary, its epochs listed with their step divergences and drawn as its path on the map, its
hardness-intensity track) and its nearest posteriors, which are ringed on the map. A tap
changes only the map's overlay layer and no layout, so the points are not redrawn. A box or
lasso selects every source inside it, drawn or not (combined with the selection by the keys
held, as Bokeh's modes), and the selected sources are drawn; the selection can be downloaded
as FITS or CSV (from the server's ``download/`` handler) or sent over SAMP. Every model the
tests read has a ``name``.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from bokeh.events import PanStart, RangesUpdate, Reset, SelectionGeometry
from bokeh.layouts import column, row
from bokeh.models import (
    BooleanFilter,
    BoxSelectTool,
    Button,
    CDSView,
    ColumnDataSource,
    CustomJS,
    CustomJSHover,
    DataTable,
    Div,
    HoverTool,
    LassoSelectTool,
    LinearColorMapper,
    NumberFormatter,
    Range1d,
    ScientificFormatter,
    Select,
    Slider,
    Spinner,
    TableColumn,
    TabPanel,
    Tabs,
    TapTool,
)
from bokeh.plotting import figure
from bokeh.transform import transform

from xspecvae.errors import InputError
from xspecvae.latent import DEFAULT_DIVERGENCE, DIVERGENCES
from xspecvae.serve import data, detail, samp

if TYPE_CHECKING:
    from bokeh.document import Document

__all__ = ["build_document"]

#: How many of the most anomalous sources are listed.
ANOMALIES_SHOWN = 200

#: The browser side of a download button: POST the selected rows (every one, drawn or not, as
#: the server holds them, sorted; runs of consecutive rows written ``a-b``) to the server's
#: handler and save what comes back (or say why not in the status line).
DOWNLOAD = """
const rows = selection.data.row, runs = [];
if (rows.length == 0) { status.text = 'select sources first (box or lasso)'; return; }
for (let i = 0; i < rows.length; ) {
  let j = i;
  while (j + 1 < rows.length && rows[j + 1] == rows[j] + 1) j++;
  runs.push(i == j ? String(rows[i]) : rows[i] + '-' + rows[j]);
  i = j + 1;
}
fetch('download/selection.' + kind, {method: 'POST',
      body: new URLSearchParams({rows: runs.join(',')})})
  .then(r => r.ok ? r.blob() : r.text().then(t => { throw new Error(t); }))
  .then(b => {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(b);
    a.download = 'selection.' + kind;
    document.body.appendChild(a); a.click(); a.remove();
    status.text = rows.length + ' sources saved as selection.' + kind;
  })
  .catch(e => { status.text = 'download failed: ' + e.message; });
"""


#: The browser side of a tap on the map: the row of the point hit goes to the server through
#: ``tapped``. The tap inspects rather than selects, so the points are not repainted (seconds
#: for many points without a GPU); the source shown is ringed on the overlay layer instead.
TAPPED = """
const hit = cb_data.source.inspected.indices;
if (hit.length > 0) tapped.data = {row: [cb_data.source.data.row[hit[0]]]};
"""


#: A box or lasso's selection mode by the keys held when it started (Shift, Ctrl), as BokehJS
#: decides it; with neither, the tool's own mode (:data:`~xspecvae.serve.detail.COMBINE`).
KEYS = {(True, False): "append", (False, True): "intersect", (True, True): "subtract"}


#: The hover's text of an identifier sent as a number (:func:`~xspecvae.serve.data.map_columns`):
#: a name by its code, or the integer zero-padded to its catalogue's width.
WRITTEN = """
if (names.length > 0) return names[value] ?? '';
return String(value).padStart(width, '0');
"""


def build_document(catalogue: data.Catalogue, doc: Document, points: int = detail.POINTS) -> None:
    """Fill the Bokeh document ``doc`` (one browser session) with the app, drawing at most
    ``points`` sources as points; a page opened as ``/?row=N`` opens on source ``N`` (a link
    to a source)."""
    page = Page(catalogue, points)
    page.attach(doc)
    context = doc.session_context
    asked = context.request.arguments.get("row") if context and context.request else None
    if asked:
        try:
            page.show(catalogue.row(asked[0].decode(errors="replace")))
        except InputError as err:  # not a row, or its spectrum unreadable
            page.status.text = html.escape(str(err))


#: Formats of the tables' number columns (the others are shown as they are); models are
#: made per page, since a Bokeh model belongs to one document.
FORMATS = dict.fromkeys(("snr", "divergence", "misfit", "isolation", "step", "hardness"), "0.[000]")
FORMATS |= {"mjd": "0.[00]", "photon_flux": "scientific"}


def _formatter(spec: str):
    if spec == "scientific":
        return ScientificFormatter(precision=3)
    return NumberFormatter(format=spec)


def _table(name: str, columns: dict[str, str], height: int = 260) -> DataTable:
    """An empty DataTable ``name`` with ``columns`` (field -> title; numbers formatted)."""
    source = ColumnDataSource({f: [] for f in columns}, name=f"{name}_source")
    fields = [
        TableColumn(field=f, title=t, formatter=_formatter(FORMATS[f])) if f in FORMATS
        else TableColumn(field=f, title=t)
        for f, t in columns.items()
    ]  # fmt: skip
    return DataTable(source=source, columns=fields, height=height, width=460, name=name)


class Page:
    """The models of one session and the callbacks that tie them together."""

    def __init__(self, catalogue: data.Catalogue, points: int = detail.POINTS) -> None:
        self.cat = catalogue
        self.points = points  # the most drawn as points
        self.current = None  # the row shown
        self.sending = False  # a SAMP send under way
        self.doc = None  # set by attach
        table = catalogue.table
        self.options = data.colour_options(table)
        self.columns, self.written_as = catalogue.map_columns
        self.order = np.random.default_rng(0).permutation(len(catalogue))  # of the points drawn
        self.keep = np.ones(len(catalogue), bool)  # by the SNR filter
        self.view = detail.View.around(catalogue.xy)
        self.chosen = np.zeros(0, np.int64)  # the rows selected, drawn or not
        self.before = None  # the selection before the browser's points of a gesture came
        self.keys = (False, False)  # Shift, Ctrl when the gesture started
        self.source = ColumnDataSource({c: [] for c in self.columns}, name="map_source")
        self.density = ColumnDataSource(
            {k: [] for k in ("image", "x", "y", "dw", "dh")}, name="density_source"
        )
        self.selection = ColumnDataSource({"row": []}, name="selection_source")
        self.detail = Div(name="detail")
        self.status = Div(text="tap a source; box or lasso to select", name="status")
        self._map()
        self._source_panel()
        self._similar_panel()
        self._trajectory_panel()
        self.anomalies = _table(
            "anomalies",
            {"rank": "rank", "row": "row", "source_id": "SRCID", "label": "class"}
            | {"misfit": "misfit", "isolation": "isolation"},
        )
        self.anomalies.source.selected.on_change("indices", self._pick(self.anomalies))
        self.source.selected.on_change("indices", self._selected)

    def _map(self) -> None:
        table = self.cat.table
        snr = np.asarray(table["snr"], float)
        view = self.view
        self.map = figure(
            name="map",
            title=f"{self.cat.run.name}: {len(snr):,} posteriors (PaCMAP)",
            output_backend="webgl",
            tools="pan,wheel_zoom,reset,save",
            active_scroll="wheel_zoom",
            x_range=Range1d(view.x0, view.x1),
            y_range=Range1d(view.y0, view.y1),
            width=640,
            height=560,
        )
        self.map.image_rgba(
            image="image", x="x", y="y", dw="dw", dh="dh", source=self.density, level="image"
        )
        self.mapper = LinearColorMapper(palette=["#000000"])  # set by _recolour
        points = self.map.scatter(
            "x", "y", source=self.source, color=transform("colour", self.mapper), size=5,
            alpha=0.8, nonselection_alpha=0.25, selection_line_color="black",
        )  # fmt: skip
        self.box, self.lasso = (
            BoxSelectTool(renderers=[points]),
            LassoSelectTool(renderers=[points]),
        )
        self.map.add_tools(self.box, self.lasso)
        self.map.on_event(RangesUpdate, self._moved)
        self.map.on_event(PanStart, self._started)
        self.map.on_event(SelectionGeometry, self._drawn_around)
        self.map.on_event(Reset, self._unselect)
        texts = ("source_id", "obs_id", "label")
        tips = [("SRCID", "@source_id{custom}"), ("OBS_ID", "@obs_id{custom}")]
        tips += [("SNR", "@snr{0.0}"), ("class", "@label{custom}"), ("row", "@row")]
        written = {f"@{c}": CustomJSHover(args=self.written_as[c], code=WRITTEN) for c in texts}
        self.map.add_tools(HoverTool(renderers=[points], tooltips=tips, formatters=written))
        self.tapped = ColumnDataSource({"row": []}, name="tapped_source")
        self.tapped.on_change("data", self._tapped)
        tap = TapTool(behavior="inspect", renderers=[points])
        tap.callback = CustomJS(args={"tapped": self.tapped}, code=TAPPED)
        self.map.add_tools(tap)
        # the track and the rings are drawn on the overlay layer: changing them repaints that
        # layer only, not the whole catalogue (seconds per redraw at 300,000 points in a
        # browser without a GPU)
        self.track = ColumnDataSource({"x": [], "y": []}, name="track_source")
        on_top = {"source": self.track, "color": "black", "level": "overlay"}
        self.map.line("x", "y", line_width=2, alpha=0.8, **on_top)
        self.map.scatter("x", "y", marker="triangle", size=9, **on_top)
        self.shown = ColumnDataSource({"x": [], "y": []}, name="shown_source")
        self.map.scatter(
            "x", "y", source=self.shown, size=16, fill_alpha=0, line_color="black", line_width=3,
            level="overlay",
        )  # fmt: skip
        self.near = ColumnDataSource({"x": [], "y": []}, name="near_source")
        self.map.scatter(
            "x", "y", source=self.near, size=13, fill_alpha=0, line_color="red", line_width=2,
            level="overlay",
        )  # fmt: skip
        self.colour = Select(title="colour", value=self.options[0], options=self.options)
        self.colour.name = "colour"
        self.colour.on_change("value", self._recolour)
        self.legend = Div(name="legend")
        self._recolour(None, None, self.colour.value)
        top = float(np.ceil(np.nanmax(snr))) if len(snr) else 1.0
        self.snr = Slider(title="min SNR", start=0, end=max(top, 1.0), value=0, step=0.5)
        self.snr.name = "min_snr"
        self.snr.on_change("value_throttled", self._filter)

    def _recolour(self, attr: str | None, old: object, new: str) -> None:
        colouring = data.colours(self.cat.table, new)
        self.mapper.update(
            palette=colouring.palette, low=colouring.low, high=colouring.high,
            nan_color=colouring.palette[0],
        )  # fmt: skip
        self.colouring, self.rgb = colouring, colouring.rgb()
        self._redraw()
        self.legend.text = " ".join(
            f'<span style="color:{c}">&#9679;</span> {html.escape(t)}' for t, c in colouring.legend
        )

    def _filter(self, attr: str, old: object, new: float) -> None:
        self.keep = np.asarray(self.cat.table["snr"]) >= new
        self._redraw()
        self._search()

    def _moved(self, event: RangesUpdate) -> None:
        try:
            view = detail.View(*(float(e) for e in (event.x0, event.x1, event.y0, event.y1)))
        except (TypeError, ValueError, OverflowError):  # a forged event
            return
        if np.all(np.isfinite(view)):
            self.view = view
            self._redraw()

    def _shown(self) -> np.ndarray:
        """Which rows are in the view and kept by the SNR filter."""
        return self.keep & self.view.holds(self.cat.xy)

    def _redraw(self) -> None:
        """The view's points and shading (after a pan or zoom, a filter, a recolour)."""
        shown = self._shown()
        rows = detail.drawn_rows(self.order, shown, self.points, first=self.chosen)
        self.source.data = {c: v[rows] for c, v in self.columns.items()} | {
            "colour": self.colouring.values[rows]
        }
        self.source.selected.indices = self._places(self.chosen)
        seen = int(shown.sum())
        if len(rows) == seen:
            self.density.data = {k: [] for k in self.density.data}
            self.detail.text = f"all {seen:,} sources of the view drawn as points"
        else:
            x0, x1, y0, y1 = self.view.ordered()
            image = detail.density_image(self.cat.xy, self.rgb, shown, self.view)
            self.density.data = dict(image=[image], x=[x0], y=[y0], dw=[x1 - x0], dh=[y1 - y0])
            self.detail.text = (
                f"{len(rows):,} of the {seen:,} sources of the view drawn as points, the "
                "shading counts them all: zoom in for the others"
            )

    def _places(self, rows: np.ndarray) -> list[int]:
        """Where ``rows`` are among the points drawn."""
        return np.flatnonzero(np.isin(self.source.data["row"], rows)).tolist()

    def _started(self, event: PanStart) -> None:
        """A drag begins (a box or lasso, say): the keys held choose its selection mode."""
        keys = event.modifiers if isinstance(event.modifiers, dict) else {}
        self.keys = (keys.get("shift") is True, keys.get("ctrl") is True)
        self.before = None

    def _drawn_around(self, event: SelectionGeometry) -> None:
        """A box or lasso selects every source inside it, drawn as a point or not, combined
        with the selection before it by its mode (the keys held, or the tool's)."""
        if not (event.final and isinstance(event.geometry, dict)):
            return
        tool = self.box if event.geometry.get("type") == "rect" else self.lasso
        inside = detail.rows_inside(self.cat.xy, event.geometry, self.keep)
        before = self.chosen if self.before is None else self.before
        self.before = None
        self._choose(detail.combine(before, inside, KEYS.get(self.keys, tool.mode)))
        if not np.isin(self.chosen[self._shown()[self.chosen]], self.source.data["row"]).all():
            self._redraw()  # the selected sources of the view are drawn, so they show
        if len(self.chosen) == 1:
            self._open(self.chosen[0])

    def _unselect(self) -> None:
        self._choose(np.zeros(0, np.int64))

    def _choose(self, rows: np.ndarray) -> None:
        self.chosen = np.asarray(rows, np.int64)
        self.selection.data = {"row": self.chosen.astype(np.int32)}
        self.source.selected.indices = self._places(self.chosen)
        self.status.text = f"{len(rows):,} selected"

    def _source_panel(self) -> None:
        self.spectrum = ColumnDataSource(
            {k: [] for k in ("energy", "counts", "low", "high", "model", "band_lo", "band_hi")}
            | {"background": [], "good": []},
            name="spectrum_source",
        )
        good = CDSView(filter=BooleanFilter(booleans=[]))
        self.good = good.filter
        fig = figure(
            name="spectrum", x_axis_type="log", y_axis_type="log", width=520, height=340,
            x_axis_label="energy (keV)", y_axis_label="counts / keV", title="tap a source",
        )  # fmt: skip
        fig.varea("energy", "band_lo", "band_hi", source=self.spectrum, color="tomato", alpha=0.3)
        fig.line("energy", "model", source=self.spectrum, color="firebrick", legend_label="model")
        fig.line(
            "energy", "background", source=self.spectrum, color="grey", legend_label="background"
        )
        fig.segment(
            "energy", "low", "energy", "high", source=self.spectrum, view=good, color="black"
        )
        fig.scatter(
            "energy", "counts", source=self.spectrum, view=good, size=3, color="black",
            legend_label="counts",
        )  # fmt: skip
        fig.legend.location = "bottom_left"
        self.spectrum_figure = fig
        self.info = Div(name="source_info", width=640)

    def _similar_panel(self) -> None:
        self.divergence = Select(
            title="divergence",
            value=DEFAULT_DIVERGENCE,
            options=list(DIVERGENCES),
            name="divergence",
        )
        self.k = Spinner(title="k", low=1, high=100, step=1, value=10, width=80, name="k")
        for menu in (self.k, self.divergence):
            menu.on_change("value", lambda attr, old, new: self._search())
        self.similar = _table(
            "similar",
            {"rank": "rank", "row": "row", "source_id": "SRCID", "obs_id": "OBS_ID"}
            | {"label": "class", "snr": "SNR", "divergence": "divergence"},
        )
        self.similar.source.selected.on_change("indices", self._pick(self.similar))

    def _trajectory_panel(self) -> None:
        self.steps = _table(
            "trajectory",
            {"row": "row", "obs_id": "OBS_ID", "mjd": "MJD", "step": "step divergence"}
            | {"hardness": "hardness", "photon_flux": "photons/cm2/s"},
            height=120,
        )
        self.steps.source.selected.on_change("indices", self._pick(self.steps))
        fig = figure(
            name="hardness_intensity", y_axis_type="log", width=460, height=260,
            x_axis_label="model hardness (H - S) / (H + S)",
            y_axis_label="model photon flux (photons/cm2/s)", title="hardness-intensity",
        )  # fmt: skip
        fig.line("hardness", "photon_flux", source=self.steps.source, color="black")
        fig.scatter("hardness", "photon_flux", source=self.steps.source, size=7, color="black")
        self.here = ColumnDataSource({"hardness": [], "photon_flux": []}, name="here_source")
        fig.scatter("hardness", "photon_flux", source=self.here, size=12, color="red")
        self.hardness_intensity = fig

    def _pick(self, listing: DataTable):
        """A callback: the row picked in ``listing`` becomes the selected source."""

        def pick(attr: str, old: object, new: list[int]) -> None:
            if len(new) == 1:
                chosen = int(listing.source.data["row"][new[0]])
                listing.source.selected.indices = []
                self.show(chosen)

        return pick

    def _tapped(self, attr: str, old: object, new: dict[str, list[int]]) -> None:
        if len(new["row"]) == 1:
            self._open(new["row"][0])

    def _open(self, row: object) -> None:
        """:meth:`show` ``row``, or say in the status line why not."""
        try:
            self.show(self.cat.row(row))
        except InputError as err:  # not a row, or its spectrum unreadable
            self.status.text = html.escape(str(err))

    def _selected(self, attr: str, old: object, new: list[int]) -> None:
        """The browser selected points (or cleared them): those rows, until the selection's
        geometry, which follows a box or lasso, names every source inside it."""
        drawn = np.asarray(self.source.data["row"])
        places = [i for i in new if 0 <= i < len(drawn)]  # a stale or forged index: dropped
        if places != self._places(self.chosen):
            if self.before is None:
                self.before = self.chosen
            self._choose(np.unique(drawn[places]))

    def show(self, row: int) -> None:
        """The panel of source ``row``: spectrum, summary, epochs (and their path on the map),
        nearest posteriors. Nothing here may change the page's layout (new widgets, say):
        that would repaint the whole map."""
        panel = self.cat.spectrum(row)
        self.current = row
        self.shown.data = self._on_map([row])
        self.good.booleans = panel["good"].tolist()
        low = np.maximum(panel["counts"] - panel["error"], 0.5 * panel["counts"])
        self.spectrum.data = {k: v for k, v in panel.items() if k in self.spectrum.data} | {
            "low": low,
            "high": panel["counts"] + panel["error"],
        }
        facts = data.summary(self.cat.table, row)
        self.spectrum_figure.title.text = f"SRCID {facts['SRCID']}, OBS_ID {facts['OBS_ID']}"
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in facts.items()
        )
        self.info.text = f"<table>{cells}</table>"
        self._trajectory()
        self._search()

    def _trajectory(self) -> None:
        """The selected source's epochs with their steps (under
        :data:`~xspecvae.latent.STEP_DIVERGENCE`; the chosen divergence is the search's), their
        path on the map, and its hardness-intensity track (the selected epoch in red)."""
        steps = data.trajectory(self.cat.table, self.current)
        self.steps.source.data = {c: steps[c] for c in self.steps.source.data if c in steps}
        here = steps["row"] == self.current
        self.here.data = {c: steps[c][here] for c in self.here.data if c in steps}
        track = steps["row"] if len(steps["row"]) > 1 else steps["row"][:0]  # in time
        self.track.data = self._on_map(track)

    def _on_map(self, rows: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """The map coordinates of ``rows``, as the overlay sources hold them."""
        return {"x": self.cat.xy[rows, 0], "y": self.cat.xy[rows, 1]}

    def _search(self) -> None:
        """The nearest posteriors of the selected source, ringed on the map."""
        if self.current is None:
            return
        found = data.similar(
            self.cat.index, self.cat.table, self.current, k=self.k.value,
            divergence=self.divergence.value, min_snr=self.snr.value,
        )  # fmt: skip
        self.similar.source.data = found
        self.near.data = self._on_map(found["row"])

    def _send(self) -> None:
        """The selection, to TOPCAT, Aladin or any SAMP client of the hub on the server's
        machine: sent from a thread of its own (a slow client must not stall the server),
        its outcome then said in the status line."""
        rows = self.chosen.tolist()
        if not rows:
            self.status.text = "select sources first (box or lasso)"
            return
        if self.sending:
            self.status.text = "a SAMP send is under way"
            return
        self.sending = True
        self.status.text = f"sending {len(rows)} sources over SAMP"
        doc = self.doc

        def said(text: str) -> None:
            self.sending = False
            self.status.text = html.escape(text)

        def send() -> None:
            doc.add_next_tick_callback(partial(said, self.samp(rows)))

        threading.Thread(target=send, daemon=True, name="xspecvae-samp").start()

    def samp(self, rows: list[int]) -> str:
        """Send ``rows`` over SAMP now (blocking); what happened, in a line."""
        body = self.cat.selection(rows, "votable")
        try:
            took = samp.send_table(body, f"xspecvae {self.cat.run.name} selection")
        except InputError as err:
            return str(err)
        return f"{len(rows)} sources sent to {', '.join(took)}"

    def _selection_buttons(self) -> list[Button]:
        send = Button(label="send to TOPCAT / Aladin (SAMP)", name="samp")
        send.on_click(self._send)
        clear = Button(label="clear selection", name="clear")
        clear.on_click(self._unselect)
        buttons = [send, clear]
        for kind in ("fits", "csv"):
            button = Button(label=f"selection as {kind.upper()}", name=f"download_{kind}")
            code = CustomJS(
                args={"selection": self.selection, "status": self.status, "kind": kind},
                code=DOWNLOAD,
            )
            button.js_on_click(code)
            buttons.append(button)
        return buttons

    def attach(self, doc: Document) -> None:
        """Lay the page out in ``doc`` (the anomaly list is filled here: it may take a search)."""
        ranked = self.cat.anomalies
        shown = {c: ranked[c][:ANOMALIES_SHOWN] for c in self.anomalies.source.data if c in ranked}
        self.anomalies.source.data = {
            c: v.astype(str) if c in ("source_id", "label") else v for c, v in shown.items()
        }
        controls = row(self.colour, self.snr)
        left = column(controls, row(*self._selection_buttons()), self.legend, self.map)
        left.children += [self.detail, self.status, self.info]
        tabs = Tabs(
            tabs=[
                TabPanel(title="similar", child=column(row(self.divergence, self.k), self.similar)),
                TabPanel(title="hardness-intensity", child=self.hardness_intensity),
                TabPanel(title="anomalies", child=self.anomalies),
            ]
        )
        right = column(self.spectrum_figure, self.steps, tabs)
        doc.add_root(row(left, right))
        self.doc = doc
        doc.title = f"xspecvae serve: {self.cat.run.name}"
