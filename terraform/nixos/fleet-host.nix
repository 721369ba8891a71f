# The roles of a fleet host on AWS, imported by the flake that Terraform's ws-host module writes
# to /etc/nixos (templates/flake.nix.tftpl). It reads the host's settings (fleet.json, as
# `fleet`) and the package of each colour (`colourPackages`, pinned separately so that a
# rollout changes the idle colour only):
#
# - role "ws": services.concurrent-socket (blue and green behind Traefik) from nixos/module.nix;
#   an `nlb-health` Traefik entry point for the NLB's health check, and proxy protocol from the
#   NLB when it terminates TLS; the loopback metrics listeners (both colours', Traefik's
#   metrics-only entry point) exposed to the monitoring host on the private network; the
#   journal shipped to the monitoring host's Loki by Grafana Alloy; with the fleet's Redis
#   (fleet.json `redis`), both colours on it as their broker, its auth token fetched from
#   Secrets Manager at boot (redis-auth-token.service) and loaded as a credential. On the
#   direct data path (fleet.json dataPath "direct") the NLB reaches the colours' shared public
#   port instead, and the server reads the NLB's proxy protocol itself.
# - role "monitoring": Prometheus (finding the WebSocket hosts by EC2 tags), Grafana (on
#   loopback: an SSH tunnel reaches it) and Loki, configured with the same pure library as the
#   single-host module (nixos/lib/monitoring.nix).
# - both: the binary cache of fleet.json's `binaryCache` ({ url; publicKey; }, optional), so
#   that hosts download the builds instead of compiling the workspace.
#
# Every port comes from fleet.json, written from terraform/modules/ws-fleet/main.tf, the same
# place the security groups take them from.
{ config, lib, pkgs, fleet, colourPackages, ... }:
let
  inherit (lib) mapAttrs' mkBefore mkIf mkMerge nameValuePair;

  fleetLib = import ./fleet-lib.nix { };
  monitoringLib = import ../../nixos/lib/monitoring.nix { };
  json = pkgs.formats.json { };
  isWs = fleet.role == "ws";

  relays = lib.optionalAttrs isWs (fleetLib.relays fleet.metricsPorts);
  healthPort = fleet.healthCheckPort;
  traefikDir = "/var/lib/concurrent-socket/traefik";
  serverSettings = fleetLib.typedSettings (fleet.serverSettings or { });
  direct = (fleet.dataPath or "traefik") == "direct";

  grafanaAdminPassword = "/var/lib/grafana/admin-password";
  binaryCache = fleet.binaryCache or null;
  redis = fleet.redis or null;
  redisTokenService = "${fleetLib.redisTokenUnit}.service";
in
{
  config = mkMerge [
    {
      # The first boot ran the bootstrap; from now on new systems arrive from the rollout.
      virtualisation.amazon-init.enable = false;
      # With the fleet's binary cache for every later build on the host (the first boot passes
      # it to nixos-rebuild itself: templates/bootstrap.sh.tftpl).
      nix.settings = { experimental-features = [ "nix-command" "flakes" ]; }
        // fleetLib.nixSettings binaryCache;
      services.openssh = {
        enable = true;
        settings = {
          PasswordAuthentication = false;
          KbdInteractiveAuthentication = false;
          PermitRootLogin = "prohibit-password";
        };
      };
      users.users.root.openssh.authorizedKeys.keys = fleet.sshAuthorizedKeys;
      services.prometheus.exporters.node = {
        enable = true;
        port = fleet.metricsPorts.node;
        openFirewall = isWs;
      };
      system.stateVersion = fleet.stateVersion;
    }

    (mkIf isWs {
      services.concurrent-socket = {
        enable = true;
        openFirewall = true;
        dataPath = fleet.dataPath or "traefik";
        direct.port = mkIf direct fleet.directPort;
        direct.proxyProtocolFrom = mkIf direct fleet.proxyProtocolTrustedIPs;
        # TRUSTED_PROXIES: the module's default (127.0.0.1, this host's Traefik) unless
        # fleet.json's serverSettings name it.
        instances.blue = { package = colourPackages.blue; settings = serverSettings; };
        instances.green = { package = colourPackages.green; settings = serverSettings; };
        # Every host's colours on the fleet's Redis: one chat across hosts (docs/redis.md).
        broker = fleetLib.broker redis;
        # No ACME on the hosts: TLS, when there is TLS, ends at the NLB (terraform/modules/ws-fleet/tls.tf).
        traefik = {
          inherit (fleet) domain;
          # The module owns Traefik's static configuration: extra entry points go here.
          staticSettings.entryPoints = fleetLib.entryPoints {
            healthAddress = ":${toString healthPort}";
            inherit (fleet) proxyProtocolTrustedIPs;
          };
        };
        # The health check, the relays and the node exporter listen here too: keep their
        # ports out of the ephemeral range like the module's own.
        tuning.extraReservedPorts = [ healthPort fleet.metricsPorts.node ] ++ lib.mapAttrsToList (_: relay: relay.port) relays;
        # The fleet's monitoring stack runs on the monitoring host; Alloy ships this host's
        # journal to its Loki.
        prometheus.enable = false;
        grafana.enable = false;
        loki.enable = false;
        alloy = {
          enable = true;
          lokiUrl = "http://${fleet.monitoringAddress}:${toString monitoringLib.ports.loki}";
        };
      };

      systemd.tmpfiles.settings."30-fleet-host"."${traefikDir}/nlb-health.yml"."L+".argument =
        "${json.generate "nlb-health.yml" fleetLib.healthRouting}";

      # systemd-socket-proxyd relays each loopback metrics listener to the private network,
      # where the security group admits the monitoring host only.
      systemd.sockets = mapAttrs'
        (name: relay: nameValuePair "metrics-relay-${name}" {
          wantedBy = [ "sockets.target" ];
          listenStreams = [ (toString relay.port) ];
        })
        relays;
      systemd.services = mapAttrs'
        (name: relay: nameValuePair "metrics-relay-${name}" {
          requires = [ "metrics-relay-${name}.socket" ];
          after = [ "metrics-relay-${name}.socket" ];
          serviceConfig = {
            ExecStart = "${config.systemd.package}/lib/systemd/systemd-socket-proxyd --exit-idle-time=5min 127.0.0.1:${toString relay.target}";
            DynamicUser = true;
            PrivateTmp = true;
            ProtectSystem = "strict";
          };
        })
        relays;

      networking.firewall.allowedTCPPorts = [ healthPort ] ++ lib.mapAttrsToList (_: relay: relay.port) relays;
    })

    (mkIf (isWs && redis != null) {
      systemd.services = {
        ${fleetLib.redisTokenUnit} = {
          description = "Fetch the fleet Redis's auth token from Secrets Manager";
          wantedBy = [ "multi-user.target" ];
          wants = [ "network-online.target" ];
          after = [ "network-online.target" ];
          path = [ pkgs.awscli2 ];
          environment = {
            SECRET_ARN = redis.authTokenSecretArn;
            AWS_REGION = redis.region;
          };
          script = builtins.readFile ./redis-auth-token.sh;
          serviceConfig = {
            Type = "oneshot";
            RemainAfterExit = true;
            # /run/redis-auth-token, root only, kept while the unit is active.
            RuntimeDirectory = fleetLib.redisTokenUnit;
            RuntimeDirectoryMode = "0700";
          };
        };
      }
      # The colours load the token at start (LoadCredential=): after it is fetched.
      // lib.genAttrs [ "ws@blue" "ws@green" ] (_: {
        wants = [ redisTokenService ];
        after = [ redisTokenService ];
      });
    })

    (mkIf (!isWs) {
      services.prometheus = {
        enable = true;
        listenAddress = "127.0.0.1";
        port = monitoringLib.ports.prometheus;
        retentionTime = "30d";
        ruleFiles = monitoringLib.ruleFiles ../../alerts;
        globalConfig = {
          scrape_interval = "15s";
          evaluation_interval = "15s";
        };
        scrapeConfigs = fleetLib.scrapeConfigs { inherit (fleet) region discoveryTags metricsPorts; };
      };

      services.loki = {
        enable = true;
        # Pushed to by the WebSocket hosts' Alloy: listen on the private network (the
        # security group admits the WebSocket hosts only).
        configuration = lib.recursiveUpdate
          (monitoringLib.lokiConfig { inherit (config.services.loki) dataDir; })
          { server.http_listen_address = "0.0.0.0"; };
      };

      services.grafana = {
        enable = true;
        settings = {
          # Loopback only: no plain-HTTP admin login over the internet. Operators reach it
          # through SSH (`ssh -L 3000:127.0.0.1:3000 root@<monitoring>`).
          server = {
            http_addr = "127.0.0.1";
            http_port = fleet.grafanaPort;
            domain = if fleet.grafanaDomain == null then "localhost" else fleet.grafanaDomain;
          };
          security = {
            secret_key = "$__file{/var/lib/grafana/secret_key}";
            admin_password = "$__file{${grafanaAdminPassword}}";
          };
        };
        provision = {
          enable = true;
          datasources.settings.datasources = monitoringLib.grafanaDatasources { };
          dashboards.settings.providers = monitoringLib.grafanaDashboardProviders
            "${config.services.concurrent-socket.package}/share/concurrent-socket/grafana/dashboards";
        };
      };
      # Grafana's secret key and admin password, made once on the host (read the password with
      # `ssh root@<monitoring> cat /var/lib/grafana/admin-password`).
      systemd.services.grafana.preStart = mkBefore (monitoringLib.grafanaSecretsScript [
        "/var/lib/grafana/secret_key"
        grafanaAdminPassword
      ]);
      networking.firewall.allowedTCPPorts = [ monitoringLib.ports.loki ];
    })
  ];
}
