"""The exceptions Odoo raises where the stand-in reproduces a failure (odoo/exceptions.py)."""


class UserError(Exception):
    """An error Odoo reports to the user, e.g. a module to install whose dependency is missing."""
