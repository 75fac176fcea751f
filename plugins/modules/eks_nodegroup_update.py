#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: eks_nodegroup_update
short_description: Update an EKS managed node group's version with force (replaces its nodes)
version_added: 0.2.0
description:
  - Calls C(UpdateNodegroupVersion), the plan's C(aws eks update-nodegroup-version --force), which replaces the node
    group's nodes; with O(force=true) nodes are replaced even when their pods cannot be drained (a pod disruption
    budget blocks it).
  - Returns the update at once; wait for it with M(agbotkit.dr.eks_cluster_info) and
    O(agbotkit.dr.eks_cluster_info#module:update_id), polling, so that progress is visible.
  - Always changes (a forced update replaces nodes even at the same version); run it only when a diagnosis asks.
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  cluster_name:
    description: The EKS cluster's name.
    type: str
    required: true
  nodegroup_name:
    description: The managed node group to update.
    type: str
    required: true
  version:
    description: Kubernetes version; by default the cluster's (the same version re-rolls the nodes).
    type: str
  force:
    description: Replace nodes even when pod disruption budgets prevent draining them.
    type: bool
    default: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Describes the node group and reports the update it would start, starting none.
  diff_mode:
    support: none
    description: The module returns no diff.
seealso:
  - module: agbotkit.dr.eks_cluster_info
"""

EXAMPLES = r"""
- name: Update the node group with force
  agbotkit.dr.eks_nodegroup_update:
    cluster_name: ag-botkit-production-eks
    nodegroup_name: general
    region: us-east-1
  register: ng_update

- name: Wait for the update
  agbotkit.dr.eks_cluster_info:
    name: ag-botkit-production-eks
    nodegroups: [general]
    update_id: "{{ ng_update.update.id }}"
    region: us-east-1
  register: progress
  until: progress.update.status in ['Successful', 'Failed', 'Cancelled']
  retries: 60
  delay: 10
"""

RETURN = r"""
update:
  description: The update started (C(id), C(status), C(type), C(params)); in check mode C(id) is empty.
  returned: always
  type: dict
nodegroup:
  description: The node group as described before the update (C(status), C(version), C(release_version)).
  returned: always
  type: dict
"""

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.agbotkit.dr.plugins.module_utils._aws import AWS_ERRORS, aws_client, aws_module
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AwsApiError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module


def run(module, _result):
    cluster, group = module.params["cluster_name"], module.params["nodegroup_name"]
    client = aws_client(module, "eks")
    try:
        ng = client.describe_nodegroup(aws_retry=True, clusterName=cluster, nodegroupName=group)["nodegroup"]
    except AWS_ERRORS as e:
        raise AwsApiError("Failed to describe node group {0} of EKS cluster {1}".format(group, cluster), e) from e
    nodegroup = camel_dict_to_snake_dict(ng, ignore_list=["tags", "labels"])
    if module.check_mode:
        return dict(changed=True, nodegroup=nodegroup, update=dict(id="", status="", type="VersionUpdate"))
    kw = dict(clusterName=cluster, nodegroupName=group, force=module.params["force"])
    if module.params["version"]:
        kw["version"] = module.params["version"]
    try:
        update = client.update_nodegroup_version(**kw)["update"]
    except AWS_ERRORS as e:
        raise AwsApiError("Failed to update node group {0} of EKS cluster {1}".format(group, cluster), e) from e
    return dict(changed=True, nodegroup=nodegroup, update=camel_dict_to_snake_dict(update))


def main():
    module = aws_module(dict(
        cluster_name=dict(type="str", required=True),
        nodegroup_name=dict(type="str", required=True),
        version=dict(type="str"),
        force=dict(type="bool", default=True),
    ))
    run_module(module, run)


if __name__ == "__main__":
    main()
