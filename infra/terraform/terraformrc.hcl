# Terraform CLI configuration for machines without registry access: providers come from a
# local filesystem mirror. Point TF_CLI_CONFIG_FILE at this file (roles/infra_failover does,
# through infra_failover_cli_config); production may use its own.
provider_installation {
  filesystem_mirror {
    path    = "/opt/tf-plugins"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
