"""Starting ``xspecvae serve``: a Bokeh server (which serves BokehJS from the installed
package: no CDN, no network) on one address, 127.0.0.1 unless another is named, with the
app at ``/`` and the selection downloads at ``/download/selection.fits`` and ``.csv``.

A download names its rows in the query or a form body (``rows=3,7,10-12``); anything else
(an unknown row, a malformed list, another file) is answered 4xx with one line of text."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import tornado.web
from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.server.server import Server
from tornado.ioloop import IOLoop

from xspecvae.errors import InputError
from xspecvae.serve.app import build_document
from xspecvae.serve.data import Catalogue, parse_rows
from xspecvae.serve.detail import POINTS

__all__ = ["LOCAL", "DownloadHandler", "make_server", "origins", "running", "serve"]

#: Hosts that only this machine reaches.
LOCAL = ("127.0.0.1", "localhost", "::1")
#: Addresses that mean every interface.
WILDCARD = ("0.0.0.0", "::")

_TYPES = {"fits": "application/fits", "csv": "text/csv; charset=utf-8"}


class DownloadHandler(tornado.web.RequestHandler):
    """``download/selection.<fits|csv>?rows=...`` (GET or POST): the selection's table."""

    def initialize(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    def get(self, name: str) -> None:
        kind = name.removeprefix("selection.")
        if not name.startswith("selection.") or kind not in _TYPES:
            raise tornado.web.HTTPError(
                404, reason=f"no file {name[:40]!r}: selection.fits or .csv"
            )
        try:
            rows = parse_rows(self.get_argument("rows", ""), len(self.catalogue))
        except InputError as err:
            raise tornado.web.HTTPError(400, reason=str(err)) from None
        body = self.catalogue.selection(rows, kind)
        self.set_header("Content-Type", _TYPES[kind])
        self.set_header("Content-Disposition", f'attachment; filename="selection.{kind}"')
        self.finish(body)

    post = get

    def write_error(self, status_code: int, **kwargs) -> None:
        """One line of text, never a traceback."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"{status_code} {self._reason}\n")


def make_server(
    catalogue: Catalogue,
    *,
    port: int = 8765,
    host: str = "127.0.0.1",
    points: int = POINTS,
    io_loop: IOLoop | None = None,
) -> Server:
    """The Bokeh :class:`Server` of ``catalogue`` on ``host:port`` (not started), its maps
    drawing at most ``points`` sources as points; its pages accept websockets only from the
    :func:`origins` of that address."""
    page = partial(build_document, catalogue, points=points)
    return Server(
        {"/": Application(FunctionHandler(page))},
        io_loop=io_loop,
        port=port,
        address=host,
        allow_websocket_origin=origins(host, port),
        extra_patterns=[(r"/download/(.*)", DownloadHandler, {"catalogue": catalogue})],
    )


def origins(host: str, port: int) -> list[str]:
    """The pages' origins a server on ``host:port`` accepts websockets from: the address, and
    localhost's names for a local one; for all interfaces (``0.0.0.0``, ``::``), the
    machine's names too."""
    names = [host]
    if host in LOCAL[:2] or host in WILDCARD:
        names = ["127.0.0.1", "localhost"]
    if host in WILDCARD:
        names += [socket.gethostname(), socket.getfqdn()]
    return [f"{name}:{port}" for name in dict.fromkeys(names)]


def serve(
    run: str | os.PathLike,
    pack_path: str | os.PathLike | None = None,
    *,
    port: int = 8765,
    host: str = "127.0.0.1",
    folder: str | os.PathLike | None = None,
    instrument: str | None = None,
    points: int = POINTS,
) -> None:
    """Open ``run`` on ``pack_path`` and serve it until interrupted (Ctrl-C); an address that is
    taken or not this machine's is an :class:`InputError`."""
    catalogue = Catalogue(run, pack_path, folder, instrument=instrument, progress=True)
    try:
        try:
            server = make_server(catalogue, port=port, host=host, points=points)
        except OSError as err:
            raise InputError(f"{host}:{port}", err.strerror or str(err)) from None
        server.start()
        if host not in LOCAL:
            print(f"warning: serving on {host}: whoever reaches it can read this catalogue")
        print(f"serving {len(catalogue):,} sources at http://{host}:{port}/ (Ctrl-C to stop)")
        # Ctrl-C stops the loop between callbacks: a KeyboardInterrupt raised inside one (say
        # while JAX compiles for a request) could be swallowed and leave the server running
        loop = server.io_loop
        previous = signal.signal(signal.SIGINT, lambda *_: loop.add_callback(loop.stop))
        try:
            loop.start()
        finally:
            signal.signal(signal.SIGINT, previous)
    except KeyboardInterrupt:
        pass
    finally:
        catalogue.close()


@contextmanager
def running(
    catalogue: Catalogue, *, port: int, host: str = "127.0.0.1", points: int = POINTS
) -> Iterator[Server]:
    """:func:`make_server` started in a thread of its own (for notebooks and tests); yields
    the server and stops it on exit."""
    ready, box = threading.Event(), {}

    def loop() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            box["server"] = make_server(
                catalogue, port=port, host=host, points=points, io_loop=IOLoop.current()
            )
            box["server"].start()
        finally:
            ready.set()
        box["server"].io_loop.start()

    thread = threading.Thread(target=loop, daemon=True, name="xspecvae-serve")
    thread.start()
    ready.wait()
    if "server" not in box:
        raise RuntimeError(f"the server did not start on {host}:{port}")
    server = box["server"]
    try:
        yield server
    finally:
        server.io_loop.add_callback(server.stop)
        server.io_loop.add_callback(server.io_loop.stop)
        thread.join(10)
