variable "name" {
  description = "Name of the host (the Name tag and the prefix of its resources)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.name))
    error_message = "name must be lower-case letters, digits and dashes, starting with a letter, at most 63 characters."
  }
}

variable "role" {
  description = "What the host runs: \"ws\" (blue and green behind Traefik) or \"monitoring\" (Prometheus, Grafana, Loki)."
  type        = string
  validation {
    condition     = contains(["ws", "monitoring"], var.role)
    error_message = "role must be \"ws\" or \"monitoring\"."
  }
}

variable "ami_id" {
  description = "AMI of the host: an official NixOS image (its amazon-init runs the bootstrap user data)."
  type        = string
  validation {
    condition     = can(regex("^ami-[0-9a-z]+$", var.ami_id))
    error_message = "ami_id must look like ami-0123456789abcdef0."
  }
}

variable "instance_type" {
  description = "EC2 instance type."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like c7i.large."
  }
}

variable "subnet_id" {
  description = "Subnet the host is placed in."
  type        = string
}

variable "security_group_ids" {
  description = "Security groups of the host's network interface."
  type        = list(string)
  validation {
    condition     = length(var.security_group_ids) > 0
    error_message = "At least one security group is required."
  }
}

variable "instance_profile_name" {
  description = "IAM instance profile of the host."
  type        = string
}

variable "root_volume_gb" {
  description = "Size of the encrypted gp3 root volume in GiB (the Nix store lives there)."
  type        = number
  validation {
    condition     = var.root_volume_gb >= 20 && var.root_volume_gb <= 2000 && floor(var.root_volume_gb) == var.root_volume_gb
    error_message = "root_volume_gb must be a whole number from 20 to 2000."
  }
}

variable "root_volume_kms_key_id" {
  description = "KMS key for the root volume; null uses the account's default EBS key (still encrypted)."
  type        = string
  default     = null
}

variable "key_name" {
  description = "EC2 key pair for root's SSH login on first boot; null when ssh_authorized_keys in the NixOS settings is enough."
  type        = string
  default     = null
}

variable "binary_cache" {
  description = "A Nix binary cache (url, public_key) the first boot's build may use besides cache.nixos.org; afterwards the host's NixOS configuration names it (fleet.json binaryCache). null: none. Checked here as well as in ws-fleet: both values are written into the first-boot script."
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
    error_message = "binary_cache.public_key must be a Nix public key, NAME:BASE64."
  }
}

variable "nixos" {
  description = <<-EOT
    What the first-boot bootstrap writes to /etc/nixos: flake_ref is the flake reference of this
    repository (the NixOS module and, at first, the package of both colours); system is the Nix
    system; settings is the host's fleet.json (role-specific settings read by
    terraform/nixos/fleet-host.nix).
  EOT
  type = object({
    flake_ref = string
    system    = string
    settings  = any
  })
  validation {
    condition     = can(regex("^(github:|gitlab:|git\\+https://|git\\+ssh://|https://|path:)[^'\"\\s]+$", var.nixos.flake_ref))
    error_message = "nixos.flake_ref must be a flake reference (github:, gitlab:, git+https://, git+ssh://, https:// or path:) without quotes or spaces."
  }
  validation {
    condition     = contains(["x86_64-linux", "aarch64-linux"], var.nixos.system)
    error_message = "nixos.system must be x86_64-linux or aarch64-linux."
  }
}

variable "tags" {
  description = "Tags for the instance and its volume."
  type        = map(string)
  default     = {}
}
