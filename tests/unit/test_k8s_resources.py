"""agbotkit.dr.k8s_resources' decisions (plugins/module_utils/_k8s.py): which kinds are read where, what a kind the
API does not serve does, the result's shape. The reads themselves run against the lab's Kubernetes emulator in
tests/integration/test_k8s_resources.py."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / ".collections") not in sys.path:
    sys.path.insert(0, str(ROOT / ".collections"))

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import KubernetesReadError  # noqa: E402
from ansible_collections.agbotkit.dr.plugins.module_utils._k8s import normalize_kinds, read_kinds  # noqa: E402

SERVED = {("v1", "Pod"): True, ("apps/v1", "Deployment"): True, ("v1", "Node"): False, ("v1", "Namespace"): False}


def resource(api_version, kind):
    namespaced = SERVED.get((api_version, kind))
    return None if namespaced is None else SimpleNamespace(namespaced=namespaced)


class Finder:
    def __init__(self):
        self.calls = []

    def __call__(self, item, namespace):
        self.calls.append((item["kind"], item["name"], namespace))
        return [{"kind": item["kind"], "metadata": {"name": item["name"] or "x", "namespace": namespace}}]


def test_kinds_are_read_in_the_order_asked_namespaced_in_the_namespace_cluster_scoped_cluster_wide():
    find = Finder()
    items = normalize_kinds([{"kind": "Node"}, {"api_version": "apps/v1", "kind": "Deployment"},
                             {"kind": "Namespace", "name": "ag-botkit"}, {"kind": "Pod", "api_version": None}])
    kinds, missing = read_kinds(items, "ag-botkit", resource, find)
    assert missing == []
    assert [(k["api_version"], k["kind"], k["name"], k["namespaced"], k["api_found"]) for k in kinds] == [
        ("v1", "Node", None, False, True), ("apps/v1", "Deployment", None, True, True),
        ("v1", "Namespace", "ag-botkit", False, True), ("v1", "Pod", None, True, True)]
    assert find.calls == [("Node", None, None), ("Deployment", None, "ag-botkit"), ("Namespace", "ag-botkit", None),
                          ("Pod", None, "ag-botkit")]
    assert kinds[1]["resources"] == [{"kind": "Deployment", "metadata": {"name": "x", "namespace": "ag-botkit"}}]


def test_a_kind_not_served_fails_before_any_read_and_names_every_such_kind():
    find = Finder()
    items = normalize_kinds([{"kind": "Pod"}, {"api_version": "example.com/v1", "kind": "Widget"},
                             {"api_version": "v2", "kind": "Pod"}])
    with pytest.raises(KubernetesReadError) as err:
        read_kinds(items, "ag-botkit", resource, find, where="https://api.example")
    assert "https://api.example does not serve example.com/v1 Widget, v2 Pod" in str(err.value)
    assert [m["kind"] for m in err.value.details["missing"]] == ["Widget", "Pod"]
    assert find.calls == []


def test_with_warn_a_kind_not_served_is_returned_empty_and_listed_the_others_are_read():
    find = Finder()
    items = normalize_kinds([{"kind": "Pod"}, {"api_version": "example.com/v1", "kind": "Widget"}])
    kinds, missing = read_kinds(items, "ag-botkit", resource, find, on_missing="warn")
    assert [(k["kind"], k["api_found"], len(k["resources"])) for k in kinds] == [("Pod", True, 1), ("Widget", False, 0)]
    assert missing == [{"api_version": "example.com/v1", "kind": "Widget", "name": None}]
    assert find.calls == [("Pod", None, "ag-botkit")]


def test_a_kind_asked_twice_or_no_kind_is_refused():
    with pytest.raises(KubernetesReadError, match="lists v1 Pod twice"):
        normalize_kinds([{"kind": "Pod"}, {"api_version": "v1", "kind": "Pod"}])
    with pytest.raises(KubernetesReadError, match="kinds is empty"):
        normalize_kinds([])
    # the same kind with different names is two reads
    assert len(normalize_kinds([{"kind": "Namespace", "name": "a"}, {"kind": "Namespace", "name": "b"}])) == 2


def test_an_error_of_a_read_is_not_swallowed():
    def broken(item, namespace):
        raise KubernetesReadError("could not read v1 Pod")

    with pytest.raises(KubernetesReadError, match="could not read v1 Pod"):
        read_kinds(normalize_kinds([{"kind": "Pod"}]), "ns", resource, broken)
