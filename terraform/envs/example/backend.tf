# Remote state: S3 with DynamoDB locking. Left commented so that `terraform init
# -backend=false` (CI) and a first local try work without AWS. For a real fleet, create the
# bucket (versioned, encrypted, public access blocked) and the lock table once (docs/fleet.md,
# "State backend"), uncomment, and run `terraform init -migrate-state`. A backend block cannot
# read variables: the values are literals here or come from `terraform init -backend-config=...`.
#
# terraform {
#   backend "s3" {
#     bucket         = "acme-terraform-state"              # versioned, SSE-KMS, no public access
#     key            = "concurrent-socket/example/terraform.tfstate"
#     region         = "eu-west-1"
#     encrypt        = true
#     dynamodb_table = "terraform-locks"                   # partition key LockID (string)
#     # Terraform >= 1.10 can lock with the bucket alone (use_lockfile = true) instead of DynamoDB.
#   }
# }
