# The example environment's Redis (on by default, var.redis = {}) with a mocked AWS provider:
# the URL every WebSocket host connects to, from the replication group the fleet made.

mock_provider "aws" {
  source = "../../mocks"
}

override_resource {
  target = module.fleet.module.redis[0].aws_elasticache_replication_group.redis
  values = { primary_endpoint_address = "master.ws-prod-redis.k4l5m6.euw1.cache.amazonaws.com" }
}

variables {
  environment = "prod"
  admin_cidrs = ["203.0.113.0/24"]
  flake_ref   = "github:acme/concurrent-socket/0123456789abcdef0123456789abcdef01234567"
}

run "the_example_fleet_has_its_redis" {
  assert {
    condition     = output.redis.url == "rediss://master.ws-prod-redis.k4l5m6.euw1.cache.amazonaws.com:6379"
    error_message = "The example must make the fleet's Redis and output its rediss:// URL."
  }
  assert {
    condition     = jsondecode(output.ws_host_nixos["fleet.json"]).redis.url == output.redis.url
    error_message = "The WebSocket hosts must connect to that Redis."
  }
}

run "redis_can_be_left_out" {
  variables {
    redis = null
  }
  assert {
    condition     = output.redis == null && jsondecode(output.ws_host_nixos["fleet.json"]).redis == null
    error_message = "redis = null must make no Redis."
  }
}
