variable "region" {
  description = "Recovery region the DR workspace builds in."
  type        = string
  default     = "us-west-2"
}

variable "aws_endpoint_url" {
  description = "Non-empty: send every AWS call to this endpoint (the lab's moto server). Empty: real AWS."
  type        = string
  default     = ""
}

variable "name_prefix" {
  description = "Prefix of every resource name (ag-botkit-dr)."
  type        = string
  default     = "ag-botkit-dr"
}

variable "vpc_cidr" {
  description = "CIDR block of the DR VPC."
  type        = string
  default     = "10.20.0.0/16"
}

variable "private_subnet_cidrs" {
  description = "One private subnet per availability zone (the DB subnet group and EKS use them)."
  type        = list(string)
  default     = ["10.20.1.0/24", "10.20.2.0/24"]
}

variable "availability_zones" {
  description = "Availability zones of the subnets; empty picks the region's first ones (a/b)."
  type        = list(string)
  default     = []
}

variable "db_port" {
  description = "Port the database security group opens to the VPC."
  type        = number
  default     = 5432
}

variable "create_eks_cluster" {
  description = "Create the DR EKS cluster here (true) or leave it to roles/app_deploy (false)."
  type        = bool
  default     = true
}

variable "eks_cluster_name" {
  description = "Name of the DR EKS cluster."
  type        = string
  default     = "ag-botkit-dr-eks"
}

variable "eks_cluster_policy_arns" {
  description = "Managed policies attached to the cluster role (the lab's moto has no AWS managed policies: [])."
  type        = list(string)
  default     = ["arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"]
}

variable "eks_version" {
  description = "Kubernetes version of the DR EKS cluster."
  type        = string
  default     = "1.32"
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default = {
    Project     = "ag-botkit"
    Environment = "dr"
    ManagedBy   = "agbotkit.dr/infra_failover"
  }
}

variable "eks_node_group_name" {
  description = "Managed node group of the DR EKS cluster (the lab's emulator labels its nodes with it)."
  type        = string
  default     = "general"
}

variable "eks_node_instance_types" {
  description = "Instance types of the DR node group (as production's)."
  type        = list(string)
  default     = ["m5.large"]
}

variable "eks_node_count" {
  description = "Nodes the DR node group starts with (desired size)."
  type        = number
  default     = 3
}

variable "eks_node_max_count" {
  description = "Most nodes the DR node group may scale to."
  type        = number
  default     = 6
}

variable "eks_node_policy_arns" {
  description = "Managed policies attached to the node role (the lab's moto has no AWS managed policies: [])."
  type        = list(string)
  default = [
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
  ]
}
