"""A channel's stream position, shared by broker, store and node."""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """The newest offset of a channel and the epoch those offsets belong to."""

    offset: int
    epoch: str

    def as_dict(self) -> dict[str, int | str]:
        return {"offset": self.offset, "epoch": self.epoch}


def new_epoch() -> str:
    """A fresh epoch: random, so a reset store never reuses an old one."""
    return secrets.token_hex(4)
