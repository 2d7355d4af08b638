"""Redis as the transitory and volatile tiers: one server, a cluster, failover lists, the Lua
scripts and the client."""
