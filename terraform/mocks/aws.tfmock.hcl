# Values of the mocked AWS provider shared by the tests of terraform/modules/ws-fleet and
# terraform/envs/example: what the assertions rely on, and well-formed ARNs where the provider's
# own validation (which still runs under a mock) wants one.

mock_data "aws_availability_zones" {
  defaults = {
    names = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
  }
}
mock_data "aws_ami" {
  defaults = {
    id = "ami-0123456789abcdef0"
  }
}
mock_data "aws_region" {
  defaults = {
    name = "eu-west-1"
  }
}
mock_resource "aws_instance" {
  defaults = {
    availability_zone = "eu-west-1a"
    private_ip        = "10.40.0.10"
    public_ip         = "198.51.100.10"
  }
}
mock_resource "aws_lb_target_group" {
  defaults = {
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/fleet/0123456789abcdef"
  }
}
mock_resource "aws_eip" {
  defaults = {
    public_ip = "198.51.100.200"
  }
}
mock_resource "aws_lb" {
  defaults = {
    dns_name = "fleet-nlb-0123456789.elb.eu-west-1.amazonaws.com"
    arn      = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/fleet-nlb/0123456789abcdef"
  }
}

mock_resource "aws_cloudwatch_log_group" {
  defaults = {
    arn = "arn:aws:logs:eu-west-1:123456789012:log-group:/vpc/fleet/flow-logs"
  }
}
mock_resource "aws_iam_role" {
  defaults = {
    arn = "arn:aws:iam::123456789012:role/fleet"
  }
}
mock_resource "aws_kms_key" {
  defaults = {
    arn = "arn:aws:kms:eu-west-1:123456789012:key/00000000-0000-0000-0000-000000000000"
  }
}
mock_data "aws_caller_identity" {
  defaults = {
    account_id = "123456789012"
  }
}
mock_resource "aws_acm_certificate" {
  defaults = {
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-4000-8000-000000000000"
    domain_validation_options = [{
      domain_name           = "ws.example.com"
      resource_record_name  = "_0123.ws.example.com."
      resource_record_type  = "CNAME"
      resource_record_value = "_4567.acm-validations.aws."
    }]
  }
}
mock_resource "aws_acm_certificate_validation" {
  defaults = {
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-4000-8000-000000000000"
  }
}

# The fleet's Redis (modules/redis): an endpoint of ElastiCache's shape, a secret ARN, and a
# generated token as long as the module asks for (the provider checks its length even
# under a mock).
mock_resource "aws_elasticache_replication_group" {
  defaults = {
    primary_endpoint_address = "master.fleet-redis.abc123.euw1.cache.amazonaws.com"
    reader_endpoint_address  = "replica.fleet-redis.abc123.euw1.cache.amazonaws.com"
  }
}
mock_resource "aws_secretsmanager_secret" {
  defaults = {
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fleet-redis/auth-token-AbCdEf"
  }
}
mock_data "aws_secretsmanager_random_password" {
  defaults = {
    random_password = "Tok3nTok3nTok3nTok3nTok3nTok3nTok3nTok3nTok3nTok3nTok3nTok3nAbCd"
  }
}
