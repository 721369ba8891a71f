# Assertions over terraform/nixos/fleet-lib.nix, evaluated by ci/suites/70-terraform.sh:
#   nix-instantiate --eval --strict terraform/nixos/tests/fleet-lib.nix
# Evaluates to { passed = N; } or throws naming the first failed case.
let
  lib = import ../fleet-lib.nix { };
  ports = { blue = 19464; green = 19465; traefik = 18082; node = 9100; };
  scrape = lib.scrapeConfigs {
    region = "eu-west-1";
    discoveryTags = { Fleet = "ws-prod"; Role = "ws"; };
    metricsPorts = ports;
  };
  job = name: builtins.head (builtins.filter (j: j.job_name == name) scrape);

  cases = {
    healthRouterServesReadyOfTheActiveColour =
      lib.healthRouting.http.routers.nlb-health == {
        entryPoints = [ "nlb-health" ];
        rule = "Path(`/ready`)";
        service = "ws-active";
      };
    withoutTlsNoProxyProtocol =
      lib.entryPoints { healthAddress = ":8083"; proxyProtocolTrustedIPs = [ ]; }
      == { nlb-health.address = ":8083"; web = { }; };
    withTlsProxyProtocolFromTheNlbSubnetsOnBothEntryPoints =
      lib.entryPoints { healthAddress = ":8083"; proxyProtocolTrustedIPs = [ "10.40.0.0/24" "10.40.1.0/24" ]; }
      == {
        nlb-health = { address = ":8083"; proxyProtocol.trustedIPs = [ "10.40.0.0/24" "10.40.1.0/24" ]; };
        web.proxyProtocol.trustedIPs = [ "10.40.0.0/24" "10.40.1.0/24" ];
      };
    noBinaryCacheNoSettings = lib.nixSettings null == { };
    noRedisTheModulesBroker = lib.broker null == { };
    fleetRedisIsAnExternalBrokerWithTheFetchedToken =
      lib.broker { url = "rediss://master.r.euw1.cache.amazonaws.com:6379"; authTokenSecretArn = "arn:x"; region = "eu-west-1"; }
      == {
        type = "redis";
        redis = { local = false; url = "rediss://master.r.euw1.cache.amazonaws.com:6379"; passwordFile = "/run/redis-auth-token/token"; };
      };
    binaryCacheIsASubstituterWithItsKey =
      lib.nixSettings { url = "https://cache.example.com"; publicKey = "cache.example.com-1:AAAA="; }
      == { substituters = [ "https://cache.example.com" ]; trusted-public-keys = [ "cache.example.com-1:AAAA=" ]; };
    relaysMapPrivatePortsToTheLoopbackListeners =
      lib.relays ports == {
        blue = { port = 19464; target = 9464; };
        green = { port = 19465; target = 9465; };
        traefik = { port = 18082; target = 8084; };
      };
    settingsAreTyped =
      lib.typedSettings { MAX_CONNECTIONS = "50000"; ENABLE_ECHO = "true"; LOG_LEVEL = "info"; ALLOWED_ORIGINS = "https://a.example,https://b.example"; }
      == { MAX_CONNECTIONS = 50000; ENABLE_ECHO = true; LOG_LEVEL = "info"; ALLOWED_ORIGINS = [ "https://a.example" "https://b.example" ]; };
    stringSettingsStayStrings = lib.typedSettings { SERVER_ID = "42"; LOG_LEVEL = "info"; } == { SERVER_ID = "42"; LOG_LEVEL = "info"; };
    oneOriginIsAList = lib.typedSettings { TRUSTED_PROXIES = "10.0.0.0/8"; } == { TRUSTED_PROXIES = [ "10.0.0.0/8" ]; };
    jobsAreThoseOfASingleHost = map (j: j.job_name) scrape == [ "concurrent-socket" "traefik" "node" ];
    serverJobScrapedAsOnASingleHost = (job "concurrent-socket").scrape_interval == "5s";
    serverJobScrapesBothColours = map (c: c.port) (job "concurrent-socket").ec2_sd_configs == [ 19464 19465 ];
    colourComesFromThePort =
      builtins.filter (r: r.target_label == "colour") (job "concurrent-socket").relabel_configs == [
        { source_labels = [ "__address__" ]; regex = ".*:19464"; target_label = "colour"; replacement = "blue"; }
        { source_labels = [ "__address__" ]; regex = ".*:19465"; target_label = "colour"; replacement = "green"; }
      ];
    discoveryFiltersByFleetRoleAndState =
      (builtins.head (job "traefik").ec2_sd_configs).filters == [
        { name = "tag:Fleet"; values = [ "ws-prod" ]; }
        { name = "tag:Role"; values = [ "ws" ]; }
        { name = "instance-state-name"; values = [ "running" ]; }
      ];
    instanceIsTheNameTag = builtins.elem
      { source_labels = [ "__meta_ec2_tag_Name" ]; target_label = "instance"; }
      (job "node").relabel_configs;
  };
  failed = builtins.filter (name: !cases.${name}) (builtins.attrNames cases);
in
if failed == [ ] then { passed = builtins.length (builtins.attrNames cases); }
else throw "fleet-lib: failed case(s): ${builtins.concatStringsSep ", " failed}"
