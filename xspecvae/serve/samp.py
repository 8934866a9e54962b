"""Sending a selection to TOPCAT, Aladin or any other SAMP client (``pyvo.samp``, the home of
``astropy.samp`` since astropy 8), through the hub they run on this machine.

The table travels as a VOTable file written for the call and removed once every receiver has
answered (each is called and waited for, as SAMP's ``table.load.votable`` asks)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from xspecvae.errors import InputError

__all__ = ["MTYPE", "send_table"]

#: The SAMP message that asks a client to load a VOTable from a URL.
MTYPE = "table.load.votable"


def send_table(votable: bytes, name: str, *, timeout: int = 10) -> list[str]:
    """Send ``votable`` (the file's bytes), called ``name``, to every client of the running
    SAMP hub that loads tables; returns the names of those that took it. No hub, no such
    client, or none that took it: an :class:`InputError` saying which."""
    from pyvo.samp import SAMPHubError, SAMPIntegratedClient

    client = SAMPIntegratedClient(name="xspecvae", description="xspecvae serve: a selection")
    try:
        client.connect()
    except SAMPHubError:
        raise InputError("SAMP", "no hub is running (TOPCAT and Aladin start one)") from None
    try:
        receivers = client.get_subscribed_clients(MTYPE)
        if not receivers:
            raise InputError("SAMP", "no client that loads tables (TOPCAT, Aladin) is connected")
        with tempfile.TemporaryDirectory(prefix="xspecvae-samp-") as folder:
            path = Path(folder) / "selection.vot"
            path.write_bytes(votable)
            message = {"samp.mtype": MTYPE, "samp.params": {"url": path.as_uri(), "name": name}}
            took, refused = [], []
            for receiver in receivers:
                label = client.get_metadata(receiver).get("samp.name", receiver)
                try:
                    reply = client.call_and_wait(receiver, message, str(timeout))
                except Exception as err:  # a client that fails must not stop the others
                    refused.append(f"{label} ({str(err).strip()[:80] or type(err).__name__})")
                    continue
                status = reply.get("samp.status", "samp.ok")
                (took if status != "samp.error" else refused).append(label)
        if not took:
            raise InputError("SAMP", f"no client took the table: {', '.join(refused)}")
        return took
    finally:
        client.disconnect()
