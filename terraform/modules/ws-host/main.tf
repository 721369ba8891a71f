# One NixOS host of the fleet: an EC2 instance with IMDSv2 only and an encrypted root volume,
# whose first boot turns the official NixOS AMI into this repository's configuration (see
# templates/bootstrap.sh.tftpl). The same module makes the WebSocket hosts and the monitoring
# host; only `role` and the settings differ.

locals {
  # The host's /etc/nixos, written by the first boot and rebuilt by the rollout.
  nixos_files = {
    "flake.nix" = templatefile("${path.module}/templates/flake.nix.tftpl", {
      flake_ref = var.nixos.flake_ref
      system    = var.nixos.system
    })
    "fleet.json" = jsonencode(merge(var.nixos.settings, { role = var.role }))
  }
  user_data = templatefile("${path.module}/templates/bootstrap.sh.tftpl", {
    flake_nix    = local.nixos_files["flake.nix"]
    fleet_json   = local.nixos_files["fleet.json"]
    colours_json = jsonencode({ blue = var.nixos.flake_ref, green = var.nixos.flake_ref })
    # The first build runs before the configuration that names the cache: tell it directly.
    cache_options = var.binary_cache == null ? "" : join("\n", [
      "--option", "extra-substituters", var.binary_cache.url,
      "--option", "extra-trusted-public-keys", var.binary_cache.public_key,
    ])
  })
}

resource "aws_instance" "this" {
  # checkov:skip=CKV_AWS_88: The fleet has no NAT gateway: the public address is the hosts' way out (Nix cache, ACME) and the admins' SSH in; security groups admit only the NLB, admin CIDRs and the monitoring host.
  ami                    = var.ami_id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = var.security_group_ids
  iam_instance_profile   = var.instance_profile_name
  # No NAT in the fleet's network: a public address gives the host its way out (Nix cache,
  # ACME) and the admins their SSH; the security groups decide who gets in.
  associate_public_ip_address = true
  key_name                    = var.key_name
  ebs_optimized               = true
  monitoring                  = true

  user_data = local.user_data

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1          # no container on the host may reach the metadata service
    instance_metadata_tags      = "disabled"
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_gb
    encrypted             = true
    kms_key_id            = var.root_volume_kms_key_id
    delete_on_termination = true
  }

  tags        = merge(var.tags, { Name = var.name, Role = var.role })
  volume_tags = merge(var.tags, { Name = "${var.name}-root", Role = var.role })

  lifecycle {
    precondition {
      condition     = length(local.user_data) <= 16384
      error_message = "The bootstrap user data is over EC2's 16 KiB limit: fewer or shorter ssh_authorized_keys or server settings."
    }
    # The bootstrap runs once; afterwards NixOS manages the system and new versions arrive by
    # `nixos-rebuild --target-host` (terraform/rollout). A newer AMI or bootstrap must not
    # replace or restart a serving host.
    ignore_changes = [ami, user_data]
  }
}
