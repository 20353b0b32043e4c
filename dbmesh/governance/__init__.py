"""Cluster-mode governance: the ZooKeeper registry, its znode layout, config snapshots, the runtime bridge."""
