"""Whether a delivery concerns this daemon: is its repository one the daemon watches?

A forge sends the deliveries of every repository a hook covers (an organisation's hook covers
them all), and anyone holding the secret can send one for any repository; a pass for each
would be work for nothing. So a delivery triggers a pass only when its repository is the
state repository or a project's. Both sides are clone URLs written by different hands
(``https://github.com/Acme/addons.git`` in the delivery, ``git@github.com:acme/addons`` in
``projects/acme.yaml``), so they are compared as the repository they name: host and path, case
folded, without scheme, port, credentials, trailing slash or ``.git``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from webhooks.events import Event, TagEvent

# ``user@host:owner/name.git``, git's scp-like syntax (no scheme, a colon before the path).
_SCP_LIKE = re.compile(r"(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>(?!//).+)")


def repository_id(url: str) -> str:
    """``host/path`` of a clone URL, the same for every way of writing one repository."""
    text = url.strip()
    if "://" in text:
        parts = urlsplit(text)
        host, path = parts.hostname or "", parts.path
    elif match := _SCP_LIKE.fullmatch(text):
        host, path = match["host"], match["path"]
    else:  # a local path
        host, path = "", text
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host}/{path}".lower()


def concerns(event: Event, watched: Iterable[str]) -> bool:
    """Whether ``event`` can change what the daemon deploys.

    A tag never does (environments follow branches or pinned commits, never tags); any other
    delivery does when its repository is among ``watched``.
    """
    if isinstance(event, TagEvent) or not event.repository.strip():
        return False
    wanted = repository_id(event.repository)
    return any(repository_id(url) == wanted for url in watched if url.strip())
