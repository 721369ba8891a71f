# Optional Route53 records in an existing hosted zone: the service name as an alias of the NLB,
# and grafana.<domain> for the monitoring host.

locals {
  create_dns   = var.route53_zone_id != null
  grafana_fqdn = var.domain_name == null ? null : "grafana.${var.domain_name}"
}

resource "aws_route53_record" "service" {
  count   = local.create_dns ? 1 : 0
  zone_id = var.route53_zone_id
  name    = var.domain_name
  type    = "A"
  alias {
    name                   = aws_lb.this.dns_name
    zone_id                = aws_lb.this.zone_id
    evaluate_target_health = true
  }
}

resource "aws_route53_record" "grafana" {
  count   = local.create_dns ? 1 : 0
  zone_id = var.route53_zone_id
  name    = local.grafana_fqdn
  type    = "A"
  ttl     = 300
  records = [aws_eip.monitoring.public_ip]
}
