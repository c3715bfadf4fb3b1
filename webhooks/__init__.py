"""Webhook deliveries from GitHub, GitLab and Gitea/Forgejo, turned into reconcile triggers.

This package is pure: it checks signatures, parses deliveries into frozen events and decides
whether one concerns the daemon's repositories. Serving them over HTTP (answer 202 at once,
trigger a pass) belongs to the API.
"""

from webhooks.events import Event, PullRequestEvent, PushEvent, TagEvent, parse
from webhooks.repositories import concerns, repository_id
from webhooks.signatures import InvalidDelivery, verify

__all__ = [
    "Event",
    "InvalidDelivery",
    "PullRequestEvent",
    "PushEvent",
    "TagEvent",
    "concerns",
    "parse",
    "repository_id",
    "verify",
]
