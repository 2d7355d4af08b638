"""Tests against the Redis Cluster and the Cassandra cluster (make test-cluster)."""
