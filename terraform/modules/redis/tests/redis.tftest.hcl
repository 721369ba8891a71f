# Unit tests of the redis module with a mocked AWS provider: what it would create, from the
# plan's and apply's values (no AWS, no credentials).

mock_provider "aws" {
  source = "../../mocks"
}

# An endpoint of its own, so that the URL visibly comes from the replication group.
override_resource {
  target = aws_elasticache_replication_group.redis
  values = { primary_endpoint_address = "master.fleet-redis.q1w2e3.euw1.cache.amazonaws.com" }
}
override_resource {
  target = aws_kms_key.redis
  values = { arn = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-4333-8444-555555555555" }
}

variables {
  name                     = "fleet-redis"
  vpc_id                   = "vpc-0a1b2c3d"
  subnet_ids               = ["subnet-0a", "subnet-0b"]
  client_security_group_id = "sg-0ws000000000000a"
  tags                     = { Fleet = "fleet" }
}

run "valkey_replication_group_with_failover" {
  assert {
    condition     = aws_elasticache_replication_group.redis.engine == "valkey" && aws_elasticache_replication_group.redis.engine_version == "8.0" && aws_elasticache_parameter_group.redis.family == "valkey8"
    error_message = "The default engine must be Valkey 8.0 with a valkey8 parameter group."
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.num_cache_clusters == 2 && aws_elasticache_replication_group.redis.automatic_failover_enabled && aws_elasticache_replication_group.redis.multi_az_enabled
    error_message = "By default a primary and a replica, with automatic Multi-AZ failover."
  }
  assert {
    condition     = output.url == "rediss://master.fleet-redis.q1w2e3.euw1.cache.amazonaws.com:6379"
    error_message = "url must be rediss:// (TLS) to the primary endpoint on the port."
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.snapshot_retention_limit == 7 && aws_elasticache_replication_group.redis.apply_immediately == false
    error_message = "Snapshots are kept a week; changes wait for the maintenance window."
  }
}

run "memory_is_bounded_by_refusal_not_eviction" {
  assert {
    condition     = [for p in aws_elasticache_parameter_group.redis.parameter : "${p.name}=${p.value}"] == ["maxmemory-policy=noeviction"]
    error_message = "The parameter group must set maxmemory-policy noeviction (the default groups evict history silently)."
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.parameter_group_name == aws_elasticache_parameter_group.redis.name
    error_message = "The replication group must use that parameter group."
  }
}

run "encrypted_in_transit_and_at_rest_with_a_generated_token" {
  assert {
    condition     = aws_elasticache_replication_group.redis.transit_encryption_enabled && aws_elasticache_replication_group.redis.transit_encryption_mode == "required"
    error_message = "TLS must be required in transit (no plain-text client)."
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.at_rest_encryption_enabled && aws_elasticache_replication_group.redis.kms_key_id == "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-4333-8444-555555555555"
    error_message = "Data at rest must be encrypted with the module's own key."
  }
  assert {
    condition     = aws_kms_key.redis.enable_key_rotation && aws_secretsmanager_secret.auth_token.kms_key_id == aws_kms_key.redis.arn
    error_message = "The key must rotate, and encrypt the auth token's secret too."
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.auth_token == aws_secretsmanager_secret_version.auth_token.secret_string && aws_secretsmanager_secret_version.auth_token.secret_id == aws_secretsmanager_secret.auth_token.id
    error_message = "The replication group's auth token must be the one stored in the secret."
  }
  assert {
    condition     = data.aws_secretsmanager_random_password.auth_token.password_length == 64 && data.aws_secretsmanager_random_password.auth_token.exclude_punctuation
    error_message = "The token must be 64 letters and digits (nothing ElastiCache or a URL refuses)."
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.auth_token_update_strategy == "ROTATE"
    error_message = "A new token must keep the old one valid until the hosts have it."
  }
}

run "only_the_clients_security_group_reaches_the_port" {
  assert {
    condition     = aws_elasticache_replication_group.redis.security_group_ids == toset([aws_security_group.redis.id]) && aws_security_group.redis.vpc_id == "vpc-0a1b2c3d"
    error_message = "The replication group must be in its own security group in the fleet's VPC."
  }
  assert {
    condition = (
      output.ingress_rule.security_group_id == aws_security_group.redis.id
      && output.ingress_rule.referenced_security_group_id == "sg-0ws000000000000a"
      && output.ingress_rule.cidr_ipv4 == null && output.ingress_rule.cidr_ipv6 == null
      && output.ingress_rule.ip_protocol == "tcp" && output.ingress_rule.from_port == 6379 && output.ingress_rule.to_port == 6379
    )
    error_message = "The only way in must be TCP 6379 from the WebSocket hosts' security group, from no address range."
  }
  assert {
    condition     = aws_elasticache_subnet_group.redis.subnet_ids == toset(["subnet-0a", "subnet-0b"])
    error_message = "The nodes must be placed in the given subnets (two zones)."
  }
}

run "redis_engine_on_another_port_without_failover" {
  variables {
    engine   = "redis"
    nodes    = 1
    multi_az = false
    port     = 6380
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.engine == "redis" && aws_elasticache_replication_group.redis.engine_version == "7.1" && aws_elasticache_parameter_group.redis.family == "redis7"
    error_message = "engine = redis must be Redis OSS 7.1 with a redis7 parameter group."
  }
  assert {
    condition     = aws_elasticache_replication_group.redis.num_cache_clusters == 1 && !aws_elasticache_replication_group.redis.automatic_failover_enabled && output.url == "rediss://master.fleet-redis.q1w2e3.euw1.cache.amazonaws.com:6380" && output.ingress_rule.from_port == 6380
    error_message = "One node without failover, and the port must reach the URL and the rule."
  }
}

run "rejects_multi_az_without_a_replica" {
  command = plan
  variables {
    nodes = 1
  }
  expect_failures = [var.multi_az]
}

run "rejects_another_engine" {
  command = plan
  variables {
    engine = "memcached"
  }
  expect_failures = [var.engine]
}

run "rejects_a_single_subnet" {
  command = plan
  variables {
    subnet_ids = ["subnet-0a"]
  }
  expect_failures = [var.subnet_ids]
}
