"""Single-tenant activation across deployments, the deployment's side (SPEC §2).

* ``activate`` — `licsync activate`: with ``[authority] url`` the key goes to the authority with
  the tenant's Entra id and this deployment's id; the lease that comes back is checked and stored
  in the same transaction as the activation. A key issued with ``--tenant-id`` must name the
  configured tenant. Without either, the key is activated locally as before.
* ``before_round`` — called by every sync cycle (CLI ``sync`` and the daemon) before the Graph
  round: renews the lease once past half its life (backing off after failures), handles a
  "moved"/"revoked" answer (deactivate, audit, mail the admins), then checks that the tenant the
  Graph token is for (``tid``) is the tenant of the lease or bound key. A mismatch licenses nobody
  (the subscription is deactivated here, with the reason in status) and fails the cycle with a
  configuration error saying why.

An unreachable authority is not an outage: the renewal is retried with backoff and the stored
lease keeps licensing to its expiry; then grace runs with reason ``lease_expired``
(``licsync.subscriptions.grace``), then enforcement.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from licsync.authority import lease as lease_mod
from licsync.authority.client import AuthorityClient
from licsync.authority.service import Refused
from licsync.config import Settings, TenantConfig
from licsync.db import session_scope
from licsync.errors import ConfigError, InputError, TransientError
from licsync.log import get_logger
from licsync.notify import events
from licsync.subscriptions import keys, leases, registry
from licsync.subscriptions.registry import ActivationResult


def _configured_tenant_id(tenant: TenantConfig) -> str:
    try:
        return lease_mod.tenant_guid(tenant.tenant_id, f"tenant {tenant.name}: tenant_id")
    except InputError as exc:
        raise ConfigError(f"{exc}; activation through the authority and tenant-bound keys need the GUID") from None


def activate(session: Session, settings: Settings, tenant: TenantConfig, key_text: str, now: datetime,
             actor: str = "cli") -> ActivationResult:
    """Activate ``key_text`` on ``tenant`` (through the authority when configured); nothing changes on refusal.

    The local activation is written first (it refuses stale keys before the authority is asked),
    then the authority is asked in the same open transaction: a refusal rolls both back.
    """
    terms = keys.verify(key_text, settings.vendor.public_key)
    bound = terms.bound_tenant_id
    if bound is not None and bound != _configured_tenant_id(tenant):
        raise InputError(f"subscription key refused: it is bound to tenant {bound}, and tenant {tenant.name} is "
                         f"{tenant.tenant_id.lower()}. Nothing changed.")
    if terms.required_authority and not settings.authority.url:
        raise InputError(f"subscription key refused: it must be activated through the vendor's activation "
                         f"authority; set [authority] url = \"{terms.required_authority}\". Nothing changed.")
    if not settings.authority.url:
        result = registry.activate(session, tenant.name, key_text, settings.vendor.public_key, now, actor=actor)
        if bound is not None:
            leases.bind_tenant(session, tenant.name, terms.id, bound, now)
        else:
            leases.forget(session, terms.id)
        return result
    tenant_id = _configured_tenant_id(tenant)
    deployment = leases.deployment_id(session)
    found = registry.active_subscription(session, tenant.name)
    if found is not None and found[1] == terms:  # already active here by key: it only needs its lease
        result = ActivationResult(tenant=tenant.name, terms=terms, outcome="leased",
                                  sentence=f"Subscription {terms.id} is already active on {tenant.name}.")
    else:
        result = registry.activate(session, tenant.name, key_text, settings.vendor.public_key, now, actor=actor)
    try:
        with AuthorityClient(settings.authority) as client:
            answer = client.activate(keys.normalize(key_text), tenant_id, deployment)
    except Refused as exc:
        raise InputError(f"subscription key refused: {exc}. Nothing changed.") from None
    lease = leases.record_lease(session, tenant.name, tenant_id, answer["lease"], settings.vendor.public_key, now,
                                subscription_id=terms.id, deployment=deployment)
    registry.audit(session, now=now, tenant=tenant.name, actor=actor, action="lease_received", subject=terms.id,
                   detail={"outcome": answer.get("outcome"), "tenant_id": tenant_id, "deployment_id": deployment,
                           "lease_expires_at": lease.expires_at.isoformat()})
    when = lease.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return replace(result, sentence=f"{result.sentence} Activation authority: leased to this deployment until "
                                    f"{when}, renewed by every sync.")


def _stop_licensing(session: Session, settings: Settings, tenant: str, subscription_id: str, now: datetime,
                    why: str, problem: str) -> None:
    row = leases.binding(session, subscription_id, for_update=True)
    if row is not None:
        leases.set_problem(row, now, problem)
    found = registry.active_subscription(session, tenant)
    if found is None or found[1].id != subscription_id:
        return
    terms = found[1]
    registry.deactivate(session, tenant, subscription_id, now, why=why)
    if why in ("moved", "revoked"):
        events.subscription_moved(session, settings, from_tenant=tenant, subscription_id=subscription_id,
                                  customer=terms.customer, seats=terms.seats, now=now)


def renew(settings: Settings, tenant: str, engine: Engine, now: datetime, *, force: bool = False) -> str:
    """Renew the tenant's lease if due (``force``: regardless). Returns what happened, for logs and tests:
    ``none`` (nothing to renew), ``not_due``, ``renewed``, ``failed`` (kept, backing off), ``moved``, ``revoked``."""
    log = get_logger(tenant=tenant)
    with Session(engine) as s:
        found = registry.active_subscription(s, tenant)
        row = leases.binding(s, found[1].id) if found is not None else None
        if row is None or not row.lease or not settings.authority.url:
            return "none"
        if not force and not leases.renewal_due(row, now):
            return "not_due"
        sub_id, tenant_id, deployment, lease_text = found[1].id, row.tenant_id, row.deployment_id, row.lease  # type: ignore[index]
    try:
        with AuthorityClient(settings.authority) as client:
            answer = client.renew(lease_text)
        with session_scope(engine) as s:
            leases.record_lease(s, tenant, tenant_id, answer["lease"], settings.vendor.public_key, now,
                                subscription_id=sub_id, deployment=deployment or "")
        log.info("lease_renewed", subscription=sub_id, lease_expires_at=answer.get("lease_expires_at"))
        return "renewed"
    except Refused as exc:
        if exc.code not in ("moved", "revoked"):
            outcome, error = "failed", str(exc)
        else:
            with session_scope(engine) as s:
                _stop_licensing(s, settings, tenant, sub_id, now, exc.code,
                                f"{exc.code}: the activation authority says subscription {sub_id} is "
                                f"{'active on another tenant or deployment' if exc.code == 'moved' else 'revoked'}")
            log.warning("lease_refused", subscription=sub_id, code=exc.code)
            return exc.code
    except (TransientError, InputError, ConfigError) as exc:  # away, or an answer we refuse to take
        outcome, error = "failed", str(exc)
    with session_scope(engine) as s:
        row = leases.binding(s, sub_id, for_update=True)
        if row is not None:
            leases.record_failure(row, now, error)
            log.warning("lease_renewal_failed", subscription=sub_id, error=error, attempts=row.attempts,
                        next_attempt_at=row.next_attempt_at, lease_expires_at=row.expires_at)
    return outcome


def check_tenant(settings: Settings, tenant: TenantConfig, engine: Engine, token_tid: str | None,
                 now: datetime, *, dry_run: bool = False) -> None:
    """The lease's (or bound key's) tenant id must be the configured tenant's and the Graph token's."""
    with Session(engine) as s:
        found = registry.active_subscription(s, tenant.name)
        row = leases.binding(s, found[1].id) if found is not None else None
        if row is None:
            return
        sub_id, bound = found[1].id, row.tenant_id  # type: ignore[index]
    configured = tenant.tenant_id.strip().lower()
    if token_tid == bound and configured == bound:
        return
    problem = (f"wrong_tenant: subscription {sub_id} is bound to tenant {bound}, but tenant {tenant.name} is "
               f"configured as {configured} and its Graph token is for {token_tid or 'an unknown tenant'}; "
               "nothing is licensed. Fix [[tenant]] tenant_id and the app registration, then activate the key again.")
    if not dry_run:
        with session_scope(engine) as s:
            _stop_licensing(s, settings, tenant.name, sub_id, now, "wrong_tenant", problem)
    raise ConfigError(f"tenant {tenant.name}: {problem}")


async def before_round(settings: Settings, tenant: TenantConfig, engine: Engine, graph: Any, now: datetime,
                       *, dry_run: bool = False) -> None:
    """Renew when due, then the ``tid`` check; the one call the sync cycle makes (see module doc)."""
    if not dry_run:
        await asyncio.to_thread(renew, settings, tenant.name, engine, now)
    tid_of = getattr(graph, "token_tenant_id", None)
    if tid_of is None:  # a test double without tokens: nothing to compare
        return
    with Session(engine) as s:
        found = registry.active_subscription(s, tenant.name)
        if found is None or leases.binding(s, found[1].id) is None:
            return
    check_tenant(settings, tenant, engine, await tid_of(), now, dry_run=dry_run)
