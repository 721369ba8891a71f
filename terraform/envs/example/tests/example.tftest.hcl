# The example environment applied with a mocked AWS provider: the module wiring and the outputs
# the rollout reads (the module's own tests cover security groups, hardening and tags).

mock_provider "aws" {
  source = "../../mocks"
}

# Distinct addresses per instance: a monitoring host mixed up with a serving one must show.
override_resource {
  target = module.fleet.module.monitoring.aws_instance.this
  values = { id = "i-0000000000000mon0", private_ip = "10.40.0.250", public_ip = "198.51.100.250" }
}
override_resource {
  target = module.fleet.module.ws_host["ws-prod-ws-01"].aws_instance.this
  values = { id = "i-00000000000000ws1", private_ip = "10.40.0.11", public_ip = "198.51.100.11" }
}
override_resource {
  target = module.fleet.module.ws_host["ws-prod-ws-02"].aws_instance.this
  values = { id = "i-00000000000000ws2", private_ip = "10.40.1.12", public_ip = "198.51.100.12" }
}
override_resource {
  target = module.fleet.module.ws_host["ws-prod-ws-03"].aws_instance.this
  values = { id = "i-00000000000000ws3", private_ip = "10.40.0.13", public_ip = "198.51.100.13" }
}

variables {
  environment         = "prod"
  host_count          = 3
  admin_cidrs         = ["203.0.113.0/24"]
  flake_ref           = "github:acme/concurrent-socket/0123456789abcdef0123456789abcdef01234567"
  ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnlyReplaceMe ops@example.com"]
  tags                = { Team = "realtime" }
}

run "example_fleet" {
  assert {
    condition     = length(output.ws_hosts) == 3 && toset(keys(output.ws_hosts)) == toset(["ws-prod-ws-01", "ws-prod-ws-02", "ws-prod-ws-03"])
    error_message = "The example must make host_count hosts named ws-prod-ws-NN."
  }
  assert {
    condition     = output.nlb_dns_name != "" && output.grafana_url == "http://198.51.100.200:3000" && output.region == "eu-west-1"
    error_message = "The example must output the NLB name, the Grafana URL and the region."
  }
  assert {
    condition     = toset(keys(output.target_group_arns)) == toset(["http"]) && output.service_url == "http://${output.nlb_dns_name}"
    error_message = "Without a certificate the example serves plain HTTP: one target group for the rollout, an http:// service URL."
  }
  assert {
    condition     = { for name, host in output.ws_hosts : name => [host.instance_id, host.public_ip] } == { "ws-prod-ws-01" = ["i-00000000000000ws1", "198.51.100.11"], "ws-prod-ws-02" = ["i-00000000000000ws2", "198.51.100.12"], "ws-prod-ws-03" = ["i-00000000000000ws3", "198.51.100.13"] }
    error_message = "ws_hosts (what the rollout connects to) must list each serving host with its own id and address."
  }
  assert {
    condition     = output.monitoring_host.instance_id == "i-0000000000000mon0" && jsondecode(output.ws_host_nixos["fleet.json"]).monitoringAddress == "10.40.0.250"
    error_message = "The monitoring host must be the monitoring instance, and the serving hosts must ship logs to its private address."
  }
  assert {
    condition     = tolist(jsondecode(output.ws_host_nixos["fleet.json"]).sshAuthorizedKeys) == var.ssh_authorized_keys && jsondecode(output.ws_host_nixos["fleet.json"]).serverSettings.MAX_CONNECTIONS == "50000"
    error_message = "The hosts' NixOS settings must carry the operators' keys and the server settings."
  }
  assert {
    condition     = strcontains(output.ws_host_nixos["flake.nix"], "github:acme/concurrent-socket/0123456789abcdef0123456789abcdef01234567")
    error_message = "The hosts' flake must pin the given flake_ref."
  }
}

run "tls_with_a_requested_certificate" {
  variables {
    route53_zone_id    = "Z0123456789ABCDEFGHIJ"
    domain_name        = "ws.example.com"
    create_certificate = true
  }
  assert {
    condition     = output.service_url == "https://ws.example.com" && toset(keys(output.target_group_arns)) == toset(["https"])
    error_message = "With create_certificate the example serves https://<domain> through the TLS listener's target group."
  }
}

run "rejects_a_single_host" {
  command = plan
  variables {
    host_count = 1
  }
  expect_failures = [var.host_count]
}
