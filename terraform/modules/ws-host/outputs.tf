output "instance_id" {
  description = "EC2 instance id (the NLB target id)."
  value       = aws_instance.this.id
}

output "private_ip" {
  description = "Private address (what the monitoring host scrapes)."
  value       = aws_instance.this.private_ip
}

output "public_ip" {
  description = "Public address (SSH from the admin networks, nixos-rebuild --target-host); null without one."
  value       = aws_instance.this.public_ip
}

output "availability_zone" {
  description = "Availability zone of the host."
  value       = aws_instance.this.availability_zone
}

output "user_data" {
  description = "The first-boot script, for review (`terraform output`)."
  value       = local.user_data
  sensitive   = true
}

output "nixos_files" {
  description = "The host's /etc/nixos files (flake.nix, fleet.json) as the first boot writes them."
  value       = local.nixos_files
}

output "instance" {
  description = "The aws_instance resource (its hardening settings, for tests and audits)."
  value       = aws_instance.this
}
