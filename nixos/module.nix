# NixOS module `services.concurrent-socket`: blue and green instances of the server
# (socket-activated template units from the package, per-instance ports and settings layered
# on as drop-ins), Traefik in front with the WebSocket routing in a mutable directory so a
# blue/green switch never restarts it, host tuning for many connections, and the
# monitoring stack (Prometheus, Grafana, Loki fed by Grafana Alloy).
#
# The logic that needs no nixpkgs (ports, unit settings, Traefik files) lives in ./lib and
# is tested by nixos/tests/lib.nix; this file maps it onto NixOS options, and
# nixos/tests/eval/ evaluates it with nixpkgs' module system against the options it sets.
#
# Traefik: the module writes Traefik's whole static configuration itself (the file provider
# watching its directory included) and hands nixpkgs' Traefik module only that file, under
# the name the evaluated nixpkgs declares: `staticConfigFile` (the module as NixOS has long
# had it) or `static.file` (the refactored module). Options of other modules are set with
# mkDefault where a user may want another value.
{ config, options, lib, pkgs, ... }:
let
  inherit (lib)
    concatLists
    concatMapAttrs
    filterAttrs
    literalExpression
    mapAttrs
    mapAttrs'
    mapAttrsToList
    mkEnableOption
    mkDefault
    mkIf
    mkMerge
    mkOption
    nameValuePair
    optional
    optionalAttrs
    optionals
    types
    ;

  cfg = config.services.concurrent-socket;
  instancesLib = import ./lib/instances.nix { };
  traefikLib = import ./lib/traefik.nix { };
  monitoringLib = import ./lib/monitoring.nix { };
  hostLib = import ./lib/host.nix { };
  redisLib = import ./lib/redis.nix { };
  directLib = import ./lib/direct.nix { };
  direct = cfg.dataPath == "direct";
  json = pkgs.formats.json { };

  stateDir = "/var/lib/concurrent-socket";
  traefikDir = "${stateDir}/traefik";
  lokiUrl = "http://127.0.0.1:${toString monitoringLib.ports.loki}";

  # The token key every instance gets as a credential: which variable names it, and the
  # host file it is loaded from; null without tokens.
  authKey =
    if cfg.auth.jwtSecretFile != null then { variable = "AUTH_JWT_SECRET_FILE"; file = cfg.auth.jwtSecretFile; }
    else if cfg.auth.jwtPublicKeyFile != null then { variable = "AUTH_JWT_PUBLIC_KEY_FILE"; file = cfg.auth.jwtPublicKeyFile; }
    else null;

  # The channels' broker (docs/redis.md): a Redis on this host or an external one.
  broker = cfg.broker.redis;
  redisBroker = cfg.broker.type == "redis";
  localRedis = redisBroker && broker.local;
  brokerUrl = redisLib.url { inherit (broker) local port url; };

  # The instances as the pure library takes them: unset (null) settings dropped.
  instances = mapAttrs
    (_: inst: {
      inherit (inst) port metricsPort;
      settings = filterAttrs (n: v: n != "_module" && v != null) inst.settings;
    })
    cfg.instances;

  acme = cfg.traefik.acme.email != null;
  # Probes from the host itself (wsctl) use a plain loopback entry point: the public routers
  # may want TLS (ACME) or a host name.
  loopbackAddress = "127.0.0.1:${toString cfg.traefik.loopbackPort}";
  # The origin of the public page behind Traefik (a default port is not written).
  publicOrigin =
    let
      port = if acme then cfg.traefik.httpsPort else cfg.traefik.httpPort;
      defaultPort = if acme then 443 else 80;
    in
    "${if acme then "https" else "http"}://${cfg.traefik.domain}"
    + lib.optionalString (port != defaultPort) ":${toString port}";

  baseFile = json.generate "base.yml" (traefikLib.base {
    inherit instances;
    inherit (cfg.traefik) rateLimits clientIpDepth;
    host = cfg.traefik.domain;
    entryPoints = [ (if acme then "websecure" else "web") ];
    certResolver = if acme then traefikLib.certResolverName else null;
    loopbackEntryPoint = "loopback";
    # On the direct path upgrades reach the colours without Traefik.
    websocketRoute = !direct;
  });
  seedRoutingFile = json.generate "routing.yml" (traefikLib.seedRouting cfg.activeColour);
  staticFile = json.generate "traefik.yml" cfg.traefik.staticSettings;

  # nixpkgs' Traefik module in the shape this nixpkgs has. Its refactor (static.settings,
  # static.file, dynamic.dir) was merged and reverted in 2026 and may land again, possibly
  # under other names; with renames for the old names, so `static` is looked at first.
  traefikShape =
    let declared = options.services.traefik; in
    if declared ? static.file then { static.file = staticFile; }
    else if declared ? staticConfigFile then { staticConfigFile = staticFile; }
    else throw "services.concurrent-socket: this nixpkgs' services.traefik declares neither staticConfigFile nor static.file (it has: ${lib.concatStringsSep ", " (lib.attrNames declared)})";

  # Every port the host's own sockets bind, kept out of the kernel's ephemeral range so that
  # no outgoing connection (Traefik's to a colour, for one) holds it when a socket unit binds
  # it again (`wsctl` restarting a drained colour, a rollback).
  listenPorts = hostPorts ++ optionals direct [ cfg.direct.port ];
  hostPorts =
    concatLists (mapAttrsToList (_: inst: [ inst.port inst.metricsPort ]) instances)
    ++ optionals cfg.traefik.enable (with cfg.traefik; [ httpPort httpsPort apiPort loopbackPort metricsPort ])
    ++ optionals cfg.prometheus.enable [ config.services.prometheus.port ]
    ++ optionals cfg.prometheus.alertmanager.enable [ config.services.prometheus.alertmanager.port ]
    ++ optionals cfg.grafana.enable [ config.services.grafana.settings.server.http_port ]
    ++ optionals cfg.loki.enable [ monitoringLib.ports.loki monitoringLib.ports.lokiGrpc ]
    ++ optionals localRedis [ broker.port ]
    ++ cfg.tuning.extraReservedPorts;
  # Ports below the ephemeral range's floor can never be handed out anyway.
  reservedPorts = lib.filter (port: port >= 1024) listenPorts;

  # The package each instance is deployed with: its own, or the module's.
  instancePackage = name: if cfg.instances.${name}.package != null then cfg.instances.${name}.package else cfg.package;
  # The colours that `nixos-rebuild switch` upgrades in place (instances.<name>.upgrade).
  byHandover = name: cfg.instances.${name}.upgrade == "handover";

  # wsctl's view of the host (wsctl/src/config.rs): the same ports, URLs and directories,
  # and the package `wsctl deploy` pins each colour's profile to.
  wsctlConfig = json.generate "wsctl.json" {
    instances = mapAttrs (_: inst: { inherit (inst) port metricsPort; }) instances;
    packages = mapAttrs (name: _: "${instancePackage name}") instances;
    inherit (cfg) dataPath;
    publicUrl = if direct then directLib.probeUrl { inherit (cfg.direct) address port; } else "ws://${loopbackAddress}";
    traefikApi = "http://127.0.0.1:${toString cfg.traefik.apiPort}";
    inherit stateDir traefikDir;
    loadtest = "${cfg.loadtestPackage}/bin/loadtest";
  };

  # Settings the server reads, typed; any other variable is accepted as is (freeform).
  setting = type: description: mkOption {
    type = types.nullOr type;
    default = null;
    inherit description;
  };
  settingsModule = {
    freeformType = with types; attrsOf (oneOf [ str int bool (listOf str) ]);
    options = {
      MAX_CONNECTIONS = setting types.ints.positive "Open WebSockets at most; above it, 503 with Retry-After (server default 10000).";
      MAX_CONNECTIONS_PER_IP = setting types.ints.unsigned "Open WebSockets per client IP, 0 = no limit (server default 1000).";
      HEARTBEAT_INTERVAL = setting types.ints.positive "Milliseconds between heartbeats and pings; a peer silent for two intervals is dead (server default 30000).";
      CONNECTION_TIMEOUT = setting types.ints.positive "Milliseconds without a client message before `goodbye idle_timeout` (server default 300000).";
      SHUTDOWN_TIMEOUT = setting (types.ints.between 1000 3600000) "Milliseconds (1000 to 3600000, as the server accepts) from SIGTERM to exit, over which goodbyes are spread (server default 10000). The instance's TimeoutStopSec follows it (10 s more), so systemd never kills a drain.";
      LOG_LEVEL = setting types.str "tracing filter: `info`, `debug` or a full EnvFilter directive (server default info).";
      MAX_MESSAGE_BYTES = setting types.ints.positive "Largest accepted client message in bytes (server default 65536).";
      RATE_LIMIT_MSGS_PER_SEC = setting types.ints.unsigned "Messages per second per connection, 0 = off (server default 100).";
      ALLOWED_ORIGINS = setting (types.listOf types.str) "Origins allowed to upgrade besides PUBLIC_ORIGIN; empty = the request's own origin only for localhost and IP-literal hosts; `[ \"*\" ]` = any.";
      PUBLIC_ORIGIN = setting types.str "`scheme://host[:port]` the public page is served from, allowed to upgrade. With traefik.domain set the default is that domain's origin (https with ACME).";
      TRUSTED_PROXIES = setting (types.listOf types.str) "IPs or CIDRs whose X-Forwarded-For is believed. With traefik.enable the default is [ \"127.0.0.1\" ], Traefik on this host, so that MAX_CONNECTIONS_PER_IP counts each client and not Traefik; otherwise none.";
      ENABLE_ECHO = setting types.bool "Serve /ws/echo (server default false).";
      HSTS_MAX_AGE = setting types.ints.unsigned "Strict-Transport-Security max-age sent by the server, 0 = none (Traefik already sets it when ACME is on).";
      HTTP_IDLE_TIMEOUT = setting types.ints.positive "Milliseconds an HTTP connection may wait for request headers, idle keep-alive included, before it is closed (server default 100000, above Traefik's 90 s pool timeout).";
      OUTBOUND_QUEUE_BYTES = setting types.ints.positive "Bytes of answers queued for a client that does not read before `goodbye slow_consumer` (server default 1048576).";
      AUTH_TIMEOUT = setting types.ints.positive "Milliseconds an upgrade without an Authorization token has to send its first frame `authenticate` (server default 5000; only with services.concurrent-socket.auth).";
      SERVER_ID = setting types.str "`serverId` and the `server_id` label (the unit's default is the colour).";
    } // brokerSettingOptions;
  };

  # The broker's variables (docs/configuration.md). services.concurrent-socket.broker sets
  # BROKER and REDIS_URL for every colour; set them here only for one colour of its own.
  brokerSettingOptions = {
    BROKER = setting (types.enum [ "memory" "redis" ]) "Channels broker: `memory` (each process on its own) or `redis` (every process on one Redis is one chat). Default from services.concurrent-socket.broker.type.";
    REDIS_URL = setting (types.strMatching "rediss?://.+") "`redis://` or `rediss://` (TLS) URL of the broker's Redis. Default from services.concurrent-socket.broker.redis. Keep the password out of it (broker.redis.passwordFile): this file is in the Nix store.";
    REDIS_KEY_PREFIX = setting (types.strMatching "[A-Za-z0-9_.:-]{1,64}") "Prefix of every Redis key and pub/sub topic, 1 to 64 of A-Z a-z 0-9 _ - . : (server default `cs`): deployments sharing one Redis need distinct prefixes.";
    REDIS_TIMEOUT = setting (types.ints.between 10 600000) "Milliseconds (10 to 600000) one Redis command may take before the request fails with broker_unavailable (server default 2000).";
    REDIS_POSITION_CHECK_INTERVAL = setting (types.ints.between 100 3600000) "Milliseconds (100 to 3600000) between the checks of each channel's position in Redis, which catch publications pub/sub dropped (server default 5000).";
  };

  instanceModule = { name, ... }:
    let
      defaults = instancesLib.defaultInstances.${name} or null;
      portOption = what: description: mkOption ({
        type = types.port;
        inherit description;
      } // optionalAttrs (defaults != null) { default = defaults.${what}; });
    in
    {
      options = {
        port = portOption "port" "Loopback TCP port of the public listener (ws@${name}.socket), where Traefik forwards.";
        metricsPort = portOption "metricsPort" "Loopback TCP port of the Prometheus listener (ws-metrics@${name}.socket).";
        package = mkOption {
          type = types.nullOr types.package;
          default = null;
          description = "Server package for this instance only (for example a candidate build on green); null = services.concurrent-socket.package. `wsctl deploy` pins the instance's profile to it; a rebuild alone never changes what a colour runs, unless `upgrade` is `handover`.";
        };
        upgrade = mkOption {
          type = types.enum instancesLib.upgradePaths;
          default = "wsctl";
          example = "handover";
          description = ''
            How a new `package` or new `settings` reach this colour while it runs.

            `wsctl` (the default, blue/green): `nixos-rebuild switch` never touches the running
            colour; `wsctl deploy` points its profile at the package, starts it, checks it and
            moves new connections to it (docs/deploy.md).

            `handover` (in place, docs/handover.md): every activation points the colour's profile
            at its package, and the colour's unit names the package and the settings
            (`restartTriggers`) with `reloadIfChanged`, so a switch that changes either reloads
            the running colour instead of restarting it: the new build's `check-config`, then
            the handover, and every WebSocket stays open on the new process. If the check fails
            the reload fails, the switch reports it, and the old process serves on (the profile
            already names the new build: roll back with `nixos-rebuild switch --rollback`).
            The running build must support the handover (SIGUSR2); listen ports (the socket
            units) change only when the sockets are restarted. `wsctl deploy` and `rollback` still
            work on such a colour, but the next activation points its profile at the configured
            package again.
          '';
        };
        settings = mkOption {
          type = types.submodule [
            settingsModule
            # Behind the module's Traefik every client connects from 127.0.0.1: believe its
            # X-Forwarded-For (which Traefik sets to the real peer) unless told otherwise.
            { TRUSTED_PROXIES = mkIf cfg.traefik.enable (mkDefault [ "127.0.0.1" ]); }
            # Browsers load the page from the public name: its origin may upgrade.
            { PUBLIC_ORIGIN = mkIf (cfg.traefik.enable && cfg.traefik.domain != null) (mkDefault publicOrigin); }
            # Every colour on the same broker, so blue and green are one chat during a switch.
            { config = mkIf redisBroker (mapAttrs (_: mkDefault) (redisLib.settings brokerUrl)); }
            # The direct path: the server limits upgrades and reads PROXY protocol itself.
            { config = mkIf direct (mapAttrs (_: mkDefault) (directLib.serverSettings { inherit (cfg.direct) upgradeRateLimit proxyProtocolFrom; })); }
          ];
          default = { };
          example = literalExpression ''{ MAX_CONNECTIONS = 50000; ALLOWED_ORIGINS = [ "https://app.example.com" ]; }'';
          description = ''
            Environment of the server (docs/architecture.md, "Server configuration"), written to
            /etc/concurrent-socket/${name}.env. Lists are joined with commas, booleans written
            `true`/`false`. PORT, HOST and METRICS_ADDR are owned by the socket units.
          '';
        };
      };
    };

  # An optional string setting: null until set.
  nullableString = example: description: mkOption {
    type = types.nullOr types.str;
    default = null;
    inherit example description;
  };

  rateLimitOption = default: what: mkOption {
    type = types.submodule {
      options = {
        average = mkOption {
          type = types.ints.positive;
          default = default.average;
          description = "Sustained requests per second per client for ${what}.";
        };
        burst = mkOption {
          type = types.ints.positive;
          default = default.burst;
          description = "Requests per client let through at once above the average for ${what}.";
        };
      };
    };
    default = { };
    description = "Traefik rate limit for ${what}, per client IP.";
  };
in
{
  options.services.concurrent-socket = {
    enable = mkEnableOption "concurrent-socket, a blue/green WebSocket server behind Traefik";

    package = mkOption {
      type = types.package;
      defaultText = literalExpression "concurrent-socket.packages.\${system}.default";
      description = "The server package: binary, systemd units (lib/systemd/system), dashboards and alert rules.";
    };

    wsctlPackage = mkOption {
      type = types.package;
      defaultText = literalExpression "concurrent-socket.packages.\${system}.wsctl";
      description = "The `wsctl` deploy command (installed system-wide).";
    };

    loadtestPackage = mkOption {
      type = types.package;
      defaultText = literalExpression "concurrent-socket.packages.\${system}.loadtest";
      description = "The load generator: installed system-wide, and run by `wsctl deploy` against the new colour before it gets traffic.";
    };

    instances = mkOption {
      type = types.attrsOf (types.submodule instanceModule);
      default = { };
      example = literalExpression ''{ green.package = candidate; blue.settings.MAX_CONNECTIONS = 50000; }'';
      description = ''
        Server instances, each a ws@NAME.service with its own sockets. `blue` (3001, metrics
        9464) and `green` (3002, metrics 9465) always exist; other names need both ports.
        To run a single colour, override the whole set with `lib.mkForce`.
      '';
    };

    auth = {
      jwtSecretFile = nullableString "/run/keys/ws-jwt-secret" ''
        File on the host (never in the Nix store) holding the HS256 secret that verifies
        tokens: turns token authentication on for every instance. systemd hands it over with
        LoadCredential= (the server reads it as AUTH_JWT_SECRET_FILE from its credentials
        directory), so it may stay readable by root only.
      '';
      jwtPublicKeyFile = nullableString "/etc/concurrent-socket/jwt-public.pem" ''
        File on the host holding the RS256 or ES256 public key (PEM) that verifies tokens,
        passed like jwtSecretFile (as AUTH_JWT_PUBLIC_KEY_FILE). Set one of the two.
      '';
    };

    dataPath = mkOption {
      type = types.enum directLib.dataPaths;
      default = "traefik";
      description = ''
        How WebSockets reach the colours. `traefik`: through Traefik, which routes new
        connections to the active colour (routing.yml). `direct`: straight to the colours'
        servers on direct.address:direct.port, which every running colour binds with
        SO_REUSEPORT (ws-public@COLOUR.socket); a deploy flips colours in the kernel
        (net.ipv4.tcp_migrate_req=1 moves a closing listener's queue to the new colour), and
        Traefik keeps the HTTP routes (and TLS where it terminates it) but no longer carries
        /ws/. docs/deploy.md, "The direct data path".
      '';
    };

    direct = {
      address = mkOption {
        type = types.str;
        default = "0.0.0.0";
        example = "10.0.1.15";
        description = "Address of the direct path's public listener (dataPath = \"direct\").";
      };
      port = mkOption {
        type = types.port;
        default = 8000;
        description = "TCP port of the direct path's public listener, shared by the colours (SO_REUSEPORT).";
      };
      upgradeRateLimit = {
        average = mkOption {
          type = types.ints.positive;
          default = directLib.defaultUpgradeRateLimit.average;
          description = "WebSocket upgrades per second per client IP the server lets through on the direct path (Traefik's ws-ratelimit on the Traefik path).";
        };
        burst = mkOption {
          type = types.ints.positive;
          default = directLib.defaultUpgradeRateLimit.burst;
          description = "Upgrades per client let through at once above the average.";
        };
      };
      proxyProtocolFrom = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "10.0.0.0/24" "10.0.1.0/24" ];
        description = ''
          IPs or CIDRs of the L4 load balancer in front of the direct path that sends a PROXY
          protocol v2 header (the fleet's NLB subnets): the server takes the client address
          from it on connections from these peers only. Empty: no PROXY protocol.
        '';
      };
    };

    activeColour = mkOption {
      type = types.str;
      default = "blue";
      description = ''
        The colour Traefik routes to on a fresh host. It seeds
        ${traefikDir}/routing.yml and ${stateDir}/active only when they do not exist:
        after that, `wsctl deploy` owns them and rebuilds never change the live routing.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open Traefik's HTTP and HTTPS ports. The instances listen on loopback only.";
    };

    tuning = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Apply the kernel settings below for many concurrent connections.";
      };
      somaxconn = mkOption {
        type = types.ints.positive;
        default = 65535;
        description = "net.core.somaxconn: cap of every listen backlog (the socket units ask for 65535), i.e. connections queued while an instance restarts.";
      };
      synBacklog = mkOption {
        type = types.ints.positive;
        default = 65535;
        description = "net.ipv4.tcp_max_syn_backlog: half-open connections kept during a reconnect storm.";
      };
      localPortRange = mkOption {
        type = types.str;
        default = "1024 65535";
        description = "net.ipv4.ip_local_port_range: ephemeral ports for Traefik's connections to the instances (one per proxied WebSocket). The ports the host listens on are reserved out of it (net.ipv4.ip_local_reserved_ports).";
      };
      extraReservedPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
        example = [ 8083 9100 ];
        description = "Ports other services of the host listen on, reserved with the module's own (instances, Traefik, Prometheus, Alertmanager, Grafana, Loki) in net.ipv4.ip_local_reserved_ports, so that no outgoing connection takes one while its socket is closed.";
      };
      limitNOFILE = mkOption {
        type = types.ints.positive;
        default = 1048576;
        description = "LimitNOFILE of every ws@ instance: the per-process ceiling on connections.";
      };
    };

    traefik = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run Traefik in front of the instances. Blue/green switching (`wsctl`) needs it.";
      };
      httpPort = mkOption {
        type = types.port;
        default = 80;
        description = "Port of the `web` entry point (redirects to HTTPS when ACME is on).";
      };
      httpsPort = mkOption {
        type = types.port;
        default = 443;
        description = "Port of the `websecure` entry point.";
      };
      apiPort = mkOption {
        type = types.port;
        default = 8082;
        description = "Loopback port of Traefik's API, ping and Prometheus metrics.";
      };
      loopbackPort = mkOption {
        type = types.port;
        default = 8081;
        description = "Loopback port of the plain-HTTP entry point `loopback`, with twins of both routers that need no host name or TLS: `wsctl` checks the host through it.";
      };
      metricsPort = mkOption {
        type = types.port;
        default = 8084;
        description = "Loopback port of the entry point `metrics`, which serves Traefik's Prometheus metrics and nothing else (no API): what Prometheus scrapes, and what a fleet host relays to its monitoring host.";
      };
      staticSettings = mkOption {
        type = json.type;
        default = { };
        example = literalExpression ''{ entryPoints.nlb-health.address = ":8083"; }'';
        description = ''
          Traefik's static configuration, written to a file that the module hands to nixpkgs'
          Traefik module (`staticConfigFile`, or `static.file` in its refactored shape). The
          module defines it from nixos/lib/traefik.nix (entry points, API, metrics, ACME, the
          file provider watching ${traefikDir}); definitions of yours merge into it, for
          example an extra entry point. nixpkgs' own `services.traefik.staticConfigOptions` /
          `static.settings` are not used.
        '';
      };
      domain = nullableString "ws.example.com"
        "Public host name the routers answer for; null = any host. Required with ACME.";
      acme = {
        email = nullableString "ops@example.com"
          "Let's Encrypt account e-mail. Setting it turns on HTTPS with certificates for `domain` (HTTP-01 challenge) and redirects HTTP to HTTPS.";
        caServer = nullableString "https://acme-staging-v02.api.letsencrypt.org/directory"
          "ACME directory; null = Let's Encrypt production.";
      };
      rateLimits = {
        api = rateLimitOption traefikLib.defaultRateLimits.api "plain HTTP requests (everything but /ws/)";
        ws = rateLimitOption traefikLib.defaultRateLimits.ws "WebSocket upgrades (/ws/)";
      };
      clientIpDepth = mkOption {
        type = types.ints.unsigned;
        default = 0;
        description = "0: rate-limit by the peer address. N: by the N-th X-Forwarded-For entry from the right, when N trusted proxies (a cloud load balancer) sit in front of Traefik.";
      };
    };

    prometheus = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run Prometheus scraping both colours (job concurrent-socket, label colour) and Traefik (job traefik), with the shipped alert rules.";
      };
      retentionTime = mkOption {
        type = types.str;
        default = "30d";
        description = "How long Prometheus keeps samples.";
      };
      scrapeInterval = mkOption {
        type = types.str;
        default = "15s";
        description = "Scrape and rule evaluation interval.";
      };
      ruleFiles = mkOption {
        type = types.listOf types.path;
        default = monitoringLib.ruleFiles ../alerts;
        defaultText = literalExpression "the rule files of the repository's alerts/ directory";
        description = "Alerting and recording rule files Prometheus loads.";
      };
      alertmanager = {
        enable = mkEnableOption "a local Alertmanager receiving Prometheus' alerts";
        configuration = mkOption {
          type = types.attrs;
          default = {
            route.receiver = "default";
            receivers = [{ name = "default"; }];
          };
          description = "Alertmanager configuration (receivers, routes). The default receives and notifies nobody.";
        };
      };
    };

    grafana = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run Grafana on 127.0.0.1:${toString monitoringLib.ports.grafana} with Prometheus and Loki datasources and the shipped dashboards.";
      };
      secretKeyFile = mkOption {
        type = types.str;
        default = "/var/lib/grafana/secret_key";
        description = "File holding Grafana's secret key; generated on first start when missing.";
      };
      adminPasswordFile = mkOption {
        type = types.str;
        default = "/var/lib/grafana/admin-password";
        description = "File holding the password of Grafana's `admin` user; generated on first start when missing (read it as root). Grafana reads it when it creates the admin user, on its first start.";
      };
    };

    loki = {
      enable = mkOption {
        type = types.bool;
        default = true;
        description = "Run Loki on 127.0.0.1:${toString monitoringLib.ports.loki} (filesystem storage, retention enforced by its compactor).";
      };
      retention = mkOption {
        type = types.str;
        default = "336h";
        description = "How long Loki keeps log lines (14 days).";
      };
      errorRetention = mkOption {
        type = types.str;
        default = "720h";
        description = "How long Loki keeps lines of priority error and worse (30 days).";
      };
    };

    broker = {
      type = mkOption {
        type = types.enum [ "memory" "redis" ];
        default = "memory";
        description = ''
          Where the colours' channels live (BROKER). `memory`: in each server process, so
          blue and green are two separate chats while both run (during every switch).
          `redis`: every process sharing one Redis is one chat, and clients that move from
          blue to green recover what was published in between (docs/redis.md).
        '';
      };
      redis = {
        local = mkOption {
          type = types.bool;
          default = true;
          description = ''
            Run the broker's Redis on this host: services.redis.servers.${redisLib.serverName}
            (unit ${redisLib.unitName}) on 127.0.0.1:`port`, with an append-only file
            fsynced every second and `maxMemory` with maxmemory-policy noeviction (a full
            Redis refuses publishes with broker_unavailable, never drops history). Both
            colours' units want it and start after it. `false`: connect to `url` (a fleet's
            shared Redis).
          '';
        };
        port = mkOption {
          type = types.port;
          default = redisLib.defaultPort;
          description = "Loopback port of the local Redis (beside a Redis of the host's own on 6379).";
        };
        maxMemory = mkOption {
          type = types.strMatching "[0-9]+([kKmMgG][bB]?)?";
          default = "1gb";
          example = "4gb";
          description = "maxmemory of the local Redis: HISTORY_SIZE x channels x message size, with room (docs/redis.md, Sizing).";
        };
        url = mkOption {
          type = types.nullOr (types.strMatching "rediss?://.+");
          default = null;
          example = "rediss://master.ws-prod.abc123.euw1.cache.amazonaws.com:6379";
          description = ''
            The external Redis (with `local = false`): `redis://host:port` or
            `rediss://host:port` for TLS, optionally `rediss://user@host:port` for an ACL
            user. Not for the local Redis, whose URL follows `port`. The password belongs in
            `passwordFile`: this URL is written to the Nix store.
          '';
        };
        passwordFile = nullableString "/run/keys/redis-password" ''
          File on the host (never in the Nix store: a string, not a Nix path) holding the
          Redis password or ElastiCache auth token. systemd hands it to each colour with
          LoadCredential= (REDIS_PASSWORD_FILE=%d/${redisLib.credentialName}), so it may stay
          readable by root only; with the local Redis it is also that Redis's requirepass.
        '';
      };
    };

    binaryCache = {
      url = nullableString "https://cache.example.com"
        "A Nix binary cache holding this flake's builds, added to nix.settings.substituters so that a host downloads the server instead of building the workspace. Needs publicKey.";
      publicKey = nullableString "cache.example.com-1:AAAA...="
        "The public key that signs the cache's paths (nix.settings.trusted-public-keys); Nix refuses unsigned paths.";
    };

    alloy = {
      enable = mkOption {
        type = types.bool;
        default = cfg.loki.enable;
        defaultText = literalExpression "config.services.concurrent-socket.loki.enable";
        description = "Ship the journal to Loki with Grafana Alloy, labelled `unit`, `instance` (the colour of a ws@ unit), `level` (journal priority) and `host`.";
      };
      lokiUrl = mkOption {
        type = types.str;
        default = lokiUrl;
        example = "http://10.0.0.10:3100";
        description = "The Loki Alloy pushes to: this host's, or a central one (with loki.enable = false).";
      };
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      # blue and green exist unless the whole set is replaced (lib.mkForce).
      services.concurrent-socket.instances = {
        blue = { };
        green = { };
      };

      assertions =
        map (message: { assertion = false; inherit message; })
          (instancesLib.check { inherit instances; active = cfg.activeColour; })
        ++ concatLists (mapAttrsToList
          (name: inst: map
            (v: {
              assertion = !(inst.settings ? ${v});
              message = "services.concurrent-socket.instances.${name}.settings.${v}: the socket units own the listen addresses; set port/metricsPort instead.";
            }) [ "PORT" "HOST" "METRICS_ADDR" ])
          instances)
        ++ [
          {
            assertion = cfg.auth.jwtSecretFile == null || cfg.auth.jwtPublicKeyFile == null;
            message = "services.concurrent-socket.auth: set jwtSecretFile or jwtPublicKeyFile, not both.";
          }
          {
            assertion = cfg.traefik.acme.email == null || cfg.traefik.domain != null;
            message = "services.concurrent-socket.traefik.acme.email needs traefik.domain (the certificate's name).";
          }
          {
            assertion = direct || cfg.direct.proxyProtocolFrom == [ ];
            message = "services.concurrent-socket.direct.proxyProtocolFrom is for dataPath = \"direct\" (on the Traefik path Traefik's entry points read PROXY protocol).";
          }
          {
            assertion = (cfg.binaryCache.url == null) == (cfg.binaryCache.publicKey == null);
            message = "services.concurrent-socket.binaryCache: set both url and publicKey (Nix refuses a cache's paths without the key that signed them).";
          }
        ];

      systemd.packages = [ cfg.package ];
      environment.systemPackages = [ cfg.wsctlPackage cfg.loadtestPackage ];

      environment.etc = mapAttrs'
        (name: inst:
          let units = instancesLib.unitSettings name inst; in
          nameValuePair units.envFileName { text = units.envFileText; })
        instances
      // { "concurrent-socket/wsctl.json".source = wsctlConfig; };

      systemd.services = mapAttrs'
        (name: inst:
          nameValuePair "ws@${name}" {
            overrideStrategy = "asDropin";
            wantedBy = [ "multi-user.target" ];
            # A restart closes every WebSocket of the colour, so `nixos-rebuild switch` never
            # restarts an instance: `wsctl deploy` restarts the idle colour, checks it, then
            # moves new connections to it. A colour upgraded by handover is reloaded instead
            # when its unit changes: the triggers put its package and settings in the unit
            # (restartTriggers, not reloadTriggers: with reloadIfChanged any change reloads,
            # and nixpkgs warns about reloadTriggers beside reloadIfChanged).
            restartIfChanged = false;
            reloadIfChanged = byHandover name;
            restartTriggers = optionals (byHandover name) [
              "${instancePackage name}"
              (instancesLib.unitSettings name inst).envFileText
            ];
            # The colour's profile, whatever the package's template says: a restart keeps
            # the colour's build (nixos/lib/instances.nix).
            serviceConfig = {
              LimitNOFILE = cfg.tuning.limitNOFILE;
              # The drain (SHUTDOWN_TIMEOUT) always ends before systemd's SIGKILL.
              TimeoutStopSec = hostLib.stopTimeoutSeconds (inst.settings.SHUTDOWN_TIMEOUT or null);
            }
            // optionalAttrs (authKey != null) { LoadCredential = "jwt-key:${authKey.file}"; }
            // (instancesLib.unitSettings name instances.${name}).serviceCommands;
            # %d is the unit's credentials directory.
            environment = optionalAttrs (authKey != null) { ${authKey.variable} = "%d/jwt-key"; };
          })
        instances;

      systemd.sockets = concatMapAttrs
        (name: inst:
          let units = instancesLib.unitSettings name inst; in
          {
            "ws@${name}" = {
              overrideStrategy = "asDropin";
              wantedBy = [ "sockets.target" ];
              inherit (units.socket) listenStreams;
            };
            "ws-metrics@${name}" = {
              overrideStrategy = "asDropin";
              wantedBy = [ "sockets.target" ];
              inherit (units.metricsSocket) listenStreams;
            };
          })
        instances;

      systemd.tmpfiles.settings."20-concurrent-socket" = {
        ${stateDir}.d = {
          mode = "0755";
          user = "root";
          group = "root";
        };
        # `f` writes only when the file is missing: wsctl owns it afterwards.
        "${stateDir}/active".f = {
          mode = "0644";
          argument = cfg.activeColour;
        };
      }
      # Each colour's profile, created (`L`) only when missing: `wsctl deploy` moves it. An
      # indirect GC root keeps the package it points at through garbage collection.
      // {
        ${instancesLib.profilesDir}.d = {
          mode = "0755";
          user = "root";
          group = "root";
        };
      }
      // concatMapAttrs
        (name: inst:
          let profile = (instancesLib.unitSettings name inst).profile; in
          {
            ${profile}.L.argument = "${instancePackage name}";
            "/nix/var/nix/gcroots/concurrent-socket-${name}"."L+".argument = profile;
          })
        instances;

      # The profile of a colour upgraded by handover follows its package on every activation
      # (before switch-to-configuration reloads the colour, and at boot).
      system.activationScripts = mapAttrs'
        (name: _: nameValuePair "concurrent-socket-profile-${name}" (instancesLib.pinProfileScript name (instancePackage name)))
        (filterAttrs (name: _: byHandover name) instances);

      boot.kernel.sysctl = mkIf cfg.tuning.enable {
        "net.core.somaxconn" = mkDefault cfg.tuning.somaxconn;
        "net.ipv4.tcp_max_syn_backlog" = mkDefault cfg.tuning.synBacklog;
        "net.ipv4.ip_local_port_range" = mkDefault cfg.tuning.localPortRange;
        "net.ipv4.ip_local_reserved_ports" = mkDefault (hostLib.reservedPortsValue reservedPorts);
      };

      nix.settings = mkIf (cfg.binaryCache.url != null) {
        substituters = [ cfg.binaryCache.url ];
        trusted-public-keys = optional (cfg.binaryCache.publicKey != null) cfg.binaryCache.publicKey;
      };
    }

    # The channels' broker on Redis (docs/redis.md).
    (mkIf redisBroker {
      assertions = map (message: { assertion = false; inherit message; })
        (redisLib.check { inherit (cfg.broker) type; inherit (broker) local url passwordFile; });
      warnings = redisLib.warnings {
        inherit (cfg.broker) type;
        inherit (broker) url;
        maxmemoryPolicy = if localRedis then config.services.redis.servers.${redisLib.serverName}.settings.maxmemory-policy or null else null;
      };

      systemd.services = mapAttrs'
        (name: _: nameValuePair "ws@${name}" {
          # Wanted, not required: a colour whose Redis is down still serves v1 messages and
          # answers publishes with broker_unavailable (docs/redis.md, Failure modes).
          wants = optional localRedis redisLib.unitName;
          after = optional localRedis redisLib.unitName;
          # A list, so that it merges with the token key's credential.
          serviceConfig.LoadCredential = mkIf (broker.passwordFile != null) [ "${redisLib.credentialName}:${broker.passwordFile}" ];
          environment = optionalAttrs (broker.passwordFile != null) { REDIS_PASSWORD_FILE = redisLib.passwordFileVariable; };
        })
        instances;

      services.redis.servers.${redisLib.serverName} = mkIf localRedis {
        enable = true;
        inherit (broker) port;
        bind = mkDefault "127.0.0.1";
        appendOnly = mkDefault true;
        appendFsync = mkDefault "everysec";
        requirePassFile = mkIf (broker.passwordFile != null) broker.passwordFile;
        settings = mapAttrs (_: mkDefault) (redisLib.localSettings { inherit (broker) maxMemory; });
      };
    })

    (mkIf cfg.traefik.enable {
      services.concurrent-socket.traefik.staticSettings = traefikLib.static {
        webAddress = ":${toString cfg.traefik.httpPort}";
        websecureAddress = ":${toString cfg.traefik.httpsPort}";
        apiAddress = "127.0.0.1:${toString cfg.traefik.apiPort}";
        metricsAddress = "127.0.0.1:${toString cfg.traefik.metricsPort}";
        inherit loopbackAddress;
        # Watched by Traefik's file provider: rewriting routing.yml (wsctl) reloads the
        # routing without restarting Traefik, so live WebSockets stay up.
        dynamicDir = traefikDir;
        acme =
          if acme then {
            inherit (cfg.traefik.acme) email caServer;
            storage = "${config.services.traefik.dataDir}/acme.json";
          } else null;
      };

      services.traefik = { enable = true; } // traefikShape;

      systemd.tmpfiles.settings."20-concurrent-socket" = {
        ${traefikDir}.d = {
          mode = "0755";
          user = "root";
          group = "root";
        };
        # Replaced on every activation: routers, middlewares and per-colour services.
        "${traefikDir}/base.yml"."L+".argument = "${baseFile}";
        # `C` copies only when the file is missing: the live routing is wsctl's.
        "${traefikDir}/routing.yml".C.argument = "${seedRoutingFile}";
      };

      networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ cfg.traefik.httpPort cfg.traefik.httpsPort ];
    })

    (mkIf direct {
      assertions = map (message: { assertion = false; message = "services.concurrent-socket.${message}"; })
        (directLib.check {
          inherit (cfg.direct) port upgradeRateLimit;
          otherPorts = hostPorts;
        });

      # Every colour's public socket on the shared address. None is wanted at boot: the
      # active colour's is started by ws-direct-boot, a new colour's by `wsctl deploy`.
      systemd.sockets = mapAttrs'
        (name: _: nameValuePair "ws-public@${name}" {
          overrideStrategy = "asDropin";
          listenStreams = [ "" (directLib.hostPort cfg.direct.address cfg.direct.port) ];
        })
        instances;

      # The active colour joins the reuseport group at boot, before sockets.target, so that
      # no colour's service starts (a scrape activates it) without its public socket.
      systemd.services.ws-direct-boot = {
        description = "concurrent-socket: the active colour's public socket (direct data path)";
        wantedBy = [ "sockets.target" ];
        before = [ "sockets.target" ];
        after = [ "sysinit.target" ];
        unitConfig.DefaultDependencies = false;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        path = [ config.systemd.package ];
        script = ''
          systemctl start "ws-public@$(cat ${stateDir}/active).socket"
        '';
      };

      # A closing listener's queued connections move to the group's other listener instead
      # of being reset: the flip of a deploy (docs/deploy.md).
      boot.kernel.sysctl."net.ipv4.tcp_migrate_req" = mkDefault 1;

      networking.firewall.allowedTCPPorts = mkIf cfg.openFirewall [ cfg.direct.port ];
    })

    (mkIf cfg.prometheus.enable {
      services.prometheus = {
        enable = true;
        listenAddress = mkDefault "127.0.0.1";
        port = mkDefault monitoringLib.ports.prometheus;
        retentionTime = mkDefault cfg.prometheus.retentionTime;
        inherit (cfg.prometheus) ruleFiles;
        globalConfig = {
          scrape_interval = mkDefault cfg.prometheus.scrapeInterval;
          evaluation_interval = mkDefault cfg.prometheus.scrapeInterval;
        };
        scrapeConfigs = monitoringLib.scrapeConfigs {
          inherit instances;
          traefikTarget = if cfg.traefik.enable then "127.0.0.1:${toString cfg.traefik.metricsPort}" else null;
        };
        alertmanagers = optional cfg.prometheus.alertmanager.enable {
          static_configs = [{ targets = [ "127.0.0.1:${toString config.services.prometheus.alertmanager.port}" ]; }];
        };
        alertmanager = mkIf cfg.prometheus.alertmanager.enable {
          enable = true;
          listenAddress = mkDefault "127.0.0.1";
          configuration = mkDefault cfg.prometheus.alertmanager.configuration;
        };
      };
    })

    (mkIf cfg.grafana.enable {
      services.grafana = {
        enable = true;
        settings = {
          # Loopback only: reach it through an SSH tunnel (docs/nixos.md), never plain HTTP
          # over the internet.
          server = {
            http_addr = mkDefault "127.0.0.1";
            http_port = mkDefault monitoringLib.ports.grafana;
          };
          security = {
            secret_key = mkDefault "$__file{${cfg.grafana.secretKeyFile}}";
            admin_password = mkDefault "$__file{${cfg.grafana.adminPasswordFile}}";
          };
        };
        provision = {
          enable = true;
          datasources.settings.datasources = monitoringLib.grafanaDatasources {
            prometheusUrl = if cfg.prometheus.enable then "http://127.0.0.1:${toString monitoringLib.ports.prometheus}" else null;
            lokiUrl = if cfg.loki.enable then lokiUrl else null;
          };
          dashboards.settings.providers = monitoringLib.grafanaDashboardProviders "${cfg.package}/share/concurrent-socket/grafana/dashboards";
        };
      };
      # Grafana refuses to start without a secret key, and its admin must not keep the
      # password `admin`: make both, once, before Grafana first reads them.
      systemd.services.grafana.preStart = lib.mkBefore (monitoringLib.grafanaSecretsScript [
        cfg.grafana.secretKeyFile
        cfg.grafana.adminPasswordFile
      ]);
    })

    (mkIf cfg.loki.enable {
      services.loki = {
        enable = true;
        configuration = mkDefault (monitoringLib.lokiConfig {
          inherit (config.services.loki) dataDir;
          inherit (cfg.loki) retention errorRetention;
        });
      };
    })

    (mkIf cfg.alloy.enable {
      services.alloy.enable = true;
      environment.etc."alloy/config.alloy".text = monitoringLib.alloyConfig { inherit (cfg.alloy) lokiUrl; };
    })
  ]);
}
