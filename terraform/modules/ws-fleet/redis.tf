# The fleet's Redis (var.redis; module ../redis): one chat across every host's colours
# (docs/redis.md). Each WebSocket host gets in its fleet.json the rediss:// URL and the ARN of
# the secret holding the auth token, never the token itself (EC2 user data is readable on the
# host and in the console): terraform/nixos/fleet-host.nix reads the secret at boot with the
# host's instance role, which may read that one secret and nothing else.

module "redis" {
  source = "../redis"
  count  = var.redis == null ? 0 : 1

  name                     = "${var.name}-redis"
  vpc_id                   = local.vpc_id
  subnet_ids               = local.subnet_ids
  client_security_group_id = aws_security_group.ws.id
  engine                   = var.redis.engine
  engine_version           = var.redis.engine_version
  node_type                = var.redis.node_type
  nodes                    = var.redis.nodes
  multi_az                 = var.redis.multi_az
  snapshot_retention_days  = var.redis.snapshot_retention_days
  tags                     = merge(local.common_tags, { Role = "redis" })
}

locals {
  # fleet.json `redis` (terraform/nixos/fleet-lib.nix reads it); null: the in-memory broker.
  redis_settings = var.redis == null ? null : {
    url                = module.redis[0].url
    authTokenSecretArn = module.redis[0].auth_token_secret_arn
    region             = data.aws_region.current.name
  }
}

resource "aws_iam_role_policy" "ws_redis_auth_token" {
  count = var.redis == null ? 0 : 1
  name  = "read-redis-auth-token"
  role  = aws_iam_role.host["ws"].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadTheRedisAuthToken"
        Effect   = "Allow"
        Action   = "secretsmanager:GetSecretValue"
        Resource = module.redis[0].auth_token_secret_arn
      },
      {
        Sid      = "DecryptItThroughSecretsManager"
        Effect   = "Allow"
        Action   = "kms:Decrypt"
        Resource = module.redis[0].kms_key_arn
        Condition = {
          StringEquals = { "kms:ViaService" = "secretsmanager.${data.aws_region.current.name}.amazonaws.com" }
        }
      },
    ]
  })
}
