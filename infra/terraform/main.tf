# The DR workspace: what the recovery region needs before the database is restored and the
# applications are deployed (DR_PLAN.md §1 step 2). Later steps read these through outputs.

locals {
  lab  = var.aws_endpoint_url != ""
  azs  = length(var.availability_zones) > 0 ? var.availability_zones : [for s in ["a", "b", "c"] : "${var.region}${s}"]
  tags = merge(var.tags, { Workspace = terraform.workspace })
}

provider "aws" {
  region = var.region

  # The lab's moto server answers for every service; real AWS needs none of this.
  skip_credentials_validation = local.lab
  skip_requesting_account_id  = local.lab
  skip_metadata_api_check     = local.lab
  s3_use_path_style           = local.lab

  dynamic "endpoints" {
    for_each = local.lab ? [var.aws_endpoint_url] : []
    content {
      ec2            = endpoints.value
      eks            = endpoints.value
      iam            = endpoints.value
      rds            = endpoints.value
      route53        = endpoints.value
      s3             = endpoints.value
      secretsmanager = endpoints.value
      sts            = endpoints.value
    }
  }

  default_tags {
    tags = local.tags
  }
}

resource "aws_vpc" "dr" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.name_prefix}-vpc" }
}

resource "aws_subnet" "private" {
  count             = length(var.private_subnet_cidrs)
  vpc_id            = aws_vpc.dr.id
  cidr_block        = var.private_subnet_cidrs[count.index]
  availability_zone = local.azs[count.index]
  tags = {
    Name                              = "${var.name_prefix}-private-${local.azs[count.index]}"
    "kubernetes.io/role/internal-elb" = "1"
  }
}

resource "aws_security_group" "db" {
  name        = "${var.name_prefix}-db"
  description = "ag-botkit DR database: PostgreSQL from inside the DR VPC"
  vpc_id      = aws_vpc.dr.id
  tags        = { Name = "${var.name_prefix}-db" }
}

resource "aws_vpc_security_group_ingress_rule" "db_from_vpc" {
  security_group_id = aws_security_group.db.id
  description       = "PostgreSQL from the DR VPC"
  ip_protocol       = "tcp"
  from_port         = var.db_port
  to_port           = var.db_port
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_db_subnet_group" "dr" {
  name        = "${var.name_prefix}-db"
  description = "ag-botkit DR database subnets"
  subnet_ids  = aws_subnet.private[*].id
}

# --- DR EKS cluster -------------------------------------------------------------------------

data "aws_iam_policy_document" "eks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "eks" {
  count              = var.create_eks_cluster ? 1 : 0
  name               = "${var.name_prefix}-eks-cluster"
  assume_role_policy = data.aws_iam_policy_document.eks_assume.json
}

resource "aws_iam_role_policy_attachment" "eks" {
  for_each   = var.create_eks_cluster ? toset(var.eks_cluster_policy_arns) : toset([])
  role       = aws_iam_role.eks[0].name
  policy_arn = each.value
}

resource "aws_eks_cluster" "dr" {
  count    = var.create_eks_cluster ? 1 : 0
  name     = var.eks_cluster_name
  role_arn = aws_iam_role.eks[0].arn
  version  = var.eks_version

  vpc_config {
    subnet_ids = aws_subnet.private[*].id
  }

  depends_on = [aws_iam_role_policy_attachment.eks]
}

# --- DR EKS node group: the nodes the applications run on ------------------------------------

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  count              = var.create_eks_cluster ? 1 : 0
  name               = "${var.name_prefix}-eks-node"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each   = var.create_eks_cluster ? toset(var.eks_node_policy_arns) : toset([])
  role       = aws_iam_role.node[0].name
  policy_arn = each.value
}

resource "aws_eks_node_group" "general" {
  count           = var.create_eks_cluster ? 1 : 0
  cluster_name    = aws_eks_cluster.dr[0].name
  node_group_name = var.eks_node_group_name
  node_role_arn   = aws_iam_role.node[0].arn
  subnet_ids      = aws_subnet.private[*].id
  instance_types  = var.eks_node_instance_types
  capacity_type   = "ON_DEMAND"
  labels          = { "eks.amazonaws.com/nodegroup" = var.eks_node_group_name }

  scaling_config {
    desired_size = var.eks_node_count
    min_size     = 1
    max_size     = max(var.eks_node_count, var.eks_node_max_count)
  }

  lifecycle {
    # moto (the lab) reports an SSH key nobody set, which would force a replacement on every plan; the DR
    # node group never sets remote access, so ignoring it changes nothing on AWS
    ignore_changes = [remote_access]
  }

  depends_on = [aws_iam_role_policy_attachment.node]
}
