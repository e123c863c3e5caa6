"""The settings the config model holds, apart from the machines that run them."""

from __future__ import annotations

from sofamesh.upstream import balancers, cluster, cluster_state, outlier, settings


def test_the_config_knows_every_balancer_by_name() -> None:
    assert tuple(balancers.FACTORIES) == settings.BALANCERS
    assert balancers.BALANCERS is settings.BALANCERS


def test_each_machine_offers_its_settings_under_its_old_name() -> None:
    assert outlier.OutlierConfig is settings.OutlierConfig


def test_the_cluster_module_still_names_the_cluster() -> None:
    assert cluster.Cluster is cluster_state.Cluster
    assert cluster.ClusterPolicy is cluster_state.ClusterPolicy
