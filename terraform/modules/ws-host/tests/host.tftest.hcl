# The ws-host module on its own, with a mocked AWS provider: the hardening of the instance, the
# files the first boot writes, and the inputs it refuses.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name                  = "ws-prod-ws-01"
  role                  = "ws"
  ami_id                = "ami-0123456789abcdef0"
  instance_type         = "c7i.xlarge"
  subnet_id             = "subnet-0a"
  security_group_ids    = ["sg-0a"]
  instance_profile_name = "ws-prod-ws"
  root_volume_gb        = 40
  nixos = {
    flake_ref = "github:acme/concurrent-socket/0123abc"
    system    = "aarch64-linux"
    settings  = { fleet = "ws-prod", monitoringAddress = "10.40.0.200" }
  }
  tags = { Fleet = "ws-prod" }
}

run "hardened_instance" {
  assert {
    condition     = aws_instance.this.metadata_options[0].http_tokens == "required" && aws_instance.this.metadata_options[0].http_endpoint == "enabled"
    error_message = "IMDSv2 must be required."
  }
  assert {
    condition     = aws_instance.this.root_block_device[0].encrypted && aws_instance.this.root_block_device[0].volume_size == 40
    error_message = "The root volume must be encrypted and sized as asked."
  }
  assert {
    condition     = aws_instance.this.tags == tomap({ Fleet = "ws-prod", Name = "ws-prod-ws-01", Role = "ws" })
    error_message = "The instance must carry the given tags plus Name and Role."
  }
}

run "first_boot_files" {
  assert {
    condition     = jsondecode(output.nixos_files["fleet.json"]) == { fleet = "ws-prod", monitoringAddress = "10.40.0.200", role = "ws" }
    error_message = "fleet.json must be the settings plus the role."
  }
  assert {
    condition     = length(regexall("\"github:acme/concurrent-socket/0123abc\"", output.nixos_files["flake.nix"])) == 3
    error_message = "flake.nix must take the module and both colours from flake_ref."
  }
  assert {
    condition     = strcontains(output.nixos_files["flake.nix"], "blue.packages.aarch64-linux.default") && strcontains(output.nixos_files["flake.nix"], "\"$${nixpkgs}/nixos/modules/virtualisation/amazon-image.nix\"")
    error_message = "flake.nix must use the host's system and import the amazon image module (Nix interpolation kept)."
  }
  assert {
    condition = alltrue([
      for text in values(output.nixos_files) : strcontains(aws_instance.this.user_data, text)
    ]) && strcontains(aws_instance.this.user_data, jsonencode({ blue = "github:acme/concurrent-socket/0123abc", green = "github:acme/concurrent-socket/0123abc" }))
    error_message = "The user data must write flake.nix, fleet.json and the colour pins."
  }
}

run "rejects_a_flake_ref_that_is_not_one" {
  command = plan
  variables {
    nixos = { flake_ref = "main", system = "x86_64-linux", settings = {} }
  }
  expect_failures = [var.nixos]
}

run "rejects_an_unknown_role" {
  command = plan
  variables {
    role = "database"
  }
  expect_failures = [var.role]
}

run "rejects_a_tiny_root_volume" {
  command = plan
  variables {
    root_volume_gb = 8
  }
  expect_failures = [var.root_volume_gb]
}

run "refuses_user_data_over_the_ec2_limit" {
  command = plan
  variables {
    nixos = {
      flake_ref = "github:acme/concurrent-socket/0123abc"
      system    = "x86_64-linux"
      settings  = { sshAuthorizedKeys = [for i in range(60) : "ssh-rsa ${join("", [for j in range(70) : "AAAA"])} key-${i}"] }
    }
  }
  expect_failures = [aws_instance.this]
}

run "rejects_a_binary_cache_url_that_would_break_the_first_boot_script" {
  command = plan
  variables {
    binary_cache = { url = "https://cache.example.com/'; rm -rf / #", public_key = "cache.example.com-1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" }
  }
  expect_failures = [var.binary_cache]
}
