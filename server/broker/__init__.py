"""Brokers carry publications, join/leave and control messages between processes."""
