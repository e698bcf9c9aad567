"""Open and close everything a target needs, sharing what can be shared.

A :class:`TenantSession` owns the operator credential and one HTTP client for the
app's own Graph calls; ``session.target(ref)`` builds the per-target SDK clients
(Graph, Key Vault, ARM) on top of them and closes them when its block ends::

    async with TenantSession(identity, cloud, retry) as session:
        async with session.target(ref) as clients:
            app = await clients.app.get_app()

:func:`open_target` is the one-target shorthand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType

import aiohttp
import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.keyvault.secrets.aio import SecretClient

from tenant._azure import client_kwargs
from tenant.appaction import HttpAppAction
from tenant.appservice import ArmAppService
from tenant.arm import arm_client
from tenant.credentials import operator_credential
from tenant.directory import GraphDirectory, ResponseHook
from tenant.endpoints import Cloud, RetryPolicy
from tenant.entra import EntraTokenIssuer
from tenant.graph import GraphAppRegistrations, graph_http_client
from tenant.keyvault import KeyVaultSecretStore
from tenant.ports import Identity, TargetClients, TargetRef
from tenant.signins import GraphSignInReader
from tenant.transport import CountingTransport, RequestHook, azure_session, on_session


class TenantSession:
    """The operator's connection to one cloud, shared by every target."""

    def __init__(
        self,
        identity: Identity,
        cloud: Cloud,
        retry: RetryPolicy | None = None,
        *,
        on_request: RequestHook | None = None,
    ) -> None:
        """``on_request``: told the Azure service of every request any client of the
        session sends, retries included (tenant.transport.azure_service)."""
        self.cloud = cloud
        self._on_request = on_request
        self.retry = retry or RetryPolicy()
        self._identity = identity
        self._credential: AsyncTokenCredential | None = None
        self._http: httpx.AsyncClient | None = None
        self._azure: aiohttp.ClientSession | None = None  # every SDK client's one pool

    async def __aenter__(self) -> TenantSession:
        self._azure = azure_session(self.cloud, self._on_request)
        self._credential = operator_credential(
            self._identity, self.cloud, self.retry, session=self._azure
        )
        self._http = httpx.AsyncClient(
            transport=CountingTransport(
                self.cloud, self._on_request, verify=self.cloud.ssl_context()
            ),
            timeout=httpx.Timeout(self.retry.timeout_seconds),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._credential is not None:
            await self._credential.close()
        self._credential = None
        if self._azure is not None:
            await self._azure.close()
            self._azure = None

    @property
    def identity(self) -> Identity:
        """Who this session signs in as."""
        return self._identity

    @property
    def credential(self) -> AsyncTokenCredential:
        if self._credential is None:
            raise RuntimeError("TenantSession is not open (use 'async with')")
        return self._credential

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared client for the app's own calls (its Graph call, its action)."""
        if self._http is None:
            raise RuntimeError("TenantSession is not open (use 'async with')")
        return self._http

    def token_issuer(self, tenant_id: str) -> EntraTokenIssuer:
        return EntraTokenIssuer(tenant_id, self.cloud, self.retry, self.http, session=self._azure)

    def directory(self, on_response: ResponseHook | None = None) -> GraphDirectory:
        """The tenant's directory (the inventory), read with the operator credential."""
        if self._http is None:
            raise RuntimeError("TenantSession is not open (use 'async with')")
        return GraphDirectory(self._http, self.credential, self.cloud, on_response=on_response)

    @asynccontextmanager
    async def target(self, ref: TargetRef) -> AsyncIterator[TargetClients]:
        """The clients of one target; closed when the block ends."""
        credential = self.credential
        kwargs = client_kwargs(self.cloud, self.retry)
        async with AsyncExitStack() as stack:
            vault_kwargs = on_session(kwargs, self._azure)  # a transport per client
            arm_kwargs = on_session(kwargs, self._azure)
            graph_http = graph_http_client(self.cloud, self.retry, self._on_request)
            stack.push_async_callback(graph_http.aclose)

            # The SDK checks that the vault's challenge names a resource under the vault's
            # own domain; a custom endpoint (the sandbox, a proxy) cannot pass that check,
            # so it is waived only there and kept for every real cloud.
            vault_client = SecretClient(
                ref.key_vault_url,
                credential,
                verify_challenge_resource=self.cloud.name != "custom",
                **vault_kwargs,
            )
            await stack.enter_async_context(vault_client)

            arm = arm_client(credential, self.cloud.arm_url, [self.cloud.arm_scope], **arm_kwargs)
            stack.push_async_callback(arm.close)

            yield TargetClients(
                ref=ref,
                app=GraphAppRegistrations(
                    graph_http,
                    credential,
                    self.cloud,
                    object_id=ref.app_object_id,
                    client_id=ref.app_client_id,
                ),
                vault=KeyVaultSecretStore(vault_client, ref.secret_name),
                entra=self.token_issuer(ref.tenant_id),
                site=ArmAppService(arm, ref),
                signins=GraphSignInReader(graph_http, credential, self.cloud),
                action=HttpAppAction(self.http),
            )


@asynccontextmanager
async def open_target(
    ref: TargetRef, identity: Identity, cloud: Cloud, retry: RetryPolicy | None = None
) -> AsyncIterator[TargetClients]:
    """Open one target with its own session; everything is closed on exit."""
    async with TenantSession(identity, cloud, retry) as session, session.target(ref) as clients:
        yield clients
