"""``xspecvae serve``: a local web app over a run's catalogue (Bokeh server).

:mod:`.data` computes what is shown (pure functions on the run's tables), :mod:`.app` lays
it out as a Bokeh document, :mod:`.server` starts it."""

from xspecvae.serve.data import Catalogue
from xspecvae.serve.server import make_server, running, serve

__all__ = ["Catalogue", "make_server", "running", "serve"]
