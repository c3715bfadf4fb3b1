"""Build, test and deploy results on the commit, where the people who pushed look first.

Each project with ``repository.forge`` gets commit statuses: ``odooops/build`` when its image is
built, ``odooops/tests <env>`` for a test gate, ``odooops/deploy <env>`` when a deployment
ends. Posting is best effort and off the reconcile path: a forge that is down or refuses
never slows or fails a deployment (it is logged, without the token), and the same status is
not posted twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from reconciler.core.errors import OdooOpsError
from reconciler.core.model import DesiredEnvironment, SecretRef
from reconciler.gitops.forges import Forge, set_commit_status

log = logging.getLogger("odooops.commitstatus")

# A token for a forge API URL (checked against the hosts its secret is declared for).
Credential = Callable[[SecretRef, str], str]


class CommitStatuses:
    def __init__(self, credential: Credential, link: Callable[[str], str] | None = None) -> None:
        self._credential = credential
        self._link = link or (lambda build_id: "")
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="commit-status")
        self._lock = threading.Lock()
        self._posted: dict[tuple[str, str, str], str] = {}  # (repo, sha, context) -> state

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)

    def post(
        self,
        want: DesiredEnvironment,
        context: str,
        state: str,
        description: str,
        build_id: str = "",
    ) -> None:
        """Queue a status for ``want``'s commit; nothing when its project has no forge."""
        settings = want.project.forge
        if settings is None:
            return
        key = (settings.repo, want.revision, context)
        with self._lock:
            if self._posted.get(key) == state:
                return
            self._posted[key] = state
            if len(self._posted) > 10_000:
                self._posted.clear()
        self._pool.submit(self._send, want, context, state, description, build_id)

    def _send(
        self,
        want: DesiredEnvironment,
        context: str,
        state: str,
        description: str,
        build_id: str,
    ) -> None:
        settings = want.project.forge
        assert settings is not None
        try:
            token = self._credential(settings.token, settings.api)
            forge = Forge(settings.kind, settings.api, settings.repo, token)
            link = self._link(build_id) if build_id else ""
            set_commit_status(forge, want.revision, state, context, description, link)
        except OdooOpsError as exc:
            with self._lock:  # let the same status be tried again later
                self._posted.pop((settings.repo, want.revision, context), None)
            log.warning("commit status %s of %s: %s", context, want.revision[:12], exc.render())
