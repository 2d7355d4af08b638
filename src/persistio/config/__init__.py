"""The store's configuration: settings, URL text and masking, and the data directory."""
