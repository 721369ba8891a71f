output "url" {
  description = "What the WebSocket hosts connect to (REDIS_URL): rediss:// (TLS) to the primary endpoint, which follows a failover."
  value       = "rediss://${aws_elasticache_replication_group.redis.primary_endpoint_address}:${var.port}"
}

output "auth_token_secret_arn" {
  description = "The Secrets Manager secret holding the auth token (the hosts' Redis password)."
  value       = aws_secretsmanager_secret.auth_token.arn
}

output "kms_key_arn" {
  description = "The key encrypting the data at rest and the secret (readers of the secret need kms:Decrypt on it)."
  value       = aws_kms_key.redis.arn
}

output "security_group_id" {
  description = "The replication group's security group."
  value       = aws_security_group.redis.id
}

output "replication_group" {
  description = "The aws_elasticache_replication_group (engine, encryption, failover settings, endpoints), for tests and audits."
  value       = aws_elasticache_replication_group.redis
  sensitive   = true
}

output "ingress_rule" {
  description = "The one ingress rule of the replication group's security group (source and port), for tests and audits."
  value       = aws_vpc_security_group_ingress_rule.clients
}
