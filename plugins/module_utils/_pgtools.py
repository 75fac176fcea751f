# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pg_dump / pg_restore through community.general's CmdRunner, and artifact checksums.

The client binaries are found in O(pg_bin) first (Debian keeps them in
/usr/lib/postgresql/<major>/bin), then on PATH. Their arguments are declared once here; the
password reaches them through PGPASSWORD in the child's environment, never on a command line.
"""

from __future__ import annotations

import hashlib
import os

from ansible_collections.community.general.plugins.module_utils.cmd_runner import CmdRunner, cmd_runner_fmt

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import ToolError

CHUNK = 4 * 1024 * 1024


def find_tool(module, name: str, pg_bin: str | None) -> str:
    if pg_bin:
        candidate = os.path.join(pg_bin, name)
        if os.access(candidate, os.X_OK):
            return candidate
    path = module.get_bin_path(name)
    if not path:
        raise ToolError(
            "%s was not found in %s or on PATH: install the PostgreSQL client of the server's major version "
            "(Debian: apt-get install postgresql-client-15) or set pg_bin" % (name, pg_bin or "pg_bin"))
    return path


def _conn_formats() -> dict:
    return dict(
        host=cmd_runner_fmt.as_opt_val("--host"),
        port=cmd_runner_fmt.as_opt_val("--port"),
        user=cmd_runner_fmt.as_opt_val("--username"),
        no_password=cmd_runner_fmt.as_fixed("--no-password"),
    )


def pg_dump_runner(module, binary: str) -> CmdRunner:
    formats = _conn_formats()
    formats.update(
        format=cmd_runner_fmt.as_opt_val("--format"),
        jobs=cmd_runner_fmt.as_opt_val("--jobs"),
        compress=cmd_runner_fmt.as_opt_val("--compress"),
        snapshot=cmd_runner_fmt.as_opt_val("--snapshot"),
        file=cmd_runner_fmt.as_opt_val("--file"),
        dbname=cmd_runner_fmt.as_opt_val("--dbname"),
    )
    return CmdRunner(module, command=binary, arg_formats=formats, check_rc=False)


def pg_restore_runner(module, binary: str) -> CmdRunner:
    formats = _conn_formats()
    formats.update(
        dbname=cmd_runner_fmt.as_opt_val("--dbname"),
        jobs=cmd_runner_fmt.as_opt_val("--jobs"),
        exit_on_error=cmd_runner_fmt.as_fixed("--exit-on-error"),
        no_owner=cmd_runner_fmt.as_fixed("--no-owner"),
        # a list of sections: --section=data --section=post-data
        section=cmd_runner_fmt.as_func(lambda sections: ["--section=%s" % x for x in sections]),
        list=cmd_runner_fmt.as_fixed("--list"),
        source=cmd_runner_fmt.as_list(),
    )
    return CmdRunner(module, command=binary, arg_formats=formats, check_rc=False)


def pg_env(params: dict) -> dict:
    env = {}
    if params.get("login_password"):
        env["PGPASSWORD"] = params["login_password"]
    if params.get("ssl_mode"):
        env["PGSSLMODE"] = params["ssl_mode"]
    if params.get("ssl_rootcert"):
        env["PGSSLROOTCERT"] = params["ssl_rootcert"]
    if params.get("connect_timeout"):
        env["PGCONNECT_TIMEOUT"] = str(params["connect_timeout"])
    return env


def dbname_conninfo(name: str) -> str:
    """A database name as a libpq connection string (dbname='...'), so that a name holding '=', spaces or a
    postgresql:// prefix reaches pg_dump/pg_restore as a name, never as connection options."""
    return "dbname='%s'" % name.replace("\\", "\\\\").replace("'", "\\'")


def conn_args(params: dict) -> dict:
    return dict(host=params.get("login_host"), port=params.get("login_port"), user=params.get("login_user"))


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_checksums(root: str) -> dict:
    """{relative path: {sha256, bytes}} of every file below root, sorted."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            out[rel] = {"sha256": sha256_file(full), "bytes": os.path.getsize(full)}
    return dict(sorted(out.items()))


def verify_artifacts(root: str, expected: dict) -> list[dict]:
    """Mismatches between files below root and expected {rel: {sha256, bytes}}."""
    problems = []
    for rel, want in sorted(expected.items()):
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            problems.append({"artifact": rel, "problem": "missing", "message": "%s is missing" % rel})
            continue
        size = os.path.getsize(path)
        if want.get("bytes") is not None and size != want["bytes"]:
            problems.append({"artifact": rel, "problem": "size", "expected": want["bytes"], "observed": size,
                             "message": "%s is %d bytes, the manifest says %d (truncated or altered)"
                             % (rel, size, want["bytes"])})
            continue
        got = sha256_file(path)
        if got != want["sha256"]:
            problems.append({"artifact": rel, "problem": "sha256", "expected": want["sha256"], "observed": got,
                             "message": "%s has sha256 %s, the manifest says %s (altered)"
                             % (rel, got, want["sha256"])})
    return problems
