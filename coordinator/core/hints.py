"""Sending a dramatiq message as a hint (ARCHITECTURE rule 1).

A message only says "look at this now"; the periodic sweeps find the same work from the
database. So a broker that is down delays work and is logged, but never fails a request.
"""

import logging
from typing import Any

import dramatiq

logger = logging.getLogger(__name__)


def hint(actor: dramatiq.Actor, *args: Any) -> None:
    try:
        actor.send(*args)
    except Exception:  # any broker failure: the sweep will pick the work up
        logger.warning("could not enqueue %s; the periodic sweep will do it", actor.actor_name, exc_info=True)
