# The example environment applied with a mocked AWS provider: the module wiring and the outputs
# the rollout reads (the module's own tests cover security groups, hardening and tags).

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  environment         = "prod"
  host_count          = 3
  admin_cidrs         = ["203.0.113.0/24"]
  flake_ref           = "github:acme/concurrent-socket/0123456789abcdef0123456789abcdef01234567"
  acme_email          = "ops@example.com"
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
    condition     = toset(keys(output.target_group_arns)) == toset(["http", "https"])
    error_message = "The example must output both target groups for the rollout."
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

run "rejects_a_single_host" {
  command = plan
  variables {
    host_count = 1
  }
  expect_failures = [var.host_count]
}
