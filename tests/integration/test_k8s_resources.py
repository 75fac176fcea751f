"""agbotkit.dr.k8s_resources against the lab's Kubernetes emulator: what it reads is what the API lists, kind by kind;
a kind the API does not serve, an API nobody answers and an API that answers 500 each fail naming what failed.

One playbook run (tests/integration/playbooks/k8s_resources.yml) drives every case; the test reads its results.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "tests/integration/playbooks/k8s_resources.yml"
NS = "ag-botkit"


@pytest.fixture(scope="module")
def api(lab):
    """GET a path of the lab's Kubernetes API as the kubeconfig's context `lab` does."""
    config = yaml.safe_load(Path(lab["env"]["KUBECONFIG"]).read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == "lab")
    server = next(c["cluster"]["server"] for c in config["clusters"] if c["name"] == context["cluster"])
    token = next(u["user"]["token"] for u in config["users"] if u["name"] == context["user"])

    def get(path: str) -> dict:
        res = requests.get(server + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        res.raise_for_status()
        return res.json()

    get.server = server
    return get


@pytest.fixture(scope="module")
def results(lab, run_playbook, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k8s_resources")
    config = yaml.safe_load(Path(lab["env"]["KUBECONFIG"]).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = "http://127.0.0.1:9"  # discard port: nothing listens
    unreachable = tmp / "unreachable.kubeconfig"
    unreachable.write_text(yaml.safe_dump(config))
    out = tmp / "out.json"
    res = run_playbook(PLAYBOOK, extra_vars={
        "kubeconfig": lab["env"]["KUBECONFIG"], "unreachable_kubeconfig": str(unreachable), "out_file": str(out),
        "fault_file": str(Path(lab["lab_dir"]) / "faults" / "k8s.api_error")})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    data = json.loads(out.read_text())
    data["output"] = res.stdout
    return data


def names(objects: list[dict]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)


def test_reads_each_kind_as_the_api_lists_it_in_the_order_asked(results, api):
    several = results["several"]
    assert several["changed"] is False and several["missing"] == []
    kinds = several["kinds"]
    assert [(k["api_version"], k["kind"], k["name"]) for k in kinds] == [
        ("apps/v1", "Deployment", None), ("v1", "ConfigMap", None), ("v1", "Service", None), ("v1", "Node", None),
        ("v1", "Namespace", NS), ("v1", "Namespace", "no-such-namespace")]
    assert [k["namespaced"] for k in kinds] == [True, True, True, False, False, False]
    assert all(k["api_found"] for k in kinds)
    expected = [api(f"/apis/apps/v1/namespaces/{NS}/deployments"), api(f"/api/v1/namespaces/{NS}/configmaps"),
                api(f"/api/v1/namespaces/{NS}/services"), api("/api/v1/nodes")]
    for entry, listed in zip(kinds[:4], expected, strict=True):
        assert names(entry["resources"]) == names(listed["items"]), entry["kind"]
        assert all(o["kind"] == entry["kind"] for o in entry["resources"])
        if entry["namespaced"]:
            assert {o["metadata"]["namespace"] for o in entry["resources"]} <= {NS}
    assert "minibot" in names(kinds[0]["resources"]) and len(kinds[3]["resources"]) >= 1
    assert names(kinds[4]["resources"]) == [NS]
    assert kinds[5]["resources"] == []  # a named object that does not exist: none, not a failure
    assert several["api"] == api.server


def test_check_mode_reads_the_same(results):
    strip = [[(k["kind"], k["name"], names(k["resources"])) for k in r["kinds"]]
             for r in (results["several"], results["checked"])]
    assert strip[0] == strip[1]


def test_a_kind_the_api_does_not_serve_fails_naming_it_or_with_warn_is_listed_and_empty(results, api):
    failed = results["missing_fail"]
    assert failed["failed"] is True and "kinds" not in failed
    assert f"the Kubernetes API at {api.server} does not serve example.com/v1 Widget" in failed["msg"]
    assert "ConfigMap" not in failed["msg"]
    warned = results["missing_warn"]
    assert warned.get("failed") is not True
    assert [(k["kind"], k["api_found"]) for k in warned["kinds"]] == [("ConfigMap", True), ("Widget", False)]
    assert warned["kinds"][1]["resources"] == [] and len(warned["kinds"][0]["resources"]) >= 1
    assert warned["missing"] == [{"api_version": "example.com/v1", "kind": "Widget", "name": None}]
    assert any("does not serve example.com/v1 Widget" in w for w in warned["warnings"])


def test_an_api_nobody_answers_fails_naming_its_address(results):
    res = results["unreachable"]
    assert res["failed"] is True and "kinds" not in res
    assert "127.0.0.1" in res["msg"] and "port=9" in res["msg"]
    assert "check the kubeconfig, context and host options" in res["msg"]


def test_an_api_that_answers_500_fails_naming_the_api_and_the_kind(results, api):
    res = results["api_error"]
    assert res["failed"] is True and "kinds" not in res
    assert api.server in res["msg"] and "lab injected an API error" in res["msg"], res["msg"]



def test_a_backup_prints_no_secret_and_fails_naming_a_kind_the_api_does_not_serve(run_playbook, api, tmp_path):
    """db_backup reads its kinds, Secrets among them, in one call under no_log: nothing of a Secret reaches the
    output, even with -v; and a failed read still fails the run with the module's message (the task after it)."""
    import base64

    secrets = api(f"/api/v1/namespaces/{NS}/secrets")["items"]
    values = [base64.b64decode(v).decode() for s in secrets for v in (s.get("data") or {}).values()]
    values = [v for v in values if len(v) >= 8]
    assert values, "the lab's namespace has no Secret value to look for"
    only_k8s = {"db_backup_database": False, "db_backup_terraform_state": False, "db_backup_upload": False}

    ok = run_playbook("playbooks/backup.yml", "-v", extra_vars={
        **only_k8s, "db_backup_dir": str(tmp_path / "ok"),
        "db_backup_k8s_kinds": [{"api_version": "v1", "kind": "Secret"}, {"api_version": "v1", "kind": "ConfigMap"}]})
    out = ok.stdout + ok.stderr
    assert ok.returncode == 0, out[-3000:]
    written = list((tmp_path / "ok").rglob("k8s-backup-*.yaml"))
    assert len(written) == 1 and "kind: Secret" in written[0].read_text()  # the backup has them, the output not
    leaked = [v[:4] + "..." for v in values if v in out]
    assert not leaked, f"Secret values in the output: {leaked}"

    failed = run_playbook("playbooks/backup.yml", extra_vars={
        **only_k8s, "db_backup_dir": str(tmp_path / "failed"),
        "db_backup_k8s_kinds": [{"api_version": "v1", "kind": "Secret"},
                                {"api_version": "example.com/v1", "kind": "Widget"}]})
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "Stop when the namespace's resources could not be read" in out
    assert "does not serve example.com/v1 Widget" in out
    assert not list((tmp_path / "failed").rglob("k8s-backup-*.yaml"))  # nothing written
