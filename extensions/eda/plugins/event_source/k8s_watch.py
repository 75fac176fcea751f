# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""agbotkit.dr.k8s_watch: an Event-Driven Ansible source that watches a namespace's resources.

Puts one event per change (ADDED after the start, MODIFIED, DELETED) of the watched kinds:
``{"type", "kind", "namespace", "name", "resource_version"}``. Never the object's content: a Secret's data
must not travel through rule engines and logs.

Arguments:
  kubeconfig    path of a kubeconfig (server, bearer token, CA data or insecure-skip-tls-verify);
                empty means in-cluster (service-account token and CA)
  context       kubeconfig context (default its current-context)
  namespace     the namespace to watch (required)
  kinds         list of {api: /api/v1 or /apis/GROUP/VERSION, plural: configmaps, kind: ConfigMap};
                default ConfigMaps and Secrets
  reconnect_delay  seconds before a watch is opened again after it ended or failed (default 2)

A watch starts from the resourceVersion of an initial LIST, so existing objects do not fire at start; after a
410 Gone (history compacted) it lists again. Limits: no exec-based credentials (EKS's aws eks get-token): run
the activation in the cluster with a service account, or give it a token.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from typing import Any

import aiohttp
import yaml

DEFAULT_KINDS = [
    {"api": "/api/v1", "plural": "configmaps", "kind": "ConfigMap"},
    {"api": "/api/v1", "plural": "secrets", "kind": "Secret"},
]
SA = "/var/run/secrets/kubernetes.io/serviceaccount"


def connection(args: dict) -> tuple[str, dict, Any]:
    """(server URL, headers, ssl context or False) from a kubeconfig or the in-cluster service account."""
    path = args.get("kubeconfig") or ""
    if not path:
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        with open(f"{SA}/token", encoding="utf-8") as f:
            token = f.read().strip()
        return (
            f"https://{host}:{port}",
            {"Authorization": f"Bearer {token}"},
            ssl.create_default_context(cafile=f"{SA}/ca.crt"),
        )
    with open(os.path.expanduser(path), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    ctx_name = args.get("context") or cfg.get("current-context")
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next((u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {})
    headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
    tls: Any = None
    if cluster["server"].startswith("https"):
        if cluster.get("insecure-skip-tls-verify"):
            tls = False
        elif cluster.get("certificate-authority-data"):
            with tempfile.NamedTemporaryFile("wb", delete=False, suffix=".crt") as ca:
                ca.write(base64.b64decode(cluster["certificate-authority-data"]))
            tls = ssl.create_default_context(cafile=ca.name)
        elif cluster.get("certificate-authority"):
            tls = ssl.create_default_context(cafile=cluster["certificate-authority"])
    return cluster["server"].rstrip("/"), headers, tls


async def _list_version(session, url: str, tls) -> str:
    async with session.get(url, ssl=tls) as resp:
        resp.raise_for_status()
        return ((await resp.json()).get("metadata") or {}).get("resourceVersion", "")


async def watch_kind(queue: asyncio.Queue, session, server: str, tls, namespace: str, kind: dict, delay: float) -> None:
    url = f"{server}{kind['api']}/namespaces/{namespace}/{kind['plural']}"
    version = ""
    while True:
        try:
            if not version:
                version = await _list_version(session, url, tls)
            params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
            if version:
                params["resourceVersion"] = version
            async with session.get(
                url, params=params, ssl=tls, timeout=aiohttp.ClientTimeout(total=None, sock_read=330)
            ) as resp:
                if resp.status == 410:
                    version = ""
                    continue
                resp.raise_for_status()
                async for line in resp.content:
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    meta = (ev.get("object") or {}).get("metadata") or {}
                    if ev.get("type") == "ERROR":
                        if (ev.get("object") or {}).get("code") == 410:
                            version = ""
                        break
                    version = meta.get("resourceVersion") or version
                    if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        await queue.put(
                            {
                                "type": ev["type"],
                                "kind": kind["kind"],
                                "namespace": namespace,
                                "name": meta.get("name", ""),
                                "resource_version": version,
                            }
                        )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a watch must survive API restarts; say why and retry
            print(
                f"agbotkit.dr.k8s_watch: {kind['kind']} watch in {namespace} failed ({exc}); retrying in {delay} s",
                flush=True,
            )
        await asyncio.sleep(delay)


async def main(queue: asyncio.Queue, args: dict) -> None:
    server, headers, tls = connection(args)
    namespace = args["namespace"]
    delay = float(args.get("reconnect_delay", 2))
    async with aiohttp.ClientSession(headers=headers) as session:
        await asyncio.gather(
            *(
                watch_kind(queue, session, server, tls, namespace, k, delay)
                for k in (args.get("kinds") or DEFAULT_KINDS)
            )
        )


if __name__ == "__main__":

    class _Print:
        async def put(self, event):
            print(event, flush=True)

    import sys

    asyncio.run(main(_Print(), {"kubeconfig": sys.argv[1], "namespace": sys.argv[2]}))
