"""The seat models (SPEC §1): ``enrollment`` (LMS365), ``live_enrollment`` (LXP, seed 001),
``first_access`` (Emtrain, seed 000) and ``role`` (eLearn / weCLIMB, seed 002).

* ``base`` — the ``SeatModel`` interface every model answers, and the registry by policy name;
  ``models`` — the four built-in models, registered on import (``models.for_tenant``).
* Pure rules — no database, no I/O — live in ``licsync.seats`` (enrollment), ``live_enrollment``,
  ``overage`` (tiers and the automatic upgrade), ``business_days``, ``orgs``, ``first_access``,
  ``role``, ``reasons`` and ``csvfile``; an import-linter contract keeps them so.
* The ``*_store`` modules are their database adapters. None of them applies a plan: that is
  ``licsync.reseat``, the one step every cause of a seat change ends in.
"""
