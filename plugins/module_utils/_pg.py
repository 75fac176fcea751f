# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL connection options, sessions and the query recorder of agbotkit.dr modules.

Every module that reads a database takes the options of postgres_argument_spec() (documented
once in the agbotkit.dr.postgres doc fragment), connects through PgConnector and returns the
SQL it ran as ``queries`` (the recorder is thread-safe: manifests run tables on several
connections). psycopg errors never leave this file: they become DatabaseConnectionError /
DatabaseQueryError from _errors.
"""

from __future__ import annotations

import contextlib
import threading

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import (
    DatabaseConnectionError,
    DatabaseQueryError,
    MissingLibraryError,
)

try:
    import psycopg
    from psycopg import ClientCursor
    from psycopg.rows import dict_row

    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the target host
    psycopg = None
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = exc

SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]

# Session settings that make text output (row checksums, max(time), catalog definitions)
# independent of server and role defaults: UTC, ISO dates, shortest exact floats, hex bytea,
# money without a locale's currency format, and a search_path of pg_catalog only, so that
# catalog functions qualify every user object.
SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=1 "
    "-c bytea_output=hex -c lc_monetary=C -c search_path=pg_catalog"
)


def postgres_argument_spec() -> dict:
    """Connection options shared by every PostgreSQL module (doc fragment agbotkit.dr.postgres)."""
    return dict(
        login_host=dict(type="str", fallback=(env_fallback, ["PGHOST"])),
        login_port=dict(type="int", default=5432, fallback=(env_fallback, ["PGPORT"])),
        login_user=dict(type="str", fallback=(env_fallback, ["PGUSER"])),
        login_password=dict(type="str", no_log=True, fallback=(env_fallback, ["PGPASSWORD"])),
        login_db=dict(type="str", fallback=(env_fallback, ["PGDATABASE"])),
        connect_timeout=dict(type="int", default=10),
        ssl_mode=dict(type="str", default="prefer", choices=SSL_MODES, fallback=(env_fallback, ["PGSSLMODE"])),
        ssl_rootcert=dict(type="path", fallback=(env_fallback, ["PGSSLROOTCERT"])),
        statement_timeout=dict(type="int", default=21600),
        lock_timeout=dict(type="int", default=60),
    )


CONNECTION_OPTION_NAMES = tuple(postgres_argument_spec())


def connection_params(params: dict, application_name: str = "agbotkit.dr") -> dict:
    """Map module parameters to psycopg.connect() keywords (unset ones are left to libpq)."""
    mapping = {
        "login_host": "host",
        "login_port": "port",
        "login_user": "user",
        "login_password": "password",
        "login_db": "dbname",
        "connect_timeout": "connect_timeout",
        "ssl_mode": "sslmode",
        "ssl_rootcert": "sslrootcert",
    }
    out = {}
    for opt, kw in mapping.items():
        value = params.get(opt)
        if value is not None and value != "":
            out[kw] = value
    out["application_name"] = application_name
    out["options"] = SESSION_OPTIONS + session_timeouts(params)
    return out


def session_timeouts(params: dict) -> str:
    """statement_timeout / lock_timeout (seconds; 0 = none) as libpq options: every session a module opens has them,
    so nothing waits forever on a lock or a runaway statement."""
    out = ""
    for name in ("statement_timeout", "lock_timeout"):
        value = params.get(name)
        if value is not None:
            out += " -c %s=%ds" % (name, int(value))
    return out


def describe_target(params: dict) -> str:
    """host:port/db for messages (never the password)."""
    return "%s:%s/%s" % (params.get("login_host") or "<local socket>", params.get("login_port") or 5432,
                         params.get("login_db") or "<default db>")


class QueryRecorder:
    """Collects the SQL that modules ran, in order, for the `queries` return value."""

    def __init__(self):
        self._lock = threading.Lock()
        self.queries: list[str] = []

    def add(self, query: str) -> None:
        with self._lock:
            self.queries.append(query)


class PgSession:
    """One autocommit connection; transactions are explicit SQL so they show in `queries`."""

    def __init__(self, conn, recorder: QueryRecorder, target: str):
        self.conn = conn
        self.recorder = recorder
        self.target = target

    def _execute(self, sql: str, params=None):
        cur = self.conn.cursor(row_factory=dict_row)
        try:
            text = cur.mogrify(sql, params) if params is not None else sql
        except Exception:  # pragma: no cover - mogrify only fails on bad params
            text = sql
        self.recorder.add(text)
        try:
            cur.execute(sql, params)
        except psycopg.Error as exc:
            cur.close()
            raise DatabaseQueryError(
                "Failed to run query on %s: %s" % (self.target, str(exc).strip()),
                query=text,
                sqlstate=getattr(exc, "sqlstate", None),
            ) from exc
        return cur

    def execute(self, sql: str, params=None) -> None:
        self._execute(sql, params).close()

    def query(self, sql: str, params=None) -> list[dict]:
        cur = self._execute(sql, params)
        try:
            return cur.fetchall() if cur.description else []
        finally:
            cur.close()

    def one(self, sql: str, params=None) -> dict | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()


class PgConnector:
    """Opens sessions with one set of connection options; shares one QueryRecorder."""

    def __init__(self, params: dict, recorder: QueryRecorder | None = None, application_name: str = "agbotkit.dr"):
        if not HAS_PSYCOPG:
            raise MissingLibraryError(missing_required_lib("psycopg (version 3)"), exception=str(PSYCOPG_IMPORT_ERROR))
        self.params = params
        self.recorder = recorder or QueryRecorder()
        self.kwargs = connection_params(params, application_name)
        self.target = describe_target(params)

    def session(self) -> PgSession:
        try:
            conn = psycopg.connect(autocommit=True, cursor_factory=ClientCursor, **self.kwargs)
        except psycopg.Error as exc:
            raise DatabaseConnectionError(
                "Failed to connect to PostgreSQL at %s as %s: %s. Check login_host/login_port/login_user/"
                "login_password (or PGHOST/PGPORT/PGUSER/PGPASSWORD) and that the server accepts connections."
                % (self.target, self.params.get("login_user") or "<default user>", str(exc).strip())
            ) from exc
        return PgSession(conn, self.recorder, self.target)


def quote_ident(name: str) -> str:
    """Quote an identifier the way PostgreSQL's quote_ident() does (always quoted)."""
    return '"%s"' % name.replace('"', '""')
