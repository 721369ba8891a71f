# The monitoring wiring of a concurrent-socket host, as plain data: Prometheus' scrape
# configuration (both colours with label `colour`, Traefik as job `traefik`), Loki's
# configuration with the two retentions, Grafana Alloy's journal pipeline and Grafana's
# datasources (docs/architecture.md, "Metrics").
#
# Pure Nix (builtins only): the NixOS module feeds these to services.prometheus,
# services.loki, services.alloy and services.grafana; ci/suites/50-nix.sh renders the
# Prometheus configuration and runs it against real servers. For example:
#
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib/monitoring.nix { }).prometheusConfig {
#     ruleFiles = [ "alerts/alerts.yml" ]; }'
{}:
let
  inherit (builtins) attrNames filter match readDir;
  instancesLib = import ./instances.nix { };
in
rec {
  ports = {
    prometheus = 9090;
    loki = 3100;
    lokiGrpc = 9096;
    grafana = 3000;
  };

  # A drain lasts SHUTDOWN_TIMEOUT (10 s by default): scrape the server often enough to see
  # `websocket_draining` rise, which the down alerts rely on (docs/monitoring.md). The same
  # on a single host and on the fleet's monitoring host.
  serverScrapeInterval = "5s";

  # The rule files of a directory (the repository's alerts/): every regular *.yml or *.yaml.
  ruleFiles = dir:
    let entries = readDir dir;
    in map (name: dir + "/${name}")
      (filter (name: entries.${name} == "regular" && match ".*\\.ya?ml" name != null) (attrNames entries));

  # Grafana's provider of the shipped dashboards (grafana/dashboards in the server package).
  grafanaDashboardProviders = dashboardsDir: [{
    name = "concurrent-socket";
    folder = "concurrent-socket";
    options.path = dashboardsDir;
  }];

  # One job for the server, one target per colour labelled with it; Traefik's own metrics.
  scrapeConfigs =
    { instances ? instancesLib.defaultInstances
    , traefikTarget ? "127.0.0.1:8084"
    }:
    let
      full = instancesLib.withDefaults instances;
    in
    [
      {
        job_name = "concurrent-socket";
        scrape_interval = serverScrapeInterval;
        static_configs = map
          (colour: {
            targets = [ (instancesLib.metricsTarget full.${colour}) ];
            labels.colour = colour;
          })
          (attrNames full);
      }
    ]
    ++ (if traefikTarget == null then [ ] else [{
      job_name = "traefik";
      static_configs = [{ targets = [ traefikTarget ]; }];
    }]);

  # A whole prometheus.yml, as the NixOS module's options add up to (for promtool and tests).
  prometheusConfig =
    { instances ? instancesLib.defaultInstances
    , traefikTarget ? "127.0.0.1:8084"
    , ruleFiles ? [ ]
    , interval ? "15s"
    , alertmanagerTarget ? null
    }:
    {
      global = {
        scrape_interval = interval;
        evaluation_interval = interval;
      };
      rule_files = ruleFiles;
      scrape_configs = scrapeConfigs { inherit instances traefikTarget; };
    }
    // (if alertmanagerTarget == null then { } else {
      alerting.alertmanagers = [{ static_configs = [{ targets = [ alertmanagerTarget ]; }]; }];
    });

  # Journal priorities whose lines Loki keeps for `errorRetention` (label `level`, set by Alloy).
  errorLevels = [ "emerg" "alert" "crit" "error" ];

  # Loki 3 on one host: filesystem storage, TSDB index, retention enforced by the compactor.
  lokiConfig =
    { dataDir ? "/var/lib/loki"
    , retention ? "336h"
    , errorRetention ? "720h"
    }:
    {
      auth_enabled = false;
      server = {
        http_listen_address = "127.0.0.1";
        http_listen_port = ports.loki;
        grpc_listen_address = "127.0.0.1";
        grpc_listen_port = ports.lokiGrpc;
      };
      common = {
        path_prefix = dataDir;
        replication_factor = 1;
        ring = {
          instance_addr = "127.0.0.1";
          kvstore.store = "inmemory";
        };
        storage.filesystem = {
          chunks_directory = "${dataDir}/chunks";
          rules_directory = "${dataDir}/rules";
        };
      };
      schema_config.configs = [{
        from = "2026-01-01";
        store = "tsdb";
        object_store = "filesystem";
        schema = "v13";
        index = {
          prefix = "index_";
          period = "24h";
        };
      }];
      limits_config = {
        retention_period = retention;
        retention_stream = [{
          selector = "{level=~\"${builtins.concatStringsSep "|" errorLevels}\"}";
          priority = 1;
          period = errorRetention;
        }];
      };
      compactor = {
        working_directory = "${dataDir}/compactor";
        retention_enabled = true;
        delete_request_store = "filesystem";
      };
    };

  # Grafana Alloy: the journal to Loki, labelled `unit` (the systemd unit), `instance` (the
  # colour of a ws@COLOUR unit), `level` (the journal priority keyword) and `host` (so that a
  # fleet's hosts shipping to one Loki stay apart).
  alloyConfig = { lokiUrl ? "http://127.0.0.1:${toString ports.loki}" }: ''
    loki.relabel "journal" {
      forward_to = []

      rule {
        source_labels = ["__journal__systemd_unit"]
        target_label  = "unit"
      }

      rule {
        source_labels = ["__journal__systemd_unit"]
        regex         = "ws@(.+)\\.service"
        target_label  = "instance"
      }

      rule {
        source_labels = ["__journal_priority_keyword"]
        target_label  = "level"
      }

      rule {
        source_labels = ["__journal__hostname"]
        target_label  = "host"
      }
    }

    loki.source.journal "journal" {
      forward_to    = [loki.write.local.receiver]
      relabel_rules = loki.relabel.journal.rules
      labels        = { job = "systemd-journal" }
    }

    loki.write "local" {
      endpoint {
        url = "${lokiUrl}/loki/api/v1/push"
      }
    }
  '';

  # Shell lines for Grafana's preStart: a random secret (24 bytes, base64) into each of
  # `files` that is missing or empty, readable by Grafana's user only. Grafana reads them
  # through its `$__file{...}` provider: the secret key, the admin password.
  grafanaSecretsScript = files: ''
    for secret in ${builtins.concatStringsSep " " (map (f: "'${f}'") files)}; do
      if [ ! -s "$secret" ]; then
        (umask 077; head -c 24 /dev/urandom | base64 > "$secret")
      fi
    done
  '';

  # Datasources by fixed uid: the dashboards in grafana/ refer to `prometheus` and `loki`.
  grafanaDatasources =
    { prometheusUrl ? "http://127.0.0.1:${toString ports.prometheus}"
    , lokiUrl ? "http://127.0.0.1:${toString ports.loki}"
    }:
    (if prometheusUrl == null then [ ] else [{
      name = "Prometheus";
      type = "prometheus";
      uid = "prometheus";
      url = prometheusUrl;
      isDefault = true;
    }])
    ++ (if lokiUrl == null then [ ] else [{
      name = "Loki";
      type = "loki";
      uid = "loki";
      url = lokiUrl;
    }]);
}
