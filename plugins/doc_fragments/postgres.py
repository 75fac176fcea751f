# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # PostgreSQL connection options of agbotkit.dr modules (argument spec: module_utils/_pg.py).
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host running the database (name, IP address or a Unix socket directory).
      - If not set, the E(PGHOST) environment variable is used, then libpq's default (the local socket).
    type: str
  login_port:
    description:
      - Database port. If not set, the E(PGPORT) environment variable is used.
    type: int
    default: 5432
  login_user:
    description:
      - The role to connect as. If not set, the E(PGUSER) environment variable is used, then libpq's default.
    type: str
  login_password:
    description:
      - The password of O(login_user). If not set, the E(PGPASSWORD) environment variable is used.
      - Never returned or logged.
    type: str
  login_db:
    description:
      - The database to connect to. If not set, the E(PGDATABASE) environment variable is used.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for a connection before failing.
    type: int
    default: 10
  ssl_mode:
    description:
      - Whether or with what priority an SSL connection is negotiated; see
        U(https://www.postgresql.org/docs/current/libpq-ssl.html).
      - If not set, the E(PGSSLMODE) environment variable is used.
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ssl_rootcert:
    description:
      - CA bundle that signs the server's certificate, for O(ssl_mode=verify-ca) or O(ssl_mode=verify-full) (on RDS,
        the RDS CA bundle C(global-bundle.pem)). If not set, the E(PGSSLROOTCERT) environment variable is used.
    type: path
    version_added: 0.2.0
  statement_timeout:
    description:
      - Seconds any one statement of the module may run (C(statement_timeout) of every session it opens); V(0) for no
        limit.
    type: int
    default: 21600
    version_added: 0.2.0
  lock_timeout:
    description:
      - Seconds any statement of the module waits for a lock (C(lock_timeout) of every session it opens) before it
        fails, saying which lock it waited for; V(0) to wait forever.
    type: int
    default: 60
    version_added: 0.2.0
notes:
  - Uses C(psycopg) version 3 on the host that runs the module (usually the controller, C(delegate_to=localhost)).
  - Sessions run with C(TimeZone=UTC), C(DateStyle=ISO), C(extra_float_digits=1), C(bytea_output=hex) and
    C(search_path=pg_catalog) so text output, and therefore checksums, does not depend on role or server defaults.
requirements:
  - psycopg >= 3.1
"""
