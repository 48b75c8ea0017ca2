"""Webhooks: events about users and channels, POSTed to a backend, signed, at least once.

- events.py: the event model, its body and its HMAC-SHA256 signature
- queue.py, mongo_queue.py: events waiting to be sent (in MongoDB, so a restart loses none)
- claims.py, redis_claims.py: which process turns a change into an event (exactly one)
- tracker.py: watches the hub for users and channels coming and going
- sender.py: POSTs queued events with capped, jittered backoff, in order per user and channel
- service.py: builds the parts from `[webhooks]` and wires them to the node
"""
