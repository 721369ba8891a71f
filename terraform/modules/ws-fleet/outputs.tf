output "ws_hosts" {
  description = "The WebSocket hosts by name: instance id, addresses and availability zone (the rollout reads this)."
  value = {
    for name, host in module.ws_host : name => {
      instance_id       = host.instance_id
      private_ip        = host.private_ip
      public_ip         = host.public_ip
      availability_zone = host.availability_zone
    }
  }
}

output "monitoring_host" {
  description = "The monitoring host: instance id and addresses."
  value = {
    instance_id = module.monitoring.instance_id
    private_ip  = module.monitoring.private_ip
    public_ip   = aws_eip.monitoring.public_ip
  }
}

output "nlb_dns_name" {
  description = "DNS name of the Network Load Balancer (without TLS, clients connect to ws://<name>/ws/chat/<id>; with TLS, to wss://<domain_name>/...)."
  value       = aws_lb.this.dns_name
}

output "target_group_arns" {
  description = "The NLB target groups by listener (http without TLS, https with it); the rollout deregisters a host from each."
  value       = { for name, tg in aws_lb_target_group.traefik : name => tg.arn }
}

output "service_url" {
  description = "Public URL of the service: https:// with TLS at the NLB, else http://; the domain name when given, else the NLB's name."
  value       = "${local.tls ? "https" : "http"}://${coalesce(var.domain_name, aws_lb.this.dns_name)}"
}

output "grafana_url" {
  description = "Grafana on the monitoring host (reachable from admin_cidrs only)."
  value       = "http://${coalesce(local.grafana_fqdn, aws_eip.monitoring.public_ip)}:${local.grafana_port}"
}

output "ws_host_nixos" {
  description = "The NixOS flake of a WebSocket host (flake.nix and fleet.json, as the first boot wrote them to /etc/nixos); the rollout builds from it."
  value       = module.ws_host[local.ws_host_names[0]].nixos_files
}

output "redis" {
  description = "The fleet's Redis: the URL the hosts connect to and the secret holding its auth token; null without var.redis."
  value       = var.redis == null ? null : { url = module.redis[0].url, auth_token_secret_arn = module.redis[0].auth_token_secret_arn }
}
