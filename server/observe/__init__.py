"""Seeing inside: per-process figures, /metrics, the stats feed, event-loop lag, the channel
directory."""
