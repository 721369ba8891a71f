# Traefik's configuration for blue/green concurrent-socket, as plain data: the static
# configuration, base.yml (routers, middlewares, one service per colour) and routing.yml
# (only the weighted service `ws-active`), following docs/architecture.md.
#
# Pure Nix (builtins only, no nixpkgs): the NixOS module writes these files from it, and
# tests render the very same files from a shell. Every argument has a default; pass only
# what differs. Examples (from the repository root):
#
#   # base.yml for loopback tests: other ports, rate limits high enough for load tests
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib/traefik.nix { }).base {
#     instances = { blue = { port = 4001; }; green = { port = 4002; }; };
#     rateLimits = { api = { average = 1000; burst = 2000; }; ws = { average = 1000; burst = 2000; }; };
#   }' > base.yml
#
#   # routing.yml: all new connections to green (what `wsctl deploy --to green` writes)
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib/traefik.nix { }).routing { weights = { green = 1; }; }'
#
#   # a static configuration: entry points web/websecure, API + metrics on `traefik`
#   nix-instantiate --eval --strict --json -E '(import ./nixos/lib/traefik.nix { }).static {
#     webAddress = "127.0.0.1:8080"; websecureAddress = "127.0.0.1:8443";
#     apiAddress = "127.0.0.1:8082"; dynamicDir = "/tmp/traefik-dynamic"; }'
#
# The JSON printed is the file: Traefik reads JSON as YAML.
{}:
let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    isAttrs
    isFloat
    isInt
    listToAttrs
    mapAttrs
    throw
    ;

  instancesLib = import ./instances.nix { };

  # Evaluation stops with every problem listed, rather than writing a broken file that
  # would make Traefik drop the whole file provider.
  orThrow =
    what: errors: value:
    if errors == [ ] then value else throw "${what}: ${concatStringsSep "; " errors}";

  optionalAttrs = cond: attrs: if cond then attrs else { };

  isNumber = v: isInt v || isFloat v;

  rateLimitErrors =
    name: limit:
    (if isNumber (limit.average or null) && limit.average > 0 then [ ] else [ "rateLimits.${name}.average must be a positive number" ])
    ++ (if isInt (limit.burst or null) && limit.burst >= 1 then [ ] else [ "rateLimits.${name}.burst must be an integer >= 1" ]);

  withHost = host: rule: if host == null then rule else "Host(`${host}`) && ${rule}";
in
rec {
  # The original design: 10 requests/s per client for the API, 5/s for WebSocket
  # upgrades. `burst` lets a page load and its upgrade through at once.
  defaultRateLimits = {
    api = {
      average = 10;
      burst = 20;
    };
    ws = {
      average = 5;
      burst = 10;
    };
  };

  # Traefik probes every colour; /ready answers 503 while starting or draining, which
  # takes the colour out of rotation before it stops accepting.
  defaultHealthCheck = {
    path = "/ready";
    interval = "2s";
    # One failed probe takes a colour out of rotation: a probe that is merely slow under a
    # burst of connections must not count as one.
    timeout = "2s";
  };

  # Opens when the active colour fails at the transport or answers mostly 5xx. 503 is left
  # out: it is load shedding with Retry-After (at capacity, draining) and what Traefik itself
  # answers while no colour is healthy; counting it kept the breaker open for its whole
  # fallback after a colour had already recovered (measured in the deploy suite).
  defaultCircuitBreaker = "NetworkErrorRatio() > 0.50 || ResponseCodeRatio(500, 503, 0, 600) > 0.50 || ResponseCodeRatio(504, 600, 0, 600) > 0.50";

  certResolverName = "letsencrypt";

  serviceName = colour: "ws-${colour}";
  activeServiceName = "ws-active";

  # base.yml. Routers `ws` (PathPrefix(`/ws/`), WebSocket rate limit) and `ws-http` (the
  # rest, API rate limit and compression) both forward to `ws-active`, which routing.yml
  # defines; one load-balancer service per colour with the health check.
  #   instances      colours and ports (partial entries are completed from the defaults)
  #   rateLimits     { api = { average; burst; }; ws = { ... }; } merged over the defaults
  #   entryPoints    entry points the routers bind to
  #   host           null, or the public host name the routers require
  #   certResolver   null (plain HTTP), or the ACME resolver giving the routers TLS
  #   loopbackEntryPoint  null, or an entry point for twins of both routers (`ws-loopback`,
  #                  `ws-http-loopback`) without host rule or TLS, for probes from the host
  #   clientIpDepth  0: rate-limit by the peer address; N: by the N-th X-Forwarded-For
  #                  entry from the right (behind N trusted proxies)
  #   hstsSeconds    Strict-Transport-Security max-age (0 = no header)
  #   websocketRoute false on the direct data path (nixos/lib/direct.nix): no `ws` router,
  #                  and the HTTP router leaves /ws/ alone (404), so that no upgrade goes
  #                  through Traefik
  base =
    { instances ? instancesLib.defaultInstances
    , rateLimits ? { }
    , entryPoints ? [ "web" ]
    , host ? null
    , certResolver ? null
    , loopbackEntryPoint ? null
    , clientIpDepth ? 0
    , hstsSeconds ? (if certResolver == null then 0 else 31536000)
    , healthCheck ? { }
    , circuitBreaker ? defaultCircuitBreaker
    , websocketRoute ? true
    ,
    }:
    let
      full = instancesLib.withDefaults instances;
      limitFor =
        name:
        let
          given = if isAttrs rateLimits then rateLimits.${name} or { } else throw "traefik base: rateLimits must be { api = { ... }; ws = { ... }; }";
        in
        if isAttrs given then defaultRateLimits.${name} // given else throw "traefik base: rateLimits.${name} must be { average; burst; }";
      limits = {
        api = limitFor "api";
        ws = limitFor "ws";
      };
      errors =
        instancesLib.check { instances = full; }
        ++ rateLimitErrors "api" limits.api
        ++ rateLimitErrors "ws" limits.ws
        ++ map (n: "rateLimits.${n} is not a known rate limit (api, ws)") (filter (n: n != "api" && n != "ws") (attrNames rateLimits))
        ++ (if entryPoints != [ ] then [ ] else [ "entryPoints must not be empty" ])
        ++ (if isInt clientIpDepth && clientIpDepth >= 0 then [ ] else [ "clientIpDepth must be an integer >= 0" ]);

      tls = optionalAttrs (certResolver != null) { tls.certResolver = certResolver; };
      # The two routes; each becomes a public router and, on request, a loopback twin.
      routes = optionalAttrs websocketRoute
        {
          # Explicit priorities: the WebSocket route wins whatever the rule lengths.
          ws = {
            rule = "PathPrefix(`/ws/`)";
            priority = 200;
            middlewares = [ "ws-ratelimit" "circuit-breaker" "security-headers" ];
          };
        } // {
        ws-http = {
          rule = if websocketRoute then "PathPrefix(`/`)" else "PathPrefix(`/`) && !PathPrefix(`/ws/`)";
          priority = 100;
          middlewares = [ "api-ratelimit" "circuit-breaker" "security-headers" "compress" ];
        };
      };
      publicRouter = route: {
        inherit entryPoints;
        inherit (route) priority middlewares;
        rule = withHost host route.rule;
        service = activeServiceName;
      }
      // tls;
      # Plain HTTP on a loopback entry point, any Host: what wsctl on the host itself reaches
      # when the public routers want TLS or a host name.
      loopbackRouter = route: {
        entryPoints = [ loopbackEntryPoint ];
        inherit (route) rule priority middlewares;
        service = activeServiceName;
      };
      rateLimit = limit: {
        rateLimit = {
          inherit (limit) average burst;
          period = "1s";
          sourceCriterion.ipStrategy.depth = clientIpDepth;
        };
      };
    in
    orThrow "traefik base" errors {
      http = {
        routers = mapAttrs (_: publicRouter) routes
          // optionalAttrs (loopbackEntryPoint != null) (
          optionalAttrs websocketRoute { ws-loopback = loopbackRouter routes.ws; }
            // { ws-http-loopback = loopbackRouter routes.ws-http; }
        );
        middlewares = {
          ws-ratelimit = rateLimit limits.ws;
          api-ratelimit = rateLimit limits.api;
          circuit-breaker.circuitBreaker = {
            expression = circuitBreaker;
            checkPeriod = "1s";
            fallbackDuration = "10s";
            recoveryDuration = "10s";
          };
          security-headers.headers = {
            frameDeny = true;
            contentTypeNosniff = true;
            browserXssFilter = true;
            referrerPolicy = "strict-origin-when-cross-origin";
            permissionsPolicy = "camera=(), microphone=(), geolocation=()";
          }
          // optionalAttrs (hstsSeconds > 0) {
            stsSeconds = hstsSeconds;
            stsIncludeSubdomains = true;
          };
          # Plain HTTP answers only (the ws-http router): upgrades are never compressed.
          compress.compress.minResponseBodyBytes = 1024;
        };
        services = listToAttrs (
          map
            (colour: {
              name = serviceName colour;
              value.loadBalancer = {
                servers = [{ url = instancesLib.upstreamUrl full.${colour}; }];
                healthCheck = defaultHealthCheck // healthCheck;
                passHostHeader = true;
              };
            })
            (attrNames full)
        );
      };
    };

  # routing.yml: only `ws-active`, a weighted service over the colours given a positive
  # weight (others are left out). `healthCheck = { }` makes it skip a colour whose own
  # health check fails, so a split (canary) never sends clients to a dead colour.
  routing =
    { weights }:
    let
      names = if isAttrs weights then attrNames weights else [ ];
      validWeight = c: isNumber weights.${c} && weights.${c} >= 0;
      colours = filter (c: validWeight c && weights.${c} > 0) names;
      errors =
        (if isAttrs weights then [ ] else [ "weights must be an attribute set of colour = number" ])
        ++ map (c: "weights.${c} must be a number >= 0") (filter (c: !(validWeight c)) names)
        ++ map (c: "weights: '${c}' is not a valid colour name") (filter (c: !(instancesLib.validName c)) names)
        ++ (if colours != [ ] then [ ] else [ "at least one colour needs a positive weight" ]);
    in
    orThrow "traefik routing" errors {
      http.services.${activeServiceName}.weighted = {
        services = map
          (c: {
            name = serviceName c;
            weight = weights.${c};
          })
          colours;
        healthCheck = { };
      };
    };

  # The routing.yml the module seeds when none exists: everything to `active`.
  seedRouting = active: routing { weights.${active} = 1; };

  # Traefik's static configuration. Entry points `web` and `websecure` for clients,
  # `traefik` (loopback) for the API and ping, and for the Prometheus metrics unless
  # `metricsAddress` gives them an entry point `metrics` of their own (which serves nothing
  # else, so that a relay to it exposes the metrics and not the API). With `acme`
  # ({ email; storage; caServer ? null; }), `web` redirects to `websecure` and
  # certificates come from Let's Encrypt through the HTTP-01 challenge on `web`.
  # `loopbackAddress` adds a plain entry point `loopback` for probes from the host itself
  # (wsctl), which `web` cannot serve once it redirects to HTTPS or wants a host name.
  # `dynamicDir` is the directory the file provider watches (base.yml, routing.yml); null
  # leaves the file provider out.
  static =
    { webAddress ? ":80"
    , websecureAddress ? ":443"
    , apiAddress ? "127.0.0.1:8082"
    , loopbackAddress ? null
    , metricsAddress ? null
    , acme ? null
    , dynamicDir ? null
    , logLevel ? "INFO"
    , logFile ? null
    , accessLogFile ? null
    ,
    }:
    let
      errors =
        (if acme == null || (acme.email or "") != "" then [ ] else [ "acme.email must be set" ])
        ++ (if acme == null || (acme.storage or "") != "" then [ ] else [ "acme.storage must be set" ]);
    in
    orThrow "traefik static" errors (
      {
        global = {
          checkNewVersion = false;
          sendAnonymousUsage = false;
        };
        entryPoints = {
          web = {
            address = webAddress;
          }
          // optionalAttrs (acme != null) {
            http.redirections.entryPoint = {
              to = "websecure";
              scheme = "https";
              permanent = true;
            };
          };
          websecure = {
            address = websecureAddress;
          }
          // optionalAttrs (acme != null) { http.tls.certResolver = certResolverName; };
          traefik.address = apiAddress;
        }
        // optionalAttrs (loopbackAddress != null) { loopback.address = loopbackAddress; }
        // optionalAttrs (metricsAddress != null) { metrics.address = metricsAddress; };
        # The API answers on the loopback `traefik` entry point only.
        api = {
          insecure = true;
          dashboard = true;
        };
        ping.entryPoint = "traefik";
        metrics.prometheus = {
          entryPoint = if metricsAddress == null then "traefik" else "metrics";
          addEntryPointsLabels = true;
          addRoutersLabels = true;
          addServicesLabels = true;
        };
        log = {
          level = logLevel;
        }
        // optionalAttrs (logFile != null) { filePath = logFile; };
        accessLog = {
          format = "json";
        }
        // optionalAttrs (accessLogFile != null) { filePath = accessLogFile; };
      }
      // optionalAttrs (acme != null) {
        certificatesResolvers.${certResolverName}.acme = {
          inherit (acme) email storage;
          httpChallenge.entryPoint = "web";
        }
        // optionalAttrs ((acme.caServer or null) != null) { inherit (acme) caServer; };
      }
      // optionalAttrs (dynamicDir != null) {
        providers.file = {
          directory = dynamicDir;
          watch = true;
        };
      }
    );
}
