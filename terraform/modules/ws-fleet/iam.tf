# Instance profiles with least privilege. The WebSocket hosts call one AWS API, and only with the
# fleet's Redis: reading its auth token's secret (redis.tf); without Redis their role has no
# permission (it exists so that the hosts carry an identity and nothing is ever added by hand to
# a shared role). The monitoring host may only list instances, for Prometheus's EC2 service
# discovery of the fleet's hosts.

locals {
  ec2_assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role" "host" {
  for_each           = toset(["ws", "monitoring"])
  name               = "${var.name}-${each.key}"
  description        = "concurrent-socket ${each.key} hosts of fleet ${var.name}"
  assume_role_policy = local.ec2_assume_role_policy
  tags               = merge(local.common_tags, { Role = each.key })
}

resource "aws_iam_instance_profile" "host" {
  for_each = aws_iam_role.host
  name     = each.value.name
  role     = each.value.name
  tags     = merge(local.common_tags, { Role = each.key })
}

# ec2:Describe* actions support no resource-level permission: "*" is the only possible resource.
resource "aws_iam_role_policy" "monitoring_discovery" {
  name = "ec2-service-discovery"
  role = aws_iam_role.host["monitoring"].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "PrometheusEc2ServiceDiscovery"
      Effect   = "Allow"
      Action   = ["ec2:DescribeInstances", "ec2:DescribeAvailabilityZones"]
      Resource = "*"
    }]
  })
}
