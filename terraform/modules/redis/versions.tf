terraform {
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # engine = "valkey" on replication groups
      version = ">= 5.80, < 6.0"
    }
  }
}
