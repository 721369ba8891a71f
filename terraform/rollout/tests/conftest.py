"""Shared fixtures: a `terraform output -json` of a four-host fleet in two zones."""

import json
import sys
from pathlib import Path

import pytest

ROLLOUT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROLLOUT_DIR))


def host(n: int, zone: str) -> dict:
    return {
        "instance_id": f"i-0{n:016x}",
        "public_ip": f"198.51.100.{n}",
        "private_ip": f"10.40.0.{n}",
        "availability_zone": zone,
    }


@pytest.fixture
def outputs() -> dict:
    """The shape terraform/envs/example's outputs have in `terraform output -json`."""
    hosts = {f"ws-prod-ws-0{n}": host(n, "eu-west-1a" if n % 2 else "eu-west-1b") for n in range(1, 5)}
    tg = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/ws-prod-{}/0123456789abcdef"

    def out(value, sensitive=False):
        return {"sensitive": sensitive, "type": "dynamic", "value": value}

    return {
        "ws_hosts": out(hosts),
        "monitoring_host": out({"instance_id": "i-0mon", "private_ip": "10.40.0.200", "public_ip": "198.51.100.200"}),
        "nlb_dns_name": out("ws-prod-nlb-0123.elb.eu-west-1.amazonaws.com"),
        "target_group_arns": out({"https": tg.format("https")}),  # TLS at the NLB
        "service_url": out("https://ws.example.com"),
        "grafana_url": out("http://grafana.ws.example.com:3000"),
        "region": out("eu-west-1"),
        "redis": out({
            "url": "rediss://master.ws-prod-redis.abc123.euw1.cache.amazonaws.com:6379",
            "auth_token_secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ws-prod-redis/auth-token-AbCdEf",
        }),
        "ws_host_nixos": out({"flake.nix": "{ outputs = _: { }; }\n", "fleet.json": json.dumps({"role": "ws"})}),
    }


@pytest.fixture
def outputs_file(tmp_path: Path, outputs: dict) -> Path:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    return path
