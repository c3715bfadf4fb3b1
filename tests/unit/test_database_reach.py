"""How tool containers reach an environment's database: the way its Odoo does."""

from __future__ import annotations

import pytest

from reconciler.core.model import DatabaseServer, EnvKey
from reconciler.drivers.docker import DatabaseReach, database_reach

KEY = EnvKey("acme", "staging")


def server(container_host: str) -> DatabaseServer:
    return DatabaseServer("shared", "127.0.0.1", 6432, container_host, "postgres")


@pytest.mark.parametrize(
    ("db_server", "reach"),
    [
        (None, DatabaseReach(KEY.network, "db", 5432)),
        (server("host-gateway"), DatabaseReach(KEY.network, "db", 6432, {"db": "host-gateway"})),
        (server("10.0.0.7"), DatabaseReach(KEY.network, "db", 6432, {"db": "10.0.0.7"})),
        (server("pg.internal"), DatabaseReach(KEY.network, "pg.internal", 6432)),
    ],
    ids=["dedicated", "host-gateway", "address", "host-name"],
)
def test_the_database_is_reached_on_the_environment_network(
    db_server: DatabaseServer | None, reach: DatabaseReach
) -> None:
    assert database_reach(KEY, db_server) == reach
