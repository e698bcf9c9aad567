"""Healing: diagnose with the Graph probe, then act on the diagnosis.

The Key Vault value itself is rejected (invalid or expired) -> rotate. The value is
valid but the app fails -> the reload ladder only: a 401 that a reload fixes never
causes a rotation. Any other token failure (throttling, an outage, invalid_client, an
unknown app or tenant) or a 403 with a valid token is reported, never acted on.
"""

from __future__ import annotations

from exporters.observations import GraphAuthObservation
from remediation.reload import ladder_plan, reload_and_verify
from remediation.results import Diagnosis
from remediation.rotation import rotate
from remediation.runner import Run, StepError
from remediation.verify import verify_app
from tenant.models import TokenFailure


async def heal(run: Run) -> tuple[str, str]:
    r = run.rec
    if not r.is_done("diagnose"):
        await run.step("diagnose", lambda: diagnose(run))
    f = run.facts
    if f.decision == "rotate":
        return await rotate(run, force=True)
    version = str(f.kv_version)
    if run.dry_run:
        run.emit(
            "plan",
            "plan",
            f"the Key Vault value (version {version}) works; reload the app: "
            + ladder_plan(run.settings),
        )
        return "dry_run", "dry run: nothing written"
    if not any(s.startswith("reload.") for s in r.begun + r.done):
        v = await verify_app(run.prober, version)
        if v.ok:
            return "nothing_to_do", f"nothing to do: {v.reason}"
    if await reload_and_verify(run, version):
        return "success", f"reloaded: {run.facts.reason}"
    raise StepError(
        run.target, "verify", f"the app still fails after every reload: {run.facts.reason}"
    )


async def diagnose(run: Run) -> Diagnosis:
    return diagnosis(run.target, await run.prober.graph_auth())


def diagnosis(target: str, g: GraphAuthObservation) -> Diagnosis:
    """What the Graph probe's observation asks for: reload, rotate, or nothing safe
    (a StepError that says why)."""
    if g.ok:
        if g.keyvault_version is None:
            raise StepError(target, "diagnose", "Graph probe gave no Key Vault version")
        return Diagnosis(
            "reload", g.keyvault_version, "the Key Vault value works; the app holds a stale one"
        )
    if g.token_failure is not None:
        if g.token_failure in (TokenFailure.INVALID_SECRET, TokenFailure.EXPIRED_SECRET):
            return Diagnosis("rotate", None, f"Entra rejects the Key Vault value ({g.reason})")
        permanent = g.token_failure not in (TokenFailure.THROTTLED, TokenFailure.UNAVAILABLE)
        raise StepError(
            target,
            "diagnose",
            f"cannot tell which failure holds: token request failed ({g.reason}: {g.error})",
            permanent=permanent,
        )
    if g.token_ok and g.graph_status == 403:
        raise StepError(
            target,
            "diagnose",
            "Graph answers 403 with a valid token: the app lacks a permission; "
            "neither rotating nor reloading fixes that",
            permanent=True,
        )
    raise StepError(target, "diagnose", f"Graph probe failed without an auth verdict: {g.error}")
