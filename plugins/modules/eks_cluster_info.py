#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: contributors to agbotkit.dr
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: eks_cluster_info
short_description: Read an EKS cluster's status, its node groups and their updates
version_added: 0.2.0
description:
  - Reads C(DescribeCluster), C(DescribeNodegroup) for each node group named (all of them when none is named) and,
    with O(update_id), C(DescribeUpdate) of that update.
  - Never changes anything; a cluster that does not exist is reported with RV(exists=false), not as a failure.
author:
  - ag-botkit DevOps Team (@ag-botkit)
options:
  name:
    description: The EKS cluster's name.
    type: str
    required: true
  nodegroups:
    description: Node groups to describe; empty describes every node group of the cluster.
    type: list
    elements: str
    default: []
  update_id:
    description: An update (of the cluster, or of O(nodegroups[0]) when given) to describe.
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Runs the same reads in check mode.
  diff_mode:
    support: none
    description: The module returns no diff.
seealso:
  - module: agbotkit.dr.eks_nodegroup_update
"""

EXAMPLES = r"""
- name: Read the cluster and its node group
  agbotkit.dr.eks_cluster_info:
    name: ag-botkit-production-eks
    nodegroups: [general]
    region: us-east-1
  register: eks
"""

RETURN = r"""
exists:
  description: Whether the cluster exists.
  returned: always
  type: bool
cluster:
  description: The cluster (C(name), C(status), C(version), C(endpoint), C(arn), C(created_at)); empty when absent.
  returned: always
  type: dict
nodegroups:
  description: The node groups (C(nodegroup_name), C(status), C(version), C(release_version), C(health), ...).
  returned: always
  type: list
  elements: dict
update:
  description: The update described (C(id), C(status), C(type), C(errors)), with O(update_id).
  returned: when update_id is given
  type: dict
"""

from ansible.module_utils.common.dict_transformations import camel_dict_to_snake_dict
from ansible_collections.agbotkit.dr.plugins.module_utils._aws import (
    AWS_ERRORS,
    aws_client,
    aws_module,
    is_boto3_error_code,
)
from ansible_collections.agbotkit.dr.plugins.module_utils._errors import AwsApiError
from ansible_collections.agbotkit.dr.plugins.module_utils._module import run_module


def run(module, result):
    name = module.params["name"]
    client = aws_client(module, "eks")
    try:
        cluster = client.describe_cluster(aws_retry=True, name=name)["cluster"]
    except is_boto3_error_code("ResourceNotFoundException"):
        return
    except AWS_ERRORS as e:  # pylint: disable=duplicate-except
        raise AwsApiError("Failed to describe EKS cluster {0}".format(name), e) from e
    result["exists"] = True
    result["cluster"] = camel_dict_to_snake_dict(cluster, ignore_list=["tags"])
    try:
        groups = module.params["nodegroups"] or client.list_nodegroups(aws_retry=True, clusterName=name)["nodegroups"]
        for ng in groups:
            described = client.describe_nodegroup(aws_retry=True, clusterName=name, nodegroupName=ng)["nodegroup"]
            result["nodegroups"].append(camel_dict_to_snake_dict(described, ignore_list=["tags", "labels"]))
        if module.params["update_id"]:
            kw = dict(name=name, updateId=module.params["update_id"])
            if module.params["nodegroups"]:
                kw["nodegroupName"] = module.params["nodegroups"][0]
            result["update"] = camel_dict_to_snake_dict(client.describe_update(aws_retry=True, **kw)["update"])
    except AWS_ERRORS as e:
        raise AwsApiError("Failed to describe the node groups or update of EKS cluster {0}".format(name), e) from e


def main():
    module = aws_module(dict(
        name=dict(type="str", required=True),
        nodegroups=dict(type="list", elements="str", default=[]),
        update_id=dict(type="str"),
    ))
    run_module(module, run, result=dict(changed=False, exists=False, cluster={}, nodegroups=[]))


if __name__ == "__main__":
    main()
