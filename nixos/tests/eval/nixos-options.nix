# Declarations of every NixOS option that nixos/module.nix, terraform/nixos/fleet-host.nix and
# the VM test's node set or read, outside `services.concurrent-socket`: the part of NixOS that
# nixos/tests/eval/cases.nix evaluates them against, with nixpkgs' own module system
# (nixos/tests/nixpkgs-lib). Setting an option that no module declares is an evaluation
# error, as on a real host, so a wrong name fails here.
#
# Each declaration follows nixpkgs' (names, types, defaults, and the assertions of those
# modules that concern what our modules set), as the nixpkgs sources readable while writing
# this show them (nixos/modules/...):
#   services/web-servers/traefik.nix  both shapes, below (`traefikShape`)
#   services/monitoring/prometheus/default.nix  (2025-26: mkOpt/nullable scrape options)
#   services/monitoring/grafana.nix  (26.05: secret_key without default, asserted)
#   lib/systemd-unit-options.nix, lib/systemd-lib.nix  (units; unitOption merging)
#   system/boot/systemd.nix  (the warning about reloadIfChanged beside reloadTriggers)
#   system/activation/activation-script.nix  (system.activationScripts)
#   services/databases/redis.nix  (servers.<name>, as in a 2025 nixpkgs checkout: `group`,
#                                  `extraParams`, vmOverCommit on by default; the file
#                                  NixOS 24.11 and 25.05 ship has these declarations)
# and, where no source was readable, nixpkgs' declarations as of the 26.05 release:
# tmpfiles settings, sysctl, firewall, environment.etc, nix.settings, openssh, users,
# loki, alloy, the node exporter, specialisation, amazon-init, virtualisation.memorySize.
#
# `traefikShape`:
#   "classic"     staticConfigFile / staticConfigOptions / dynamicConfigFile /
#                 dynamicConfigOptions (the module since NixOS 20.09, and after the revert)
#   "refactored"  static.{file,settings}, dynamic.{file,dir,settings,files} with renames from
#                 the classic names (nixpkgs PR 482512, merged then reverted in 2026; its
#                 re-land proposes it again)
{ traefikShape }:
let
  common = { config, lib, pkgs, ... }:
    let
      inherit (lib) mkOption mkIf types;

      # nixos/lib/systemd-lib.nix
      unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
      # nixos/lib/systemd-unit-options.nix: lists concatenate, other values must agree.
      unitOption = lib.mkOptionType {
        name = "systemd option";
        merge = loc: defs:
          let defs' = lib.filterOverrides defs; in
          if lib.any (def: lib.isList def.value) defs'
          then lib.concatMap (def: lib.toList def.value) defs'
          else lib.mergeEqualOption loc defs';
      };
      # checkService: the values systemd accepts for Type= and Restart=.
      validServiceConfig = cfg:
        lib.elem (cfg.Type or "simple") [ "exec" "simple" "forking" "oneshot" "dbus" "notify" "notify-reload" "idle" ]
        && lib.elem (cfg.Restart or "no") [ "no" "on-success" "on-failure" "on-abnormal" "on-abort" "on-watchdog" "always" ];

      listOfUnits = mkOption { type = types.listOf unitNameType; default = [ ]; };
      unitOptions = {
        enable = mkOption { type = types.bool; default = true; };
        description = mkOption { type = types.singleLineStr; default = ""; };
        overrideStrategy = mkOption { type = types.enum [ "asDropinIfExists" "asDropin" ]; default = "asDropinIfExists"; };
        wantedBy = listOfUnits;
        requiredBy = listOfUnits;
        requires = listOfUnits;
        wants = listOfUnits;
        after = listOfUnits;
        before = listOfUnits;
        partOf = listOfUnits;
        unitConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
        restartTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
        reloadTriggers = mkOption { type = types.listOf types.unspecified; default = [ ]; };
      };
      service = {
        options = unitOptions // {
          environment = mkOption { type = with types; attrsOf (nullOr (oneOf [ str path package ])); default = { }; };
          path = mkOption { type = with types; listOf (oneOf [ package str ]); default = [ ]; };
          serviceConfig = mkOption { type = types.addCheck (types.attrsOf unitOption) validServiceConfig; default = { }; };
          script = mkOption { type = types.lines; default = ""; };
          preStart = mkOption { type = types.lines; default = ""; };
          postStart = mkOption { type = types.lines; default = ""; };
          restartIfChanged = mkOption { type = types.bool; default = true; };
          reloadIfChanged = mkOption { type = types.bool; default = false; };
          stopIfChanged = mkOption { type = types.bool; default = true; };
        };
      };
      socket = {
        options = unitOptions // {
          listenStreams = mkOption { type = types.listOf types.str; default = [ ]; };
          listenDatagrams = mkOption { type = types.listOf types.str; default = [ ]; };
          socketConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
        };
      };
      # nixos/modules/system/boot/systemd/tmpfiles.nix: settings.<file>.<path>.<type>
      tmpfilesEntry = { name, ... }: {
        options = {
          type = mkOption { type = types.str; default = name; };
          mode = mkOption { type = types.str; default = "-"; };
          user = mkOption { type = types.str; default = "-"; };
          group = mkOption { type = types.str; default = "-"; };
          age = mkOption { type = types.str; default = "-"; };
          argument = mkOption { type = types.str; default = ""; };
        };
      };
      # nixos/modules/config/sysctl.nix
      sysctlOption = lib.mkOptionType {
        name = "sysctl option value";
        check = val:
          let checkType = x: lib.isBool x || lib.isString x || lib.isInt x || x == null;
          in checkType val || (val._type or "" == "override" && checkType val.content);
        merge = loc: defs: lib.mergeOneOption loc (lib.filterOverrides defs);
      };
      # nixos/modules/config/nix.nix
      confAtom = types.nullOr (types.oneOf [ types.bool types.int types.float types.str types.path types.package ]);
      etcFile = { name, config, options, ... }: {
        options = {
          enable = mkOption { type = types.bool; default = true; };
          target = mkOption { type = types.str; default = name; };
          text = mkOption { type = types.nullOr types.lines; default = null; };
          source = mkOption { type = types.path; };
          mode = mkOption { type = types.str; default = "symlink"; };
          user = mkOption { type = types.str; default = "+0"; };
          group = mkOption { type = types.str; default = "+0"; };
        };
        config.source = mkIf (config.text != null) (lib.mkDerivedConfig options.text (pkgs.writeText name));
      };
      user = {
        options = {
          description = mkOption { type = types.str; default = ""; };
          isSystemUser = mkOption { type = types.bool; default = false; };
          group = mkOption { type = types.str; default = ""; };
          home = mkOption { type = types.path; default = "/var/empty"; };
          openssh.authorizedKeys = {
            keys = mkOption { type = types.listOf types.singleLineStr; default = [ ]; };
            keyFiles = mkOption { type = types.listOf types.path; default = [ ]; };
          };
        };
      };
    in
    {
      options = {
        # nixos/modules/misc/assertions.nix
        assertions = mkOption { type = types.listOf types.unspecified; internal = true; default = [ ]; };
        warnings = mkOption { type = types.listOf types.str; internal = true; default = [ ]; };

        system.stateVersion = mkOption { type = types.str; default = "26.05"; };
        # nixos/modules/system/activation/activation-script.nix: a fragment, or one with deps.
        system.activationScripts = mkOption {
          type = types.attrsOf (types.either types.str (types.submodule {
            options = {
              deps = mkOption { type = types.listOf types.str; default = [ ]; };
              text = mkOption { type = types.lines; };
              supportsDryActivation = mkOption { type = types.bool; default = false; };
            };
          }));
          default = { };
        };
        # nixos/modules/system/activation/specialisation.nix: each configuration extends the
        # parent's (inheritParentConfig); cases.nix evaluates them that way.
        specialisation = mkOption {
          type = types.attrsOf (types.submodule {
            options = {
              inheritParentConfig = mkOption { type = types.bool; default = true; };
              configuration = mkOption { type = types.deferredModule; default = { }; };
            };
          });
          default = { };
        };
        virtualisation.memorySize = mkOption { type = types.ints.positive; default = 1024; };
        virtualisation.amazon-init.enable = mkOption { type = types.bool; default = true; };

        environment.systemPackages = mkOption { type = types.listOf types.package; default = [ ]; };
        environment.etc = mkOption { type = types.attrsOf (types.submodule etcFile); default = { }; };

        systemd.package = mkOption { type = types.package; default = pkgs.systemd; };
        systemd.packages = mkOption { type = types.listOf types.package; default = [ ]; };
        systemd.services = mkOption { type = types.attrsOf (types.submodule service); default = { }; };
        systemd.sockets = mkOption { type = types.attrsOf (types.submodule socket); default = { }; };
        systemd.tmpfiles.rules = mkOption { type = types.listOf types.str; default = [ ]; };
        systemd.tmpfiles.settings = mkOption {
          type = types.attrsOf (types.attrsOf (types.attrsOf (types.submodule tmpfilesEntry)));
          default = { };
        };

        boot.kernel.sysctl = mkOption {
          type = types.submodule {
            freeformType = types.attrsOf sysctlOption;
            options = lib.genAttrs [ "net.core.rmem_max" "net.core.wmem_max" ] (_: mkOption {
              # The highest definition wins (several modules raise these buffers).
              type = types.nullOr (types.ints.unsigned // { merge = _: defs: lib.foldl lib.max 0 (lib.getValues defs); });
              default = null;
            });
          };
          default = { };
        };

        networking.firewall.allowedTCPPorts = mkOption { type = types.listOf types.port; default = [ ]; };

        nix.settings = mkOption {
          type = types.submodule {
            freeformType = types.attrsOf (types.either confAtom (types.listOf confAtom));
            options = {
              substituters = mkOption { type = types.listOf types.str; };
              trusted-public-keys = mkOption { type = types.listOf types.str; };
              experimental-features = mkOption { type = types.listOf types.str; default = [ ]; };
            };
          };
          default = { };
        };

        users.users = mkOption { type = types.attrsOf (types.submodule user); default = { }; };
        users.groups = mkOption { type = types.attrsOf (types.submodule { options.gid = mkOption { type = types.nullOr types.int; default = null; }; }); default = { }; };

        services.openssh = {
          enable = mkOption { type = types.bool; default = false; };
          settings = mkOption {
            type = types.submodule {
              freeformType = types.attrsOf (types.nullOr (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ]));
              options = {
                PasswordAuthentication = mkOption { type = types.bool; default = true; };
                KbdInteractiveAuthentication = mkOption { type = types.bool; default = true; };
                PermitRootLogin = mkOption {
                  type = types.nullOr (types.enum [ "yes" "without-password" "prohibit-password" "forced-commands-only" "no" ]);
                  default = "prohibit-password";
                };
              };
            };
            default = { };
          };
        };

        services.loki = {
          enable = lib.mkEnableOption "loki";
          dataDir = mkOption { type = types.path; default = "/var/lib/loki"; };
          configuration = mkOption { type = types.attrs; default = { }; };
          configFile = mkOption { type = types.nullOr types.path; default = null; };
        };

        services.alloy = {
          enable = lib.mkEnableOption "Grafana Alloy";
          configPath = mkOption { type = types.path; default = "/etc/alloy"; };
          extraFlags = mkOption { type = types.listOf types.str; default = [ ]; };
        };
      };

      config = {
        nix.settings = {
          substituters = lib.mkAfter [ "https://cache.nixos.org/" ];
          trusted-public-keys = lib.mkAfter [ "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=" ];
        };
        # nixos/modules/system/boot/systemd.nix
        warnings = lib.concatLists (lib.mapAttrsToList
          (name: service: lib.optional (service.reloadIfChanged && service.reloadTriggers != [ ])
            "Service '${name}.service' has both 'reloadIfChanged' and 'reloadTriggers' set. This is probably not what you want, because 'reloadTriggers' behave the same whay as 'restartTriggers' if 'reloadIfChanged' is set.")
          config.systemd.services);
        assertions = [{
          assertion = !config.services.loki.enable || ((config.services.loki.configuration == { }) != (config.services.loki.configFile == null));
          message = "Please specify either services.loki.configuration or services.loki.configFile.";
        }];
      };
    };

  prometheus = { config, lib, ... }:
    let
      inherit (lib) mkOption types;
      mkOpt = type: mkOption { type = types.nullOr type; default = null; };
      relabel = types.submodule {
        options = {
          source_labels = mkOpt (types.listOf types.str);
          separator = mkOpt types.str;
          target_label = mkOpt types.str;
          regex = mkOpt types.str;
          modulus = mkOpt types.int;
          replacement = mkOpt types.str;
          action = mkOpt (types.enum [ "replace" "lowercase" "uppercase" "keep" "drop" "hashmod" "labelmap" "labeldrop" "labelkeep" ]);
        };
      };
      static = types.submodule {
        options = {
          targets = mkOption { type = types.listOf types.str; };
          labels = mkOption { type = types.attrsOf types.str; default = { }; };
        };
      };
      ec2 = types.submodule {
        options = {
          region = mkOption { type = types.str; };
          endpoint = mkOpt types.str;
          access_key = mkOpt types.str;
          secret_key = mkOpt types.str;
          profile = mkOpt types.str;
          role_arn = mkOpt types.str;
          refresh_interval = mkOpt types.str;
          port = mkOpt types.port;
          filters = mkOpt (types.listOf (types.submodule {
            options = {
              name = mkOption { type = types.str; };
              values = mkOption { type = types.listOf types.str; default = [ ]; };
            };
          }));
        };
      };
      scrapeConfig = types.submodule {
        options = {
          job_name = mkOption { type = types.str; };
          scrape_interval = mkOpt types.str;
          scrape_timeout = mkOpt types.str;
          metrics_path = mkOpt types.str;
          honor_labels = mkOpt types.bool;
          scheme = mkOpt (types.enum [ "http" "https" ]);
          params = mkOpt (types.attrsOf (types.listOf types.str));
          static_configs = mkOpt (types.listOf static);
          ec2_sd_configs = mkOpt (types.listOf ec2);
          relabel_configs = mkOpt (types.listOf relabel);
          metric_relabel_configs = mkOpt (types.listOf relabel);
        };
      };
      cfg = config.services.prometheus;
    in
    {
      options.services.prometheus = {
        enable = lib.mkEnableOption "Prometheus monitoring daemon";
        port = mkOption { type = types.port; default = 9090; };
        listenAddress = mkOption { type = types.str; default = "0.0.0.0"; };
        retentionTime = mkOption { type = types.nullOr types.str; default = null; };
        ruleFiles = mkOption { type = types.listOf types.path; default = [ ]; };
        globalConfig = mkOption {
          type = types.submodule {
            options = {
              scrape_interval = mkOpt types.str;
              scrape_timeout = mkOpt types.str;
              evaluation_interval = mkOpt types.str;
              external_labels = mkOpt (types.attrsOf types.str);
            };
          };
          default = { };
        };
        scrapeConfigs = mkOption { type = types.listOf scrapeConfig; default = [ ]; };
        alertmanagers = mkOption { type = types.listOf types.attrs; default = [ ]; };
        # services/monitoring/prometheus/alertmanager.nix
        alertmanager = {
          enable = lib.mkEnableOption "Prometheus Alertmanager";
          port = mkOption { type = types.port; default = 9093; };
          listenAddress = mkOption { type = types.str; default = ""; };
          configuration = mkOption { type = types.nullOr types.attrs; default = null; };
        };
        # services/monitoring/prometheus/exporters.nix (node)
        exporters.node = {
          enable = lib.mkEnableOption "the prometheus node exporter";
          port = mkOption { type = types.port; default = 9100; };
          listenAddress = mkOption { type = types.str; default = "0.0.0.0"; };
          openFirewall = mkOption { type = types.bool; default = false; };
        };
      };
      config.assertions = lib.optional cfg.enable {
        assertion = builtins.match "(.*\\..*|.*]):([[:digit:]]+)" cfg.listenAddress == null;
        message = "Do not specify the port for Prometheus to listen on in the listenAddress option; use the port option instead.";
      };
    };

  grafana = { config, lib, pkgs, ... }:
    let
      inherit (lib) mkOption types;
      cfg = config.services.grafana;
      yaml = (pkgs.formats.json { }).type; # nixpkgs: formats.yaml, the same value type
      datasource = types.submodule {
        freeformType = yaml;
        options = {
          access = mkOption { type = types.enum [ "proxy" "direct" ]; default = "proxy"; };
          editable = mkOption { type = types.bool; default = false; };
          jsonData = mkOption { type = types.nullOr types.attrs; default = null; };
          name = mkOption { type = types.str; };
          secureJsonData = mkOption { type = types.nullOr types.attrs; default = null; };
          type = mkOption { type = types.str; };
          uid = mkOption { type = types.nullOr types.str; default = null; };
          url = mkOption { type = types.str; default = ""; };
        };
      };
      dashboardProvider = types.submodule {
        freeformType = yaml;
        options = {
          options.path = mkOption { type = types.path; };
          name = mkOption { type = types.str; default = "default"; };
          type = mkOption { type = types.str; default = "file"; };
        };
      };
      provisioning = listName: listType: {
        path = mkOption { type = types.nullOr types.path; default = null; };
        settings = mkOption {
          type = types.nullOr (types.submodule {
            options = {
              apiVersion = mkOption { type = types.int; default = 1; };
              ${listName} = mkOption { type = types.listOf listType; default = [ ]; };
            };
          });
          default = null;
        };
      };
    in
    {
      options.services.grafana = {
        enable = lib.mkEnableOption "grafana";
        dataDir = mkOption { type = types.path; default = "/var/lib/grafana"; };
        openFirewall = mkOption { type = types.bool; default = false; };
        provision = {
          enable = lib.mkEnableOption "provision";
          datasources = provisioning "datasources" datasource;
          dashboards = provisioning "providers" dashboardProvider;
        };
        settings = mkOption {
          type = types.submodule {
            freeformType = types.attrsOf (types.attrsOf (types.nullOr (types.oneOf [ types.bool types.int types.float types.str (types.listOf types.str) ])));
            options = {
              server = {
                http_addr = mkOption { type = types.str; default = "127.0.0.1"; };
                http_port = mkOption { type = types.port; default = 3000; };
                domain = mkOption { type = types.str; default = "localhost"; };
                protocol = mkOption { type = types.enum [ "http" "https" "h2" "socket" ]; default = "http"; };
              };
              security = {
                admin_user = mkOption { type = types.str; default = "admin"; };
                admin_password = mkOption { type = types.str; default = "admin"; };
                secret_key = mkOption { type = types.nullOr types.str; default = null; };
              };
            };
          };
          default = { };
        };
      };
      config.assertions = lib.optionals cfg.enable [
        {
          assertion = cfg.provision.datasources.settings == null || cfg.provision.datasources.path == null;
          message = "Cannot set both datasources settings and datasources path";
        }
        {
          assertion = cfg.provision.datasources.settings == null
            || lib.all ({ access, type, ... }: type == "prometheus" -> access != "direct") cfg.provision.datasources.settings.datasources;
          message = "For datasources of type `prometheus`, the `direct` access mode is not supported anymore (since Grafana 9.2.0)";
        }
        {
          assertion = cfg.provision.dashboards.settings == null || cfg.provision.dashboards.path == null;
          message = "Cannot set both dashboards settings and dashboards path";
        }
        {
          assertion = cfg.settings.security.secret_key != null;
          message = "Grafana's secret key (services.grafana.settings.security.secret_key) doesn't have a default value anymore.";
        }
      ];
    };

  # services/databases/redis.nix: the options, the redis.conf settings they make, the
  # assertion, and the unit redis-<name> with its user.
  redis = { config, lib, pkgs, ... }:
    let
      inherit (lib) mkOption types;
      cfg = config.services.redis;
      redisName = name: "redis" + lib.optionalString (name != "") ("-" + name);
      enabledServers = lib.filterAttrs (_: conf: conf.enable) cfg.servers;
      mkValueString = value:
        if value == true then "yes"
        else if value == false then "no"
        else lib.generators.mkValueStringDefault { } value;
      redisConfig = settings: pkgs.writeText "redis.conf" (lib.generators.toKeyValue
        {
          listsAsDuplicateKeys = true;
          mkKeyValue = lib.generators.mkKeyValueDefault { inherit mkValueString; } " ";
        }
        settings);
      server = { config, name, ... }: {
        options = {
          enable = lib.mkEnableOption "Redis server";
          user = mkOption { type = types.str; default = redisName name; };
          group = mkOption { type = types.str; default = config.user; };
          port = mkOption { type = types.port; default = if name == "" then 6379 else 0; };
          openFirewall = mkOption { type = types.bool; default = false; };
          extraParams = mkOption { type = types.listOf types.str; default = [ ]; };
          bind = mkOption { type = types.nullOr types.str; default = "127.0.0.1"; };
          unixSocket = mkOption { type = types.nullOr types.path; default = "/run/${redisName name}/redis.sock"; };
          unixSocketPerm = mkOption { type = types.int; default = 660; };
          logLevel = mkOption { type = types.str; default = "notice"; };
          logfile = mkOption { type = types.str; default = "/dev/null"; };
          syslog = mkOption { type = types.bool; default = true; };
          databases = mkOption { type = types.int; default = 16; };
          maxclients = mkOption { type = types.int; default = 10000; };
          save = mkOption { type = types.listOf (types.listOf types.int); default = [ [ 900 1 ] [ 300 10 ] [ 60 10000 ] ]; };
          slaveOf = mkOption {
            type = types.nullOr (types.submodule {
              options = {
                ip = mkOption { type = types.str; };
                port = mkOption { type = types.port; default = 6379; };
              };
            });
            default = null;
          };
          masterAuth = mkOption { type = types.nullOr types.str; default = null; };
          requirePass = mkOption { type = types.nullOr types.str; default = null; };
          requirePassFile = mkOption { type = types.nullOr types.path; default = null; };
          appendOnly = mkOption { type = types.bool; default = false; };
          appendFsync = mkOption { type = types.str; default = "everysec"; };
          slowLogLogSlowerThan = mkOption { type = types.int; default = 10000; };
          slowLogMaxLen = mkOption { type = types.int; default = 128; };
          settings = mkOption { type = with types; attrsOf (oneOf [ bool int str (listOf str) ]); default = { }; };
        };
        config.settings = lib.mkMerge [
          {
            inherit (config) port logfile databases maxclients appendOnly;
            daemonize = false;
            supervised = "systemd";
            loglevel = config.logLevel;
            syslog-enabled = config.syslog;
            save = if config.save == [ ] then ''""'' else map (d: "${toString (builtins.elemAt d 0)} ${toString (builtins.elemAt d 1)}") config.save;
            dbfilename = "dump.rdb";
            dir = "/var/lib/${redisName name}";
            appendfsync = config.appendFsync;
            slowlog-log-slower-than = config.slowLogLogSlowerThan;
            slowlog-max-len = config.slowLogMaxLen;
          }
          (lib.mkIf (config.bind != null) { inherit (config) bind; })
          (lib.mkIf (config.unixSocket != null) { unixsocket = config.unixSocket; unixsocketperm = toString config.unixSocketPerm; })
          (lib.mkIf (config.slaveOf != null) { slaveof = "${config.slaveOf.ip} ${toString config.slaveOf.port}"; })
          (lib.mkIf (config.masterAuth != null) { masterauth = config.masterAuth; })
          (lib.mkIf (config.requirePass != null) { requirepass = config.requirePass; })
        ];
      };
    in
    {
      options.services.redis = {
        package = mkOption { type = types.package; default = pkgs.redis; };
        vmOverCommit = lib.mkEnableOption "vm.overcommit_memory = 1" // { default = true; };
        servers = mkOption { type = types.attrsOf (types.submodule server); default = { }; };
      };
      config = lib.mkIf (enabledServers != { }) {
        assertions = lib.mapAttrsToList
          (name: conf: {
            assertion = conf.requirePass != null -> conf.requirePassFile == null;
            message = "You can only set one services.redis.servers.${name}.requirePass or services.redis.servers.${name}.requirePassFile";
          })
          enabledServers;
        boot.kernel.sysctl = lib.mkIf cfg.vmOverCommit { "vm.overcommit_memory" = "1"; };
        networking.firewall.allowedTCPPorts = lib.concatMap (conf: lib.optional conf.openFirewall conf.port) (lib.attrValues enabledServers);
        environment.systemPackages = [ cfg.package ];
        users.users = lib.mapAttrs' (name: _: lib.nameValuePair (redisName name) { description = "System user for the redis-server instance ${name}"; isSystemUser = true; group = redisName name; }) enabledServers;
        users.groups = lib.mapAttrs' (name: _: lib.nameValuePair (redisName name) { }) enabledServers;
        systemd.services = lib.mapAttrs'
          (name: conf: lib.nameValuePair (redisName name) {
            description = "Redis Server - ${redisName name}";
            wantedBy = [ "multi-user.target" ];
            after = [ "network.target" ];
            serviceConfig = {
              ExecStart = "${cfg.package}/bin/redis-server /var/lib/${redisName name}/redis.conf ${lib.escapeShellArgs conf.extraParams}";
              # nixpkgs' script writes an include of this file (and requirepass from
              # requirePassFile) into the state directory's redis.conf.
              ExecStartPre = "+" + pkgs.writeShellScript "${redisName name}-prep-conf" "include ${redisConfig conf.settings}";
              Type = "notify";
              User = conf.user;
              Group = conf.group;
              RuntimeDirectory = redisName name;
              StateDirectory = redisName name;
              UMask = "0077";
            };
          })
          enabledServers;
      };
    };

  traefikCommon = { lib, ... }: {
    options.services.traefik = {
      enable = lib.mkEnableOption "Traefik web server";
      dataDir = lib.mkOption { type = lib.types.path; default = "/var/lib/traefik"; };
      group = lib.mkOption { type = lib.types.str; default = "traefik"; };
      environmentFiles = lib.mkOption { type = lib.types.listOf lib.types.path; default = [ ]; };
    };
  };

  # The value type of the Traefik settings options (jsonValue / formats.json type).
  traefikValue = pkgs: (pkgs.formats.json { }).type;

  traefikClassic = { lib, pkgs, ... }: {
    options.services.traefik = {
      staticConfigFile = lib.mkOption { type = lib.types.nullOr lib.types.path; default = null; };
      staticConfigOptions = lib.mkOption { type = traefikValue pkgs; default = { entryPoints.http.address = ":80"; }; };
      dynamicConfigFile = lib.mkOption { type = lib.types.nullOr lib.types.path; default = null; };
      dynamicConfigOptions = lib.mkOption { type = traefikValue pkgs; default = { }; };
    };
  };

  traefikRefactored = { config, options, lib, pkgs, ... }:
    let
      inherit (lib) mkOption types;
      cfg = config.services.traefik;
      opt = options.services.traefik;
      value = traefikValue pkgs;
      nullPath = mkOption { type = types.nullOr types.path; default = null; };
      renamed = from: to: lib.mkRenamedOptionModule [ "services" "traefik" from ] ([ "services" "traefik" ] ++ to);
    in
    {
      imports = [
        (renamed "staticConfigFile" [ "static" "file" ])
        (renamed "staticConfigOptions" [ "static" "settings" ])
        (renamed "dynamicConfigFile" [ "dynamic" "file" ])
        (renamed "dynamicConfigOptions" [ "dynamic" "settings" ])
      ];
      options.services.traefik = {
        static = {
          file = nullPath;
          settings = mkOption { type = value; default = { entryPoints.http.address = ":80"; }; };
        };
        dynamic = {
          file = nullPath;
          dir = nullPath;
          settings = mkOption { type = value; default = { }; };
          files = mkOption { type = types.attrsOf (types.submodule { options.settings = mkOption { type = value; }; }); default = { }; };
        };
      };
      config.assertions = lib.optionals cfg.enable [
        {
          assertion = cfg.static.file != opt.static.file.default -> cfg.static.settings == opt.static.settings.default;
          message = "The 'services.traefik.static.file' and 'services.traefik.static.settings' options are mutually exclusive for the Traefik static config.";
        }
        {
          assertion = cfg.static.file != opt.static.file.default
            -> (cfg.dynamic.files == opt.dynamic.files.default && cfg.dynamic.dir == opt.dynamic.dir.default && cfg.dynamic.file == opt.dynamic.file.default);
          message = "None of the dynamic configuration options may be used if Traefik is being managed imperatively.";
        }
        {
          assertion = cfg.dynamic.file != opt.dynamic.file.default -> cfg.dynamic.dir == opt.dynamic.dir.default;
          message = "The 'services.traefik.dynamic.file' and 'services.traefik.dynamic.dir' options are mutually exclusive.";
        }
      ];
    };
in
[ common prometheus grafana redis traefikCommon ]
++ (
  if traefikShape == "classic" then [ traefikClassic ]
  else if traefikShape == "refactored" then [ traefikRefactored ]
  else throw "traefikShape must be \"classic\" or \"refactored\", got ${builtins.toJSON traefikShape}"
)
