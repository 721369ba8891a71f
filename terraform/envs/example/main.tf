# Example environment: one fleet of concurrent-socket WebSocket hosts with its monitoring host,
# in a new VPC, from the module terraform/modules/ws-fleet. Copy this directory per
# environment (staging, production), fill terraform.tfvars from terraform.tfvars.example and
# enable the remote state in backend.tf.

provider "aws" {
  region = var.region
}

module "fleet" {
  source = "../../modules/ws-fleet"

  name                = "${var.name}-${var.environment}"
  host_count          = var.host_count
  instance_type       = var.instance_type
  admin_cidrs         = var.admin_cidrs
  flake_ref           = var.flake_ref
  binary_cache        = var.binary_cache
  ssh_key_name        = var.ssh_key_name
  ssh_authorized_keys = var.ssh_authorized_keys
  server_settings     = var.server_settings
  route53_zone_id     = var.route53_zone_id
  domain_name         = var.domain_name
  certificate_arn     = var.certificate_arn
  create_certificate  = var.create_certificate
  data_path           = var.data_path
  deletion_protection = var.deletion_protection
  redis               = var.redis
  tags                = merge(var.tags, { Environment = var.environment, Service = "concurrent-socket" })
}
