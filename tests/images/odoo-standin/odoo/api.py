"""`env` as Odoo hands it to shell code and to hooks (odoo/api.py), without the ORM."""

from __future__ import annotations

from typing import Any

from odoo.sql_db import Cursor


class Environment:
    """`env` with its cursor; models are not available in the stand-in."""

    def __init__(self, cr: Cursor) -> None:
        self.cr, self.uid, self.context = cr, 1, {}

    def __getitem__(self, model: str) -> Any:
        raise KeyError(f"{model}: the Odoo stand-in has no ORM, use env.cr")
