terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "= 5.100.0"
    }
  }

  # Local state. The path is given at init time so that the lab, a drill and production
  # each keep their own state:
  #   terraform init -backend-config=path=<dir>/terraform.tfstate -backend-config=workspace_dir=<dir>/terraform.tfstate.d
  # (roles/infra_failover does this; lab: .lab/terraform). Production replaces this block
  # with its remote backend (S3 + DynamoDB lock) through a backend override file.
  backend "local" {}
}
