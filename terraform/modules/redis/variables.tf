variable "name" {
  description = "Name of the replication group and prefix of its resources (the fleet's name plus -redis)."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 2 to 40 lower-case letters, digits or single dashes, starting with a letter and not ending with a dash (ElastiCache's replication group id)."
  }
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC of the replication group: the fleet's."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the replication group's nodes, in two or more availability zones (the fleet's)."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 2
    error_message = "subnet_ids must name at least two subnets, in different availability zones, for the replica and Multi-AZ failover."
  }
}

variable "client_security_group_id" {
  description = "The security group of the hosts that use Redis (the fleet's WebSocket hosts): the only source admitted on the port."
  type        = string
}

variable "engine" {
  description = "valkey (the Linux Foundation fork, cheaper on ElastiCache) or redis (Redis OSS). The server speaks the same protocol to both."
  type        = string
  default     = "valkey"
  validation {
    condition     = contains(["valkey", "redis"], var.engine)
    error_message = "engine must be valkey or redis."
  }
}

variable "engine_version" {
  description = "Engine version (major.minor); null: 8.0 for valkey, 7.1 for redis. Streams, Lua and pub/sub of 7.0 or later are what the broker uses."
  type        = string
  default     = null
  validation {
    condition     = var.engine_version == null || can(regex("^[0-9]+\\.[0-9]+$", var.engine_version))
    error_message = "engine_version must look like 8.0."
  }
}

variable "node_type" {
  description = "Node type of the primary and each replica (docs/redis.md, Sizing: the data set plus headroom)."
  type        = string
  default     = "cache.m7g.large"
  validation {
    condition     = can(regex("^cache\\.[a-z0-9]+\\.[a-z0-9]+$", var.node_type))
    error_message = "node_type must look like cache.m7g.large."
  }
}

variable "nodes" {
  description = "Nodes of the replication group: the primary and nodes - 1 replicas in other zones. 1 has no failover."
  type        = number
  default     = 2
  validation {
    condition     = var.nodes >= 1 && var.nodes <= 6 && floor(var.nodes) == var.nodes
    error_message = "nodes must be a whole number from 1 to 6 (a primary and up to 5 replicas)."
  }
}

variable "multi_az" {
  description = "Automatic failover to a replica in another availability zone when the primary fails (needs nodes >= 2)."
  type        = bool
  default     = true
  validation {
    condition     = !var.multi_az || var.nodes >= 2
    error_message = "multi_az needs nodes >= 2: a replica to fail over to."
  }
}

variable "port" {
  description = "TCP port of the nodes."
  type        = number
  default     = 6379
  validation {
    condition     = var.port >= 1024 && var.port <= 65535 && floor(var.port) == var.port
    error_message = "port must be a whole number from 1024 to 65535."
  }
}

variable "snapshot_retention_days" {
  description = "Days of daily snapshots kept (0: none). Snapshots restore a lost group; the live data's durability comes from the replica."
  type        = number
  default     = 7
  validation {
    condition     = var.snapshot_retention_days >= 0 && var.snapshot_retention_days <= 35 && floor(var.snapshot_retention_days) == var.snapshot_retention_days
    error_message = "snapshot_retention_days must be a whole number from 0 to 35."
  }
}

variable "maintenance_window" {
  description = "Weekly maintenance window (UTC), ddd:hh24:mi-ddd:hh24:mi; engine patches fail over to the replica then."
  type        = string
  default     = "sun:04:00-sun:05:00"
}

variable "auth_token_update_strategy" {
  description = "How a new auth token is applied: ROTATE (the old one stays valid beside it, so hosts keep working until their colours load the new one) or SET (only the new one; run after every host has it). docs/redis.md, Rotating the auth token."
  type        = string
  default     = "ROTATE"
  validation {
    condition     = contains(["ROTATE", "SET"], var.auth_token_update_strategy)
    error_message = "auth_token_update_strategy must be ROTATE or SET."
  }
}
