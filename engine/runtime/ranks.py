"""Which of torchrun's processes this is, read from the environment torchrun sets (no torch here:
a single process never imports it for this)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from engine.errors import UserError


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int
    local_rank: int

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def owns(self, item: int) -> bool:
        """Work item ``item`` (a batch, a layer) belongs to this rank: round robin."""
        return item % self.world == self.rank


SINGLE = Ranks(0, 1, 0)


def ranks_from_environment() -> Ranks:
    """This process's place among torchrun's ranks (one process without torchrun)."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return SINGLE
    try:
        return Ranks(
            int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
        )
    except (KeyError, ValueError):
        raise UserError(
            "WORLD_SIZE is set but RANK is not a number: start several processes with torchrun"
        ) from None
