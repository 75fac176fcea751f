"""Pure logic of the lab's Kubernetes emulator: selectors, patches, store semantics, controllers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "dev" / "lab" / "services"))

import k8s_util as u  # noqa: E402
from k8s_cluster import ApiError, Cluster, Discovery  # noqa: E402


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("app=web", {"app": "web"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "db"}, False),
    ("app in (a, web),!legacy", {"app": "web"}, True),
    ("app notin (web)", {"app": "web"}, False),
    ("tier", {"app": "web"}, False),
    ("", {}, True),
])
def test_label_selectors(selector, labels, expected):
    assert u.match_labels(labels, u.parse_label_selector(selector)) is expected


def test_field_selectors():
    pod = {"metadata": {"name": "p", "namespace": "ns"}, "status": {"phase": "Running"}}
    assert u.match_fields(pod, u.parse_field_selector("metadata.name=p,status.phase=Running"))
    assert not u.match_fields(pod, u.parse_field_selector("metadata.namespace!=ns"))


def test_patches():
    containers = [{"name": "a", "image": "x", "env": [{"name": "K", "value": "1"}]}, {"name": "b", "image": "y"}]
    obj = {"spec": {"template": {"spec": {"containers": containers}}}}
    smp = u.strategic_merge_patch(obj, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
        "containers": [{"name": "b", "image": "z"}, {"name": "a", "$patch": "delete"}]}}}})
    assert smp["spec"]["template"]["spec"]["containers"] == [{"name": "b", "image": "z"}]
    merged = u.merge_patch(obj, {"spec": {"template": {"spec": {"containers": []}}}, "x": None})
    assert merged["spec"]["template"]["spec"]["containers"] == []
    jp = u.apply_patch(obj, [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "q"}],
                       "application/json-patch+json")
    assert jp["spec"]["template"]["spec"]["containers"][0]["image"] == "q"
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == "x"  # never mutated


@pytest.fixture
def cluster(tmp_path):
    c = Cluster("unit", Discovery(), tmp_path)
    ns = c.info("", "namespaces")
    c.create(ns, None, {"metadata": {"name": "default"}})
    return c


def test_store_semantics(cluster):
    sec = cluster.info("", "secrets")
    made = cluster.create(sec, "default", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert made["data"] == {"k": "dg=="} and "stringData" not in made
    assert made["metadata"]["uid"] and made["metadata"]["creationTimestamp"] and made["kind"] == "Secret"
    with pytest.raises(ApiError) as err:
        cluster.create(sec, "default", {"metadata": {"name": "s"}})
    assert err.value.code == 409 and err.value.status()["reason"] == "AlreadyExists"
    with pytest.raises(ApiError) as err:
        cluster.create(sec, "missing-ns", {"metadata": {"name": "s"}})
    assert err.value.code == 404
    with pytest.raises(ApiError) as err:
        cluster.replace(sec, "default", "s", {"metadata": {"name": "s", "resourceVersion": "1"}})
    assert err.value.code == 409


def test_deployment_controller(cluster):
    dep = cluster.info("apps", "deployments")
    body = {"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}}}}
    made = cluster.create(dep, "default", body)
    assert made["metadata"]["generation"] == 1
    cluster.reconcile(force=True)
    got = cluster.get(dep, "default", "web")
    assert got["status"]["availableReplicas"] == 2 and got["status"]["observedGeneration"] == 1
    pods = cluster.list(cluster.info("", "pods"), "default", "app=web")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    patched, _ = cluster.patch(dep, "default", "web", {"metadata": {"labels": {"x": "y"}}},
                               "application/merge-patch+json")
    assert patched["metadata"]["generation"] == 1  # metadata only: no new generation
    patched, _ = cluster.patch(dep, "default", "web", {"spec": {"replicas": 1}}, "application/merge-patch+json")
    assert patched["metadata"]["generation"] == 2
    cluster.delete(dep, "default", "web")
    assert cluster.list(cluster.info("", "pods"), "default") == []
    assert cluster.list(cluster.info("apps", "replicasets"), "default") == []


@pytest.mark.parametrize(("image", "repo"), [
    ("ghcr.io/ag-botkit/minibot:1.4.2", "ghcr.io/ag-botkit/minibot"),
    ("ghcr.io/ag-botkit/minibot@sha256:abc", "ghcr.io/ag-botkit/minibot"),
    ("localhost:5000/ag-botkit/rtds-client", "localhost:5000/ag-botkit/rtds-client"),
    ("busybox", "busybox"),
])
def test_image_repo(image, repo):
    from k8s_kubelet import image_repo

    assert image_repo(image) == repo


def test_which_pods_run():
    from k8s_kubelet import Kubelet

    def pod(*images, annotations=None, owner=None):
        meta = {"name": "p", "annotations": annotations or {}}
        if owner:
            meta["ownerReferences"] = [{"kind": owner, "controller": True}]
        return {"metadata": meta, "spec": {"containers": [{"name": f"c{i}", "image": im}
                                                          for i, im in enumerate(images)]}}

    assert Kubelet.manages(pod("ghcr.io/ag-botkit/minibot:1.4.2"))
    assert Kubelet.manages(pod("ghcr.io/ag-botkit/rtds-client:2", owner="ReplicaSet"))
    assert not Kubelet.manages(pod("ghcr.io/ag-botkit/api:1.4.2"))
    assert not Kubelet.manages(pod("ghcr.io/ag-botkit/minibot:1", "busybox"))  # one unknown container: none run
    assert not Kubelet.manages(pod("ghcr.io/ag-botkit/minibot:1", annotations={"lab.agbotkit.dr/run": "false"}))
    assert not Kubelet.manages(pod("ghcr.io/ag-botkit/minibot:1", owner="Job"))


@pytest.mark.parametrize(("strategy", "want", "unavailable"), [
    ({}, 1, 0), ({}, 2, 0), ({}, 4, 1), ({}, 10, 2),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}, 1, 1),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}, 3, 1),
    ({"type": "Recreate"}, 5, 0),
])
def test_max_unavailable(strategy, want, unavailable):
    from k8s_cluster import _max_unavailable

    assert _max_unavailable({"strategy": strategy} if strategy else {}, want) == unavailable


def test_namespace_deletion_is_asynchronous(cluster, monkeypatch):
    import k8s_cluster

    ns, cm = cluster.info("", "namespaces"), cluster.info("", "configmaps")
    cluster.create(ns, None, {"metadata": {"name": "gone"}})
    cluster.create(cm, "gone", {"metadata": {"name": "a"}})
    answer = cluster.delete(ns, None, "gone")
    assert answer["status"]["phase"] == "Terminating" and answer["metadata"]["deletionTimestamp"]
    assert cluster.get(ns, None, "gone")["status"]["phase"] == "Terminating"
    assert cluster.get(cm, "gone", "a")  # the contents go later
    with pytest.raises(ApiError) as err:
        cluster.create(cm, "gone", {"metadata": {"name": "b"}})
    assert err.value.code == 403 and "being terminated" in err.value.message
    cluster.reconcile()
    assert cluster.get(ns, None, "gone")  # still within the grace period
    monkeypatch.setattr(k8s_cluster, "NAMESPACE_GRACE", 0.0)
    cluster.reconcile()
    for info, where, name in ((ns, None, "gone"), (cm, "gone", "a")):
        with pytest.raises(ApiError) as err:
            cluster.get(info, where, name)
        assert err.value.code == 404
