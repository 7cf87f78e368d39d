"""Reason codes of the ``live_enrollment``, ``first_access`` and ``role`` models. Pure.

They travel in ``licsync.seats.SeatChange`` like the enrollment model's codes (``seats.Reason``)
and reach the seat table, the audit log, JSON and CSV: they are stable. Each fits the 32
characters of ``seat.acquire_reason`` / ``seat.release_reason``.
"""

from __future__ import annotations

from enum import StrEnum

from licsync.seats import describe as describe_enrollment


class ModelReason(StrEnum):
    # live_enrollment
    ENROLLMENT_LIVE = "enrollment_live"  # take: at least one enrollment is live now
    ALL_ENROLLMENTS_EXPIRED = "all_enrollments_expired"  # free: enrolled, but every enrollment expired
    REUSE_LIMIT = "reuse_limit"  # refuse (overage block): the year's reuses are used up
    REUSE_LIMIT_EXCEEDED = "reuse_limit_exceeded"  # take, flagged: beyond the year's reuses
    # first_access
    FIRST_ACCESS = "first_access"  # take: first interaction with content in the license period
    LICENSE_PERIOD_ENDED = "license_period_ended"  # free: the period whose consumption it was is over
    # role
    ROLE_NEEDS_POOL = "role_needs_pool"  # take: a role of the user needs the pool
    ROLE_REMOVED = "role_removed"  # free: no remaining role of the user needs the pool
    POOL_FULL = "pool_full"  # refuse: every seat of the pool is assigned
    POOL_NOT_LICENSED = "pool_not_licensed"  # refuse: the subscription has no such pool
    NO_POOL_ROLE = "no_pool_role"  # none: no role of the user needs a pool seat
    # first_access
    NOT_YET_ACCESSED = "not_yet_accessed"  # none yet: the first launch in the period takes the seat


SENTENCES: dict[ModelReason, str] = {
    ModelReason.ENROLLMENT_LIVE: "the user has at least one live (not expired) enrollment",
    ModelReason.ALL_ENROLLMENTS_EXPIRED: "every enrollment of the user has expired (completion records are kept)",
    ModelReason.REUSE_LIMIT: "the seats' reuses for this license year are used up and the subscription blocks more",
    ModelReason.REUSE_LIMIT_EXCEEDED: "the user has a live enrollment, beyond this license year's reuse limit "
    "(flagged)",
    ModelReason.FIRST_ACCESS: "the learner first interacted with content in this license period",
    ModelReason.LICENSE_PERIOD_ENDED: "the license period in which the learner consumed the seat is over",
    ModelReason.ROLE_NEEDS_POOL: "a role of the user needs a seat of this pool",
    ModelReason.ROLE_REMOVED: "no remaining role of the user needs a seat of this pool",
    ModelReason.POOL_FULL: "every seat of the pool is assigned; free one or buy more",
    ModelReason.POOL_NOT_LICENSED: "the subscription has no seats in this pool",
    ModelReason.NO_POOL_ROLE: "no role of the user needs a pool seat (roles come from `licsync import roles` and "
    "the [roles] mapping)",
    ModelReason.NOT_YET_ACCESSED: "the learner has not interacted with content in this license period yet; "
    "the first launch takes a seat",
}


def describe(reason: str) -> str:
    """A sentence a person can read for any reason code, of any model."""
    try:
        return SENTENCES[ModelReason(reason)]
    except ValueError:
        return describe_enrollment(reason)
