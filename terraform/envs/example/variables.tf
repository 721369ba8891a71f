variable "region" {
  description = "AWS region of the fleet."
  type        = string
  default     = "eu-west-1"
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name like eu-west-1."
  }
}

variable "name" {
  description = "Service name; resources are named <name>-<environment>-..."
  type        = string
  default     = "ws"
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,7}$", var.name))
    error_message = "name must be 1 to 8 lower-case letters or digits, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (a tag and part of every resource name)."
  type        = string
  default     = "example"
  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,10}$", var.environment))
    error_message = "environment must be 1 to 11 lower-case letters or digits, starting with a letter."
  }
}

variable "host_count" {
  description = "Number of WebSocket hosts."
  type        = number
  default     = 3
  validation {
    condition     = var.host_count >= 2 && floor(var.host_count) == var.host_count
    error_message = "host_count must be a whole number of at least 2: a rollout takes hosts out of the load balancer in turn."
  }
}

variable "instance_type" {
  description = "Instance type of the WebSocket hosts."
  type        = string
  default     = "c7i.xlarge"
}

variable "admin_cidrs" {
  description = "Networks of the operators (SSH for the rollout, Grafana)."
  type        = list(string)
}

variable "flake_ref" {
  description = "Flake reference of this repository, pinned to a revision, that new hosts boot."
  type        = string
}

variable "binary_cache" {
  description = "Nix binary cache with this repository's builds ({ url, public_key }); null: hosts compile the workspace themselves."
  type = object({
    url        = string
    public_key = string
  })
  default = null
}

variable "ssh_key_name" {
  description = "EC2 key pair for root on first boot (null: ssh_authorized_keys only)."
  type        = string
  default     = null
}

variable "ssh_authorized_keys" {
  description = "Operators' SSH public keys for root (the rollout logs in as root)."
  type        = list(string)
  default     = []
}

variable "server_settings" {
  description = "Server environment for both colours (docs/architecture.md)."
  type        = map(string)
  default     = { MAX_CONNECTIONS = "50000" }
}

variable "route53_zone_id" {
  description = "Hosted zone for the DNS records; null for none."
  type        = string
  default     = null
}

variable "domain_name" {
  description = "Public name of the service (with route53_zone_id: an alias of the NLB)."
  type        = string
  default     = null
}

variable "certificate_arn" {
  description = "ACM certificate for domain_name: TLS at the load balancer (wss://). null with create_certificate false: plain ws:// on port 80."
  type        = string
  default     = null
}

variable "create_certificate" {
  description = "Request and DNS-validate an ACM certificate for domain_name in route53_zone_id, for TLS at the load balancer."
  type        = bool
  default     = false
}

variable "data_path" {
  description = "\"traefik\": the NLB forwards to each host's Traefik; \"direct\": to the colours' shared port, blue/green flipped in the kernel (docs/deploy.md, \"The direct data path\")."
  type        = string
  default     = "traefik"
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags for every resource (team, cost centre)."
  type        = map(string)
  default     = {}
}

variable "redis" {
  description = "The fleet's Redis, the channels' broker shared by every host (docs/redis.md): ElastiCache with its defaults ({}: Valkey 8.0, cache.m7g.large, a primary and a replica with Multi-AZ failover), your choices (engine, engine_version, node_type, nodes, multi_az, snapshot_retention_days), or null for none (each server process keeps its channels to itself)."
  type = object({
    engine                  = optional(string, "valkey")
    engine_version          = optional(string)
    node_type               = optional(string, "cache.m7g.large")
    nodes                   = optional(number, 2)
    multi_az                = optional(bool, true)
    snapshot_retention_days = optional(number, 7)
  })
  default = {}
}
