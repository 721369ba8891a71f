"""Batches: size, zone spread, and the limits that keep part of the fleet in service."""

import pytest
from fleet_rollout.inventory import Host, fleet_from_outputs
from fleet_rollout.plan import PlanError, batches, order_by_zone, select


def hosts(*zones: str) -> list[Host]:
    return [Host(f"h{i}", f"i-{i}", f"198.51.100.{i}", f"10.0.0.{i}", zone) for i, zone in enumerate(zones, 1)]


def names(plan):
    return [[h.name for h in batch] for batch in plan]


def test_zones_are_interleaved():
    ordered = order_by_zone(hosts("a", "a", "a", "b", "b", "c"))
    assert [h.name for h in ordered] == ["h1", "h4", "h6", "h2", "h5", "h3"]


def test_a_batch_takes_one_host_per_zone_while_it_can():
    plan = batches(hosts("a", "a", "b", "b", "c", "c"), 6, 3)
    assert names(plan) == [["h1", "h3", "h5"], ["h2", "h4", "h6"]]
    assert all(len({h.availability_zone for h in batch}) == 3 for batch in plan)


def test_one_at_a_time_covers_every_host_once():
    plan = batches(hosts("a", "b", "a", "b", "a"), 5, 1)
    assert all(len(batch) == 1 for batch in plan)
    assert sorted(h.name for batch in plan for h in batch) == ["h1", "h2", "h3", "h4", "h5"]


def test_the_last_batch_may_be_smaller():
    assert [len(b) for b in batches(hosts("a", "b", "a", "b", "a"), 5, 2)] == [2, 2, 1]


@pytest.mark.parametrize("max_unavailable", [4, 5])
def test_never_the_whole_fleet_at_once(max_unavailable):
    with pytest.raises(PlanError, match="use at most 3"):
        batches(hosts("a", "b", "a", "b"), 4, max_unavailable)


def test_zero_unavailable_is_refused():
    with pytest.raises(PlanError, match="at least 1"):
        batches(hosts("a", "b"), 2, 0)


def test_a_subset_is_limited_by_the_whole_fleet(outputs):
    fleet = fleet_from_outputs(outputs)
    chosen = select(fleet.hosts, ["ws-prod-ws-03", "ws-prod-ws-01"])
    assert names(batches(chosen, len(fleet.hosts), 3)) == [["ws-prod-ws-01", "ws-prod-ws-03"]]


def test_unknown_hosts_are_named(outputs):
    fleet = fleet_from_outputs(outputs)
    with pytest.raises(PlanError, match="unknown host\\(s\\): ws-prod-ws-09"):
        select(fleet.hosts, ["ws-prod-ws-01", "ws-prod-ws-09"])
