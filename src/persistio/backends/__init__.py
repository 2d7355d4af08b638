"""One module per engine; ``base`` holds the four per-tier contracts they implement.

Nothing here imports the router or the store, and each driver is imported only inside its own
backend module.
"""
