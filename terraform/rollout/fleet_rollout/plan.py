"""Which hosts go in which batch: at most max_unavailable hosts out of the load balancer at a
time, each batch spread over the availability zones."""

from __future__ import annotations

from collections import defaultdict
from itertools import zip_longest

from .inventory import Host


class PlanError(Exception):
    """The requested rollout cannot be planned safely."""


def order_by_zone(hosts: list[Host]) -> list[Host]:
    """Interleaves the availability zones (a1, b1, c1, a2, b2, ...), so that consecutive hosts,
    and therefore a batch, take capacity from different zones."""
    by_zone: dict[str, list[Host]] = defaultdict(list)
    for host in sorted(hosts, key=lambda h: h.name):
        by_zone[host.availability_zone].append(host)
    rounds = zip_longest(*(by_zone[zone] for zone in sorted(by_zone)))
    return [host for round_ in rounds for host in round_ if host is not None]


def select(hosts: tuple[Host, ...], only: list[str] | None) -> list[Host]:
    """The hosts named in `only` (all when None); unknown names are an error."""
    if only is None:
        return list(hosts)
    known = {h.name: h for h in hosts}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise PlanError(f"unknown host(s): {', '.join(unknown)}; the fleet has {', '.join(sorted(known))}")
    return [known[name] for name in dict.fromkeys(only)]


def batches(hosts: list[Host], fleet_size: int, max_unavailable: int) -> list[list[Host]]:
    """Splits the hosts to roll into batches of at most max_unavailable hosts. At least one host
    of the whole fleet must stay in service while a batch is out."""
    if max_unavailable < 1:
        raise PlanError("--max-unavailable must be at least 1")
    if max_unavailable >= fleet_size:
        raise PlanError(
            f"--max-unavailable {max_unavailable} would take all {fleet_size} hosts out of the load balancer at once; "
            f"use at most {fleet_size - 1}"
        )
    ordered = order_by_zone(hosts)
    return [ordered[i : i + max_unavailable] for i in range(0, len(ordered), max_unavailable)]
