"""Stores keep durable state: channel history, users, sessions."""
