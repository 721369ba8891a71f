"""Rolls a new concurrent-socket version across the fleet that Terraform made (docs/fleet.md)."""
