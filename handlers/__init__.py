"""Tornado handlers: thin adapters from HTTP and WebSocket to server/."""
