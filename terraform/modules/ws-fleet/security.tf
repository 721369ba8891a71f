# Security groups. Every ingress rule of the fleet is one entry of local.ingress_rules, so that
# the tests (tests/fleet.tftest.hcl) can check them all: clients reach the listener's port (443
# with TLS, else 80) only through the NLB; SSH and Grafana only from the admin networks; the metrics listeners only from the
# monitoring host; Loki only from the WebSocket hosts.

resource "aws_security_group" "nlb" {
  name        = "${var.name}-nlb"
  description = "concurrent-socket NLB: its listener from anywhere"
  vpc_id      = local.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.name}-nlb" })
}

resource "aws_security_group" "ws" {
  # checkov:skip=CKV2_AWS_5: Attached to every WebSocket host (module ws_host, vpc_security_group_ids; the tests check it); checkov's graph loses that edge through the for_each module once modules/redis is in the scanned tree (it passes without it).
  name        = "${var.name}-ws"
  description = "concurrent-socket WebSocket hosts: Traefik from the NLB, SSH from admins, metrics from monitoring"
  vpc_id      = local.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.name}-ws" })
}

resource "aws_security_group" "monitoring" {
  name        = "${var.name}-monitoring"
  description = "concurrent-socket monitoring host: Grafana and SSH from admins, Loki pushes from the WebSocket hosts"
  vpc_id      = local.vpc_id
  tags        = merge(local.common_tags, { Name = "${var.name}-monitoring" })
}

locals {
  sg_ids = {
    nlb        = aws_security_group.nlb.id
    ws         = aws_security_group.ws.id
    monitoring = aws_security_group.monitoring.id
  }

  public_rules = {
    "nlb-${local.listener.name}-public" = {
      sg          = "nlb", port = local.listener.port, cidr = "0.0.0.0/0", source_sg = null
      description = "clients to the NLB (${local.listener.name})"
    }
  }
  nlb_to_ws_rules = local.direct ? {
    "ws-direct-from-nlb" = {
      sg          = "ws", port = local.direct_port, cidr = null, source_sg = "nlb"
      description = "NLB to the colours' shared public port, client traffic and health checks (direct data path)"
    }
    } : {
    "ws-traefik-from-nlb" = {
      sg          = "ws", port = local.traefik_port, cidr = null, source_sg = "nlb"
      description = "NLB to Traefik's web entry point, client traffic"
    }
  }
  # On the direct path the health check goes to the traffic port.
  health_rules = local.direct ? {} : {
    "ws-health-from-nlb" = {
      sg          = "ws", port = local.health_check_port, cidr = null, source_sg = "nlb"
      description = "NLB health checks to Traefik's nlb-health entry point"
    }
  }
  metrics_rules = {
    for name, port in local.metrics_ports : "ws-metrics-${name}-from-monitoring" => {
      sg          = "ws", port = port, cidr = null, source_sg = "monitoring"
      description = "Prometheus on the monitoring host scrapes ${name}"
    }
  }
  admin_rules = merge([
    for i, cidr in var.admin_cidrs : {
      "ws-ssh-admin-${i}"             = { sg = "ws", port = 22, cidr = cidr, source_sg = null, description = "SSH from admins (rollout)" }
      "monitoring-ssh-admin-${i}"     = { sg = "monitoring", port = 22, cidr = cidr, source_sg = null, description = "SSH from admins" }
      "monitoring-grafana-admin-${i}" = { sg = "monitoring", port = local.grafana_port, cidr = cidr, source_sg = null, description = "Grafana from admins" }
    }
  ]...)
  loki_rules = {
    "monitoring-loki-from-ws" = {
      sg          = "monitoring", port = local.loki_port, cidr = null, source_sg = "ws"
      description = "WebSocket hosts push their journal to Loki"
    }
  }

  ingress_rules = merge(local.public_rules, local.nlb_to_ws_rules, local.health_rules, local.metrics_rules, local.admin_rules, local.loki_rules)
}

resource "aws_vpc_security_group_ingress_rule" "this" {
  for_each                     = local.ingress_rules
  security_group_id            = local.sg_ids[each.value.sg]
  description                  = each.value.description
  ip_protocol                  = "tcp"
  from_port                    = each.value.port
  to_port                      = each.value.port
  cidr_ipv4                    = each.value.cidr
  referenced_security_group_id = each.value.source_sg == null ? null : local.sg_ids[each.value.source_sg]
  tags                         = merge(local.common_tags, { Name = each.key })
}

# The NLB forwards only to the hosts' Traefik ports and health-checks them; on the direct path
# to the colours' shared port, which it health-checks too.
resource "aws_vpc_security_group_egress_rule" "nlb_to_ws" {
  for_each                     = local.direct ? { direct = local.direct_port } : { traefik = local.traefik_port, health = local.health_check_port }
  security_group_id            = aws_security_group.nlb.id
  description                  = "NLB to the hosts (${each.key})"
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
  referenced_security_group_id = aws_security_group.ws.id
  tags                         = merge(local.common_tags, { Name = "nlb-to-ws-${each.key}" })
}

# Hosts reach out for the Nix binary caches and flake inputs, NTP and the AWS APIs
# (EC2 service discovery on the monitoring host). No NAT and no proxy here, hence the internet.
resource "aws_vpc_security_group_egress_rule" "hosts_out" {
  for_each          = { ws = aws_security_group.ws.id, monitoring = aws_security_group.monitoring.id }
  security_group_id = each.value
  description       = "outbound to the internet (Nix caches, AWS APIs) and the VPC (Loki push)"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  tags              = merge(local.common_tags, { Name = "${each.key}-out" })
}
