"""Operating a store: metrics, tracing, drills and persistio inspect."""
