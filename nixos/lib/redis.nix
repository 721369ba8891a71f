# The Redis broker of concurrent-socket (services.concurrent-socket.broker, docs/redis.md) as
# plain data: the local Redis the module runs (its name under nixpkgs'
# services.redis.servers, its unit, its redis.conf settings), the URL and variables the
# colours get, the credential that carries the password, and the checks that reject a
# broker configuration before it reaches a host.
#
# Pure Nix (builtins only, no nixpkgs): the NixOS module and nixos/tests/lib.nix call it.
{}:
let
  inherit (builtins) match;
in
rec {
  # services.redis.servers.<serverName>: nixpkgs names its unit and user redis-<name>.
  serverName = "concurrent-socket";
  unitName = "redis-${serverName}.service";

  # Beside a Redis of the host's own on 6379.
  defaultPort = 6380;

  # The name the password is loaded under (LoadCredential=NAME:FILE) and where the server
  # reads it: %d is the unit's credentials directory, expanded by systemd in Environment=.
  credentialName = "redis-password";
  passwordFileVariable = "%d/${credentialName}";

  localUrl = port: "redis://127.0.0.1:${toString port}";

  # The URL the colours connect to: the local Redis on loopback, or the external `url`.
  url = { local, port, url }: if local then localUrl port else url;

  # True when a redis:// or rediss:// URL carries a password (`user:password@`, `:password@`),
  # as the server reads it: between the first `:` and the last `@` before the path, not empty.
  urlHasPassword = url: url != null && match "rediss?://[^/:@]*:[^/]+@[^/@]*(/.*)?" url != null;

  # redis.conf of the local Redis beyond nixpkgs' own: the memory bound and what Redis does at
  # it. noeviction: a full Redis refuses writes, so a publish fails with broker_unavailable
  # instead of Redis silently dropping some channel's history (docs/redis.md, Running Redis).
  localSettings = { maxMemory }: {
    maxmemory = maxMemory;
    maxmemory-policy = "noeviction";
  };

  # The server's variables (docs/configuration.md) for a Redis broker at `url`.
  settings = url: {
    BROKER = "redis";
    REDIS_URL = url;
  };

  # Every problem of a broker configuration, as messages naming the option; [ ] when good.
  check = { type, local, url, passwordFile }:
    let
      option = name: "services.concurrent-socket.broker.redis.${name}";
    in
    if type != "redis" then [ ]
    else
      (if local && url != null then [ "${option "url"} is for an external Redis (with ${option "local"} = false); the local Redis's URL follows ${option "port"}" ] else [ ])
      ++ (if !local && url == null then [ "${option "url"} is required with ${option "local"} = false: the external Redis the colours connect to (redis:// or rediss://)" ] else [ ])
      ++ (if urlHasPassword url && passwordFile != null then [ "the Redis password is both in ${option "url"} and in ${option "passwordFile"}: keep the file only (the server refuses both)" ] else [ ]);

  # Warnings about a working but weaker configuration.
  warnings = { type, url, maxmemoryPolicy }:
    if type != "redis" then [ ]
    else
      (if urlHasPassword url then [ "services.concurrent-socket.broker.redis.url carries a password, which lands in the world-readable Nix store: use broker.redis.passwordFile" ] else [ ])
      ++ (if maxmemoryPolicy != null && maxmemoryPolicy != "noeviction" then [ "the broker's Redis runs with maxmemory-policy ${maxmemoryPolicy}: a full Redis evicts channel history silently (new epochs, clients recover with recovered: false) instead of refusing publishes; docs/redis.md says why noeviction" ] else [ ]);
}
