#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: k8s_resources
short_description: Read a namespace's resources of many kinds in one call
version_added: 0.3.0
description:
  - Reads the objects of every kind listed in O(kinds), in one module call, and returns them per kind, in the order
    listed. One call replaces a loop of M(kubernetes.core.k8s_info) tasks (one Python process per kind).
  - A namespaced kind is read in O(namespace); a cluster-scoped kind (C(Node), C(Namespace)) is read cluster-wide.
  - Never changes anything; runs the same reads in check mode.
  - A kind the API does not serve fails the call before any object is read, naming every such kind
    (O(missing_kinds=fail)), or is returned with RV(kinds[].api_found=false) and a warning (O(missing_kinds=warn)).
    An API that cannot be reached, or that answers with an error, fails the call naming the API's address and the
    kind being read.
  - Secrets are returned as the API gives them. Put C(no_log) on a task that lists C(Secret) in O(kinds).
  - Takes the connection and authentication options of M(kubernetes.core.k8s_info), through the same module_utils of
    kubernetes.core.
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  namespace:
    description: The namespace the namespaced kinds are read in.
    type: str
    required: true
  kinds:
    description: The kinds to read, each once.
    type: list
    elements: dict
    required: true
    suboptions:
      api_version:
        description: The kind's API group and version, as in a manifest's C(apiVersion).
        type: str
        default: v1
      kind:
        description: The kind, as in a manifest's C(kind).
        type: str
        required: true
      name:
        description: Read only the object of this name (none when it does not exist); unset reads every object.
        type: str
  missing_kinds:
    description:
      - What a kind the API does not serve does.
      - V(fail) stops before any object is read and names every such kind.
      - V(warn) returns it with RV(kinds[].api_found=false) and no resources, lists it in RV(missing) and warns.
    type: str
    choices: [fail, warn]
    default: fail
extends_documentation_fragment:
  - kubernetes.core.k8s_auth_options
requirements:
  - kubernetes >= 24.2.0
  - PyYAML >= 3.11
attributes:
  check_mode:
    support: full
    description: Runs the same reads in check mode; the module never changes anything.
  diff_mode:
    support: none
    description: The module returns no diff.
seealso:
  - module: kubernetes.core.k8s_info
"""

EXAMPLES = r"""
- name: Read the namespace's workloads and the nodes (one call)
  agbotkit.dr.k8s_resources:
    kubeconfig: ~/.kube/config
    context: production
    namespace: ag-botkit
    kinds:
      - {api_version: apps/v1, kind: Deployment}
      - {api_version: v1, kind: Service}
      - {api_version: v1, kind: Node}
  register: read

- name: Every Deployment's name
  ansible.builtin.debug:
    msg: "{{ (read.kinds | selectattr('kind', 'equalto', 'Deployment') | first).resources
             | map(attribute='metadata.name') | list }}"

- name: A backup's read, Secrets included (their data never printed)
  agbotkit.dr.k8s_resources:
    namespace: ag-botkit
    kinds:
      - {kind: Namespace, name: ag-botkit}
      - {kind: ConfigMap}
      - {kind: Secret}
  register: backup_read
  no_log: true
"""

RETURN = r"""
kinds:
  description:
    - One entry per kind of O(kinds), in the same order.
    - C(api_version), C(kind) and C(name) as asked; C(namespaced) whether the kind is read in O(namespace);
      C(api_found) whether the API serves the kind; C(resources) the objects, each as the API returns it (the same
      as M(kubernetes.core.k8s_info)'s C(resources)), empty when there are none.
  returned: success
  type: list
  elements: dict
  contains:
    api_version:
      description: The kind's API group and version, as asked.
      type: str
    kind:
      description: The kind, as asked.
      type: str
    name:
      description: The object's name when one was asked for, else null.
      type: str
    namespaced:
      description: Whether the kind is namespaced (read in O(namespace)) or cluster-scoped (read cluster-wide).
      type: bool
    api_found:
      description: Whether the API serves the kind (false only with O(missing_kinds=warn)).
      type: bool
    resources:
      description: The objects, as M(kubernetes.core.k8s_info) returns them; empty when there are none.
      type: list
      elements: dict
  sample:
    - api_version: apps/v1
      kind: Deployment
      name: null
      namespaced: true
      api_found: true
      resources: [{apiVersion: apps/v1, kind: Deployment, metadata: {name: minibot, namespace: ag-botkit}}]
missing:
  description: The kinds of O(kinds) the API does not serve (C(api_version), C(kind), C(name)); empty if none.
  returned: always
  type: list
  elements: dict
api:
  description: The address of the Kubernetes API read.
  returned: when the client could be made
  type: str
"""

from ansible_collections.agbotkit.dr.plugins.module_utils._errors import KubernetesReadError
from ansible_collections.agbotkit.dr.plugins.module_utils._k8s import (
    kind_label,
    missing_message,
    normalize_kinds,
    read_kinds,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module
from ansible_collections.kubernetes.core.plugins.module_utils.ansiblemodule import AnsibleModule
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.core import AnsibleK8SModule
from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import K8sService

NEXT = "check the kubeconfig, context and host options and that the API answers (kubectl get --raw /readyz)"


def run(module, result):
    items = normalize_kinds(module.params["kinds"])
    namespace = module.params["namespace"]
    try:
        client = get_api_client(module)
    except Exception as e:  # CoreException (bad kubeconfig or context) or whatever the client library raises
        raise KubernetesReadError("could not make a Kubernetes API client: {0}; {1}".format(e, NEXT)) from e
    where = getattr(getattr(client, "configuration", None), "host", None) or "the cluster"
    result["api"] = where
    svc = K8sService(client, module)

    def resource(api_version, kind):
        try:
            return svc.find_resource(kind, api_version)  # None when the API does not serve the kind
        except Exception as e:
            raise KubernetesReadError("could not read the API resources of the Kubernetes API at {0} (looking up "
                                      "{1} {2}): {3}; {4}".format(where, api_version, kind, e, NEXT)) from e

    def find(item, ns):
        try:
            return svc.find(item["kind"], item["api_version"], name=item["name"], namespace=ns)["resources"]
        except Exception as e:
            raise KubernetesReadError("could not read {0}{1} from the Kubernetes API at {2}: {3}; {4}".format(
                kind_label(item), " in namespace " + ns if ns else "", where, e, NEXT)) from e

    kinds, missing = read_kinds(items, namespace, resource, find, module.params["missing_kinds"], where)
    result["missing"] = missing
    if missing:
        module.warn(missing_message(missing, where))
    result["kinds"] = kinds


def main():
    argument_spec = dict(AUTH_ARG_SPEC)
    argument_spec.update(
        namespace=dict(type="str", required=True),
        kinds=dict(type="list", elements="dict", required=True, options=dict(
            api_version=dict(type="str", default="v1"),
            kind=dict(type="str", required=True),
            name=dict(type="str"),
        )),
        missing_kinds=dict(type="str", choices=["fail", "warn"], default="fail"),
    )
    module = AnsibleK8SModule(module_class=AnsibleModule, argument_spec=argument_spec, supports_check_mode=True)
    run_module(module, run, result=dict(changed=False, missing=[]))


if __name__ == "__main__":
    main()
