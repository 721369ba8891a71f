# The fleet with its Redis (var.redis, redis.tf), with a mocked AWS provider: every
# WebSocket host gets the rediss:// URL and the secret's ARN in its fleet.json (never the
# token), its role may read that secret only, and the replication group admits the WebSocket
# hosts' security group only. Without var.redis nothing of it exists.

mock_provider "aws" {
  source = "../../mocks"
}

override_resource {
  target = module.monitoring.aws_instance.this
  values = { id = "i-0000000000000mon0", private_ip = "10.40.0.250", public_ip = "198.51.100.250" }
}
override_resource {
  target = module.ws_host["fleet-ws-01"].aws_instance.this
  values = { id = "i-00000000000000ws1", private_ip = "10.40.0.11", public_ip = "198.51.100.11" }
}
override_resource {
  target = module.ws_host["fleet-ws-02"].aws_instance.this
  values = { id = "i-00000000000000ws2", private_ip = "10.40.1.12", public_ip = "198.51.100.12" }
}
# The Redis's own endpoint, secret and key, unlike the mock's defaults, so that the hosts
# visibly get these.
override_resource {
  target = module.redis[0].aws_elasticache_replication_group.redis
  values = { primary_endpoint_address = "master.fleet-redis.z9y8x7.euw1.cache.amazonaws.com" }
}
override_resource {
  target = module.redis[0].aws_secretsmanager_secret.auth_token
  values = { arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fleet-redis/auth-token-Zz9Yy8" }
}
override_resource {
  target = module.redis[0].aws_kms_key.redis
  values = { arn = "arn:aws:kms:eu-west-1:123456789012:key/99999999-8888-4777-8666-555555555555" }
}
override_resource {
  target = aws_security_group.ws
  values = { id = "sg-0ws0000000000001" }
}

variables {
  name        = "fleet"
  host_count  = 2
  admin_cidrs = ["203.0.113.0/24"]
  flake_ref   = "github:acme/concurrent-socket/0123456789abcdef0123456789abcdef01234567"
  redis       = {}
}

run "every_ws_host_on_the_fleets_redis" {
  assert {
    condition = alltrue([for host in module.ws_host : jsondecode(host.nixos_files["fleet.json"]).redis == {
      url                = "rediss://master.fleet-redis.z9y8x7.euw1.cache.amazonaws.com:6379"
      authTokenSecretArn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fleet-redis/auth-token-Zz9Yy8"
      region             = "eu-west-1"
    }])
    error_message = "Every WebSocket host's fleet.json must name the Redis's rediss:// URL, its token's secret and the region."
  }
  assert {
    condition     = !can(jsondecode(module.monitoring.nixos_files["fleet.json"]).redis)
    error_message = "The monitoring host uses no Redis."
  }
  assert {
    condition     = output.redis == { url = "rediss://master.fleet-redis.z9y8x7.euw1.cache.amazonaws.com:6379", auth_token_secret_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fleet-redis/auth-token-Zz9Yy8" }
    error_message = "output.redis must give the URL and the token's secret."
  }
}

run "the_token_stays_out_of_the_hosts_settings" {
  assert {
    condition = alltrue([for host in module.ws_host :
      !strcontains(host.nixos_files["fleet.json"], module.redis[0].replication_group.auth_token) && !strcontains(host.user_data, module.redis[0].replication_group.auth_token)
    ])
    error_message = "The auth token must be in neither fleet.json nor the user data (both readable on the host): the hosts read it from Secrets Manager."
  }
  assert {
    condition     = length(module.redis[0].replication_group.auth_token) == 64
    error_message = "The replication group must have the generated token."
  }
}

run "ws_hosts_may_read_that_secret_only" {
  assert {
    condition = jsondecode(aws_iam_role_policy.ws_redis_auth_token[0].policy).Statement == [
      {
        Sid      = "ReadTheRedisAuthToken"
        Effect   = "Allow"
        Action   = "secretsmanager:GetSecretValue"
        Resource = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:fleet-redis/auth-token-Zz9Yy8"
      },
      {
        Sid       = "DecryptItThroughSecretsManager"
        Effect    = "Allow"
        Action    = "kms:Decrypt"
        Resource  = "arn:aws:kms:eu-west-1:123456789012:key/99999999-8888-4777-8666-555555555555"
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.eu-west-1.amazonaws.com" } }
      },
    ]
    error_message = "The WebSocket role may read the token's secret and decrypt it through Secrets Manager, nothing else."
  }
  assert {
    condition     = aws_iam_role_policy.ws_redis_auth_token[0].role == aws_iam_role.host["ws"].id
    error_message = "That permission belongs to the WebSocket hosts' role, not the monitoring host's."
  }
}

run "the_redis_admits_the_ws_hosts_only" {
  assert {
    condition     = module.redis[0].ingress_rule.referenced_security_group_id == "sg-0ws0000000000001" && module.redis[0].ingress_rule.cidr_ipv4 == null && module.redis[0].ingress_rule.from_port == 6379
    error_message = "The Redis's only ingress must be 6379 from the WebSocket hosts' security group."
  }
  assert {
    condition     = module.redis[0].replication_group.transit_encryption_enabled && module.redis[0].replication_group.at_rest_encryption_enabled && module.redis[0].replication_group.subnet_group_name == "fleet-redis"
    error_message = "The fleet's Redis must be encrypted both ways, in the fleet's subnets."
  }
}

run "no_redis_without_var_redis" {
  variables {
    redis = null
  }
  assert {
    condition     = length(module.redis) == 0 && length(aws_iam_role_policy.ws_redis_auth_token) == 0 && output.redis == null
    error_message = "Without var.redis there is no Redis and no permission."
  }
  assert {
    condition     = alltrue([for host in module.ws_host : jsondecode(host.nixos_files["fleet.json"]).redis == null])
    error_message = "Without var.redis the hosts' fleet.json says so (redis null: the in-memory broker)."
  }
}
