"""The transport ``[notifications] transport`` names: SMTP, Graph ``sendMail``, or none.

Its own module so that ``transports`` (SMTP, the shared types) and ``graph_transport`` (which
builds on them) import in one direction only.
"""

from __future__ import annotations

import ssl

from licsync.config import Settings
from licsync.errors import ConfigError
from licsync.notify.graph_transport import GraphTransport
from licsync.notify.transports import NullTransport, SmtpTransport, Transport


def build_transport(settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> Transport:
    """The transport named by ``[notifications] transport``."""
    n = settings.notifications
    if n.transport == "smtp":
        return SmtpTransport(n.smtp_host, n.smtp_port, tls=n.smtp_tls, user=n.smtp_user,
                             password=n.smtp_password, ssl_context=ssl_context)  # type: ignore[arg-type]
    if n.transport == "graph":
        if not settings.tenant:
            raise ConfigError("notifications.transport = \"graph\" needs a [[tenant]] whose app sends the mail")
        tenant = settings.get_tenant(n.graph_tenant) if n.graph_tenant else settings.tenant[0]
        return GraphTransport(tenant, rate_per_minute=n.graph_rate_per_minute)
    return NullTransport()
