variable "name" {
  description = "Name of the fleet: the prefix of every resource and the value of the Fleet tag."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,19}$", var.name))
    error_message = "name must be 2 to 20 lower-case letters, digits or dashes, starting with a letter (it prefixes the load balancer's 32-character name)."
  }
}

variable "tags" {
  description = "Tags added to every resource (on top of Fleet, ManagedBy and Role)."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.tags) : !startswith(lower(k), "aws:")])
    error_message = "Tag keys starting with aws: are reserved by AWS."
  }
}

# --- network ---

variable "vpc_id" {
  description = "An existing VPC to use; null creates a new VPC with public subnets across availability zones."
  type        = string
  default     = null
  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must be null or look like vpc-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Public subnets of the existing VPC (one per availability zone, at least two); required with vpc_id, ignored without."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "Every subnet id must look like subnet-0123456789abcdef0."
  }
  validation {
    condition     = var.vpc_id == null || length(var.subnet_ids) >= 2
    error_message = "With vpc_id, subnet_ids must name at least two public subnets in different availability zones."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the new VPC (when vpc_id is null); each availability zone gets a /24 of it."
  type        = string
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 21
    error_message = "vpc_cidr must be an IPv4 CIDR of /21 or larger."
  }
}

variable "az_count" {
  description = "Number of availability zones of the new VPC (hosts are spread across them)."
  type        = number
  default     = 2
  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6 && floor(var.az_count) == var.az_count
    error_message = "az_count must be a whole number from 2 to 6 (the load balancer needs two zones)."
  }
}

variable "admin_cidrs" {
  description = "Networks allowed to SSH to the hosts (for the rollout's nixos-rebuild --target-host) and to open Grafana. Never 0.0.0.0/0."
  type        = list(string)
  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0)) && !endswith(c, "/0")])
    error_message = "admin_cidrs must list at least one valid CIDR, and none may be a /0 (the whole internet)."
  }
}

# --- hosts ---

variable "host_count" {
  description = "Number of WebSocket hosts (each runs blue and green behind Traefik)."
  type        = number
  default     = 3
  validation {
    condition     = var.host_count >= 1 && var.host_count <= 100 && floor(var.host_count) == var.host_count
    error_message = "host_count must be a whole number from 1 to 100."
  }
}

variable "instance_type" {
  description = "Instance type of the WebSocket hosts."
  type        = string
  default     = "c7i.xlarge"
}

variable "monitoring_instance_type" {
  description = "Instance type of the monitoring host (Prometheus, Grafana, Loki)."
  type        = string
  default     = "m7i.large"
}

variable "root_volume_gb" {
  description = "Root volume of each WebSocket host in GiB."
  type        = number
  default     = 40
}

variable "monitoring_volume_gb" {
  description = "Root volume of the monitoring host in GiB (30 days of metrics, 14 to 30 days of logs)."
  type        = number
  default     = 200
}

variable "architecture" {
  description = "CPU architecture of the hosts: x86_64 or arm64 (instance types must match)."
  type        = string
  default     = "x86_64"
  validation {
    condition     = contains(["x86_64", "arm64"], var.architecture)
    error_message = "architecture must be x86_64 or arm64."
  }
}

variable "nixos_release" {
  description = "NixOS release of the official AMI the hosts boot from (for example 26.05, the release of the flake's nixpkgs)."
  type        = string
  default     = "26.05"
  validation {
    condition     = can(regex("^[0-9]{2}\\.(05|11)$", var.nixos_release))
    error_message = "nixos_release must look like 25.05 or 25.11."
  }
}

variable "ami_id" {
  description = "An AMI to use instead of the newest official NixOS AMI of nixos_release."
  type        = string
  default     = null
}

variable "flake_ref" {
  description = "Flake reference of this repository that new hosts boot (pin a revision, e.g. github:acme/concurrent-socket/<rev>)."
  type        = string
  validation {
    condition     = can(regex("^(github:|gitlab:|git\\+https://|git\\+ssh://|https://|path:)[^'\"\\s]+$", var.flake_ref))
    error_message = "flake_ref must be a flake reference (github:, gitlab:, git+https://, git+ssh://, https:// or path:) without quotes or spaces."
  }
}

variable "ssh_key_name" {
  description = "EC2 key pair installed for root on first boot; null to rely on ssh_authorized_keys only."
  type        = string
  default     = null
}

variable "ssh_authorized_keys" {
  description = "Public keys allowed to log in as root (the rollout's SSH); written into the NixOS configuration."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for k in var.ssh_authorized_keys : can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+", k))])
    error_message = "Every entry of ssh_authorized_keys must be an OpenSSH public key line."
  }
}

variable "binary_cache" {
  description = "A Nix binary cache holding this repository's builds (url, public_key), used by the first boot and by every later build on the hosts; null: cache.nixos.org only, so each host compiles the workspace itself."
  type = object({
    url        = string
    public_key = string
  })
  default = null
  validation {
    condition     = var.binary_cache == null || can(regex("^(https|s3)://[^'\"\\s]+$", var.binary_cache.url))
    error_message = "binary_cache.url must be an https:// or s3:// URL without quotes or spaces."
  }
  validation {
    condition     = var.binary_cache == null || can(regex("^[A-Za-z0-9.-]+:[A-Za-z0-9+/]{43}=$", var.binary_cache.public_key))
    error_message = "binary_cache.public_key must be a Nix public key, NAME:BASE64 (as printed by nix key convert-secret-to-public)."
  }
}

variable "server_settings" {
  description = "Server environment (docs/architecture.md, e.g. MAX_CONNECTIONS) applied to both colours on every WebSocket host."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k in keys(var.server_settings) : can(regex("^[A-Z][A-Z0-9_]*$", k))])
    error_message = "server_settings keys must be upper-case environment variable names."
  }
  validation {
    condition     = length(setintersection(keys(var.server_settings), ["PORT", "HOST", "METRICS_ADDR"])) == 0
    error_message = "server_settings must not set PORT, HOST or METRICS_ADDR: the hosts' socket units own the listen addresses (the NixOS module refuses them)."
  }
}

# --- load balancer ---

variable "data_path" {
  description = "How client connections reach the servers on each WebSocket host (docs/deploy.md, \"The direct data path\"). \"traefik\": the NLB forwards to the host's Traefik (web entry point), which routes to the active colour. \"direct\": the NLB forwards straight to the colours' shared public port (SO_REUSEPORT; services.concurrent-socket.dataPath), where the kernel flips blue/green. TLS, when there is a certificate, ends at the NLB either way, and the client's address comes as proxy protocol v2, believed from the NLB's subnets only (by Traefik, or on the direct path by the server)."
  type        = string
  default     = "traefik"
  validation {
    condition     = contains(["traefik", "direct"], var.data_path)
    error_message = "data_path must be \"traefik\" or \"direct\"."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for domain_name: the NLB terminates TLS on 443 with it and passes plain HTTP to Traefik with proxy protocol v2. null (and create_certificate false): no TLS, plain TCP on 80."
  type        = string
  default     = null
  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)."
  }
  validation {
    condition     = var.certificate_arn == null || var.domain_name != null
    error_message = "certificate_arn needs domain_name: clients must reach the service by the name the certificate is for."
  }
}

variable "create_certificate" {
  description = "Request an ACM certificate for domain_name, validated by DNS records in route53_zone_id, and terminate TLS with it as with certificate_arn."
  type        = bool
  default     = false
  validation {
    condition     = !var.create_certificate || (var.route53_zone_id != null && var.domain_name != null)
    error_message = "create_certificate needs route53_zone_id and domain_name (ACM validates the name through DNS records there)."
  }
  validation {
    condition     = !(var.create_certificate && var.certificate_arn != null)
    error_message = "Give certificate_arn or create_certificate, not both."
  }
}

variable "tls_policy" {
  description = "Security policy of the NLB's TLS listener (protocols and ciphers offered to clients)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  validation {
    condition     = startswith(var.tls_policy, "ELBSecurityPolicy-")
    error_message = "tls_policy must be an ELB security policy name (ELBSecurityPolicy-...)."
  }
}

variable "tcp_idle_timeout_seconds" {
  description = "NLB TCP idle timeout of the plain listener (60 to 6000 s; AWS's default is 350). A TLS listener's is fixed by AWS at 350 s. WebSockets idle between heartbeats must outlive it."
  type        = number
  default     = 3600
  validation {
    condition     = var.tcp_idle_timeout_seconds >= 60 && var.tcp_idle_timeout_seconds <= 6000
    error_message = "tcp_idle_timeout_seconds must be from 60 to 6000."
  }
}

variable "deregistration_delay_seconds" {
  description = "How long the NLB keeps a deregistered host draining before the rollout may touch it (0 to 3600 s)."
  type        = number
  default     = 30
  validation {
    condition     = var.deregistration_delay_seconds >= 0 && var.deregistration_delay_seconds <= 3600
    error_message = "deregistration_delay_seconds must be from 0 to 3600."
  }
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion (turn off only to destroy the fleet)."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "S3 bucket for the NLB's access logs (only a TLS listener logs); null for none."
  type        = string
  default     = null
}

# --- DNS ---

variable "route53_zone_id" {
  description = "Route53 hosted zone for the service and Grafana records; null for no DNS records."
  type        = string
  default     = null
  validation {
    condition     = var.route53_zone_id == null || can(regex("^Z[0-9A-Z]+$", var.route53_zone_id))
    error_message = "route53_zone_id must be null or a hosted zone id like Z0123456789ABCDEFGHIJ."
  }
}

variable "domain_name" {
  description = "Public name of the service (an alias of the NLB; grafana.<domain_name> for the monitoring host). Required with route53_zone_id."
  type        = string
  default     = null
  validation {
    condition     = var.domain_name == null || can(regex("^([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+[a-z]{2,}$", var.domain_name))
    error_message = "domain_name must be null or a lower-case DNS name like ws.example.com."
  }
  validation {
    condition     = var.route53_zone_id == null || var.domain_name != null
    error_message = "route53_zone_id needs domain_name (the record to create)."
  }
}

variable "flow_log_retention_days" {
  description = "Days the new VPC's flow logs are kept (a CloudWatch Logs retention value)."
  type        = number
  default     = 365
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.flow_log_retention_days)
    error_message = "flow_log_retention_days must be a CloudWatch Logs retention value (1, 3, 5, 7, 14, 30, ..., 365, 400, ..., 3653)."
  }
}

# --- the broker's Redis ---

variable "redis" {
  description = <<-EOT
    The fleet's Redis (module ../redis, docs/redis.md): an ElastiCache replication group that
    every WebSocket host's colours use as their channels broker, so that all hosts are one chat.
    null: no Redis, each server process keeps its channels to itself (BROKER=memory).
    engine valkey or redis; engine_version null for the engine's default; nodes = primary +
    replicas; multi_az: automatic failover to a replica in another zone.
  EOT
  type = object({
    engine                  = optional(string, "valkey")
    engine_version          = optional(string)
    node_type               = optional(string, "cache.m7g.large")
    nodes                   = optional(number, 2)
    multi_az                = optional(bool, true)
    snapshot_retention_days = optional(number, 7)
  })
  default = null
}
