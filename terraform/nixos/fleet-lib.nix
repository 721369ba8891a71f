# The pure logic of the fleet hosts' roles (builtins only, no nixpkgs): the NLB health-check
# routing, Traefik's entry points behind the NLB (proxy protocol with TLS), the metrics relays,
# the server settings as the module types them, the binary cache, the fleet's Redis as the
# colours' broker, and the monitoring host's
# Prometheus scrape configuration. fleet-host.nix maps it onto NixOS options;
# terraform/nixos/tests/fleet-lib.nix asserts it; ci/suites/70-terraform.sh also loads the
# routing into a real Traefik and the scrape configuration into promtool.
{}:
let
  inherit (builtins) attrNames elem filter fromJSON isString map match split;

  instancesLib = import ../../nixos/lib/instances.nix { };
  traefikLib = import ../../nixos/lib/traefik.nix { };
  monitoringLib = import ../../nixos/lib/monitoring.nix { };

  # Loopback listeners of a WebSocket host that the monitoring host scrapes
  # (docs/architecture.md): both colours' metrics and Traefik's metrics-only entry point
  # (services.concurrent-socket.traefik.metricsPort; not its API, which stays on loopback).
  loopbackMetrics = {
    blue = instancesLib.defaultInstances.blue.metricsPort;
    green = instancesLib.defaultInstances.green.metricsPort;
    traefik = 8084;
  };

  colours = [ "blue" "green" ];
in
rec {
  healthEntryPoint = "nlb-health";

  # The only router of the `nlb-health` entry point: /ready of whichever colour the active
  # service (routing.yml, rewritten by wsctl) sends clients to. No Host rule and no TLS: the
  # NLB's health checks send neither.
  healthRouting = {
    http.routers.${healthEntryPoint} = {
      entryPoints = [ healthEntryPoint ];
      rule = "Path(`/ready`)";
      service = traefikLib.activeServiceName;
    };
  };

  # What a WebSocket host adds to Traefik's static entry points: `nlb-health` on the health
  # port and, when the NLB terminates TLS (proxy protocol v2 to the targets), proxy protocol on
  # `web` (the traffic) and `nlb-health` (the NLB sends the header with health checks too),
  # believed only from `proxyProtocolTrustedIPs`, the NLB's subnets: a header from any other
  # peer is ignored and the peer's own address counts. [ ] (no TLS): no proxy protocol, the
  # NLB preserves the client's address instead.
  entryPoints = { healthAddress, proxyProtocolTrustedIPs }:
    let
      proxyProtocol =
        if proxyProtocolTrustedIPs == [ ] then { }
        else { proxyProtocol.trustedIPs = proxyProtocolTrustedIPs; };
    in
    {
      ${healthEntryPoint} = { address = healthAddress; } // proxyProtocol;
      web = proxyProtocol;
    };

  # nix.settings for a binary cache (fleet.json binaryCache: { url; publicKey; } or null):
  # tried before cache.nixos.org, whose entries NixOS keeps.
  nixSettings = binaryCache:
    if binaryCache == null then { }
    else { substituters = [ binaryCache.url ]; trusted-public-keys = [ binaryCache.publicKey ]; };

  # The fleet's Redis (fleet.json `redis`, from terraform/modules/ws-fleet/redis.tf:
  # { url; authTokenSecretArn; region; }, or null without one). The auth token is not in
  # fleet.json (EC2 user data is readable on the host and in the console): redis-auth-token.service
  # reads it from Secrets Manager into `redisTokenFile` at boot, and both colours load that file
  # as their Redis password.
  redisTokenUnit = "redis-auth-token";
  redisTokenFile = "/run/${redisTokenUnit}/token";
  broker = redis:
    if redis == null then { }
    else {
      type = "redis";
      redis = {
        local = false;
        inherit (redis) url;
        passwordFile = redisTokenFile;
      };
    };

  # systemd-socket-proxyd relays: private port (from Terraform) -> loopback listener.
  relays = metricsPorts:
    builtins.mapAttrs (name: target: { port = metricsPorts.${name}; inherit target; }) loopbackMetrics;

  # Terraform hands server settings over as strings; the module's options are typed.
  listSettings = [ "ALLOWED_ORIGINS" "TRUSTED_PROXIES" ];
  # Typed `str` by the module even when they look like a number or a boolean.
  stringSettings = [ "LOG_LEVEL" "SERVER_ID" ];
  typedSetting = name: value:
    if elem name listSettings then filter (s: isString s && s != "") (split "," value)
    else if elem name stringSettings then value
    else if match "[0-9]+" value != null then fromJSON value
    else if value == "true" || value == "false" then value == "true"
    else value;
  typedSettings = settings: builtins.mapAttrs typedSetting settings;

  # Prometheus on the monitoring host: the WebSocket hosts found by their EC2 tags, scraped on
  # their private address. Jobs and labels as on a single host (docs/architecture.md):
  # `concurrent-socket` with `colour`, `traefik`; plus `node`. `instance` is the Name tag.
  scrapeConfigs = { region, discoveryTags, metricsPorts }:
    let
      ec2 = port: {
        inherit region port;
        filters =
          map (name: { name = "tag:${name}"; values = [ discoveryTags.${name} ]; }) (attrNames discoveryTags)
          ++ [{ name = "instance-state-name"; values = [ "running" ]; }];
      };
      hostLabels = [
        { source_labels = [ "__meta_ec2_tag_Name" ]; target_label = "instance"; }
        { source_labels = [ "__meta_ec2_availability_zone" ]; target_label = "availability_zone"; }
      ];
      colourLabel = colour: {
        source_labels = [ "__address__" ];
        regex = ".*:${toString metricsPorts.${colour}}";
        target_label = "colour";
        replacement = colour;
      };
      job = name: ports: relabel: {
        job_name = name;
        ec2_sd_configs = map ec2 ports;
        relabel_configs = hostLabels ++ relabel;
      };
    in
    [
      ((job "concurrent-socket" (map (c: metricsPorts.${c}) colours) (map colourLabel colours))
        // { scrape_interval = monitoringLib.serverScrapeInterval; })
      (job "traefik" [ metricsPorts.traefik ] [ ])
      (job "node" [ metricsPorts.node ] [ ])
    ];
}
