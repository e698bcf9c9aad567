"""Where Azure is: the public cloud, the sovereign clouds, or custom endpoints.

Custom endpoints with a CA bundle are how the daemon reaches the sandbox (and how a
user would reach an Azure Stack or a proxy). Scopes stay those of the cloud, since a
token's audience is a resource identifier, not a URL that gets dialled.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Cloud:
    name: str
    authority: str  # e.g. https://login.microsoftonline.com (no tenant)
    graph_url: str  # ends in /v1.0
    arm_url: str  # e.g. https://management.azure.com
    graph_scope: str
    arm_scope: str
    ca_file: Path | None = None  # trust this CA bundle for every endpoint
    # MSAL asks the public cloud to validate a custom authority unless told not to.
    disable_instance_discovery: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        """TLS for the httpx clients: the system store, or this cloud's CA bundle."""
        if self.ca_file is not None:
            return ssl.create_default_context(cafile=str(self.ca_file))
        return ssl.create_default_context()

    def with_custom(
        self,
        *,
        authority: str | None = None,
        graph_url: str | None = None,
        arm_url: str | None = None,
        ca_file: Path | None = None,
    ) -> Cloud:
        return Cloud(
            name="custom",
            authority=(authority or self.authority).rstrip("/"),
            graph_url=(graph_url or self.graph_url).rstrip("/"),
            arm_url=(arm_url or self.arm_url).rstrip("/"),
            graph_scope=self.graph_scope,
            arm_scope=self.arm_scope,
            ca_file=ca_file,
            disable_instance_discovery=True,
        )


PUBLIC = Cloud(
    name="public",
    authority="https://login.microsoftonline.com",
    graph_url="https://graph.microsoft.com/v1.0",
    arm_url="https://management.azure.com",
    graph_scope="https://graph.microsoft.com/.default",
    arm_scope="https://management.azure.com/.default",
)
US_GOVERNMENT = Cloud(
    name="usgovernment",
    authority="https://login.microsoftonline.us",
    graph_url="https://graph.microsoft.us/v1.0",
    arm_url="https://management.usgovcloudapi.net",
    graph_scope="https://graph.microsoft.us/.default",
    arm_scope="https://management.usgovcloudapi.net/.default",
)
CHINA = Cloud(
    name="china",
    authority="https://login.chinacloudapi.cn",
    graph_url="https://microsoftgraph.chinacloudapi.cn/v1.0",
    arm_url="https://management.chinacloudapi.cn",
    graph_scope="https://microsoftgraph.chinacloudapi.cn/.default",
    arm_scope="https://management.chinacloudapi.cn/.default",
)
CLOUDS = {c.name: c for c in (PUBLIC, US_GOVERNMENT, CHINA)}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard every SDK client retries one call before the error reaches us.

    Production keeps azure-core's defaults (which honour Retry-After); tests turn
    ``total`` down to 0 so a fault reaches the code under test at once.
    """

    total: int = 3
    backoff_factor: float = 0.8
    backoff_max: float = 60.0
    timeout_seconds: float = 30.0

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(total=0, backoff_factor=0.0, backoff_max=0.0, timeout_seconds=10.0)
