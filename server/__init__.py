"""Switchboard: a real-time WebSocket server on Tornado, Redis and MongoDB."""
