# The concurrent-socket fleet on AWS: N WebSocket hosts (module ws-host, role "ws") behind a
# Network Load Balancer, one monitoring host (role "monitoring") that scrapes them and receives
# their logs, in a new or an existing VPC. Files: network.tf (VPC), security.tf (security
# groups), iam.tf (instance profiles), hosts.tf (instances), nlb.tf (load balancer), dns.tf
# (Route53), tls.tf (the certificate), outputs.tf.

locals {
  common_tags = merge(var.tags, {
    Fleet     = var.name
    ManagedBy = "terraform"
  })

  # Nix's name for the AMI's architecture.
  nix_system = var.architecture == "arm64" ? "aarch64-linux" : "x86_64-linux"

  # TLS: terminated by the NLB (tls.tf) when a certificate is given or made. The NLB then
  # listens on 443 only; without TLS on 80 only. Either way the NLB forwards to Traefik's
  # plain `web` entry point (port 80) on the hosts.
  tls      = var.certificate_arn != null || var.create_certificate
  listener = local.tls ? { name = "https", port = 443, protocol = "TLS" } : { name = "http", port = 80, protocol = "TCP" }

  # Ports on a WebSocket host (docs/architecture.md, terraform/nixos/fleet-host.nix). Traefik's
  # `web` entry point takes the NLB's traffic; its `nlb-health` entry point answers the NLB's
  # health check. The server's and Traefik's metrics listen on loopback only; fleet-host.nix
  # exposes each on the private network through systemd-socket-proxyd, on the ports below,
  # which only the monitoring host may reach.
  traefik_port      = 80
  health_check_port = 8083
  # The direct data path: the colours' shared public port (services.concurrent-socket.direct.port,
  # set from fleet.json), which the NLB forwards to instead of Traefik's.
  direct      = var.data_path == "direct"
  direct_port = 8000
  target_port = local.direct ? local.direct_port : local.traefik_port
  metrics_ports = {
    blue    = 19464 # -> 127.0.0.1:9464, ws-metrics@blue
    green   = 19465 # -> 127.0.0.1:9465, ws-metrics@green
    traefik = 18082 # -> 127.0.0.1:8082, Traefik's metrics entry point
    node    = 9100  # prometheus-node-exporter
  }
  # On the monitoring host: where the WebSocket hosts push logs (Loki's port is fixed by
  # nixos/lib/monitoring.nix), and Grafana.
  loki_port    = 3100
  grafana_port = 3000
}

data "aws_ami" "nixos" {
  count       = var.ami_id == null ? 1 : 0
  most_recent = true
  owners      = ["427812963091"] # the NixOS project's AWS account (nixos.org/download, "Amazon EC2")

  filter {
    name   = "name"
    values = ["nixos/${var.nixos_release}*"]
  }
  filter {
    name   = "architecture"
    values = [var.architecture]
  }
  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  ami_id = var.ami_id != null ? var.ami_id : data.aws_ami.nixos[0].id
}
