# The Network Load Balancer in front of the hosts' Traefik. TCP pass-through on 80 and 443:
# Traefik terminates TLS (its ACME certificates) and sees the client's own address (client IP
# preservation of instance targets), which the server's per-IP connection cap relies on.
#
# Health check: HTTP GET /ready on Traefik's `nlb-health` entry point (port 8083, added by
# terraform/nixos/fleet-host.nix), where one router sends /ready to the `ws-active` service.
# So a host is healthy only when its Traefik runs AND the colour it routes to is ready: a
# starting or draining server answers 503 and the host leaves the rotation. Not Traefik's ping
# (healthy with both colours down), not a colour's own port (loopback, and it bypasses
# Traefik), and not /ready on port 80 or 443: with ACME, port 80 redirects to HTTPS, and with a
# domain the routers require a Host header that the NLB's health checks do not send.

resource "aws_lb" "this" {
  # checkov:skip=CKV2_AWS_20: An ALB check; this is an NLB passing TCP through, and Traefik on the hosts redirects HTTP to HTTPS itself.
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
  for_each    = local.traefik_ports
  name        = "${var.name}-${each.key}"
  port        = each.value
  protocol    = "TCP"
  target_type = "instance"
  vpc_id      = local.vpc_id

  preserve_client_ip = true
  # A deregistered host keeps its open WebSockets (they end with the server's drain, which
  # sends goodbye and lets clients reconnect elsewhere); the NLB only stops sending new ones.
  connection_termination = false
  deregistration_delay   = var.deregistration_delay_seconds

  health_check {
    protocol            = "HTTP"
    port                = tostring(local.health_check_port)
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
  for_each          = local.traefik_ports
  load_balancer_arn = aws_lb.this.arn
  port              = each.value
  protocol          = "TCP"
  # WebSockets live for hours; the server's heartbeats keep them busy, the timeout is the net.
  tcp_idle_timeout_seconds = var.tcp_idle_timeout_seconds

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.traefik[each.key].arn
  }

  tags = merge(local.common_tags, { Name = "${var.name}-${each.key}" })
}

resource "aws_lb_target_group_attachment" "ws" {
  for_each = {
    for pair in setproduct(keys(local.traefik_ports), local.ws_host_names) :
    "${pair[0]}/${pair[1]}" => { listener = pair[0], host = pair[1] }
  }
  target_group_arn = aws_lb_target_group.traefik[each.value.listener].arn
  target_id        = module.ws_host[each.value.host].instance_id
  port             = local.traefik_ports[each.value.listener]
}
