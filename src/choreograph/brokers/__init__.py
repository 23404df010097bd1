"""choreograph.brokers."""
