"""What a sandbox service needs of the tenant, as a small interface.

The App Service's rules (:mod:`sandbox.reload`, :mod:`sandbox.instances`) and the
sign-in records (:mod:`sandbox.signins`) take the tenant through these protocols instead
of importing :mod:`sandbox.portal`, which imports them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sandbox.faults import Faults
from sandbox.site import Site


class SecretVersionView(Protocol):
    version: str
    value: str
    enabled: bool


class IdsView(Protocol):
    site_name: str


class Platform(Protocol):
    """The App Service's view of the tenant: its site, the faults, the clock, the vault."""

    @property
    def ids(self) -> IdsView: ...

    site: Site
    faults: Faults
    now: Callable[[], datetime]
    rng: random.Random

    def secret_version(self, name: str, version: str | None) -> SecretVersionView | None: ...
