"""Email notifications: an outbox in the database, event rules, templates and transports.

* ``events`` — what deserves a message (called inside the sync cycle's transaction);
* ``audience`` — who receives it and which figures each recipient may see;
* ``outbox`` — ``enqueue`` (same transaction as the change) and ``drain`` (send, retry, the guarantee);
* ``transports`` — SMTP, Microsoft Graph ``sendMail``, or ``none``;
* ``render`` — the Jinja2 templates under ``templates/``.
"""
