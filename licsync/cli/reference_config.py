"""What each configuration key means, for the generated configuration reference (docs/configuration.md).

Types, defaults, limits and variable names come from the pydantic models; only the meaning is
written here. ``tests/cli/test_reference.py`` fails when a key of the models has no entry here, or
an entry names a key the models do not have.
"""

from __future__ import annotations

SECTION_NOTES = {
    "database": "Where licsync keeps its state.",
    "vendor": "The licensing vendor's public key, which verifies subscription keys offline.",
    "tenant": "One table per Microsoft 365 tenant (`[[tenant]]`, repeated). Environment overrides address a "
              "tenant by its `name`: `LICSYNC_TENANT__CONTOSO__CLIENT_SECRET=env:OTHER`.",
    "seats": "Seat accounting and the mass-free guard.",
    "notifications": "Mail to tenant and catalog admins (see docs/notifications).",
    "api": "The HTTP API and dashboard of `licsync serve` and `licsync run`.",
    "schedule": "The daemon's cycles (`licsync run`).",
    "roles": "The `role` seat model: which pools a role draws from, e.g. `observer = [\"weclimb\"]`.",
}

DESCRIPTIONS = {
    "database.url": "`sqlite:///licsync.db` (relative to the configuration file; `sqlite:////abs/path` for an "
                    "absolute one) or `postgresql+psycopg://user@host:5432/db` for several tenants or replicas.",
    "vendor.public_key": "The base64 Ed25519 public key from the vendor (the text of `vendor.pub`).",
    "tenant.name": "Local handle used by the CLI (`--tenant`) and the API URLs.",
    "tenant.tenant_id": "The Directory (tenant) ID of the app registration (Entra admin center, Overview).",
    "tenant.client_id": "The Application (client) ID of the app registration.",
    "tenant.client_secret": "A client secret by reference: `env:NAME` or `file:/path`. Give this or `certificate`.",
    "tenant.certificate": "PEM file with the private key and the certificate uploaded to the app registration; "
                          "instead of `client_secret`.",
    "tenant.certificate_password": "The certificate's password, by reference (`env:` / `file:`), if it has one.",
    "tenant.authority": "The login host; sovereign clouds: e.g. `https://login.microsoftonline.us`.",
    "tenant.graph_url": "Microsoft Graph; sovereign clouds: e.g. `https://graph.microsoft.us/v1.0`.",
    "tenant.ca_bundle": "Extra CA certificates to trust (a TLS-inspecting proxy); wins over `REQUESTS_CA_BUNDLE` "
                        "and `SSL_CERT_FILE`.",
    "tenant.admins": "Tenant admins' addresses: they receive the notifications.",
    "tenant.full_read": "`delta` (default): a full round walks `/users/delta`, ~200 users a page, one page at a "
    "time. `parallel`: large tenants — `/users` read in UPN-prefix shards side by side, committed in chunks that "
    "resume after a failure, checked against `/users/$count` (else the walk).",
    "tenant.read_concurrency": "`parallel` full reads: shards in flight at most (it halves as Graph's throttle "
    "percentage rises).",
    "tenant.sign_in_requests_per_minute": "Pacing of the `signInActivity` reads (Graph allows 10 a minute).",
    "tenant.timezone": "IANA time zone of the tenant (e.g. `Europe/Amsterdam`): its business days and its \"today\" "
    "(the daily ledger). Default UTC.",
    "tenant.holidays": "Extra non-business days of this tenant, local dates (`2026-12-25`), for the overage tiers.",
    "tenant.catalog_admins": "Catalog admins by catalog id: `{ \"sales\" = [\"lead@contoso.com\"] }`; they see "
                             "only their catalogs.",
    "tenant.api_audience": "Turns on Microsoft Entra ID bearer tokens for the API: the audience they must carry.",
    "tenant.api_admin_role": "App role of tenant admins in Entra tokens (default `LicSync.Admin`).",
    "tenant.api_platform_role": "App role of the learning platform in Entra tokens (default `LicSync.Platform`).",
    "tenant.api_catalog_admin_roles": "App role or group id → the catalogs its holders administer.",
    "tenant.api_issuer": "The issuer Entra tokens must carry, when not the tenant's default.",
    "tenant.lms_url": "An LMS365-style OData API read each cycle for catalogs, courses and enrollments.",
    "tenant.lms_api_key": "The LMS API key by reference (`env:` / `file:`); sent as a Bearer token.",
    "tenant.page_size": "Users per Graph page (`$top`); Graph's default when not set.",
    "tenant.timeout": "Timeout of one Graph or token request.",
    "tenant.max_retries": "Retries of a Graph request on 429, 5xx or a lost connection (a Graph URL that never "
                          "answered gets at most 2).",
    "tenant.max_retry_after": "The longest `Retry-After` waited out; a longer one ends the cycle (retried later).",
    "seats.grace_days": "Shortens the key's grace window (never lengthens it): the window is the shorter of the two. "
    "Unset: the key's (default 14).",
    "seats.mass_free_threshold": "A cycle that would free more seats than this is held for approval.",
    "seats.mass_free_fraction": "… or more than this fraction of the consumed seats.",
    "seats.holidays": "Days that are not business days for every tenant (tiered overage), beside each tenant's own.",
    "seats.inactive_days": "`role` model: no sign-in for this long flags an assignment as inactive.",
    "notifications.transport": "How mail leaves: SMTP, Microsoft Graph `sendMail`, or not at all.",
    "notifications.sender": "The From address (for `graph`: a mailbox the app may send as).",
    "notifications.smtp_host": "SMTP server.",
    "notifications.smtp_port": "SMTP port (25, 587 with `starttls`, 465 with `implicit`).",
    "notifications.smtp_tls": "`starttls` or `implicit` TLS; `none` only to a loopback relay.",
    "notifications.smtp_user": "SMTP login, if the server wants one.",
    "notifications.smtp_password": "SMTP password by reference (`env:` / `file:`).",
    "notifications.thresholds": "Usage percentages announced when crossed upwards.",
    "notifications.graph_recipients_per_day": "`graph` transport: recipients a day per mailbox (Exchange: 10,000), "
    "counted for every replica together in the database.",
    "retention.audit_days": "Audit, change and cycle history older than this many days is pruned (`licsync purge`, "
    "daily in the daemon).",
    "retention.deleted_user_days": "Personal data of users permanently deleted more than this many days ago is "
    "erased; the anonymised seat audit stays.",
    "api.access_log": "One log line per HTTP request (method, path without query, status, time); never a token.",
    "api.replica": "This replica's name on every `/metrics` sample (default: the host name).",
    "tenant.api_client_id": "The app registration's client id: the audience of v2 Entra ID tokens (v1 tokens use "
    "`api_audience`, the App ID URI).",
    "notifications.forecast_days": "Mail `seats_forecast` when consumed is forecast to reach the seats within this "
    "many days (once per crossing).",
    "authority.url": "The vendor's activation authority (https). Set: keys are activated through it and the "
    "deployment holds a renewed lease. Unset: keys are activated locally only.",
    "authority.ca_bundle": "Extra CA certificates to trust for the authority's certificate.",
    "authority.timeout": "Timeout of one request to the authority.",
    "notifications.graph_tenant": "`graph` transport: the tenant whose app sends (default: the first).",
    "notifications.graph_rate_per_minute": "`graph` transport: messages per minute at most.",
    "notifications.max_attempts": "Attempts before a message is marked failed.",
    "api.listen": "`HOST:PORT`; keep it on loopback or behind a reverse proxy.",
    "api.trusted_proxies": "Addresses or networks whose forwarding headers (`X-Forwarded-For`, `Forwarded`) are "
    "believed; none by default.",
    "api.public_url": "The URL users reach the dashboard at: redirects point there and other `Host` headers are "
    "refused (400). Unset: relative redirects.",
    "api.metrics_token": "A bearer token of its own for `/metrics` (`env:`/`file:` reference). Unset: `/metrics` is "
    "open but names no tenant unless `metrics_tenant_labels = \"name\"`.",
    "api.metrics_tenant_labels": "`auto` (names with a metrics token, `t1`, `t2`… without), `name` or `index`.",
    "api.max_body_statements": "Largest body of `POST …/statements` (sizes: `8MiB`, `512KiB`, bytes).",
    "api.max_body_form": "Largest body of the dashboard's sign-in and sign-out forms.",
    "api.max_body_other": "Largest body of any other request.",
    "api.max_header_bytes": "Request line and headers together; beyond, 431 and the connection is closed.",
    "api.header_timeout": "Time to send the request line and headers; then the connection is closed.",
    "api.keepalive_timeout": "An idle keep-alive connection is closed after this.",
    "api.body_timeout": "Time to send a whole body once the headers are in.",
    "api.max_connections": "Concurrent connections; beyond, the oldest half-open or idle one is closed, else 503. "
    "Keep it below `ulimit -n`.",
    "api.failed_auth_limit": "Failed credentials per client address within `failed_auth_window` before 429 (a valid "
    "credential is never refused).",
    "api.failed_auth_window": "The window of `failed_auth_limit`.",
    "imports.max_catalogs": "Catalogs in one enrollment file; beyond, the file is refused whole.",
    "imports.max_courses": "Courses in one enrollment file; beyond, the file is refused whole.",
    "schedule.sync_interval": "A delta cycle per tenant this often.",
    "schedule.full_resync_interval": "A full resync per tenant this often.",
    "roles": "Role name → the pools it may draw seats from (`role` model).",
}
