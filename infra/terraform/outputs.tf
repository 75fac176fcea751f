output "vpc_id" {
  description = "DR VPC."
  value       = aws_vpc.dr.id
}

output "private_subnet_ids" {
  description = "DR private subnets."
  value       = aws_subnet.private[*].id
}

output "db_subnet_group_name" {
  description = "DB subnet group the restored instance goes into."
  value       = aws_db_subnet_group.dr.name
}

output "db_security_group_id" {
  description = "Security group of the restored instance."
  value       = aws_security_group.db.id
}

output "eks_cluster_name" {
  description = "DR EKS cluster (empty when create_eks_cluster is false)."
  value       = var.create_eks_cluster ? aws_eks_cluster.dr[0].name : ""
}

output "eks_cluster_endpoint" {
  description = "API endpoint of the DR EKS cluster."
  value       = var.create_eks_cluster ? aws_eks_cluster.dr[0].endpoint : ""
}

output "eks_cluster_role_arn" {
  description = "IAM role of the DR EKS cluster."
  value       = var.create_eks_cluster ? aws_iam_role.eks[0].arn : ""
}

output "eks_node_group_name" {
  description = "Managed node group of the DR EKS cluster (empty when create_eks_cluster is false)."
  value       = var.create_eks_cluster ? aws_eks_node_group.general[0].node_group_name : ""
}

output "eks_node_group_status" {
  description = "Status of the DR node group as EKS reported it at apply (ACTIVE)."
  value       = var.create_eks_cluster ? aws_eks_node_group.general[0].status : ""
}
