# The hosts: var.host_count WebSocket hosts spread round-robin over the subnets (so over the
# availability zones), and one monitoring host. Each is a module ws-host instance; what it runs
# is its NixOS role, set in its fleet.json (terraform/nixos/fleet-host.nix reads it).

locals {
  ws_host_names = [for i in range(var.host_count) : format("%s-ws-%02d", var.name, i + 1)]

  # Identical on every WebSocket host, so one NixOS configuration serves them all (the rollout
  # builds it once per host from the `ws_host_nixos` output).
  ws_settings = {
    fleet             = var.name
    monitoringAddress = module.monitoring.private_ip
    domain            = var.domain_name
    sshAuthorizedKeys = var.ssh_authorized_keys
    serverSettings    = var.server_settings
    metricsPorts      = local.metrics_ports
    healthCheckPort   = local.health_check_port
    # With TLS at the NLB: the addresses whose proxy protocol header Traefik (or, on the
    # direct path, the server) believes.
    proxyProtocolTrustedIPs = local.tls ? local.nlb_subnet_cidrs : []
    # The direct data path: the NLB's target is the colours' shared port.
    dataPath     = var.data_path
    directPort   = local.direct_port
    binaryCache  = local.binary_cache
    redis        = local.redis_settings
    stateVersion = var.nixos_release
  }
  monitoring_settings = {
    fleet             = var.name
    sshAuthorizedKeys = var.ssh_authorized_keys
    binaryCache       = local.binary_cache
    # Prometheus finds the WebSocket hosts by these tags (EC2 service discovery).
    discoveryTags = { Fleet = var.name, Role = "ws" }
    region        = data.aws_region.current.name
    metricsPorts  = local.metrics_ports
    grafanaPort   = local.grafana_port
    grafanaDomain = local.grafana_fqdn
    stateVersion  = var.nixos_release
  }
}

data "aws_region" "current" {}

locals {
  # fleet.json's spelling (terraform/nixos/fleet-lib.nix reads it).
  binary_cache = var.binary_cache == null ? null : { url = var.binary_cache.url, publicKey = var.binary_cache.public_key }
}

module "monitoring" {
  source                = "../ws-host"
  name                  = "${var.name}-monitoring"
  role                  = "monitoring"
  ami_id                = local.ami_id
  instance_type         = var.monitoring_instance_type
  subnet_id             = local.subnet_ids[0]
  security_group_ids    = [aws_security_group.monitoring.id]
  instance_profile_name = aws_iam_instance_profile.host["monitoring"].name
  root_volume_gb        = var.monitoring_volume_gb
  key_name              = var.ssh_key_name
  binary_cache          = var.binary_cache
  nixos = {
    flake_ref = var.flake_ref
    system    = local.nix_system
    settings  = local.monitoring_settings
  }
  tags = local.common_tags
}

module "ws_host" {
  source                = "../ws-host"
  for_each              = { for i, name in local.ws_host_names : name => i }
  name                  = each.key
  role                  = "ws"
  ami_id                = local.ami_id
  instance_type         = var.instance_type
  subnet_id             = local.subnet_ids[each.value % length(local.subnet_ids)]
  security_group_ids    = [aws_security_group.ws.id]
  instance_profile_name = aws_iam_instance_profile.host["ws"].name
  root_volume_gb        = var.root_volume_gb
  key_name              = var.ssh_key_name
  binary_cache          = var.binary_cache
  nixos = {
    flake_ref = var.flake_ref
    system    = local.nix_system
    settings  = local.ws_settings
  }
  tags = local.common_tags
}

# A stable address for Grafana and for the WebSocket hosts' log shipping across stop/start.
resource "aws_eip" "monitoring" {
  domain   = "vpc"
  instance = module.monitoring.instance_id
  tags     = merge(local.common_tags, { Name = "${var.name}-monitoring" })
}
