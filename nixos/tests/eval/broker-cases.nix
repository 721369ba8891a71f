# The cases of ./harness.nix for services.concurrent-socket.broker (docs/redis.md): a local
# Redis through nixpkgs' services.redis.servers, an external one with its password as a
# credential, and the mistakes that must not evaluate. `hosts` evaluate and are checked;
# `refusals` must fail with their `error`.
{ lib, enabled, expect, envFile, hasLine, sysctl }:
let
  redisUnit = "redis-concurrent-socket.service";
  redisServer = c: c.services.redis.servers.concurrent-socket;
  ws = c: colour: c.systemd.services."ws@${colour}";
  withBroker = broker: [ enabled { services.concurrent-socket.broker = broker; } ];
  externalUrl = "rediss://master.ws-prod.abc123.euw1.cache.amazonaws.com:6379";
in
{
  hosts = [
    {
      name = "memory broker (the default)";
      modules = [ enabled ];
      expect = _: c: [
        (expect "no broker Redis" (c.services.redis.servers ? concurrent-socket) false)
        (expect "no BROKER in the colours' settings" (lib.hasInfix "BROKER" (envFile c "blue")) false)
        (expect "the colours want no Redis" (lib.elem redisUnit (ws c "blue").wants) false)
      ];
    }
    {
      name = "Redis broker on this host";
      modules = withBroker { type = "redis"; };
      expect = _: c: [
        (expect "the broker Redis runs on loopback port 6380"
          (with redisServer c; [ enable bind port settings.port ])
          [ true "127.0.0.1" 6380 6380 ])
        (expect "its append-only file is fsynced every second"
          (with (redisServer c).settings; [ appendOnly appendfsync ])
          [ true "everysec" ])
        (expect "its memory is bounded and a full Redis refuses writes (noeviction)"
          (with (redisServer c).settings; [ maxmemory maxmemory-policy ])
          [ "1gb" "noeviction" ])
        (expect "nixpkgs makes its unit" ((c.systemd.services.redis-concurrent-socket.serviceConfig).Type) "notify")
        (expect "both colours want the Redis unit and start after it"
          (map (colour: [ (lib.elem redisUnit (ws c colour).wants) (lib.elem redisUnit (ws c colour).after) ]) [ "blue" "green" ])
          [ [ true true ] [ true true ] ])
        (expect "both colours use the Redis broker"
          (map (colour: hasLine (envFile c colour) "BROKER=\"redis\"") [ "blue" "green" ])
          [ true true ])
        (expect "both colours connect to the local Redis"
          (map (colour: hasLine (envFile c colour) "REDIS_URL=\"redis://127.0.0.1:6380\"") [ "blue" "green" ])
          [ true true ])
        (expect "no password, no credential" ((ws c "blue").serviceConfig ? LoadCredential) false)
        (expect "the Redis port is reserved with the others" (sysctl c)."net.ipv4.ip_local_reserved_ports"
          "3000-3002,3100,6380,8081-8082,8084,9090,9096,9464-9465")
        (expect "no warning" c.warnings [ ])
      ];
    }
    {
      name = "Redis broker on this host with a password, beside token auth, user overrides";
      modules = [
        enabled
        ({ lib, ... }: {
          services.concurrent-socket = {
            auth.jwtSecretFile = "/run/keys/ws-jwt-secret";
            broker = { type = "redis"; redis = { port = 6390; maxMemory = "4gb"; passwordFile = "/run/keys/redis-password"; }; };
            instances.green.settings.REDIS_KEY_PREFIX = "green";
          };
          # nixpkgs' options the module sets with mkDefault, changed without mkForce.
          services.redis.servers.concurrent-socket = {
            appendFsync = "always";
            settings.maxmemory-policy = "allkeys-lru";
          };
          systemd.services."ws@blue".serviceConfig.LoadCredential = lib.mkAfter [ "extra:/run/keys/extra" ];
        })
      ];
      expect = _: c: [
        (expect "the local Redis requires the password from the file" (redisServer c).requirePassFile "/run/keys/redis-password")
        (expect "port and maxMemory reach the local Redis"
          (with redisServer c; [ port settings.maxmemory ])
          [ 6390 "4gb" ])
        (expect "the colours connect to its port" (hasLine (envFile c "blue") "REDIS_URL=\"redis://127.0.0.1:6390\"") true)
        (expect "a user's appendFsync wins over the module's mkDefault" (redisServer c).settings.appendfsync "always")
        (expect "each colour loads the password and the token key as credentials, merged"
          (map (colour: lib.sort lib.lessThan (lib.toList (ws c colour).serviceConfig.LoadCredential)) [ "blue" "green" ])
          [
            [ "extra:/run/keys/extra" "jwt-key:/run/keys/ws-jwt-secret" "redis-password:/run/keys/redis-password" ]
            [ "jwt-key:/run/keys/ws-jwt-secret" "redis-password:/run/keys/redis-password" ]
          ])
        (expect "the server reads it from the credentials directory"
          (map (colour: (ws c colour).environment.REDIS_PASSWORD_FILE) [ "blue" "green" ])
          [ "%d/redis-password" "%d/redis-password" ])
        (expect "the password is in no settings file" (lib.hasInfix "redis-password" (envFile c "blue")) false)
        (expect "a colour's own setting beside the broker's" (hasLine (envFile c "green") "REDIS_KEY_PREFIX=\"green\"") true)
        (expect "an eviction policy is warned about"
          (map (w: lib.hasPrefix "the broker's Redis runs with maxmemory-policy allkeys-lru" w) c.warnings)
          [ true ])
      ];
    }
    {
      name = "external Redis over TLS with a password file";
      modules = withBroker {
        type = "redis";
        redis = { local = false; url = externalUrl; passwordFile = "/run/concurrent-socket/redis-auth-token"; };
      };
      expect = _: c: [
        (expect "no local Redis" (c.services.redis.servers ? concurrent-socket) false)
        (expect "the colours connect to the external URL" (hasLine (envFile c "green") "REDIS_URL=\"${externalUrl}\"") true)
        (expect "the colours wait for no local Redis" (lib.elem redisUnit (ws c "green").after) false)
        (expect "the token is a credential" (ws c "green").serviceConfig.LoadCredential [ "redis-password:/run/concurrent-socket/redis-auth-token" ])
        (expect "no Redis port reserved" (lib.hasInfix "6380" (sysctl c)."net.ipv4.ip_local_reserved_ports") false)
      ];
    }
    {
      name = "external Redis with the password in its URL";
      modules = withBroker { type = "redis"; redis = { local = false; url = "redis://:secret@10.0.0.5:6379"; }; };
      expect = _: c: [
        (expect "the password in the store is warned about"
          (map (w: lib.hasPrefix "services.concurrent-socket.broker.redis.url carries a password" w) c.warnings)
          [ true ])
      ];
    }
  ];

  refusals = [
    {
      name = "an external Redis without its URL";
      shape = "classic";
      modules = withBroker { type = "redis"; redis.local = false; };
      error = "broker.redis.url is required with services.concurrent-socket.broker.redis.local = false";
    }
    {
      name = "a URL for the local Redis";
      shape = "refactored";
      modules = withBroker { type = "redis"; redis.url = externalUrl; };
      error = "broker.redis.url is for an external Redis";
    }
    {
      name = "the Redis password both in the URL and in a file";
      shape = "classic";
      modules = withBroker {
        type = "redis";
        redis = { local = false; url = "rediss://default:secret@redis.example.com:6379"; passwordFile = "/run/keys/redis-password"; };
      };
      error = "the Redis password is both in services.concurrent-socket.broker.redis.url and in services.concurrent-socket.broker.redis.passwordFile";
    }
    {
      name = "a broker URL that is not redis:// or rediss://";
      shape = "classic";
      modules = withBroker { type = "redis"; redis = { local = false; url = "https://redis.example.com"; }; };
      error = "option `services.concurrent-socket.broker.redis.url' is not of type";
    }
    {
      name = "a maxMemory Redis cannot read";
      shape = "classic";
      modules = withBroker { type = "redis"; redis.maxMemory = "1 GB"; };
      error = "option `services.concurrent-socket.broker.redis.maxMemory' is not of type";
    }
    {
      name = "the password file as a Nix path (it would be copied to the world-readable store)";
      shape = "classic";
      modules = withBroker { type = "redis"; redis.passwordFile = ./broker-cases.nix; };
      error = "option `services.concurrent-socket.broker.redis.passwordFile' is not of type";
    }
  ];
}
