"""The metric registry's helpers over metric keys."""

from genbench.metrics.registry import feature_networks


def test_feature_networks_reads_per_network_keys_only():
    keys = {"fid_lenet", "is_lenet_std", "ct_inception", "density_nll", "nll", "elbo"}
    # density_nll is the density model's own column, not density/coverage of a network "nll";
    # is_lenet_std is IS's error of lenet, not IS of a network "lenet_std"
    assert feature_networks(keys) == ["inception", "lenet"]


def test_feature_networks_of_one_group():
    keys = ["fid_lenet", "ct_inception"]
    assert feature_networks(keys, group="sample_quality") == ["lenet"]
    assert feature_networks(keys, group="copying") == ["inception"]
    assert feature_networks(iter(keys), group="likelihood") == []
