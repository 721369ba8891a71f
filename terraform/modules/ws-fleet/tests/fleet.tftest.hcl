# Unit tests of the ws-fleet module with a mocked AWS provider (no credentials, no AWS): they
# apply the module against generated values and check what it would create.

mock_provider "aws" {
  source = "../../mocks"
}

variables {
  name        = "fleet"
  host_count  = 4
  admin_cidrs = ["203.0.113.0/24", "198.51.100.7/32"]
  flake_ref   = "github:acme/concurrent-socket/0123456789abcdef0123456789abcdef01234567"
  acme_email  = "ops@example.com"
  tags        = { Team = "realtime", CostCentre = "cc-42" }
}

run "creates_the_fleet" {
  assert {
    condition     = length(module.ws_host) == 4 && length(output.ws_hosts) == 4
    error_message = "host_count = 4 must make 4 WebSocket hosts, all in the ws_hosts output."
  }
  assert {
    condition     = toset(keys(output.ws_hosts)) == toset(["fleet-ws-01", "fleet-ws-02", "fleet-ws-03", "fleet-ws-04"])
    error_message = "WebSocket hosts must be named <fleet>-ws-NN."
  }
  assert {
    condition     = length(aws_subnet.public) == 2 && length(distinct(aws_subnet.public[*].availability_zone)) == 2
    error_message = "A new VPC must get one public subnet in each of az_count (2) availability zones."
  }
  assert {
    condition     = length(aws_lb_target_group_attachment.ws) == 8
    error_message = "Every WebSocket host must be a target of both the HTTP and the HTTPS target group."
  }
}

run "no_security_group_opens_ssh_or_metrics_to_the_internet" {
  assert {
    condition = alltrue([
      for rule in aws_vpc_security_group_ingress_rule.this :
      !(contains(["0.0.0.0/0"], coalesce(rule.cidr_ipv4, "-")) || contains(["::/0"], coalesce(rule.cidr_ipv6, "-"))) ||
      contains([80, 443], rule.from_port) && rule.from_port == rule.to_port
    ])
    error_message = "Only ports 80 and 443 may be open to the whole internet."
  }
  assert {
    condition = alltrue([
      for rule in aws_vpc_security_group_ingress_rule.this :
      rule.security_group_id == aws_security_group.nlb.id if rule.cidr_ipv4 == "0.0.0.0/0"
    ])
    error_message = "Only the NLB's security group may take traffic from the whole internet."
  }
  assert {
    condition = alltrue([
      for rule in aws_vpc_security_group_ingress_rule.this :
      contains(var.admin_cidrs, rule.cidr_ipv4) if rule.from_port <= 22 && rule.to_port >= 22
    ])
    error_message = "SSH must be open to the admin CIDRs only."
  }
  assert {
    condition     = length([for rule in aws_vpc_security_group_ingress_rule.this : rule if rule.from_port == 22]) == 2 * length(var.admin_cidrs)
    error_message = "Each admin CIDR must reach SSH on the WebSocket hosts and on the monitoring host, and nothing else may."
  }
  assert {
    condition = alltrue([
      for rule in aws_vpc_security_group_ingress_rule.this :
      rule.referenced_security_group_id == aws_security_group.monitoring.id && rule.cidr_ipv4 == null
      if contains([19464, 19465, 18082, 9100], rule.from_port)
    ])
    error_message = "The metrics ports (19464, 19465, 18082, 9100) must be open to the monitoring host's security group only."
  }
  assert {
    condition = length([
      for rule in aws_vpc_security_group_ingress_rule.this : rule
      if contains([19464, 19465, 18082, 9100], rule.from_port) && rule.security_group_id == aws_security_group.ws.id
    ]) == 4
    error_message = "Each metrics port of the WebSocket hosts must have its rule from the monitoring host."
  }
  assert {
    condition = alltrue([
      for rule in aws_vpc_security_group_ingress_rule.this :
      rule.referenced_security_group_id == aws_security_group.nlb.id
      if rule.security_group_id == aws_security_group.ws.id && contains([80, 443, 8083], rule.from_port)
    ])
    error_message = "Traefik on the WebSocket hosts must take 80/443 and health checks (8083) from the NLB only."
  }
}

run "hosts_are_hardened" {
  assert {
    condition = alltrue([
      for host in concat(values(module.ws_host), [module.monitoring]) :
      host.instance.metadata_options[0].http_tokens == "required" && host.instance.metadata_options[0].http_put_response_hop_limit == 1
    ])
    error_message = "Every host must require IMDSv2 (http_tokens = required, hop limit 1)."
  }
  assert {
    condition = alltrue([
      for host in concat(values(module.ws_host), [module.monitoring]) :
      host.instance.root_block_device[0].encrypted && host.instance.root_block_device[0].volume_type == "gp3"
    ])
    error_message = "Every root volume must be an encrypted gp3 volume."
  }
  assert {
    condition = alltrue([
      for host in values(module.ws_host) :
      host.instance.iam_instance_profile == aws_iam_instance_profile.host["ws"].name
    ]) && module.monitoring.instance.iam_instance_profile == aws_iam_instance_profile.host["monitoring"].name
    error_message = "Each role must use its own instance profile."
  }
  assert {
    condition     = jsondecode(aws_iam_role_policy.monitoring_discovery.policy).Statement[0].Action == ["ec2:DescribeInstances", "ec2:DescribeAvailabilityZones"]
    error_message = "The monitoring role may only describe instances and zones."
  }
  assert {
    condition     = startswith(module.ws_host["fleet-ws-01"].instance.user_data, "#!") && strcontains(module.ws_host["fleet-ws-01"].instance.user_data, "nixos-rebuild switch --flake /etc/nixos#fleet-host")
    error_message = "The user data must be the bootstrap script that switches to the flake."
  }
}

run "everything_is_tagged" {
  assert {
    condition = alltrue([
      for host in concat(values(module.ws_host), [module.monitoring]) :
      host.instance.tags.Fleet == "fleet" && host.instance.tags.ManagedBy == "terraform" && host.instance.tags.Team == "realtime" && host.instance.tags.CostCentre == "cc-42"
    ])
    error_message = "Every instance must carry the fleet's tags and the caller's."
  }
  assert {
    condition     = alltrue([for host in values(module.ws_host) : host.instance.tags.Role == "ws"]) && module.monitoring.instance.tags.Role == "monitoring"
    error_message = "Instances must carry their Role tag (Prometheus discovers the WebSocket hosts by Fleet and Role)."
  }
  assert {
    condition     = alltrue([for host in values(module.ws_host) : host.instance.volume_tags.Fleet == "fleet"])
    error_message = "Root volumes must be tagged."
  }
  assert {
    condition     = aws_lb.this.tags.Fleet == "fleet" && aws_vpc.this[0].tags.Fleet == "fleet" && alltrue([for sg in [aws_security_group.nlb, aws_security_group.ws, aws_security_group.monitoring] : sg.tags.Fleet == "fleet"])
    error_message = "The NLB, the VPC and the security groups must be tagged."
  }
}

run "load_balancer_suits_websockets" {
  assert {
    condition     = aws_lb.this.load_balancer_type == "network" && alltrue([for l in aws_lb_listener.traefik : l.protocol == "TCP" && l.tcp_idle_timeout_seconds == 3600])
    error_message = "The NLB must pass TCP through with a one-hour idle timeout."
  }
  assert {
    condition     = alltrue([for tg in aws_lb_target_group.traefik : tg.health_check[0].path == "/ready" && tg.health_check[0].protocol == "HTTP" && tg.health_check[0].port == "8083" && tg.health_check[0].matcher == "200"])
    error_message = "Both target groups must check HTTP /ready on Traefik's nlb-health entry point (8083) and accept only 200."
  }
  assert {
    condition     = alltrue([for tg in aws_lb_target_group.traefik : tg.preserve_client_ip == "true" && tg.connection_termination == false])
    error_message = "Targets must see client addresses and keep open connections when deregistered."
  }
}

run "outputs" {
  assert {
    condition     = output.nlb_dns_name == "fleet-nlb-0123456789.elb.eu-west-1.amazonaws.com"
    error_message = "nlb_dns_name must be the NLB's DNS name."
  }
  assert {
    condition     = output.grafana_url == "http://198.51.100.200:3000"
    error_message = "Without a domain, grafana_url must point at the monitoring host's Elastic IP."
  }
  assert {
    condition     = alltrue([for h in output.ws_hosts : h.public_ip == "198.51.100.10" && h.private_ip == "10.40.0.10"])
    error_message = "ws_hosts must give each host's addresses."
  }
  assert {
    condition     = toset(keys(output.target_group_arns)) == toset(["http", "https"])
    error_message = "target_group_arns must name the http and https target groups."
  }
  assert {
    condition     = jsondecode(output.ws_host_nixos["fleet.json"]).role == "ws" && jsondecode(output.ws_host_nixos["fleet.json"]).monitoringAddress == "10.40.0.10"
    error_message = "ws_host_nixos must carry the WebSocket role and the monitoring host's private address."
  }
}

run "route53_records" {
  variables {
    route53_zone_id = "Z0123456789ABCDEFGHIJ"
    domain_name     = "ws.example.com"
  }
  assert {
    condition     = aws_route53_record.service[0].name == "ws.example.com" && aws_route53_record.service[0].alias[0].name == aws_lb.this.dns_name
    error_message = "The service name must alias the NLB."
  }
  assert {
    condition     = aws_route53_record.grafana[0].name == "grafana.ws.example.com" && output.grafana_url == "http://grafana.ws.example.com:3000"
    error_message = "Grafana must get grafana.<domain> and the URL must use it."
  }
  assert {
    condition     = output.service_url == "https://ws.example.com"
    error_message = "service_url must use the domain."
  }
}

run "existing_vpc" {
  variables {
    vpc_id     = "vpc-0a1b2c3d"
    subnet_ids = ["subnet-0a", "subnet-0b"]
  }
  override_data {
    target = data.aws_subnet.given
    values = { vpc_id = "vpc-0a1b2c3d" }
  }
  assert {
    condition     = length(aws_vpc.this) == 0 && aws_lb.this.subnets == toset(["subnet-0a", "subnet-0b"])
    error_message = "With vpc_id, no VPC is created and the NLB uses the given subnets."
  }
  assert {
    condition     = module.ws_host["fleet-ws-01"].instance.subnet_id == "subnet-0a" && module.ws_host["fleet-ws-02"].instance.subnet_id == "subnet-0b" && module.ws_host["fleet-ws-03"].instance.subnet_id == "subnet-0a"
    error_message = "Hosts must be spread round-robin over the given subnets."
  }
}

run "rejects_ssh_from_the_internet" {
  command = plan
  variables {
    admin_cidrs = ["0.0.0.0/0"]
  }
  expect_failures = [var.admin_cidrs]
}

run "rejects_bad_host_count" {
  command = plan
  variables {
    host_count = 0
  }
  expect_failures = [var.host_count]
}

run "rejects_existing_vpc_without_subnets" {
  command = plan
  variables {
    vpc_id = "vpc-0a1b2c3d"
  }
  expect_failures = [var.subnet_ids]
}

run "rejects_listen_addresses_in_server_settings" {
  command = plan
  variables {
    server_settings = { MAX_CONNECTIONS = "50000", PORT = "8080" }
  }
  expect_failures = [var.server_settings]
}

run "rejects_idle_timeout_out_of_range" {
  command = plan
  variables {
    tcp_idle_timeout_seconds = 7200
  }
  expect_failures = [var.tcp_idle_timeout_seconds]
}
