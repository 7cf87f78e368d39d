"""Use cases shared by the CLI, the API and the daemon. Each takes its session or engine from the
caller and returns plain data; every one that changes facts ends in ``licsync.reseat``.

* ``cycle`` — one sync cycle with progress;
* ``access`` — the launch-time access decision (the API's hot path) and ``explain``, one answer;
* ``changes`` — imports, learner removal, user sync, activity, roles, activations, approvals.
"""

from licsync.service.access import access_decision, explain_user
from licsync.service.changes import (
    activate,
    approve_hold,
    import_activations,
    import_activity,
    import_enrollments,
    import_roles,
    ingest_statements,
    remove_learner,
    sync_users,
)
from licsync.service.cycle import changes_as_rows, sync_once

__all__ = [
    "access_decision", "activate", "approve_hold", "changes_as_rows", "explain_user", "import_activations",
    "import_activity", "import_enrollments", "import_roles", "ingest_statements", "remove_learner", "sync_once",
    "sync_users",
]
