output "ws_hosts" {
  description = "WebSocket hosts by name: instance id, public and private address, zone."
  value       = module.fleet.ws_hosts
}

output "monitoring_host" {
  description = "The monitoring host's instance id and addresses."
  value       = module.fleet.monitoring_host
}

output "nlb_dns_name" {
  description = "DNS name of the Network Load Balancer."
  value       = module.fleet.nlb_dns_name
}

output "target_group_arns" {
  description = "NLB target groups (http, https), for the rollout."
  value       = module.fleet.target_group_arns
}

output "service_url" {
  description = "Public URL of the service."
  value       = module.fleet.service_url
}

output "grafana_url" {
  description = "Grafana (from admin_cidrs only)."
  value       = module.fleet.grafana_url
}

output "region" {
  description = "AWS region of the fleet (the rollout's aws calls use it)."
  value       = var.region
}

output "ws_host_nixos" {
  description = "The WebSocket hosts' NixOS flake files (the rollout builds from them)."
  value       = module.fleet.ws_host_nixos
}

output "redis" {
  description = "The fleet's Redis: URL (rediss://) and the secret of its auth token; null without one."
  value       = module.fleet.redis
}
