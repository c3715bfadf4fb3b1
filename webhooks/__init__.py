"""Webhook deliveries from GitHub, GitLab and Gitea/Forgejo, turned into reconcile triggers.

This package is pure: it checks signatures and parses deliveries into frozen events. Serving
them over HTTP (answer 202 at once, trigger a pass) belongs to the API.
"""

from webhooks.events import Event, PullRequestEvent, PushEvent, parse
from webhooks.signatures import InvalidDelivery, verify

__all__ = ["Event", "InvalidDelivery", "PullRequestEvent", "PushEvent", "parse", "verify"]
