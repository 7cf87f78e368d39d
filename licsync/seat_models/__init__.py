"""The seat models beyond ``enrollment`` (SPEC §1): ``live_enrollment`` (LXP, seed 001),
``first_access`` (Emtrain, seed 000) and ``role`` (eLearn / weCLIMB, seed 002).

Pure rules — no database, no I/O — live in ``live_enrollment``, ``overage`` (tiers and the
automatic upgrade), ``business_days``, ``orgs``, ``first_access``, ``role``, ``reasons`` and
``csvfile``; an import-linter contract keeps them so. The ``*_store`` modules are their database
adapters, and ``dispatch`` picks the model by the policy of the tenant's subscription.
"""
