# TLS for the fleet, terminated by the NLB: Let's Encrypt's HTTP-01 challenge behind one load
# balancer lands on a random host, and every host would ask for its own certificate for the
# same name. The NLB's TLS listener holds one ACM certificate instead, either given
# (certificate_arn) or requested here and validated by DNS in route53_zone_id
# (create_certificate); ACM renews it by itself. Behind the listener, Traefik sees plain HTTP
# with a proxy protocol v2 header carrying the client's address (nlb.tf, fleet-host.nix).

resource "aws_acm_certificate" "service" {
  count             = var.create_certificate ? 1 : 0
  domain_name       = var.domain_name
  validation_method = "DNS"
  tags              = merge(local.common_tags, { Name = var.domain_name })

  lifecycle {
    # A renamed service gets its new certificate before the listener lets go of the old one.
    create_before_destroy = true
  }
}

# ACM's validation record (one: the certificate names domain_name only).
resource "aws_route53_record" "certificate_validation" {
  count           = var.create_certificate ? 1 : 0
  zone_id         = var.route53_zone_id
  name            = one(aws_acm_certificate.service[0].domain_validation_options).resource_record_name
  type            = one(aws_acm_certificate.service[0].domain_validation_options).resource_record_type
  records         = [one(aws_acm_certificate.service[0].domain_validation_options).resource_record_value]
  ttl             = 300
  allow_overwrite = true
}

# Done when ACM has issued the certificate: the listener waits for it.
resource "aws_acm_certificate_validation" "service" {
  count                   = var.create_certificate ? 1 : 0
  certificate_arn         = aws_acm_certificate.service[0].arn
  validation_record_fqdns = aws_route53_record.certificate_validation[*].fqdn
}

locals {
  certificate_arn = var.create_certificate ? aws_acm_certificate_validation.service[0].certificate_arn : var.certificate_arn
}
