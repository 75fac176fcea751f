"""The lab's AWS: one moto server (every service, every region) with a fault layer and the EKS handlers moto lacks.

Run: .venv/bin/python dev/lab/services/aws_server.py --port 55000 --lab-dir .lab

In front of moto's own WSGI app (moto.moto_server.werkzeug_app.DomainDispatcherApplication) sit:

* a fault layer reading <lab-dir>/faults/ on every request (a file exists = the fault is ON, its content is
  JSON options; see docs/lab/aws.md):
    aws.down      every AWS request fails at connection level (mode "close", default) or answers 503
    aws.throttle  matching requests answer the service's throttling error (botocore retries them as throttling)
    aws.error     matching requests answer 500 InternalError
  options (all optional): service (signing name: rds, s3, eks, route53, secretsmanager, kms, ec2, ssm, sts...),
  action (API operation name, e.g. DescribeDBSnapshots), region, count (N next matching requests, decremented
  in the file, the file is removed at 0; absent = always), code/status (override the error answered).
* EKS additions: UpdateClusterVersion, UpdateNodegroupVersion, DescribeUpdate, ListUpdates; UpdateClusterConfig
  answers an update object (moto answers the cluster); CreateNodegroup keeps updateConfig/nodeRepairConfig;
  every cluster's endpoint is the lab's Kubernetes emulator URL (--k8s-url).
* RDS: an instance restored from a snapshot or to a point in time gets DeletionProtection false unless the
  request asks for it (moto copies it from the source; AWS does not).
* RDS stand-in (dev/lab/services/rds_standin.py): snapshots are physical copies of the lab's PostgreSQL, a restore
  starts a real PostgreSQL 15 cluster and the record's endpoint points at it (off with --no-rds-standin).
* Secrets Manager: UpdateSecretVersionStage moving AWSCURRENT also moves what GetSecretValue answers when no stage
  or version is named (moto 5.2.5 keeps answering the version the secret was created with; AWS answers AWSCURRENT).
* CloudTrail stand-in (dev/lab/services/cloudtrail.py): every signed call is recorded, LookupEvents answered from it.
* GET /_lab/ready answers 200 (never faulted) with the faults currently on; GET /_lab/faults the same.
* TLS (--tls-port): the same app also listens with HTTPS, its certificate signed by the lab's own CA
  (dev/lab/services/lab_tls.py, <lab-dir>/tls/ca.pem): for S3 clients that require TLS (pgBackRest). One process, one
  moto state: an object written over HTTPS is read over HTTP, faults apply to both.

moto keeps its state in memory: a restarted server is empty, run dev/lab/seed_aws.py again.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cloudtrail  # noqa: E402  (dev/lab/services/cloudtrail.py, beside this file)
import cluster_faults  # noqa: E402

LOG = logging.getLogger("lab.aws")

FAULT_NAMES = ("aws.down", "aws.throttle", "aws.error")
# signing name -> botocore service name, where they differ
SIGNING_TO_SERVICE = {"monitoring": "cloudwatch", "email": "ses", "states": "stepfunctions", "events": "events"}
DEFAULT_K8S_URL = "http://127.0.0.1:56443"
RDS_RESTORE_ACTIONS = ("RestoreDBInstanceFromDBSnapshot", "RestoreDBInstanceToPointInTime")
RDS_STANDIN_ACTIONS = ("CreateDBSnapshot", "CopyDBSnapshot", "DeleteDBSnapshot", "DeleteDBInstance", "CreateDBInstance")


# --------------------------------------------------------------------------------------------- request identification
class OperationResolver:
    """Work out (service, region, action, protocol) of a SigV4-signed AWS request."""

    def __init__(self) -> None:
        import botocore.session

        self._session = botocore.session.get_session()
        self._models: dict[str, Any] = {}
        self._routes: dict[str, list[tuple[str, re.Pattern[str], list[str], int, str]]] = {}
        self._lock = threading.Lock()

    def model(self, signing_name: str) -> Any:
        name = SIGNING_TO_SERVICE.get(signing_name, signing_name)
        with self._lock:
            if name not in self._models:
                try:
                    self._models[name] = self._session.get_service_model(name)
                except Exception:  # unknown to botocore: treat generically
                    self._models[name] = None
            return self._models[name]

    def _rest_routes(self, model: Any) -> list[tuple[str, re.Pattern[str], list[str], int, str]]:
        name = model.service_name
        with self._lock:
            if name in self._routes:
                return self._routes[name]
        routes = []
        for op_name in model.operation_names:
            http = model.operation_model(op_name).http
            uri = http.get("requestUri", "/")
            path, _, query = uri.partition("?")
            pattern = re.sub(r"\\{[^}]+\\\+\\}", ".+", re.escape(path))
            pattern = re.sub(r"\\{[^}]+\\}", "[^/]+", pattern)
            query_keys = [q.split("=")[0] for q in query.split("&") if q]
            literal = len(re.sub(r"\{[^}]+\}", "", path)) + 10 * len(query_keys)
            routes.append((http.get("method", "POST"), re.compile(f"^{pattern}/?$"), query_keys, literal, op_name))
        routes.sort(key=lambda r: -r[3])
        with self._lock:
            self._routes[name] = routes
        return routes

    def resolve(self, environ: dict[str, Any], body: bytes | None) -> dict[str, Any]:
        info: dict[str, Any] = {"service": None, "region": None, "action": None, "protocol": None, "access_key": None}
        auth = environ.get("HTTP_AUTHORIZATION", "")
        m = re.search(r"Credential=([^/,\s]+)/\d+/([^/]+)/([^/]+)/aws4_request", auth)
        if m:
            info["access_key"], info["region"], info["service"] = m.group(1), m.group(2), m.group(3).lower()
        else:  # presigned URL
            qs = parse_qs(environ.get("QUERY_STRING", ""))
            cred = (qs.get("X-Amz-Credential") or [""])[0].split("/")
            if len(cred) == 5:
                info["access_key"], info["region"], info["service"] = cred[0], cred[2], cred[3].lower()
        if not info["service"]:
            return info
        model = self.model(info["service"])
        info["protocol"] = model.protocol if model is not None else None
        target = environ.get("HTTP_X_AMZ_TARGET")
        if target:
            info["action"] = target.rsplit(".", 1)[-1]
            info["protocol"] = info["protocol"] or "json"
            return info
        qs = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if "Action" in qs:
            info["action"] = qs["Action"][0]
            return info
        if body and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:
                info["action"] = form["Action"][0]
                return info
        if model is not None and model.protocol in ("rest-json", "rest-xml"):
            method = environ.get("REQUEST_METHOD", "GET")
            path = environ.get("PATH_INFO", "/") or "/"
            for r_method, regex, query_keys, _lit, op_name in self._rest_routes(model):
                if r_method == method and regex.match(path) and all(k in qs for k in query_keys):
                    info["action"] = op_name
                    break
        return info


# ---------------------------------------------------------------------------------------------------------- faults
class FaultStore:
    """Fault files in <lab-dir>/faults: exists = ON, content = JSON options, count decremented in place."""

    def __init__(self, faults_dir: Path) -> None:
        self.dir = faults_dir
        self._lock = threading.Lock()

    def active(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name in FAULT_NAMES:
            opts = self._read(self.dir / name)
            if opts is not None:
                out[name] = opts
        return out

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            text = path.read_text()
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return None
        try:
            opts = json.loads(text) if text.strip() else {}
        except ValueError:
            opts = {}
        return opts if isinstance(opts, dict) else {}

    @staticmethod
    def _matches(opts: dict[str, Any], info: dict[str, Any]) -> bool:
        for key in ("service", "action", "region"):
            want = opts.get(key)
            if want in (None, "", "*"):
                continue
            wants = [want] if isinstance(want, str) else list(want)
            have = info.get(key) or ""
            if key == "service":
                have_names = {have, SIGNING_TO_SERVICE.get(have, have)}
                if not any(w.lower() in have_names for w in wants):
                    return False
            elif key == "action":
                if not any(w.lower() == have.lower() for w in wants):
                    return False
            elif have not in wants:
                return False
        return True

    def take(self, name: str, info: dict[str, Any]) -> dict[str, Any] | None:
        """Options of fault `name` if it is ON and matches this request (consuming one count), else None."""
        path = self.dir / name
        if not path.exists():
            return None
        with self._lock:
            opts = self._read(path)
            if opts is None or not self._matches(opts, info):
                return None
            count = opts.get("count")
            if count is None:
                return opts
            try:
                count = int(count)
            except (TypeError, ValueError):
                return opts
            if count <= 0:
                path.unlink(missing_ok=True)
                return None
            count -= 1
            if count == 0:
                path.unlink(missing_ok=True)
            else:
                new = dict(opts, count=count)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(new))
                os.replace(tmp, path)
            return opts


def _error_response(protocol: str | None, service: str | None, code: str, message: str, *, status: int,
                    method: str) -> tuple[int, list[tuple[str, str]], bytes]:
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    if service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{request_id}</RequestId><HostId>lab</HostId></Error>")
        headers.append(("Content-Type", "application/xml"))
    elif protocol == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                f"<Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
        headers.append(("Content-Type", "text/xml"))
    elif protocol in ("query", "rest-xml"):
        kind = "Receiver" if status >= 500 else "Sender"
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>'
                f"<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
        headers.append(("Content-Type", "text/xml"))
    else:  # json, rest-json, unknown
        body = json.dumps({"__type": code, "message": message, "Message": message})
        headers += [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", code)]
    data = b"" if method == "HEAD" else body.encode()
    headers.append(("Content-Length", str(len(data))))
    return status, headers, data


def throttle_error(protocol: str | None, service: str | None) -> tuple[str, int]:
    if service == "s3":
        return "SlowDown", 503
    if protocol == "ec2":
        return "RequestLimitExceeded", 503
    if protocol in ("query", "rest-xml"):
        return "Throttling", 400
    if protocol == "rest-json":
        return "ThrottlingException", 429
    return "ThrottlingException", 400


# ------------------------------------------------------------------------------------------------------------- EKS
class EksExtras:
    """EKS operations moto 5.2.5 lacks or answers wrongly, done on moto's own backend objects."""

    R_CLUSTER_UPDATES = re.compile(r"^/clusters/(?P<name>[^/]+)/updates/?$")
    R_DESCRIBE_UPDATE = re.compile(r"^/clusters/(?P<name>[^/]+)/updates/(?P<id>[^/]+)/?$")
    R_NG_VERSION = re.compile(r"^/clusters/(?P<name>[^/]+)/node-groups/(?P<ng>[^/]+)/update-version/?$")
    R_NG_CONFIG = re.compile(r"^/clusters/(?P<name>[^/]+)/node-groups/(?P<ng>[^/]+)/update-config/?$")
    R_CLUSTER_CONFIG = re.compile(r"^/clusters/(?P<name>[^/]+)/update-config/?$")
    R_NODEGROUPS = re.compile(r"^/clusters/(?P<name>[^/]+)/node-groups/?$")
    R_CLUSTERS = re.compile(r"^/clusters/?$")

    def __init__(self, k8s_url: str) -> None:
        self.k8s_url = k8s_url
        # (account, region, cluster) -> update id -> (nodegroup or None, update)
        self.updates: dict[tuple[str, str, str], dict[str, tuple[str | None, dict[str, Any]]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def backend(account: str, region: str) -> Any:
        from moto.eks.models import eks_backends

        return eks_backends[account][region]

    @staticmethod
    def _json(status: int, payload: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        data = json.dumps(payload, default=str).encode()
        return status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))], data

    def _not_found(self, message: str, **extra: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        status, headers, data = self._json(404, {"message": message, **extra})
        return status, headers + [("x-amzn-ErrorType", "ResourceNotFoundException")], data

    def _record(self, key: tuple[str, str, str], nodegroup: str | None, update: dict[str, Any]) -> None:
        with self._lock:
            self.updates.setdefault(key, {})[update["id"]] = (nodegroup, update)

    @staticmethod
    def _update(kind: str, params: list[dict[str, str]]) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "status": "Successful", "type": kind, "params": params,
                "createdAt": time.time(), "errors": []}

    def handle(self, environ: dict[str, Any], body: bytes, account: str, region: str,
               call_moto: Callable[[], tuple[int, list[tuple[str, str]], bytes]],
               ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            req = json.loads(body) if body else {}
        except ValueError:
            req = {}
        be = self.backend(account, region)

        if method == "POST" and (m := self.R_CLUSTER_UPDATES.match(path)):  # UpdateClusterVersion
            cluster = be.clusters.get(m["name"])
            if cluster is None:
                return self._not_found(f"No cluster found for name: {m['name']}.", clusterName=m["name"])
            version = str(req.get("version") or cluster.version)
            cluster.version = version
            cluster.platformVersion = f"eks.{int(time.time()) % 20 + 1}"
            update = self._update("VersionUpdate", [{"type": "Version", "value": version},
                                                    {"type": "PlatformVersion", "value": cluster.platformVersion}])
            self._record((account, region, m["name"]), None, update)
            LOG.info("EKS UpdateClusterVersion %s -> %s", m["name"], version)
            return self._json(200, {"update": update})

        if method == "POST" and (m := self.R_NG_VERSION.match(path)):  # UpdateNodegroupVersion
            cluster = be.clusters.get(m["name"])
            if cluster is None:
                return self._not_found(f"No cluster found for name: {m['name']}.", clusterName=m["name"])
            ng = cluster.nodegroups.get(m["ng"])
            if ng is None:
                return self._not_found(f"No node group found for name: {m['ng']}.", nodegroupName=m["ng"])
            ng.version = str(req.get("version") or cluster.version)
            if req.get("releaseVersion"):
                ng.release_version = req["releaseVersion"]
            elif not str(ng.release_version).startswith(ng.version):
                ng.release_version = f"{ng.version}.0-{time.strftime('%Y%m%d')}"
            if req.get("launchTemplate"):
                ng.launch_template = req["launchTemplate"]
            from moto.core.utils import utcnow

            ng.modified_at = utcnow()
            update = self._update("VersionUpdate", [{"type": "Version", "value": ng.version},
                                                    {"type": "ReleaseVersion", "value": ng.release_version},
                                                    {"type": "Force", "value": str(bool(req.get("force"))).lower()}])
            self._record((account, region, m["name"]), m["ng"], update)
            LOG.info("EKS UpdateNodegroupVersion %s/%s -> %s force=%s", m["name"], m["ng"], ng.version,
                     bool(req.get("force")))
            return self._json(200, {"update": update})

        if method == "GET" and (m := self.R_DESCRIBE_UPDATE.match(path)):  # DescribeUpdate
            if m["name"] not in be.clusters:
                return self._not_found(f"No cluster found for name: {m['name']}.", clusterName=m["name"])
            with self._lock:
                found = self.updates.get((account, region, m["name"]), {}).get(m["id"])
            want_ng = (qs.get("nodegroupName") or [None])[0]
            if found is None or (want_ng and found[0] != want_ng):
                return self._not_found(f"No update found for ID: {m['id']}.", clusterName=m["name"])
            return self._json(200, {"update": found[1]})

        if method == "GET" and (m := self.R_CLUSTER_UPDATES.match(path)):  # ListUpdates
            if m["name"] not in be.clusters:
                return self._not_found(f"No cluster found for name: {m['name']}.", clusterName=m["name"])
            want_ng = (qs.get("nodegroupName") or [None])[0]
            with self._lock:
                items = self.updates.get((account, region, m["name"]), {})
                ids = [uid for uid, (ng, _u) in items.items() if ng == want_ng]
            return self._json(200, {"updateIds": ids})

        if method == "POST" and (m := self.R_NG_CONFIG.match(path)):  # UpdateNodegroupConfig: record the update
            status, headers, data = call_moto()
            if status == 200:
                update = json.loads(data).get("update") or {}
                if update.get("id"):
                    self._record((account, region, m["name"]), m["ng"], update)
            return status, headers, data

        if method == "POST" and (m := self.R_CLUSTER_CONFIG.match(path)):  # UpdateClusterConfig: answer an update
            status, headers, data = call_moto()
            if status != 200:
                return status, headers, data
            params = [{"type": k[0].upper() + k[1:], "value": json.dumps(v)} for k, v in req.items()
                      if k not in ("clientRequestToken",)]
            update = self._update("ConfigUpdate", params)
            self._record((account, region, m["name"]), None, update)
            return self._json(200, {"update": update})

        if method == "POST" and (m := self.R_NODEGROUPS.match(path)):  # CreateNodegroup: keep updateConfig
            status, headers, data = call_moto()
            if status == 200 and (req.get("updateConfig") or req.get("nodeRepairConfig")):
                ng = be.clusters[m["name"]].nodegroups.get(req.get("nodegroupName"))
                if ng is not None:
                    if req.get("updateConfig"):
                        ng.update_config = req["updateConfig"]
                    if req.get("nodeRepairConfig"):
                        ng.node_repair_config = req["nodeRepairConfig"]
                    payload = json.loads(data)
                    payload.setdefault("nodegroup", {})["updateConfig"] = ng.update_config
                    return self._json(200, payload)
            return status, headers, data

        if method == "POST" and self.R_CLUSTERS.match(path):  # CreateCluster: endpoint = the lab's Kubernetes API
            status, headers, data = call_moto()
            if status == 200 and self.k8s_url:
                cluster = be.clusters.get(req.get("name"))
                if cluster is not None:
                    cluster.endpoint = self.k8s_url
                    payload = json.loads(data)
                    payload.setdefault("cluster", {})["endpoint"] = self.k8s_url
                    return self._json(200, payload)
            return status, headers, data
        return None


# ------------------------------------------------------------------------------------------------ Secrets Manager
def fix_secretsmanager_default_version() -> None:
    """GetSecretValue with no VersionId/VersionStage answers AWSCURRENT, as on AWS, also after a staged rotation.

    moto 5.2.5 answers a secret's ``default_version_id`` there, which only CreateSecret, PutSecretValue with
    AWSCURRENT and RotateSecret set; UpdateSecretVersionStage moves the AWSCURRENT label but not that id. So after a
    rotation (AWSPENDING, then AWSCURRENT moved to it) every client that names no stage (the amazon.aws lookup,
    the SDKs' default) kept reading the old value. Done on moto's backend class, once per process.
    """
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.update_secret_version_stage
    if getattr(original, "_lab_fixed", False):
        return

    def update_secret_version_stage(self: Any, secret_id: str, version_stage: str, remove_from_version_id: str,
                                    move_to_version_id: str) -> tuple[str, str]:
        answer = original(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            self.secrets[secret_id].set_default_version_id(move_to_version_id)
        return answer

    update_secret_version_stage._lab_fixed = True  # type: ignore[attr-defined]
    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------------------------- app
class RetryReplay:
    """At most once per SDK invocation, for calls that change something.

    The AWS SDKs send every attempt of one call with the same ``amz-sdk-invocation-id`` header and number it in
    ``amz-sdk-request: attempt=N``. When a client retries a call the lab already did (its first answer did not reach
    the client: seen twice in CI, Terraform's AuthorizeSecurityGroupIngress, 120 ms apart, the second answered
    InvalidPermission.Duplicate), the lab answers the retry with the first attempt's answer instead of doing the call
    again, and logs it. Read-only calls and S3 (whose answers can be large) are done again as usual."""

    KEEP_SECONDS = 300.0

    def __init__(self) -> None:
        self._answers: dict[str, tuple[float, int, list[tuple[str, str]], bytes]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(environ: dict[str, Any], info: dict[str, Any]) -> str | None:
        """The invocation id of a call whose answer is kept for its retries, else None."""
        if info.get("service") in (None, "s3") or not info.get("action") or cloudtrail.is_read_only(info["action"]):
            return None
        return environ.get("HTTP_AMZ_SDK_INVOCATION_ID") or None

    def lookup(self, key: str, environ: dict[str, Any],
               info: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes] | None:
        with self._lock:
            now = time.monotonic()
            for k in [k for k, v in self._answers.items() if now - v[0] > self.KEEP_SECONDS]:
                del self._answers[k]
            kept = self._answers.get(key)
        if kept is None:
            return None
        LOG.warning("retry of %s:%s (%s, invocation %s): answered with the first attempt's answer (%s), not done again",
                    info["service"], info["action"], environ.get("HTTP_AMZ_SDK_REQUEST", "attempt ?"), key, kept[1])
        return kept[1], kept[2], kept[3]

    def keep(self, key: str, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        if 200 <= status < 300:
            with self._lock:
                self._answers[key] = (time.monotonic(), status, list(headers), data)


class LabAWSApp:
    def __init__(self, lab_dir: Path, k8s_url: str, rds_standin: bool = True) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        fix_secretsmanager_default_version()
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.faults = FaultStore(lab_dir / "faults")
        self.lab_dir = lab_dir
        self.resolver = OperationResolver()
        self.eks = EksExtras(k8s_url)
        self.trail = cloudtrail.Recorder(lab_dir)  # CloudTrail stand-in: records calls, answers LookupEvents
        self.started = time.time()
        self._rds_lock = threading.Lock()
        # moto's backends are plain dicts and lists, not safe under concurrent requests (moto's docs say so, PR
        # getmoto/moto#7166). The server is threaded (Terraform sends up to 10 requests at once): every call into moto
        # holds this lock, so one request changes a backend at a time. (Terraform's InvalidPermission.Duplicate in CI
        # was not a race but a client retry: see RetryReplay.)
        self._moto_lock = threading.Lock()
        self.replays = RetryReplay()
        self.rds = None
        if rds_standin and (lab_dir / "lab.json").exists():
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from rds_standin import RdsStandIn

            self.rds = RdsStandIn(lab_dir)
            self.rds.wipe()

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length <= 0:
            return b""
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        return body

    def _call_moto(self, environ: dict[str, Any], body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        environ["wsgi.input"] = io.BytesIO(body)
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured["status"], captured["headers"] = status, headers
            return lambda _data: None

        data = b"".join(self._moto(environ, start_response))
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(data))))
        return int(captured["status"].split()[0]), headers, data

    def _moto(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        """One call into moto, under the lock, its answer read whole before the lock is released."""
        with self._moto_lock:
            result = self.moto(environ, start_response)
            try:
                return [b"".join(result)]
            finally:
                if hasattr(result, "close"):
                    result.close()

    @staticmethod
    def _send(start_response: Callable, status: int, headers: list[tuple[str, str]], data: bytes) -> Iterable[bytes]:
        reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
                   500: "Internal Server Error", 503: "Service Unavailable"}
        start_response(f"{status} {reasons.get(status, 'Status')}", headers)
        return [data]

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_lab/"):
            if path.rstrip("/") in ("/_lab/ready", "/_lab/faults"):
                payload = {"ready": True, "service": "aws", "uptime": round(time.time() - self.started, 1),
                           "faults": self.faults.active()}
                data = json.dumps(payload).encode()
                return self._send(start_response, 200, [("Content-Type", "application/json"),
                                                        ("Content-Length", str(len(data)))], data)
            return self._send(start_response, 404, [("Content-Length", "0")], b"")
        if path.startswith("/moto-api"):
            return self._moto(environ, start_response)

        method = environ.get("REQUEST_METHOD", "GET")
        form_body = environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
        is_eks = "/eks/aws4_request" in environ.get("HTTP_AUTHORIZATION", "")
        body = self._read_body(environ) if (form_body or is_eks) else None
        info = self.resolver.resolve(environ, body)
        what = f"{info['service']}:{info['action']}@{info['region']}"
        if self.trail.is_lookup(info):
            return self._send(start_response, *self.trail.lookup(self._read_body(environ), info))
        start_response = self.trail.record(info, environ, start_response)

        opts = self.faults.take("aws.down", info)
        if opts is not None:
            if opts.get("mode", "close") == "503":
                LOG.warning("fault aws.down (503): %s", what)
                status, headers, data = _error_response(info["protocol"], info["service"], "ServiceUnavailable",
                                                        "Service is unavailable (lab fault aws.down)", status=503,
                                                        method=method)
                return self._send(start_response, status, headers, data)
            LOG.warning("fault aws.down (close): %s", what)
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            raise ConnectionResetError("lab fault aws.down")

        opts = self.faults.take("aws.throttle", info)
        if opts is not None:
            code, status = throttle_error(info["protocol"], info["service"])
            code, status = opts.get("code", code), int(opts.get("status", status))
            LOG.warning("fault aws.throttle: %s -> %s %s", what, status, code)
            status, headers, data = _error_response(info["protocol"], info["service"], code,
                                                    "Rate exceeded (lab fault aws.throttle)", status=status,
                                                    method=method)
            return self._send(start_response, status, headers, data)

        opts = self.faults.take("aws.error", info)
        if opts is not None:
            code, status = opts.get("code", "InternalError"), int(opts.get("status", 500))
            LOG.warning("fault aws.error: %s -> %s %s", what, status, code)
            status, headers, data = _error_response(info["protocol"], info["service"], code,
                                                    "We encountered an internal error (lab fault aws.error)",
                                                    status=status, method=method)
            return self._send(start_response, status, headers, data)

        key = self.replays.key(environ, info)
        if key is None:
            return self._dispatch(environ, body, info, start_response)
        replay = self.replays.lookup(key, environ, info)
        if replay is not None:
            return self._send(start_response, *replay)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        data = b"".join(self._dispatch(environ, body, info, capture))
        if captured:
            self.replays.keep(key, int(captured["status"].split()[0]), captured["headers"], data)
        return [data]

    def _dispatch(self, environ: dict[str, Any], body: bytes | None, info: dict[str, Any],
                  start_response: Callable) -> Iterable[bytes]:
        """A call past the lab's faults: to the RDS stand-in, the EKS extras or moto."""
        # cluster failures (plan section 3): reboots, node group updates, cluster delete/create reach the k8s emulator
        start_response = cluster_faults.observing(self.lab_dir, info, environ, body, start_response)

        if info["service"] == "rds" and info["action"] in RDS_RESTORE_ACTIONS and info["region"] and body:
            return self._rds_restore(environ, body, info, start_response)
        if info["service"] == "rds" and info["action"] in RDS_STANDIN_ACTIONS and info["region"] and body \
                and self.rds is not None:
            return self._send(start_response, *self._rds_standin(environ, body, info))

        if "/eks/aws4_request" in environ.get("HTTP_AUTHORIZATION", "") and info["region"]:
            from moto.iam.models import get_account_id_from

            account = get_account_id_from(info["access_key"] or "")
            answer = self.eks.handle(environ, body or b"", account, info["region"],
                                     lambda: self._call_moto(environ, body or b""))
            if answer is not None:
                return self._send(start_response, *answer)
            environ["wsgi.input"] = io.BytesIO(body or b"")
        return self._moto(environ, start_response)

    def _rds_standin(self, environ: dict[str, Any], body: bytes,
                     info: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        from moto.iam.models import get_account_id_from

        form = parse_qs(body.decode("utf-8", "replace"))
        account = get_account_id_from(info["access_key"] or "")
        with self._rds_lock:
            return self.rds.handle(info["action"], form, account, info["region"],
                                   lambda: self._call_moto(environ, body))

    def _rds_restore(self, environ: dict[str, Any], body: bytes, info: dict[str, Any],
                     start_response: Callable) -> Iterable[bytes]:
        """moto copies DeletionProtection from the source into a restored instance; AWS defaults it to false.
        With the RDS stand-in, the restored instance is a real cluster, `creating` until it accepts connections."""
        if self.rds is not None:
            status, headers, data = self._rds_standin(environ, body, info)
            if status == 200:
                data = data.replace(b"<DBInstanceStatus>available</DBInstanceStatus>",
                                    b"<DBInstanceStatus>creating</DBInstanceStatus>")
        else:
            status, headers, data = self._call_moto(environ, body)
        form = parse_qs(body.decode("utf-8", "replace"))
        if status == 200 and "DeletionProtection" not in form:
            from moto.iam.models import get_account_id_from
            from moto.rds.models import rds_backends

            target = (form.get("DBInstanceIdentifier") or form.get("TargetDBInstanceIdentifier") or [""])[0]
            db = rds_backends[get_account_id_from(info["access_key"] or "")][info["region"]].databases.get(target)
            if db is not None:
                db.deletion_protection = False
                data = data.replace(b"<DeletionProtection>true</DeletionProtection>",
                                    b"<DeletionProtection>false</DeletionProtection>")
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(data))))
        return self._send(start_response, status, headers, data)


def default_k8s_url(lab_dir: Path) -> str:
    if os.environ.get("LAB_K8S_URL"):
        return os.environ["LAB_K8S_URL"]
    try:
        port = json.loads((lab_dir / "lab.json").read_text())["ports"]["k8s"]
        return f"http://127.0.0.1:{port}"
    except (OSError, ValueError, KeyError, TypeError):
        port = os.environ.get("LAB_K8S_PORT", "56443")
        return f"http://127.0.0.1:{port}"


def make_server(host: str, port: int, lab_dir: Path, k8s_url: str | None = None, rds_standin: bool = True,
                app: LabAWSApp | None = None, ssl_context: Any = None) -> Any:
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server as wz_make_server

    if app is None:
        app = LabAWSApp(lab_dir, k8s_url or default_k8s_url(lab_dir), rds_standin=rds_standin)
    handler = MotoRequestHandler
    if ssl_context is not None:
        class TLSRequestHandler(MotoRequestHandler):
            """Ends every TLS connection with close_notify. Python's ssl closes without it, and a client that reads
            a response without Content-Length until the end (moto's S3 PUT answers) then sees a truncated stream:
            pgBackRest 2.45 (OpenSSL 3) fails with `TLS error [1:167772454] unexpected eof while reading` and
            retries until its timeout."""

            def finish(self) -> None:
                super().finish()
                try:
                    self.request.settimeout(2)
                    self.request.unwrap()
                except (OSError, ValueError):
                    pass

        handler = TLSRequestHandler
    return wz_make_server(host, port, app, threaded=True, request_handler=handler, ssl_context=ssl_context)


def tls_context(cert: Path, key: Path) -> Any:
    """Server-side TLS (1.2 or newer) with the lab CA's certificate for 127.0.0.1 (dev/lab/services/lab_tls.py)."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LAB_AWS_PORT", "55000")))
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", ".lab")))
    parser.add_argument("--no-rds-standin", action="store_true", help="RDS records only, no PostgreSQL behind them")
    parser.add_argument("--k8s-url", default=None, help="endpoint given to every EKS cluster "
                        "(default: LAB_K8S_URL, lab.json's k8s port, or http://127.0.0.1:56443)")
    parser.add_argument("--tls-port", type=int, default=0,
                        help="also serve HTTPS on this port, the same moto state (0: no TLS listener)")
    parser.add_argument("--tls-cert", type=Path, default=None, help="server certificate chain (PEM); default "
                        "<lab-dir>/tls/server.pem, made with the lab CA by dev/lab/services/lab_tls.py")
    parser.add_argument("--tls-key", type=Path, default=None, help="its key (default <lab-dir>/tls/server.key)")
    args = parser.parse_args(argv)

    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs (S3 presign, ...) from it
    lab_dir = args.lab_dir.resolve()
    (lab_dir / "faults").mkdir(parents=True, exist_ok=True)

    server = make_server(args.host, args.port, lab_dir, args.k8s_url, rds_standin=not args.no_rds_standin)
    servers = [server]
    if args.tls_port:
        # the same app object: one moto state, one fault layer, one CloudTrail record for both listeners
        ctx = tls_context(args.tls_cert or lab_dir / "tls" / "server.pem",
                          args.tls_key or lab_dir / "tls" / "server.key")
        servers.append(make_server(args.host, args.tls_port, lab_dir, app=server.app, ssl_context=ctx))

    def _stop(signum: int, _frame: Any) -> None:
        LOG.info("signal %s: stopping", signum)
        for srv in servers:
            threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    LOG.info("lab AWS (moto) listening on http://%s:%s lab-dir=%s k8s-url=%s", args.host, server.server_port,
             lab_dir, server.app.eks.k8s_url)
    threads = []
    for srv in servers[1:]:
        LOG.info("lab AWS (moto) listening on https://%s:%s (TLS, lab CA %s)", args.host, srv.server_port,
                 lab_dir / "tls" / "ca.pem")
        t = threading.Thread(target=srv.serve_forever, name=f"tls-{srv.server_port}", daemon=True)
        t.start()
        threads.append(t)
    sys.stdout.flush()
    try:
        server.serve_forever()
    finally:
        for t in threads:
            t.join(timeout=10)
        for srv in servers:
            srv.server_close()
        LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
