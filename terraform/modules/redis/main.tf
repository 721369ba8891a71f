# The broker's Redis for a fleet (docs/redis.md, "ElastiCache"): an ElastiCache replication
# group (Valkey or Redis OSS, cluster mode off: the broker's keys need no sharding at a
# fleet's scale), a primary and replicas across availability zones with automatic failover,
# TLS required in transit, encrypted at rest with a key of its own, an auth token generated
# and kept in Secrets Manager, maxmemory-policy noeviction, and a security group that admits
# the fleet's WebSocket hosts only. The hosts connect to output.url with the token as their
# Redis password (terraform/nixos/fleet-host.nix fetches it at boot).

data "aws_caller_identity" "current" {}

locals {
  engine_version = coalesce(var.engine_version, var.engine == "valkey" ? "8.0" : "7.1")
  # ElastiCache's parameter group family: valkey8, redis7.
  family = "${var.engine}${split(".", local.engine_version)[0]}"
}

# Encrypts the nodes' disks, snapshots and the auth token's secret. The account administers
# it; ElastiCache and Secrets Manager use it through grants made by whoever applies this.
resource "aws_kms_key" "redis" {
  description             = "${var.name}: the fleet Redis's data at rest and its auth token"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:aws:iam::${data.aws_caller_identity.current.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
  tags = var.tags
}

# ---- the auth token ----------------------------------------------------------------------

# 64 letters and digits: within ElastiCache's 16-128 printable characters without / " @,
# and nothing a URL or a shell would need to escape. A data source generates a new one at
# every plan: the secret version keeps the first (ignore_changes), and the replication group
# takes it from there, so the token only changes when the version is replaced on purpose
# (docs/redis.md, "Rotating the auth token").
data "aws_secretsmanager_random_password" "auth_token" {
  password_length     = 64
  exclude_punctuation = true
  include_space       = false
}

resource "aws_secretsmanager_secret" "auth_token" {
  # checkov:skip=CKV2_AWS_57: ElastiCache auth tokens have no managed rotation function; rotation is a two-step procedure through this module (docs/redis.md, Rotating the auth token).
  name                    = "${var.name}/auth-token"
  description             = "AUTH token of the ElastiCache replication group ${var.name}: the WebSocket hosts' Redis password"
  kms_key_id              = aws_kms_key.redis.arn
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "auth_token" {
  secret_id     = aws_secretsmanager_secret.auth_token.id
  secret_string = data.aws_secretsmanager_random_password.auth_token.random_password

  lifecycle {
    ignore_changes = [secret_string]
  }
}

# ---- network -----------------------------------------------------------------------------

resource "aws_elasticache_subnet_group" "redis" {
  name        = var.name
  description = "Subnets of the ${var.name} replication group"
  subnet_ids  = var.subnet_ids
  tags        = var.tags
}

# The WebSocket hosts' group on the port, nothing else in; no egress (ElastiCache opens no
# connection; Terraform removes the default allow-all egress rule of a new group).
resource "aws_security_group" "redis" {
  name        = var.name
  description = "${var.name}: Redis from the fleet's WebSocket hosts only"
  vpc_id      = var.vpc_id
  tags        = merge(var.tags, { Name = var.name })
}

resource "aws_vpc_security_group_ingress_rule" "clients" {
  security_group_id            = aws_security_group.redis.id
  description                  = "Redis (TLS) from the fleet's WebSocket hosts"
  ip_protocol                  = "tcp"
  from_port                    = var.port
  to_port                      = var.port
  referenced_security_group_id = var.client_security_group_id
  tags                         = merge(var.tags, { Name = "${var.name}-from-ws" })
}

# ---- the replication group ---------------------------------------------------------------

# The default groups evict (volatile-lru): a full Redis would drop channel history silently.
# noeviction makes it refuse writes, so publishes fail with broker_unavailable instead.
resource "aws_elasticache_parameter_group" "redis" {
  name        = var.name
  family      = local.family
  description = "${var.name}: maxmemory-policy noeviction (docs/redis.md)"

  parameter {
    name  = "maxmemory-policy"
    value = "noeviction"
  }
  tags = var.tags
}

resource "aws_elasticache_replication_group" "redis" {
  # checkov:skip=CKV2_AWS_50: Multi-AZ automatic failover is on by default (var.multi_az, and the fleet's redis.multi_az, default true); it is a setting because a single-node group (nodes = 1) has no replica to fail over to.
  replication_group_id = var.name
  description          = "concurrent-socket broker of ${var.name}"
  engine               = var.engine
  engine_version       = local.engine_version
  node_type            = var.node_type
  port                 = var.port
  parameter_group_name = aws_elasticache_parameter_group.redis.name
  subnet_group_name    = aws_elasticache_subnet_group.redis.name
  security_group_ids   = [aws_security_group.redis.id]

  num_cache_clusters         = var.nodes
  automatic_failover_enabled = var.multi_az
  multi_az_enabled           = var.multi_az

  at_rest_encryption_enabled = true
  kms_key_id                 = aws_kms_key.redis.arn
  transit_encryption_enabled = true
  transit_encryption_mode    = "required"
  auth_token                 = aws_secretsmanager_secret_version.auth_token.secret_string
  auth_token_update_strategy = var.auth_token_update_strategy

  snapshot_retention_limit   = var.snapshot_retention_days
  maintenance_window         = var.maintenance_window
  auto_minor_version_upgrade = true
  # Changes wait for the maintenance window: a node type or version change fails over.
  apply_immediately = false

  tags = var.tags
}
