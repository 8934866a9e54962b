"""Sending a selection to TOPCAT, Aladin or any other SAMP client (``pyvo.samp``, the home of
``astropy.samp`` since astropy 8), through the hub they run on the machine of the server.

The table travels as a VOTable file written for the call and removed once every receiver has
answered (each is called and waited for, as SAMP's ``table.load.votable`` asks)."""

from __future__ import annotations

import contextlib
import tempfile
import xmlrpc.client
from pathlib import Path
from typing import TYPE_CHECKING

from xspecvae.errors import InputError

if TYPE_CHECKING:
    from pyvo.samp import SAMPIntegratedClient

__all__ = ["MTYPE", "send_table"]

#: The SAMP message that asks a client to load a VOTable from a URL.
MTYPE = "table.load.votable"


def send_table(votable: bytes, name: str, *, timeout: int = 10) -> list[str]:
    """Send ``votable`` (the file's bytes), called ``name``, to every client of the running
    SAMP hub that loads tables; returns the names of those that took it. No hub, no such
    client, none that took it, or a hub that fails: an :class:`InputError` saying which."""
    from pyvo.samp import (
        SAMPClientError,
        SAMPHubError,
        SAMPIntegratedClient,
        SAMPProxyError,
    )

    failed = (SAMPHubError, SAMPProxyError, SAMPClientError, OSError, KeyError)
    failed += (xmlrpc.client.Error,)
    # not callable: a call-and-wait needs no server of our own for the replies
    client = SAMPIntegratedClient(name="xspecvae", description="xspecvae serve", callable=False)
    try:
        client.connect()
    except SAMPHubError:
        raise InputError("SAMP", "no hub is running (TOPCAT and Aladin start one)") from None
    except failed as err:
        raise InputError("SAMP", f"the hub could not be reached ({_said(err)})") from None
    try:
        return _call_each(client, votable, name, timeout, failed)
    except failed as err:
        raise InputError("SAMP", f"the hub failed ({_said(err)})") from None
    finally:
        with contextlib.suppress(*failed):
            client.disconnect()


def _call_each(
    client: SAMPIntegratedClient,
    votable: bytes,
    name: str,
    timeout: int,
    failed: tuple[type[Exception], ...],
) -> list[str]:
    receivers = client.get_subscribed_clients(MTYPE)
    if not receivers:
        raise InputError("SAMP", "no client that loads tables (TOPCAT, Aladin) is connected")
    with tempfile.TemporaryDirectory(prefix="xspecvae-samp-") as folder:
        path = Path(folder) / "selection.vot"
        path.write_bytes(votable)
        message = {"samp.mtype": MTYPE, "samp.params": {"url": path.as_uri(), "name": name}}
        took, refused = [], []
        for receiver in receivers:
            label = receiver
            try:  # a client that fails must not stop the others
                label = client.get_metadata(receiver).get("samp.name", receiver)
                reply = client.call_and_wait(receiver, message, str(timeout))
            except failed as err:
                refused.append(f"{label} ({_said(err)})")
                continue
            (refused if reply.get("samp.status") == "samp.error" else took).append(label)
    if not took:
        raise InputError("SAMP", f"no client took the table: {', '.join(refused)}")
    return took


def _said(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:80] if str(err).strip() else type(err).__name__
