# Assertions over the pure-Nix library (nixos/lib/): ports, per-instance unit settings,
# environment files, the Traefik files the module writes, and the monitoring wiring
# (scrape jobs, Loki retention, Alloy labels, Grafana datasources). Evaluates to
# { passed = N; } when every case holds; otherwise evaluation fails listing each failing
# case with what it got. Run from the repository root:
#
#   nix-instantiate --eval --strict --json nixos/tests/lib.nix
let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    length
    map
    toJSON
    tryEval
    ;

  instances = import ../lib/instances.nix { };
  traefik = import ../lib/traefik.nix { };
  monitoring = import ../lib/monitoring.nix { };
  host = import ../lib/host.nix { };
  redis = import ../lib/redis.nix { };
  brokerCheck = args: redis.check ({ type = "redis"; local = true; url = null; passwordFile = null; } // args);
  direct = import ../lib/direct.nix { };
  directBase = traefik.base { websocketRoute = false; loopbackEntryPoint = "loopback"; };

  # A case: its name, what the library gave, what it must be.
  eq = name: got: want: { inherit name got want; };

  # Evaluation must fail (a throw naming the problem, not a broken file).
  fails = name: expr: {
    inherit name;
    got = (tryEval expr).success;
    want = false;
  };

  base = traefik.base { };
  routers = base.http.routers;
  middlewares = base.http.middlewares;
  services = base.http.services;

  loadTestBase = traefik.base {
    instances = {
      blue.port = 4001;
      green.port = 4002;
    };
    rateLimits.ws.average = 1000;
  };

  tlsBase = traefik.base {
    host = "ws.example.com";
    entryPoints = [ "websecure" ];
    certResolver = traefik.certResolverName;
  };

  loopbackBase = traefik.base {
    host = "ws.example.com";
    entryPoints = [ "websecure" ];
    certResolver = traefik.certResolverName;
    loopbackEntryPoint = "loopback";
  };

  split = traefik.routing {
    weights = {
      green = 10;
      blue = 90;
      red = 0;
    };
  };

  acmeStatic = traefik.static {
    acme = {
      email = "ops@example.com";
      storage = "/var/lib/traefik/acme.json";
    };
  };
  plainStatic = traefik.static { dynamicDir = "/var/lib/concurrent-socket/traefik"; };
  loopbackStatic = traefik.static { loopbackAddress = "127.0.0.1:8081"; };
  metricsStatic = traefik.static { metricsAddress = "127.0.0.1:8084"; };

  blueUnits = instances.unitSettings "blue" instances.defaultInstances.blue;

  scrape = monitoring.scrapeConfigs { };
  loki = monitoring.lokiConfig { };
  alloy = monitoring.alloyConfig { };
  alloyLines = builtins.filter builtins.isString (builtins.split "\n" alloy);
  # Alloy's configuration, checked line by line (indentation included).
  alloyHas = line: builtins.elem line alloyLines;

  # Names a router or weighted service refers to that no file defines.
  dangling =
    let
      referencedMiddlewares = builtins.concatLists (map (r: routers.${r}.middlewares) (attrNames routers));
      defined = attrNames services ++ attrNames (traefik.seedRouting "blue").http.services;
      referencedServices = map (r: routers.${r}.service) (attrNames routers)
        ++ map (s: s.name) split.http.services.ws-active.weighted.services;
    in
    filter (m: !(middlewares ? ${m})) referencedMiddlewares ++ filter (s: !(builtins.elem s defined)) referencedServices;

  cases = [
    # Ports and units (docs/architecture.md, "Ports and instances on a host").
    (eq "default colours" (attrNames instances.defaultInstances) [ "blue" "green" ])
    (eq "blue ports" (with instances.defaultInstances.blue; [ port metricsPort ]) [ 3001 9464 ])
    (eq "green ports" (with instances.defaultInstances.green; [ port metricsPort ]) [ 3002 9465 ])
    (eq "blue public socket" blueUnits.socket { unit = "ws@blue.socket"; listenStreams = [ "" "127.0.0.1:3001" ]; })
    (eq "blue metrics socket" blueUnits.metricsSocket { unit = "ws-metrics@blue.socket"; listenStreams = [ "" "127.0.0.1:9464" ]; })
    (eq "blue service and env file" [ blueUnits.service blueUnits.envFileName ] [ "ws@blue.service" "concurrent-socket/blue.env" ])
    (eq "no settings, empty env file" blueUnits.envFileText "")
    (eq "env file rendering"
      (instances.envFile {
        MAX_CONNECTIONS = 20000;
        ALLOWED_ORIGINS = [ "https://a.example" "https://b.example" ];
        ENABLE_ECHO = true;
        LOG_LEVEL = "info,concurrent_socket=\"debug\"";
      })
      ''
        ALLOWED_ORIGINS="https://a.example,https://b.example"
        ENABLE_ECHO="true"
        LOG_LEVEL="info,concurrent_socket=\"debug\""
        MAX_CONNECTIONS="20000"
      '')
    (eq "partial instance completed from defaults" (instances.withDefaults { green.port = 5002; }).green { port = 5002; metricsPort = 9465; settings = { }; })

    # Instance checks: every problem named, none for the defaults.
    (eq "defaults are valid" (instances.check { instances = instances.defaultInstances; active = "green"; }) [ ])
    (eq "unknown active colour" (instances.check { instances = instances.defaultInstances; active = "red"; }) [ "active colour 'red' is not one of the instances (blue, green)" ])
    (eq "port clash" (instances.check { instances = instances.defaultInstances // { green = instances.defaultInstances.green // { metricsPort = 3001; }; }; })
      [ "port 3001 is used twice (every port and metricsPort must be distinct)" ])
    (eq "bad name, port, variable, value"
      (instances.check {
        instances = {
          Blue = { port = 70000; metricsPort = 9464; settings = { max = 1; LOG_LEVEL = "a\nb"; ALLOWED_ORIGINS = [{ }]; }; };
        };
      })
      [
        "instance name 'Blue' must match [a-z][a-z0-9-]*"
        "instance Blue: port must be an integer in 1..65535, got 70000"
        "instance Blue: setting 'max' is not an environment variable name ([A-Z][A-Z0-9_]*)"
        "instance Blue: setting ALLOWED_ORIGINS a list may hold only strings and integers"
        "instance Blue: setting LOG_LEVEL must not contain a line break"
      ])
    (eq "no instances" (instances.check { instances = { }; }) [ "at least one instance is required" ])

    # base.yml: routers, middlewares and services of docs/architecture.md.
    (eq "routers" (attrNames routers) [ "ws" "ws-http" ])
    (eq "ws router rule" routers.ws.rule "PathPrefix(`/ws/`)")
    (eq "ws-http router rule" routers.ws-http.rule "PathPrefix(`/`)")
    (eq "ws router wins" (routers.ws.priority > routers.ws-http.priority) true)
    (eq "both routers forward to ws-active" [ routers.ws.service routers.ws-http.service ] [ "ws-active" "ws-active" ])
    (eq "ws middlewares: WebSocket rate limit, no compression" routers.ws.middlewares [ "ws-ratelimit" "circuit-breaker" "security-headers" ])
    (eq "ws-http middlewares: API rate limit and compression" routers.ws-http.middlewares [ "api-ratelimit" "circuit-breaker" "security-headers" "compress" ])
    (eq "original design rate limits" [ middlewares.api-ratelimit.rateLimit.average middlewares.ws-ratelimit.rateLimit.average ] [ 10 5 ])
    (eq "rate limit by client address" middlewares.ws-ratelimit.rateLimit.sourceCriterion { ipStrategy.depth = 0; })
    (eq "no HSTS on plain HTTP" (middlewares.security-headers.headers ? stsSeconds) false)
    (eq "circuit breaker expression" middlewares.circuit-breaker.circuitBreaker.expression traefik.defaultCircuitBreaker)
    (eq "one service per colour" (attrNames services) [ "ws-blue" "ws-green" ])
    (eq "blue upstream" services.ws-blue.loadBalancer.servers [{ url = "http://127.0.0.1:3001"; }])
    (eq "health check on /ready" services.ws-green.loadBalancer.healthCheck.path "/ready")
    (eq "routers bind to web" routers.ws.entryPoints [ "web" ])
    (eq "nothing dangling" dangling [ ])

    # Overrides used by load tests: ports and one rate limit, the rest kept.
    (eq "override ports" loadTestBase.http.services.ws-green.loadBalancer.servers [{ url = "http://127.0.0.1:4002"; }])
    (eq "override one rate limit field" (with loadTestBase.http.middlewares.ws-ratelimit.rateLimit; [ average burst ]) [ 1000 10 ])
    (eq "API limit untouched" loadTestBase.http.middlewares.api-ratelimit.rateLimit.average 10)

    # TLS with a host name.
    (eq "host in rule" tlsBase.http.routers.ws.rule "Host(`ws.example.com`) && PathPrefix(`/ws/`)")
    (eq "TLS on both routers" (map (r: tlsBase.http.routers.${r}.tls) [ "ws" "ws-http" ]) [{ certResolver = "letsencrypt"; } { certResolver = "letsencrypt"; }])
    (eq "HSTS with TLS" tlsBase.http.middlewares.security-headers.headers.stsSeconds 31536000)

    # Loopback twins for probes from the host: same route, no host rule, no TLS.
    (eq "loopback routers" (attrNames loopbackBase.http.routers) [ "ws" "ws-http" "ws-http-loopback" "ws-loopback" ])
    (eq "loopback WebSocket router" loopbackBase.http.routers.ws-loopback {
      entryPoints = [ "loopback" ];
      rule = "PathPrefix(`/ws/`)";
      priority = 200;
      middlewares = [ "ws-ratelimit" "circuit-breaker" "security-headers" ];
      service = "ws-active";
    })
    (eq "loopback HTTP router keeps compression" loopbackBase.http.routers.ws-http-loopback.middlewares routers.ws-http.middlewares)
    (eq "public routers keep host and TLS" (with loopbackBase.http.routers.ws; [ rule tls.certResolver ]) [ "Host(`ws.example.com`) && PathPrefix(`/ws/`)" "letsencrypt" ])

    # Bad arguments stop evaluation instead of writing a broken file.
    (fails "zero rate" (traefik.base { rateLimits.api.average = 0; }))
    (fails "unknown rate limit" (traefik.base { rateLimits.chat.average = 1; }))
    (fails "rate limit not a set" (traefik.base { rateLimits.ws = 5; }))
    (fails "port clash in base" (traefik.base { instances = { blue = { }; green.port = 3001; }; }))
    (fails "no entry point" (traefik.base { entryPoints = [ ]; }))
    (fails "instance not a set" (traefik.base { instances.blue = 3001; }))

    # routing.yml: only ws-active, only positive weights.
    (eq "seed routing" (traefik.seedRouting "green") {
      http.services.ws-active.weighted = {
        services = [{ name = "ws-green"; weight = 1; }];
        healthCheck = { };
      };
    })
    (eq "split keeps positive weights" split.http.services.ws-active.weighted.services [{ name = "ws-blue"; weight = 90; } { name = "ws-green"; weight = 10; }])
    (eq "routing defines only ws-active" (attrNames split.http.services) [ "ws-active" ])
    (fails "all weights zero" (traefik.routing { weights.blue = 0; }))
    (fails "negative weight" (traefik.routing { weights = { blue = 1; green = -1; }; }))
    (fails "bad colour" (traefik.routing { weights."Blue!" = 1; }))
    (fails "weight not a number" (traefik.routing { weights = { blue = "1"; }; }))
    (fails "weights not a set" (traefik.routing { weights = [ "blue" ]; }))

    # Static configuration.
    (eq "ACME redirects web to websecure" acmeStatic.entryPoints.web.http.redirections.entryPoint.to "websecure")
    (eq "ACME resolver" acmeStatic.certificatesResolvers.letsencrypt.acme { email = "ops@example.com"; storage = "/var/lib/traefik/acme.json"; httpChallenge.entryPoint = "web"; })
    (eq "no ACME, no resolver" (plainStatic ? certificatesResolvers) false)
    (eq "no ACME, no redirect" (plainStatic.entryPoints.web ? http) false)
    (eq "API on loopback" plainStatic.entryPoints.traefik.address "127.0.0.1:8082")
    (eq "entry points" (builtins.attrNames plainStatic.entryPoints) [ "traefik" "web" "websecure" ])
    (eq "loopback entry point for host probes" loopbackStatic.entryPoints.loopback { address = "127.0.0.1:8081"; })
    (eq "metrics on the API entry point" plainStatic.metrics.prometheus.entryPoint "traefik")
    (eq "file provider watches the directory" plainStatic.providers.file { directory = "/var/lib/concurrent-socket/traefik"; watch = true; })
    (fails "ACME without e-mail" (traefik.static { acme = { email = ""; storage = "/x"; }; }))
    (eq "metrics alone on their own entry point" [ metricsStatic.entryPoints.metrics metricsStatic.metrics.prometheus.entryPoint metricsStatic.api.insecure metricsStatic.ping.entryPoint ]
      [{ address = "127.0.0.1:8084"; } "metrics" true "traefik"])

    # Host settings: reserved ports, stop timeouts.
    (eq "reserved ports: sorted, once each, runs as ranges" (host.reservedPortsValue [ 9465 3002 3001 9464 8081 8082 8084 3001 9090 ]) "3001-3002,8081-8082,8084,9090,9464-9465")
    (eq "one reserved port" (host.reservedPortsValue [ 3001 ]) "3001")
    (eq "no reserved ports" (host.reservedPortsValue [ ]) "")
    (fails "reserved port out of range" (host.reservedPortsValue [ 70000 ]))
    (eq "stop timeout: the default drain plus 10 s" (host.stopTimeoutSeconds null) 20)
    (eq "stop timeout follows SHUTDOWN_TIMEOUT, rounded up" (map host.stopTimeoutSeconds [ 30000 10500 1 ]) [ 40 21 11 ])
    (fails "stop timeout of a zero drain" (host.stopTimeoutSeconds 0))
    (eq "Grafana secrets made once, private"
      (builtins.match ".*for secret in '/a' '/b'; do.*if \\[ ! -s \"\\$secret\" ].*umask 077.*" (monitoring.grafanaSecretsScript [ "/a" "/b" ]) != null)
      true)

    # Monitoring (docs/architecture.md, "Metrics"): jobs, labels, retentions, journal labels.
    (eq "scrape jobs" (map (j: j.job_name) scrape) [ "concurrent-socket" "traefik" ])
    (eq "one target per colour, labelled" (builtins.head scrape).static_configs [
      { targets = [ "127.0.0.1:9464" ]; labels.colour = "blue"; }
      { targets = [ "127.0.0.1:9465" ]; labels.colour = "green"; }
    ])
    (eq "server scraped every 5 s (drains are seen)" (builtins.head scrape).scrape_interval "5s")
    (eq "rule files: the YAML files of alerts/ (alerts.yml, recording.yml), not its subdirectories"
      (
        let names = map baseNameOf (monitoring.ruleFiles ../../alerts); in
        [ (builtins.elem "alerts.yml" names) (builtins.elem "recording.yml" names) (builtins.all (n: builtins.match ".*\\.ya?ml" n != null) names) ]
      )
      [ true true true ])
    (eq "Traefik metrics on its metrics entry point" (builtins.elemAt scrape 1).static_configs [{ targets = [ "127.0.0.1:8084" ]; }])
    (eq "no Traefik job without Traefik" (map (j: j.job_name) (monitoring.scrapeConfigs { traefikTarget = null; })) [ "concurrent-socket" ])
    (eq "prometheus.yml alerting" (monitoring.prometheusConfig { alertmanagerTarget = "127.0.0.1:9093"; }).alerting.alertmanagers [{ static_configs = [{ targets = [ "127.0.0.1:9093" ]; }]; }])
    (eq "log retention 14 days" loki.limits_config.retention_period "336h")
    (eq "error retention 30 days" loki.limits_config.retention_stream [{ selector = "{level=~\"emerg|alert|crit|error\"}"; priority = 1; period = "720h"; }])
    (eq "compactor enforces retention" (with loki.compactor; [ retention_enabled delete_request_store ]) [ true "filesystem" ])
    (eq "Alloy labels unit, instance (colour), level and host"
      (map alloyHas [
        "    source_labels = [\"__journal__systemd_unit\"]"
        "    target_label  = \"unit\""
        "    regex         = \"ws@(.+)\\\\.service\""
        "    target_label  = \"instance\""
        "    source_labels = [\"__journal_priority_keyword\"]"
        "    target_label  = \"level\""
        "    source_labels = [\"__journal__hostname\"]"
        "    target_label  = \"host\""
      ]) [ true true true true true true true true ])
    (eq "Alloy pushes to Loki" (alloyHas "    url = \"http://127.0.0.1:3100/loki/api/v1/push\"") true)
    (eq "direct path: Traefik has no WebSocket router" (attrNames directBase.http.routers) [ "ws-http" "ws-http-loopback" ])
    (eq "direct path: Traefik's HTTP router leaves /ws/ alone" directBase.http.routers.ws-http.rule "PathPrefix(`/`) && !PathPrefix(`/ws/`)")
    (eq "direct path: the server's upgrade limit, no PROXY protocol by default" (direct.serverSettings { })
      { UPGRADE_RATE_PER_IP = 5; UPGRADE_BURST_PER_IP = 10; })
    (eq "direct path: PROXY protocol from the given networks" (with direct.serverSettings { proxyProtocolFrom = [ "10.0.0.0/24" ]; }; [ PROXY_PROTOCOL PROXY_PROTOCOL_TRUSTED ]) [ "v2" [ "10.0.0.0/24" ] ])
    (eq "direct path: an IPv6 address in brackets, IPv4 as it is"
      (map (a: direct.hostPort a 8000) [ "::" "[::]" "2001:db8::1" "10.0.0.5" ])
      [ "[::]:8000" "[::]:8000" "[2001:db8::1]:8000" "10.0.0.5:8000" ])
    (eq "direct path: wsctl probes a wildcard address on loopback" (map direct.probeUrl [{ address = "0.0.0.0"; port = 8000; } { address = "10.0.1.5"; port = 443; }])
      [ "ws://127.0.0.1:8000" "ws://10.0.1.5:443" ])
    (eq "direct path: a port clash and a burst below the average" (length (direct.check { port = 80; upgradeRateLimit = { average = 5; burst = 1; }; otherPorts = [ 80 8081 ]; })) 2)
    (eq "direct path: a good configuration" (direct.check { port = 8000; upgradeRateLimit = direct.defaultUpgradeRateLimit; otherPorts = [ 80 ]; }) [ ])
    (eq "datasource uids" (map (d: d.uid) (monitoring.grafanaDatasources { })) [ "prometheus" "loki" ])
    (eq "no Loki datasource without Loki" (map (d: d.uid) (monitoring.grafanaDatasources { lokiUrl = null; })) [ "prometheus" ])
    (eq "broker: the local Redis's URL" (redis.url { local = true; port = 6380; url = null; }) "redis://127.0.0.1:6380")
    (eq "broker: an external URL as given" (redis.url { local = false; port = 6380; url = "rediss://r.example:6379"; }) "rediss://r.example:6379")
    (eq "broker: passwords in URLs"
      (map redis.urlHasPassword [ "redis://:pw@h:1" "rediss://user:pw@h:1/0" "redis://u:p@ss@h:1" "rediss://user@h:1" "redis://user:@h:1" "redis://h:6379" "redis://h:6379/0?x=a@b" null ])
      [ true true true false false false false false ])
    (eq "broker: noeviction, the bound" (redis.localSettings { maxMemory = "2gb"; }) { maxmemory = "2gb"; maxmemory-policy = "noeviction"; })
    (eq "broker: the colours' variables" (redis.settings "redis://127.0.0.1:6380") { BROKER = "redis"; REDIS_URL = "redis://127.0.0.1:6380"; })
    (eq "broker: a good local and a good external configuration"
      [ (brokerCheck { }) (brokerCheck { local = false; url = "rediss://r:6379"; passwordFile = "/run/keys/p"; }) ]
      [ [ ] [ ] ])
    (eq "broker: memory ignores the Redis options" (redis.check { type = "memory"; local = false; url = null; passwordFile = null; }) [ ])
    (eq "broker: each mistake is named once"
      (map (args: builtins.length (brokerCheck args)) [
        { url = "redis://r:1"; }
        { local = false; }
        { local = false; url = "redis://:pw@r:1"; passwordFile = "/run/keys/p"; }
      ])
      [ 1 1 1 ])
    (eq "broker: warnings for a password in the store and an eviction policy"
      (map builtins.length [
        (redis.warnings { type = "redis"; url = "redis://:pw@r:1"; maxmemoryPolicy = null; })
        (redis.warnings { type = "redis"; url = null; maxmemoryPolicy = "volatile-lru"; })
        (redis.warnings { type = "redis"; url = null; maxmemoryPolicy = "noeviction"; })
      ])
      [ 1 1 0 ])
  ];

  failed = filter (c: c.got != c.want) cases;
  describe = c: "${c.name}: got ${toJSON c.got}, want ${toJSON c.want}";
in
if failed == [ ] then
  { passed = length cases; }
else
  throw "${toString (length failed)} of ${toString (length cases)} library cases failed:\n${concatStringsSep "\n" (map describe failed)}"
