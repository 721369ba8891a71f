# Unit tests of the ws-fleet module with a mocked AWS provider (no credentials, no AWS): they
# apply the module against generated values and check what it would create.

mock_provider "aws" {
  source = "../../mocks"
}

# Every instance gets its own id and addresses (the mock's defaults would give them all the
# same), so that a monitoring host and a serving host mixed up anywhere shows.
override_resource {
  target = module.monitoring.aws_instance.this
  values = { id = "i-0000000000000mon0", private_ip = "10.40.0.250", public_ip = "198.51.100.250", availability_zone = "eu-west-1a" }
}
override_resource {
  target = module.ws_host["fleet-ws-01"].aws_instance.this
  values = { id = "i-00000000000000ws1", private_ip = "10.40.0.11", public_ip = "198.51.100.11", availability_zone = "eu-west-1a" }
}
override_resource {
  target = module.ws_host["fleet-ws-02"].aws_instance.this
  values = { id = "i-00000000000000ws2", private_ip = "10.40.1.12", public_ip = "198.51.100.12", availability_zone = "eu-west-1b" }
}
override_resource {
  target = module.ws_host["fleet-ws-03"].aws_instance.this
  values = { id = "i-00000000000000ws3", private_ip = "10.40.0.13", public_ip = "198.51.100.13", availability_zone = "eu-west-1a" }
}
override_resource {
  target = module.ws_host["fleet-ws-04"].aws_instance.this
  values = { id = "i-00000000000000ws4", private_ip = "10.40.1.14", public_ip = "198.51.100.14", availability_zone = "eu-west-1b" }
}

variables {
  name        = "fleet"
  host_count  = 4
  admin_cidrs = ["203.0.113.0/24", "198.51.100.7/32"]
  flake_ref   = "github:acme/concurrent-socket/0123456789abcdef0123456789abcdef01234567"
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
    condition     = length(aws_lb_target_group_attachment.ws) == 4 && keys(aws_lb_target_group.traefik) == ["http"]
    error_message = "Without TLS there is one target group (http), and every WebSocket host must be its target."
  }
}

run "no_security_group_opens_ssh_or_metrics_to_the_internet" {
  assert {
    condition = alltrue([
      for rule in aws_vpc_security_group_ingress_rule.this :
      !(contains(["0.0.0.0/0"], coalesce(rule.cidr_ipv4, "-")) || contains(["::/0"], coalesce(rule.cidr_ipv6, "-"))) ||
      rule.from_port == 80 && rule.to_port == 80
    ])
    error_message = "Without TLS, only port 80 (the NLB's listener) may be open to the whole internet."
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
    error_message = "Traefik on the WebSocket hosts must take 80 and health checks (8083) from the NLB only."
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
    condition     = aws_lb.this.load_balancer_type == "network" && length(aws_lb_listener.traefik) == 1 && alltrue([for l in aws_lb_listener.traefik : l.port == 80 && l.protocol == "TCP" && l.tcp_idle_timeout_seconds == 3600 && l.certificate_arn == null])
    error_message = "Without TLS the NLB must pass TCP through on 80 only, with a one-hour idle timeout."
  }
  assert {
    condition     = alltrue([for tg in aws_lb_target_group.traefik : tg.port == 80 && tg.protocol == "TCP" && tg.proxy_protocol_v2 == false])
    error_message = "Without TLS the target group must be Traefik's web entry point (80) without proxy protocol."
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
    condition     = output.service_url == "http://fleet-nlb-0123456789.elb.eu-west-1.amazonaws.com"
    error_message = "Without TLS, service_url must say http:// (and name the NLB without a domain)."
  }
  assert {
    condition     = output.grafana_url == "http://198.51.100.200:3000"
    error_message = "Without a domain, grafana_url must point at the monitoring host's Elastic IP."
  }
  assert {
    condition     = toset(keys(output.target_group_arns)) == toset(["http"])
    error_message = "Without TLS, target_group_arns must name the one http target group."
  }
}

run "monitoring_and_serving_hosts_are_not_mixed_up" {
  assert {
    condition = output.ws_hosts == {
      fleet-ws-01 = { instance_id = "i-00000000000000ws1", private_ip = "10.40.0.11", public_ip = "198.51.100.11", availability_zone = "eu-west-1a" }
      fleet-ws-02 = { instance_id = "i-00000000000000ws2", private_ip = "10.40.1.12", public_ip = "198.51.100.12", availability_zone = "eu-west-1b" }
      fleet-ws-03 = { instance_id = "i-00000000000000ws3", private_ip = "10.40.0.13", public_ip = "198.51.100.13", availability_zone = "eu-west-1a" }
      fleet-ws-04 = { instance_id = "i-00000000000000ws4", private_ip = "10.40.1.14", public_ip = "198.51.100.14", availability_zone = "eu-west-1b" }
    }
    error_message = "ws_hosts must give each WebSocket host its own instance id, addresses and zone, and no monitoring host."
  }
  assert {
    condition     = output.monitoring_host == { instance_id = "i-0000000000000mon0", private_ip = "10.40.0.250", public_ip = "198.51.100.200" }
    error_message = "monitoring_host must be the monitoring instance, reachable at its Elastic IP (198.51.100.200), not its launch address."
  }
  assert {
    condition     = aws_eip.monitoring.instance == "i-0000000000000mon0"
    error_message = "The Elastic IP must be attached to the monitoring host."
  }
  assert {
    condition     = sort([for a in aws_lb_target_group_attachment.ws : a.target_id]) == tolist(["i-00000000000000ws1", "i-00000000000000ws2", "i-00000000000000ws3", "i-00000000000000ws4"])
    error_message = "The NLB's targets must be the WebSocket hosts, each once, and never the monitoring host."
  }
  assert {
    condition     = alltrue([for name, host in module.ws_host : jsondecode(host.nixos_files["fleet.json"]).monitoringAddress == "10.40.0.250"])
    error_message = "Every WebSocket host must ship its logs to the monitoring host's private address, not to a serving host's."
  }
  assert {
    condition     = jsondecode(module.monitoring.nixos_files["fleet.json"]).role == "monitoring" && alltrue([for host in module.ws_host : jsondecode(host.nixos_files["fleet.json"]).role == "ws"])
    error_message = "The monitoring host must get the monitoring role and every WebSocket host the ws role."
  }
  assert {
    condition     = module.monitoring.instance.vpc_security_group_ids == toset([aws_security_group.monitoring.id]) && alltrue([for host in module.ws_host : host.instance.vpc_security_group_ids == toset([aws_security_group.ws.id])])
    error_message = "Each host must be in its own role's security group."
  }
}

run "tls_at_the_load_balancer" {
  variables {
    domain_name     = "ws.example.com"
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-0123456789ab"
  }
  assert {
    condition = length(aws_lb_listener.traefik) == 1 && alltrue([for l in aws_lb_listener.traefik :
      l.port == 443 && l.protocol == "TLS" && l.certificate_arn == var.certificate_arn && l.ssl_policy == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    ])
    error_message = "With a certificate the NLB must listen on 443 only, terminating TLS with it."
  }
  assert {
    condition = keys(aws_lb_target_group.traefik) == ["https"] && alltrue([for tg in aws_lb_target_group.traefik :
      tg.port == 80 && tg.protocol == "TCP" && tg.proxy_protocol_v2 == true && tg.preserve_client_ip == "false"
    ])
    error_message = "Behind the TLS listener, Traefik's web entry point (80) must get proxy protocol v2 from the NLB's own addresses."
  }
  assert {
    condition     = alltrue([for host in module.ws_host : jsondecode(host.nixos_files["fleet.json"]).proxyProtocolTrustedIPs == ["10.40.0.0/24", "10.40.1.0/24"]])
    error_message = "Traefik must believe proxy protocol headers from the NLB's subnets only."
  }
  assert {
    condition     = output.service_url == "https://ws.example.com" && keys(output.target_group_arns) == ["https"]
    error_message = "With TLS, service_url must be https://<domain> and the rollout's target group the https one."
  }
  assert {
    condition     = [for rule in aws_vpc_security_group_ingress_rule.this : rule.from_port if rule.cidr_ipv4 == "0.0.0.0/0"] == [443]
    error_message = "With TLS, only 443 may be open to the internet (no plain listener)."
  }
  assert {
    condition     = length(aws_acm_certificate.service) == 0
    error_message = "A given certificate must not be requested again."
  }
}

run "direct_data_path_with_tls" {
  variables {
    data_path       = "direct"
    domain_name     = "ws.example.com"
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-0123456789ab"
  }
  assert {
    condition = keys(aws_lb_target_group.traefik) == ["https"] && alltrue([for tg in aws_lb_target_group.traefik :
      tg.port == 8000 && tg.protocol == "TCP" && tg.proxy_protocol_v2 == true && tg.preserve_client_ip == "false"
    ])
    error_message = "On the direct path behind the TLS listener, the colours' shared port (8000) must get proxy protocol v2 from the NLB."
  }
  assert {
    condition     = alltrue([for tg in aws_lb_target_group.traefik : tg.health_check[0].port == "traffic-port" && tg.health_check[0].path == "/ready" && tg.health_check[0].protocol == "HTTP"])
    error_message = "On the direct path the NLB must health-check /ready on the colours' shared port."
  }
  assert {
    condition     = alltrue([for a in aws_lb_target_group_attachment.ws : a.port == 8000])
    error_message = "Every host must be registered on the shared port."
  }
  assert {
    condition = alltrue([for host in module.ws_host : (
      jsondecode(host.nixos_files["fleet.json"]).dataPath == "direct" &&
      jsondecode(host.nixos_files["fleet.json"]).directPort == 8000 &&
      jsondecode(host.nixos_files["fleet.json"]).proxyProtocolTrustedIPs == ["10.40.0.0/24", "10.40.1.0/24"]
    )])
    error_message = "fleet.json must give the hosts the direct path, its port and the NLB's subnets (whose proxy protocol the server believes)."
  }
  assert {
    condition = (
      [for rule in aws_vpc_security_group_ingress_rule.this : rule.from_port if rule.referenced_security_group_id == aws_security_group.nlb.id] == [8000] &&
      [for rule in aws_vpc_security_group_egress_rule.nlb_to_ws : rule.from_port] == [8000]
    )
    error_message = "On the direct path the NLB may reach the hosts on the shared port only (no Traefik port, no separate health check port)."
  }
  assert {
    condition     = [for rule in aws_vpc_security_group_ingress_rule.this : rule.from_port if rule.cidr_ipv4 == "0.0.0.0/0"] == [443]
    error_message = "With TLS, only 443 may be open to the internet on the direct path too."
  }
}

run "rejects_an_unknown_data_path" {
  command = plan
  variables {
    data_path = "proxy"
  }
  expect_failures = [var.data_path]
}

run "tls_with_a_certificate_requested_here" {
  variables {
    route53_zone_id    = "Z0123456789ABCDEFGHIJ"
    domain_name        = "ws.example.com"
    create_certificate = true
  }
  assert {
    condition     = aws_acm_certificate.service[0].domain_name == "ws.example.com" && aws_acm_certificate.service[0].validation_method == "DNS"
    error_message = "create_certificate must request a DNS-validated certificate for domain_name."
  }
  assert {
    condition = length(aws_route53_record.certificate_validation) == 1 && alltrue([for r in aws_route53_record.certificate_validation :
      r.zone_id == "Z0123456789ABCDEFGHIJ" && r.name == "_0123.ws.example.com." && r.type == "CNAME" && r.records == toset(["_4567.acm-validations.aws."])
    ])
    error_message = "ACM's validation record must be written to the zone."
  }
  assert {
    condition     = alltrue([for l in aws_lb_listener.traefik : l.protocol == "TLS" && l.certificate_arn == aws_acm_certificate_validation.service[0].certificate_arn])
    error_message = "The TLS listener must use the requested certificate once it is validated."
  }
  assert {
    condition     = output.service_url == "https://ws.example.com"
    error_message = "service_url must say https:// with TLS."
  }
}

run "binary_cache_reaches_the_first_boot_and_the_hosts_configuration" {
  variables {
    binary_cache = { url = "https://cache.example.com", public_key = "cache.example.com-1:${base64encode("0123456789abcdef0123456789abcdef")}" }
  }
  assert {
    condition = alltrue([for host in concat(values(module.ws_host), [module.monitoring]) :
      jsondecode(host.nixos_files["fleet.json"]).binaryCache == { url = "https://cache.example.com", publicKey = var.binary_cache.public_key }
    ])
    error_message = "Every host's fleet.json must name the binary cache and its key."
  }
  assert {
    condition     = strcontains(module.ws_host["fleet-ws-01"].user_data, "<<'CACHE_OPTIONS'\n--option\nextra-substituters\nhttps://cache.example.com\n--option\nextra-trusted-public-keys\n${var.binary_cache.public_key}\nCACHE_OPTIONS\n") && strcontains(module.ws_host["fleet-ws-01"].user_data, "nixos-rebuild switch --flake /etc/nixos#fleet-host \"$${cache_options[@]}\"")
    error_message = "The first boot's build must use the binary cache."
  }
}

run "no_binary_cache_by_default" {
  assert {
    condition     = jsondecode(module.ws_host["fleet-ws-01"].nixos_files["fleet.json"]).binaryCache == null && strcontains(module.ws_host["fleet-ws-01"].user_data, "<<'CACHE_OPTIONS'\n\nCACHE_OPTIONS\n")
    error_message = "Without binary_cache the hosts use cache.nixos.org only."
  }
  assert {
    condition     = jsondecode(module.ws_host["fleet-ws-01"].nixos_files["fleet.json"]).proxyProtocolTrustedIPs == []
    error_message = "Without TLS, Traefik must take no proxy protocol header at all."
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
    condition     = output.service_url == "http://ws.example.com"
    error_message = "service_url must use the domain, with http:// when there is no certificate."
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

run "existing_vpc_with_tls_trusts_its_subnets" {
  variables {
    vpc_id          = "vpc-0a1b2c3d"
    subnet_ids      = ["subnet-0a", "subnet-0b"]
    domain_name     = "ws.example.com"
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-0123456789ab"
  }
  override_data {
    target = data.aws_subnet.given["subnet-0a"]
    values = { vpc_id = "vpc-0a1b2c3d", cidr_block = "172.31.0.0/20" }
  }
  override_data {
    target = data.aws_subnet.given["subnet-0b"]
    values = { vpc_id = "vpc-0a1b2c3d", cidr_block = "172.31.16.0/20" }
  }
  assert {
    condition     = jsondecode(module.ws_host["fleet-ws-01"].nixos_files["fleet.json"]).proxyProtocolTrustedIPs == ["172.31.0.0/20", "172.31.16.0/20"]
    error_message = "In an existing VPC, Traefik must believe proxy protocol from the given subnets (the NLB's) only."
  }
}

run "rejects_a_certificate_without_a_domain" {
  command = plan
  variables {
    certificate_arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-0123456789ab"
  }
  expect_failures = [var.certificate_arn]
}

run "rejects_a_certificate_request_without_a_zone" {
  command = plan
  variables {
    domain_name        = "ws.example.com"
    create_certificate = true
  }
  expect_failures = [var.create_certificate]
}

run "rejects_a_binary_cache_key_that_is_not_one" {
  command = plan
  variables {
    binary_cache = { url = "https://cache.example.com", public_key = "not-a-key" }
  }
  expect_failures = [var.binary_cache]
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
