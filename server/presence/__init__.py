"""Presence: who is subscribed to a channel, across processes."""
