# The evaluation harness: nixos/module.nix, the flake's nixosModules.default,
# terraform/nixos/fleet-host.nix and the VM test's node (with its specialisation), each
# evaluated by nixpkgs' real module system (nixos/tests/nixpkgs-lib, lib.evalModules) against
# the NixOS options they set (./nixos-options.nix), once per shape of nixpkgs' Traefik
# module, under several settings. A case fails on any evaluation error (an undeclared
# option, a value of the wrong type, conflicting definitions) or failed assertion, and then on
# each expectation about the resulting configuration that it lists. Cases that must NOT
# evaluate (a known mistake) are checked to fail.
#
#   nix-instantiate --eval --strict --json nixos/tests/eval/cases.nix   # { passed; cases; failing; }
#   nix-instantiate --eval --strict --arg n 0 nixos/tests/eval/refusal.nix
#                                  # must fail: the first failing case, with its error message
#
# Nothing is built: packages are stand-ins (./pkgs.nix); what is proven is that a host
# configuration with these modules evaluates, not that it builds or boots.
let
  lib = import ../nixpkgs-lib/lib;
  pkgs = import ./pkgs.nix lib;
  inherit (lib) concatMap concatStringsSep filter length;

  shapes = [ "classic" "refactored" ];

  # A NixOS-like evaluation: the declarations of the foreign options, then ours.
  evalHost = { shape, modules, specialArgs ? { } }: lib.evalModules {
    inherit specialArgs;
    modules = import ./nixos-options.nix { traefikShape = shape; }
      ++ [{ _module.args.pkgs = pkgs; }]
      ++ modules;
  };

  # The configuration, fully evaluated (every option's value forced, so type errors and
  # conflicts surface), or a throw listing the failed assertions. Left out: the module
  # system's own `_module` options, and renamed options (invisible aliases of others,
  # forced there; reading one prints nixpkgs' "Obsolete option" trace).
  evaluated = name: eval:
    let
      config = eval.config;
      failed = filter (a: !a.assertion) config.assertions;
      forced = filter (o: lib.head o.loc != "_module" && (o.visible or true) != false) (lib.collect lib.isOption eval.options);
    in
    if failed != [ ] then
      throw "${name}: failed assertions:\n  ${concatStringsSep "\n  " (map (a: a.message) failed)}"
    else builtins.deepSeq (map (o: o.value) forced) config;

  # The parent configuration with a specialisation's module added (inheritParentConfig).
  specialised = { shape, modules, specialArgs ? { } }: name: config:
    evalHost { inherit shape specialArgs; modules = modules ++ [ config.specialisation.${name}.configuration ]; };

  package = pkgs.package;
  serverPackage = package "concurrent-socket-0.1.0";
  packages = {
    package = serverPackage;
    wsctlPackage = package "wsctl-0.1.0";
    loadtestPackage = package "loadtest-0.1.0";
  };
  # A single host: the module, enabled, with stand-ins for the flake's packages.
  enabled = {
    imports = [ ../../module.nix ];
    services.concurrent-socket = { enable = true; } // packages;
  };

  # What a host gets: the static file Traefik runs with, the instances' environment files.
  traefikStatic = shape: config:
    let t = config.services.traefik; in
    builtins.fromJSON (if shape == "classic" then t.staticConfigFile.text else t.static.file.text);
  envFile = config: colour: config.environment.etc."concurrent-socket/${colour}.env".text;
  wsctlConfig = config: builtins.fromJSON config.environment.etc."concurrent-socket/wsctl.json".source.text;
  hasLine = text: line: lib.elem line (lib.splitString "\n" text);
  sysctl = config: config.boot.kernel.sysctl;
  # A colour's unit drop-in as NixOS writes it (./units.nix), which switch-to-configuration
  # compares between generations, and its lines.
  units = import ./units.nix { inherit lib pkgs; };
  dropIn = config: colour: units.service "ws@${colour}" config.systemd.services."ws@${colour}";
  dropInHas = config: colour: hasLine (dropIn config colour);

  # A host whose blue colour is upgraded by handover, with more of its configuration.
  handoverModules = extra: [ enabled { services.concurrent-socket.instances.blue.upgrade = "handover"; } extra ];
  handoverHost = extra: evaluated "handover host" (evalHost { shape = "classic"; modules = handoverModules extra; });

  expect = name: got: want: { inherit name got want; };

  # Every case: name, modules, expectations (a function of the evaluated config and shape).
  hostCases = [
    {
      name = "defaults";
      modules = [ enabled ];
      expect = shape: c:
        let static = traefikStatic shape c; in [
          (expect "Traefik runs with the module's static file, under the shape's option name" (static ? entryPoints) true)
          (expect "its file provider watches the routing directory"
            static.providers.file
            { directory = "/var/lib/concurrent-socket/traefik"; watch = true; })
          (expect "nixpkgs' own settings options are left at their defaults"
            (if shape == "classic" then c.services.traefik.staticConfigOptions else c.services.traefik.static.settings)
            { entryPoints.http.address = ":80"; })
          (expect "metrics on an entry point of their own" [ static.metrics.prometheus.entryPoint static.entryPoints.metrics.address ] [ "metrics" "127.0.0.1:8084" ])
          (expect "Prometheus scrapes Traefik's metrics entry point"
            (lib.elemAt c.services.prometheus.scrapeConfigs 1).static_configs
            [{ targets = [ "127.0.0.1:8084" ]; labels = { }; }])
          (expect "blue trusts Traefik on loopback" (hasLine (envFile c "blue") "TRUSTED_PROXIES=\"127.0.0.1\"") true)
          (expect "green trusts Traefik on loopback" (hasLine (envFile c "green") "TRUSTED_PROXIES=\"127.0.0.1\"") true)
          (expect "the listening ports are reserved" (sysctl c)."net.ipv4.ip_local_reserved_ports" "3000-3002,3100,8081-8082,8084,9090,9096,9464-9465")
          (expect "no fs.file-max" ((sysctl c) ? "fs.file-max") false)
          (expect "stop timeout above the default drain" c.systemd.services."ws@blue".serviceConfig.TimeoutStopSec 20)
          (expect "Grafana on loopback, admin password from a generated file"
            (with c.services.grafana.settings; [ server.http_addr security.admin_password ])
            [ "127.0.0.1" "$__file{/var/lib/grafana/admin-password}" ])
          (expect "the preStart writes both Grafana secrets"
            (lib.hasInfix "'/var/lib/grafana/secret_key' '/var/lib/grafana/admin-password'" c.systemd.services.grafana.preStart)
            true)
          (expect "no extra substituter" c.nix.settings.substituters [ "https://cache.nixos.org/" ])
          (expect "instances keep running across nixos-rebuild" c.systemd.services."ws@green".restartIfChanged false)
          (expect "the profile's server, no ExecStartPre (a handover restart waits for none; the template's ExecReload checks the settings)"
            (with c.systemd.services."ws@green".serviceConfig; [ ExecStart (c.systemd.services."ws@green".serviceConfig ? ExecStartPre) ])
            [ [ "" "/var/lib/concurrent-socket/profiles/green/bin/concurrent-socket" ] false ])
          (expect "the handover's descriptors: LimitNOFILE from tuning, the store from the packaged template"
            (with c.systemd.services."ws@green".serviceConfig; [ LimitNOFILE (c.systemd.services."ws@green".serviceConfig ? FileDescriptorStoreMax) ])
            [ 1048576 false ])
          (expect "the Traefik data path: no shared public socket" (c.systemd.sockets ? "ws-public@blue") false)
          (expect "the Traefik data path: the kernel's default for a closing listener's queue" ((sysctl c) ? "net.ipv4.tcp_migrate_req") false)
          (expect "wsctl probes through Traefik's loopback entry point" (with wsctlConfig c; [ dataPath publicUrl ]) [ "traefik" "ws://127.0.0.1:8081" ])
          (expect "switch-to-configuration skips both colours (X-RestartIfChanged=false, no X-ReloadIfChanged, no triggers)"
            (map (colour: map (dropInHas c colour) [ "X-RestartIfChanged=false" "X-ReloadIfChanged=true" ] ++ [ (lib.hasInfix "X-Restart-Triggers" (dropIn c colour)) ]) [ "blue" "green" ])
            [ [ true false false ] [ true false false ] ])
          (expect "no activation moves a profile" (lib.attrNames c.system.activationScripts) [ ])
        ];
    }
    {
      name = "a colour upgraded by handover on nixos-rebuild switch";
      modules = handoverModules { };
      expect = _: c:
        let
          # The same host after a rebuild with another package, or other settings for blue.
          newPackage = handoverHost { services.concurrent-socket.package = lib.mkForce (package "concurrent-socket-0.2.0"); };
          newSettings = handoverHost { services.concurrent-socket.instances.blue.settings.MAX_CONNECTIONS = 20000; };
          blueEnv = envFile c "blue";
        in
        [
          (expect "blue's unit is reloaded, never restarted, when it changes (X-ReloadIfChanged=true, no X-RestartIfChanged)"
            (map (dropInHas c "blue") [ "X-ReloadIfChanged=true" "X-RestartIfChanged=false" ]) [ true false ])
          (expect "green, upgraded by wsctl, is still skipped" (map (dropInHas c "green") [ "X-RestartIfChanged=false" "X-ReloadIfChanged=true" ]) [ true false ])
          (expect "blue's unit names its package and its settings (restartTriggers)"
            c.systemd.services."ws@blue".restartTriggers [ "${serverPackage}" blueEnv ])
          (expect "its X-Restart-Triggers file holds both"
            (lib.any (line: line == "X-Restart-Triggers=${pkgs.writeText "X-Restart-Triggers-ws@blue" "${serverPackage} ${blueEnv}"}") (lib.splitString "\n" (dropIn c "blue")))
            true)
          (expect "both colours still run their profiles, the template's ExecReload checks the profile's build"
            (map (colour: c.systemd.services."ws@${colour}".serviceConfig.ExecStart) [ "blue" "green" ])
            [ [ "" "/var/lib/concurrent-socket/profiles/blue/bin/concurrent-socket" ] [ "" "/var/lib/concurrent-socket/profiles/green/bin/concurrent-socket" ] ])
          (expect "every activation points blue's profile at its package, atomically; green's is wsctl's"
            c.system.activationScripts
            { concurrent-socket-profile-blue = "mkdir -p /var/lib/concurrent-socket/profiles\nln -sfnT ${serverPackage} /var/lib/concurrent-socket/profiles/blue.nixos\nmv -fT /var/lib/concurrent-socket/profiles/blue.nixos /var/lib/concurrent-socket/profiles/blue\n"; })
          (expect "a new package changes blue's unit (switch reloads it) and not green's (switch skips it)"
            [ (dropIn newPackage "blue" != dropIn c "blue") (dropIn newPackage "green" == dropIn c "green") ]
            [ true true ])
          (expect "new settings for blue change its unit and its env file together"
            [ (dropIn newSettings "blue" != dropIn c "blue") (hasLine (envFile newSettings "blue") "MAX_CONNECTIONS=\"20000\"") (dropIn newSettings "green" == dropIn c "green") ]
            [ true true true ])
          (expect "a rebuild with nothing new leaves blue's unit as it was (no reload)" (dropIn (handoverHost { }) "blue" == dropIn c "blue") true)
          (expect "no warning (nixpkgs warns about reloadTriggers beside reloadIfChanged)" c.warnings [ ])
          (expect "wsctl still knows blue's package" (wsctlConfig c).packages.blue "${serverPackage}")
        ];
    }
    {
      name = "the direct data path behind an NLB";
      modules = [
        enabled
        {
          services.concurrent-socket = {
            dataPath = "direct";
            direct = { port = 8443; proxyProtocolFrom = [ "10.0.0.0/24" "10.0.1.0/24" ]; };
            openFirewall = true;
            instances.green.settings.UPGRADE_RATE_PER_IP = 50;
          };
        }
      ];
      expect = _: c: [
        (expect "both colours' shared sockets on the public address"
          (map (colour: c.systemd.sockets."ws-public@${colour}".listenStreams) [ "blue" "green" ])
          [ [ "" "0.0.0.0:8443" ] [ "" "0.0.0.0:8443" ] ])
        (expect "no shared socket wanted at boot but the active colour's, by ws-direct-boot"
          [ c.systemd.sockets."ws-public@blue".wantedBy c.systemd.services.ws-direct-boot.wantedBy ]
          [ [ ] [ "sockets.target" ] ])
        (expect "ws-direct-boot starts the recorded colour's shared socket"
          (lib.hasInfix "ws-public@$(cat /var/lib/concurrent-socket/active).socket" c.systemd.services.ws-direct-boot.script)
          true)
        (expect "the loopback sockets stay" c.systemd.sockets."ws@blue".listenStreams [ "" "127.0.0.1:3001" ])
        (expect "a closing listener's queue moves to the other colour" (sysctl c)."net.ipv4.tcp_migrate_req" 1)
        (expect "the upgrade rate limit of the original design in the server"
          (map (hasLine (envFile c "blue")) [ "UPGRADE_RATE_PER_IP=\"5\"" "UPGRADE_BURST_PER_IP=\"10\"" ])
          [ true true ])
        (expect "a colour's own value wins over the module's default" (hasLine (envFile c "green") "UPGRADE_RATE_PER_IP=\"50\"") true)
        (expect "PROXY protocol v2 required from the NLB's subnets"
          (map (hasLine (envFile c "blue")) [ "PROXY_PROTOCOL=\"v2\"" "PROXY_PROTOCOL_TRUSTED=\"10.0.0.0/24,10.0.1.0/24\"" ])
          [ true true ])
        (expect "wsctl flips the reuseport group and probes the shared address"
          (with wsctlConfig c; [ dataPath publicUrl ]) [ "direct" "ws://127.0.0.1:8443" ])
        (expect "Traefik kept for the HTTP routes" c.services.traefik.enable true)
        (expect "the shared port reserved and opened" [ (lib.hasInfix "8443" (sysctl c)."net.ipv4.ip_local_reserved_ports") (lib.elem 8443 c.networking.firewall.allowedTCPPorts) ] [ true true ])
      ];
    }
    {
      name = "ACME on a domain";
      modules = [
        enabled
        {
          services.concurrent-socket.traefik = {
            domain = "ws.example.com";
            acme = { email = "ops@example.com"; caServer = "https://acme-staging-v02.api.letsencrypt.org/directory"; };
          };
        }
      ];
      expect = shape: c:
        let static = traefikStatic shape c; in [
          (expect "certificates stored in Traefik's data directory"
            static.certificatesResolvers.letsencrypt.acme.storage "/var/lib/traefik/acme.json")
          (expect "web redirects to websecure" static.entryPoints.web.http.redirections.entryPoint.to "websecure")
        ];
    }
    {
      name = "pinned colours, settings, binary cache, user overrides";
      modules = [
        enabled
        ({ lib, ... }: {
          services.concurrent-socket = {
            instances.blue = { package = package "concurrent-socket-0.0.9"; settings.SHUTDOWN_TIMEOUT = 30000; };
            instances.green = { package = package "concurrent-socket-0.1.0-rc1"; settings = { TRUSTED_PROXIES = [ "10.0.0.0/8" ]; MAX_CONNECTIONS = 50000; }; };
            traefik.staticSettings.entryPoints.extra.address = ":9443";
            binaryCache = { url = "https://cache.example.com"; publicKey = "cache.example.com-1:AAAA"; };
            prometheus.alertmanager.enable = true;
          };
          # Other modules' options the module sets, changed without mkForce.
          boot.kernel.sysctl."net.core.somaxconn" = 4096;
          services.prometheus.port = 9999;
          services.grafana.settings.server.http_port = 3333;
          services.loki.configuration = lib.mkForce { auth_enabled = true; };
        })
      ];
      expect = shape: c:
        let static = traefikStatic shape c; in [
          (expect "a user's sysctl wins over the module's mkDefault" (sysctl c)."net.core.somaxconn" 4096)
          (expect "the user's Prometheus port, reserved" ((sysctl c)."net.ipv4.ip_local_reserved_ports") "3001-3002,3100,3333,8081-8082,8084,9093,9096,9464-9465,9999")
          (expect "blue's stop timeout follows its SHUTDOWN_TIMEOUT" c.systemd.services."ws@blue".serviceConfig.TimeoutStopSec 40)
          (expect "blue runs its profile, whatever the package" c.systemd.services."ws@blue".serviceConfig.ExecStart [ "" "/var/lib/concurrent-socket/profiles/blue/bin/concurrent-socket" ])
          (expect "blue's profile starts on its pinned package" (profileSeed c "blue") "${package "concurrent-socket-0.0.9"}")
          (expect "green's own TRUSTED_PROXIES replace the default" (hasLine (envFile c "green") "TRUSTED_PROXIES=\"10.0.0.0/8\"") true)
          (expect "an extra entry point merges into the static file" static.entryPoints.extra.address ":9443")
          (expect "the cache is a substituter, its key trusted"
            [ c.nix.settings.substituters c.nix.settings.trusted-public-keys ]
            [ [ "https://cache.example.com" "https://cache.nixos.org/" ] [ "cache.example.com-1:AAAA" "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ] ])
        ];
    }
    {
      name = "tokens from a secret file";
      modules = [ enabled { services.concurrent-socket.auth.jwtSecretFile = "/run/keys/ws-jwt-secret"; } ];
      expect = _: c: [
        (expect "blue loads the secret as a credential" c.systemd.services."ws@blue".serviceConfig.LoadCredential "jwt-key:/run/keys/ws-jwt-secret")
        (expect "green reads it from its credentials directory" c.systemd.services."ws@green".environment.AUTH_JWT_SECRET_FILE "%d/jwt-key")
      ];
    }
    {
      name = "no Traefik, central Loki";
      modules = [
        enabled
        {
          services.concurrent-socket = {
            traefik.enable = false;
            loki.enable = false;
            alloy.lokiUrl = "http://10.0.0.10:3100";
          };
        }
      ];
      expect = _: c: [
        (expect "Traefik off" c.services.traefik.enable false)
        (expect "no trusted proxy without Traefik" (lib.hasInfix "TRUSTED_PROXIES" (envFile c "blue")) false)
        (expect "no Traefik scrape job" (map (j: j.job_name) c.services.prometheus.scrapeConfigs) [ "concurrent-socket" ])
      ];
    }
  ];

  # fleet.json as Terraform writes it (terraform/modules/ws-fleet/hosts.tf).
  fleetCommon = {
    fleet = "ws-prod";
    sshAuthorizedKeys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample ops@example.com" ];
    metricsPorts = { blue = 19464; green = 19465; traefik = 18082; node = 9100; };
    stateVersion = "26.05";
  };
  fleetWs = fleetCommon // {
    role = "ws";
    monitoringAddress = "10.0.1.10";
    domain = "ws.example.com";
    serverSettings = { MAX_CONNECTIONS = "50000"; ALLOWED_ORIGINS = "https://app.example.com"; };
    healthCheckPort = 8083;
    # TLS at the NLB: its subnets send the proxy protocol header.
    proxyProtocolTrustedIPs = [ "10.0.0.0/24" "10.0.1.0/24" ];
    binaryCache = { url = "https://cache.example.com"; publicKey = "cache.example.com-1:AAAA"; };
  };
  # fleet.json `redis` as terraform/modules/ws-fleet/redis.tf writes it.
  fleetRedis = {
    url = "rediss://master.ws-prod-redis.abc123.euw1.cache.amazonaws.com:6379";
    authTokenSecretArn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ws-prod/redis-auth-token-AbCdEf";
    region = "eu-west-1";
  };
  fleetMonitoring = fleetCommon // {
    role = "monitoring";
    discoveryTags = { Fleet = "ws-prod"; Role = "ws"; };
    region = "eu-west-1";
    grafanaPort = 3000;
    grafanaDomain = null;
  };
  fleetHost = fleet: {
    modules = [ ../../module.nix ../../../terraform/nixos/fleet-host.nix packagesModule ];
    specialArgs = {
      inherit fleet;
      colourPackages = { blue = package "concurrent-socket-blue"; green = package "concurrent-socket-green"; };
    };
  };
  packagesModule = { services.concurrent-socket = packages; };
  fleetCases = [
    (fleetHost fleetWs // {
      name = "fleet WebSocket host";
      expect = shape: c:
        let static = traefikStatic shape c; in [
          (expect "nlb-health entry point in the static file" static.entryPoints.nlb-health.address ":8083")
          (expect "proxy protocol believed from the NLB's subnets only, on the traffic and the health check"
            [ static.entryPoints.web.proxyProtocol.trustedIPs static.entryPoints.nlb-health.proxyProtocol.trustedIPs ]
            [ [ "10.0.0.0/24" "10.0.1.0/24" ] [ "10.0.0.0/24" "10.0.1.0/24" ] ])
          (expect "no ACME on a host behind the NLB's TLS" (static.certificatesResolvers or { }) { })
          (expect "the colours trust Traefik" (hasLine (envFile c "blue") "TRUSTED_PROXIES=\"127.0.0.1\"") true)
          (expect "the Traefik relay reaches the metrics entry point only"
            (lib.hasSuffix " 127.0.0.1:8084" c.systemd.services.metrics-relay-traefik.serviceConfig.ExecStart)
            true)
          (expect "health check and relay ports reserved" (sysctl c)."net.ipv4.ip_local_reserved_ports"
            "3001-3002,8081-8084,9100,9464-9465,18082,19464-19465")
        ];
    })
    (fleetHost (fleetWs // { domain = null; binaryCache = { url = "https://cache.example.com"; publicKey = "cache.example.com-1:AAAA"; }; }) // {
      name = "fleet WebSocket host without a domain, with a binary cache";
      expect = _: c: [
        (expect "plain HTTP, no ACME" c.services.concurrent-socket.traefik.acme.email null)
        (expect "the cache is a substituter" (lib.head c.nix.settings.substituters) "https://cache.example.com")
      ];
    })
    (fleetHost (fleetWs // { redis = fleetRedis; }) // {
      name = "fleet WebSocket host on the fleet's Redis";
      expect = _: c: [
        (expect "both colours on the fleet's Redis, over TLS"
          (map (colour: hasLine (envFile c colour) "REDIS_URL=\"${fleetRedis.url}\"") [ "blue" "green" ])
          [ true true ])
        (expect "no local Redis on a fleet host" (c.services.redis.servers ? concurrent-socket) false)
        (expect "the auth token is fetched from its secret at boot"
          (with c.systemd.services.redis-auth-token; [ environment.SECRET_ARN serviceConfig.Type serviceConfig.RuntimeDirectory ])
          [ fleetRedis.authTokenSecretArn "oneshot" "redis-auth-token" ])
        (expect "and loaded by both colours, which start after it"
          (map (colour: with c.systemd.services."ws@${colour}"; [ serviceConfig.LoadCredential (lib.elem "redis-auth-token.service" after) ]) [ "blue" "green" ])
          [ [ [ "redis-password:/run/redis-auth-token/token" ] true ] [ [ "redis-password:/run/redis-auth-token/token" ] true ] ])
      ];
    })
    (fleetHost (fleetWs // { dataPath = "direct"; directPort = 8000; }) // {
      name = "fleet WebSocket host on the direct data path";
      expect = _: c: [
        (expect "the colours share the NLB's target port" c.systemd.sockets."ws-public@green".listenStreams [ "" "0.0.0.0:8000" ])
        (expect "the server believes proxy protocol from the NLB's subnets only"
          (hasLine (envFile c "blue") "PROXY_PROTOCOL_TRUSTED=\"10.0.0.0/24,10.0.1.0/24\"")
          true)
        (expect "the NLB's target port is open" (lib.elem 8000 c.networking.firewall.allowedTCPPorts) true)
        (expect "a closing listener's queue moves to the other colour" (sysctl c)."net.ipv4.tcp_migrate_req" 1)
      ];
    })
    (fleetHost fleetMonitoring // {
      name = "fleet monitoring host";
      expect = _: c: [
        (expect "Grafana on loopback only" c.services.grafana.settings.server.http_addr "127.0.0.1")
        (expect "Grafana's port not opened" (lib.elem 3000 c.networking.firewall.allowedTCPPorts) false)
        (expect "Grafana admin password generated" c.services.grafana.settings.security.admin_password "$__file{/var/lib/grafana/admin-password}")
      ];
    })
  ];

  # The flake's own outputs, with nixpkgs replaced by the stand-in pkgs (nothing is built).
  flake =
    let
      outputs = (import ../../../flake.nix).outputs {
        self = outputs // { outPath = ../../..; };
        nixpkgs = { legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgs); };
      };
    in
    outputs;
  vmTest = import ../blue-green.nix { self = flake; };
  flakeCases = [
    {
      name = "the flake's nixosModules.default";
      modules = [ flake.nixosModules.default { services.concurrent-socket.enable = true; } ];
      expect = _: c: [
        (expect "its package is the flake's server" c.services.concurrent-socket.package.name "concurrent-socket-0.1.0")
        (expect "a host's build runs no tests (checks.tests runs them)" c.services.concurrent-socket.package.args.doCheck false)
      ];
    }
    {
      name = "the VM test's node";
      modules = [ vmTest.nodes.machine ];
      expect = _: c: [
        (expect "it has the candidate specialisation" (lib.attrNames c.specialisation) [ "candidate" ])
      ];
    }
  ];
  # The package a colour's profile is created with when the host has none yet.
  profileSeed = c: colour: c.systemd.tmpfiles.settings."20-concurrent-socket"."/var/lib/concurrent-socket/profiles/${colour}".L.argument;
  specialisationCases = [
    {
      name = "the VM test's node, specialisation candidate";
      modules = [ vmTest.nodes.machine ];
      specialisation = "candidate";
      expect = _: c: [
        # The switch changes no running colour: the candidate reaches green's profile only
        # through `wsctl deploy` (the VM test does it), and the units run the profiles.
        (expect "green's profile is seeded with the candidate" (lib.hasInfix "candidate" (profileSeed c "green")) true)
        (expect "green's settings differ" (hasLine (envFile c "green") "SERVER_ID=\"green-candidate\"") true)
        (expect "blue's profile is not the candidate" (lib.hasInfix "candidate" (profileSeed c "blue")) false)
        (expect "both colours run their profiles"
          (map (colour: lib.last c.systemd.services."ws@${colour}".serviceConfig.ExecStart) [ "blue" "green" ])
          [ "/var/lib/concurrent-socket/profiles/blue/bin/concurrent-socket" "/var/lib/concurrent-socket/profiles/green/bin/concurrent-socket" ])
      ];
    }
  ];

  # Must not evaluate: each names the error it must stop with.
  failingCases = [
    {
      name = "services.traefik.static.settings where nixpkgs has staticConfigOptions (main before this test)";
      shape = "classic";
      modules = [ enabled { services.traefik.static.settings.entryPoints.x.address = ":1"; } ];
      error = "does not exist";
    }
    {
      name = "services.traefik.dynamic.dir where nixpkgs has dynamicConfigFile";
      shape = "classic";
      modules = [ enabled { services.traefik.dynamic.dir = "/var/lib/concurrent-socket/traefik"; } ];
      error = "does not exist";
    }
    {
      name = "the refactored module refuses dynamic.dir beside static.file";
      shape = "refactored";
      modules = [ enabled { services.traefik.dynamic.dir = "/var/lib/concurrent-socket/traefik"; } ];
      error = "assertions";
    }
    {
      name = "both token key files";
      shape = "classic";
      modules = [
        enabled
        { services.concurrent-socket.auth = { jwtSecretFile = "/run/keys/a"; jwtPublicKeyFile = "/run/keys/b"; }; }
      ];
      error = "assertions";
    }
    {
      name = "ACME without a domain";
      shape = "classic";
      modules = [ enabled { services.concurrent-socket.traefik.acme.email = "ops@example.com"; } ];
      error = "assertions";
    }
    {
      name = "a binary cache without its key";
      shape = "refactored";
      modules = [ enabled { services.concurrent-socket.binaryCache.url = "https://cache.example.com"; } ];
      error = "assertions";
    }
    {
      name = "a data path that does not exist";
      shape = "classic";
      modules = [ enabled { services.concurrent-socket.dataPath = "proxy"; } ];
      error = "not of type";
    }
    {
      name = "the direct path on Traefik's HTTP port";
      shape = "classic";
      modules = [ enabled { services.concurrent-socket = { dataPath = "direct"; direct.port = 80; }; } ];
      error = "assertions";
    }
    {
      name = "the direct path on a colour's loopback port";
      shape = "refactored";
      modules = [ enabled { services.concurrent-socket = { dataPath = "direct"; direct.port = 3002; }; } ];
      error = "assertions";
    }
    {
      name = "PROXY protocol for the server on the Traefik path";
      shape = "classic";
      modules = [ enabled { services.concurrent-socket.direct.proxyProtocolFrom = [ "10.0.0.0/24" ]; } ];
      error = "assertions";
    }
    {
      name = "an upgrade burst below its average";
      shape = "classic";
      modules = [ enabled { services.concurrent-socket = { dataPath = "direct"; direct.upgradeRateLimit = { average = 20; burst = 5; }; }; } ];
      error = "assertions";
    }
    {
      name = "an upgrade path that does not exist";
      shape = "refactored";
      modules = [ enabled { services.concurrent-socket.instances.green.upgrade = "restart"; } ];
      error = "not of type";
    }
    {
      name = "a setting of the wrong type";
      shape = "classic";
      modules = [ enabled { services.concurrent-socket.instances.blue.settings.MAX_CONNECTIONS = "many"; } ];
      error = "not of type";
    }
  ] ++ brokerCases.refusals;

  run = shape: case:
    let
      args = { inherit shape; inherit (case) modules; specialArgs = case.specialArgs or { }; };
      base = evaluated "${case.name} (${shape})" (evalHost args);
      config = if case ? specialisation then evaluated "${case.name} (${shape})" (specialised args case.specialisation base) else base;
      expectations = case.expect shape config;
      failed = filter (e: e.got != e.want) expectations;
    in
    if failed == [ ] then "${case.name} (${shape}): ${toString (length expectations)} checks"
    else throw "${case.name} (${shape}):\n${concatStringsSep "\n" (map (e: "  ${e.name}: got ${builtins.toJSON e.got}, want ${builtins.toJSON e.want}") failed)}";

  # tryEval sees throws (undeclared options, type errors, assertions) but not their text:
  # ci/suites/50-nix.sh evaluates each refusal on its own (refusal.nix) and checks it.
  refusal = case: evaluated case.name (evalHost { inherit (case) shape modules; });
  refused = case:
    if (builtins.tryEval (builtins.seq (refusal case) true)).success
    then throw "${case.name}: evaluated, but must fail (${case.error})"
    else "refused: ${case.name}";

  brokerCases = import ./broker-cases.nix { inherit lib enabled expect envFile hasLine sysctl; };
  allCases = hostCases ++ brokerCases.hosts ++ fleetCases ++ flakeCases ++ specialisationCases;
  passedCases = concatMap (shape: map (run shape) allCases) shapes ++ map refused failingCases;
in
{
  summary = {
    passed = length passedCases;
    cases = passedCases;
    # For ci/suites/50-nix.sh: what each refusal's error message must contain.
    failing = map (c: { inherit (c) name shape error; }) failingCases;
    # Every check the cases made (in both shapes), by name.
    # (The names only: `expect` builds its list without reading the configuration.)
    checks = concatMap (case: map (e: "${case.name}: ${e.name}") (case.expect "classic" null)) allCases;
  };
  # The evaluation of failing case N (which must throw).
  refusal = n: refusal (lib.elemAt failingCases n);
  # What `nixos-rebuild switch` gives ws@blue.service when blue is upgraded by handover and
  # its package is the directory `package` (ci/suites/31-handover.sh installs it in a real
  # systemd): the unit's drop-in and the activation that moves the profile.
  handoverSwitch = { package, limitNOFILE }:
    let
      c = handoverHost {
        services.concurrent-socket = {
          instances.blue.package = { type = "derivation"; name = "concurrent-socket"; outPath = package; };
          tuning.limitNOFILE = limitNOFILE;
        };
      };
    in
    { dropIn = dropIn c "blue"; activation = c.system.activationScripts.concurrent-socket-profile-blue; };
  # A single host with the module's defaults: what ci/suites/50-nix.sh runs real servers with.
  hostConfig = evaluated "defaults" (evalHost { shape = "classic"; modules = [ enabled ]; });
}
