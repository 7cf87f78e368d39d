"""The transport ``[notifications] transport`` names: SMTP, Graph ``sendMail``, or none.

Its own module so that ``transports`` (SMTP, the shared types) and ``graph_transport`` (which
builds on them) import in one direction only.
"""

from __future__ import annotations

import ssl

from sqlalchemy.engine import Engine

from licsync.config import Settings
from licsync.errors import ConfigError
from licsync.notify.budget import MailBudget
from licsync.notify.graph_transport import GraphTransport
from licsync.notify.transports import NullTransport, SmtpTransport, Transport


def build_transport(settings: Settings, *, ssl_context: ssl.SSLContext | None = None,
                    engine: Engine | None = None) -> Transport:
    """The transport named by ``[notifications] transport``; with ``engine``, Graph's mailbox limits
    are counted in the database for every replica together (:mod:`licsync.notify.budget`)."""
    n = settings.notifications
    if n.transport == "smtp":
        return SmtpTransport(n.smtp_host, n.smtp_port, tls=n.smtp_tls, user=n.smtp_user,
                             password=n.smtp_password, ssl_context=ssl_context)  # type: ignore[arg-type]
    if n.transport == "graph":
        if not settings.tenant:
            raise ConfigError("notifications.transport = \"graph\" needs a [[tenant]] whose app sends the mail")
        tenant = settings.get_tenant(n.graph_tenant) if n.graph_tenant else settings.tenant[0]
        budget = None if engine is None else MailBudget(engine, per_minute=n.graph_rate_per_minute,
                                                        recipients_per_day=n.graph_recipients_per_day)
        return GraphTransport(tenant, rate_per_minute=n.graph_rate_per_minute, budget=budget)
    return NullTransport()
