"""How do I disable TLS/SSL certificate verification?

Usually you want something else: trust the certificate's issuer. For a private CA or a
self-signed server, pass a context that trusts it:
`ssl.create_default_context(cafile="ca.pem")`. The connection stays verified, against that
CA, including the host name.

Turning verification off (`check_hostname = False`, `verify_mode = ssl.CERT_NONE`) lets
anyone on the path read and change the traffic without a trace. Do it only for local
testing, never in production; `python -m trio_ws wss://... --insecure` does it, with a
warning.
"""

from __future__ import annotations

import ssl

import trio_ws


def trusting(cafile: str) -> ssl.SSLContext:
    """The right way: verified, against a CA of your own."""
    return ssl.create_default_context(cafile=cafile)


def unverified() -> ssl.SSLContext:
    """For local testing ONLY: no certificate or host name check at all."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def fetch_one(uri: str, context: ssl.SSLContext) -> trio_ws.Message:
    async with trio_ws.connect(uri, ssl_context=context) as ws:
        await ws.send("hello over TLS")
        return await ws.recv()
