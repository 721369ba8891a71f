# The Network Load Balancer in front of the hosts' Traefik, with one listener:
#
# - without TLS, TCP on 80, passed through to Traefik's `web` entry point; instance targets
#   preserve the client's address, which Traefik and the server's per-IP cap see directly.
# - with TLS (tls.tf), TLS on 443 with the ACM certificate; the NLB decrypts and forwards
#   plain HTTP to the same `web` entry point. A TLS listener's connections to the targets
#   come from the NLB's own addresses (client IP preservation off), and a proxy protocol v2
#   header before each connection carries the client's address; Traefik believes that header
#   only from the NLB's subnets (fleet.json proxyProtocolTrustedIPs), and the hosts' security
#   group admits the port from the NLB only.
#
# On the direct data path (var.data_path) the target is the colours' shared public port
# instead (every running colour listens there with SO_REUSEPORT): no proxy on the host, the
# server itself reads the proxy protocol header, from the NLB's subnets only (fleet.json
# proxyProtocolTrustedIPs), and the health check is GET /ready on that same port: a host is
# healthy when a colour in its reuseport group is ready (a draining colour has already left
# the group). With proxy protocol on, the NLB's health checks carry a LOCAL header, which the
# server accepts from the NLB's subnets like any other. The resources keep the names of the
# Traefik path, so that switching data paths updates them in place.
#
# Health check on the Traefik path: HTTP GET /ready on Traefik's `nlb-health` entry point (port 8083, added by
# terraform/nixos/fleet-host.nix), where one router sends /ready to the `ws-active` service.
# So a host is healthy only when its Traefik runs AND the colour it routes to is ready: a
# starting or draining server answers 503 and the host leaves the rotation. Not Traefik's ping
# (healthy with both colours down), not a colour's own port (loopback, and it bypasses
# Traefik), and not /ready on the traffic port: with a domain the routers require a Host header
# that the NLB's health checks do not send.

locals {
  # The NLB's nodes live in these subnets: the only sources whose proxy protocol header
  # Traefik believes.
  nlb_subnet_cidrs = local.create_vpc ? aws_subnet.public[*].cidr_block : [for id in var.subnet_ids : data.aws_subnet.given[id].cidr_block]
}

resource "aws_lb" "this" {
  # checkov:skip=CKV2_AWS_20: An ALB check (HTTP to HTTPS redirect); this NLB has one listener, TLS on 443 when a certificate is given, and no plain one then.
  name                             = "${var.name}-nlb"
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = local.subnet_ids
  security_groups                  = [aws_security_group.nlb.id]
  enable_cross_zone_load_balancing = true # spread connections evenly over all hosts, whatever the zone of the client's node
  enable_deletion_protection       = var.deletion_protection

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.name
      enabled = true
    }
  }

  tags = merge(local.common_tags, { Name = "${var.name}-nlb" })
}

resource "aws_lb_target_group" "traefik" {
  for_each    = { (local.listener.name) = local.listener }
  name        = "${var.name}-${each.key}"
  port        = local.target_port
  protocol    = "TCP"
  target_type = "instance"
  vpc_id      = local.vpc_id

  preserve_client_ip = !local.tls
  proxy_protocol_v2  = local.tls
  # A deregistered host keeps its open WebSockets (they end with the server's drain, which
  # sends goodbye and lets clients reconnect elsewhere); the NLB only stops sending new ones.
  connection_termination = false
  deregistration_delay   = var.deregistration_delay_seconds

  health_check {
    protocol            = "HTTP"
    port                = local.direct ? "traffic-port" : tostring(local.health_check_port)
    path                = "/ready"
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }

  tags = merge(local.common_tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_lb_listener" "traefik" {
  for_each          = aws_lb_target_group.traefik
  load_balancer_arn = aws_lb.this.arn
  port              = local.listener.port
  protocol          = local.listener.protocol
  certificate_arn   = local.tls ? local.certificate_arn : null
  ssl_policy        = local.tls ? var.tls_policy : null
  # WebSockets live for hours; the server's heartbeats keep them busy, the timeout is the net.
  # AWS fixes a TLS listener's at 350 s.
  tcp_idle_timeout_seconds = local.tls ? null : var.tcp_idle_timeout_seconds

  default_action {
    type             = "forward"
    target_group_arn = each.value.arn
  }

  tags = merge(local.common_tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_lb_target_group_attachment" "ws" {
  for_each = {
    for pair in setproduct(keys(aws_lb_target_group.traefik), local.ws_host_names) :
    "${pair[0]}/${pair[1]}" => { listener = pair[0], host = pair[1] }
  }
  target_group_arn = aws_lb_target_group.traefik[each.value.listener].arn
  target_id        = module.ws_host[each.value.host].instance_id
  port             = local.target_port
}
