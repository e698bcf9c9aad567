"""Rotation: plan -> add_password -> wait_propagation -> write_keyvault -> reload and
verify -> grace_period -> remove_old, each a journaled step of a :class:`Run`.

The new secret's value lives only in memory (``run.new``) until Key Vault holds it;
an unproven value is never written (Entra must accept it first). When the Key Vault
write fails, this run's new credential is removed again (compensation). The old
credential is never removed before the app is proven on the new one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from exporters.expiry import candidates
from remediation.decisions import EntraVerdict, is_due, slot_to_free, which_old_credential
from remediation.journal import RUN, crash_point
from remediation.reload import ladder_plan, reload_and_verify
from remediation.removal import recheck, settle_old
from remediation.results import (
    Added,
    AddPasswordPlan,
    Compensated,
    Freed,
    FreeSlotCause,
    KeyVaultTarget,
    KeyVaultWritten,
    Planned,
    Propagated,
    Removed,
    Waited,
)
from remediation.rollback import rollback
from remediation.runner import Restart, Run, StepError
from remediation.settings import WorkflowSettings
from tenant.errors import TenantError, TooManySecrets
from tenant.models import (
    KEY_ID_TAG,
    NewPassword,
    PasswordCredential,
    SecretVersion,
    TokenFailure,
    TokenOutcome,
)

RUN_TAG = "secretwarden-run"


async def rotate(run: Run, *, force: bool) -> tuple[str, str]:
    """The rotation, from wherever the journal says it stands: (outcome, detail)."""
    r = run.rec
    if not r.is_done("plan"):
        await run.step("plan", lambda: plan(run))
    f = run.facts
    # "Is it due" holds until something is written; a resumed run asks it again.
    if not force and not f.due and not r.was_begun("add_password"):
        return "nothing_to_do", f"nothing to do: in-use secret expires {f.in_use_end}"
    if run.dry_run:
        print_plan(run)
        return "dry_run", "dry run: nothing written"
    if r.was_begun("add_password") and not r.is_done("write_keyvault") and run.new is None:
        await recover_lost_value(run)
    if not r.was_begun("add_password"):
        try:
            await run.step(
                "add_password",
                lambda: add_password(run),
                AddPasswordPlan(display_name(run), lifetime_days(run)),
            )
            await run.step("wait_propagation", lambda: wait_propagation(run))
            await run.step(
                "write_keyvault",
                lambda: write_keyvault(run),
                KeyVaultTarget(str(run.facts.new_key_id)),
            )
        except StepError as e:
            if not await write_landed(run):
                try:
                    await remove_orphan(run)
                except StepError as e2:
                    raise StepError(
                        run.target,
                        e.step,
                        f"{e.cause}; removing the new credential failed too: {e2.cause}",
                        permanent=e.permanent,
                    ) from e
                raise
        finally:
            run.new = None  # the value is in Key Vault now, or lost on purpose
    f = run.facts
    new_version = str(f.new_version)
    new_key = str(f.new_key_id)
    if not r.is_done("verify"):
        # A resumed run whose ladder already ran out goes on with the rollback.
        gave_up = "verify" in r.failed or r.was_begun("rollback.restore")
        if gave_up or not await reload_and_verify(run, new_version):
            return await rollback(run)
    if run.settings.grace_period > 0 and not r.is_done("grace_period"):
        await run.step("grace_period", lambda: grace(run))
    old = run.facts.old_keys()
    if not (r.is_done("remove_old") or r.is_done("pending_removal")):
        await settle_old(run, "remove_old", old, new_key, new_version)
    if r.is_done("remove_old") and not r.is_done("recheck"):
        await run.step("recheck", lambda: recheck(run, "recheck"))
    f = run.facts
    kept = f"; old credential not removed: {f.old_unsure}" if f.old_unsure else ""
    rung = f" (reloaded by {f.rung})" if f.rung else ""
    if r.is_done("pending_removal"):
        pend = f.pending()
        detail = (
            f"rotated{rung}: Key Vault version {new_version} holds credential {new_key}; "
            f"old credential {list(pend.pending_key_ids) if pend else old} pending removal "
            f"until {pend.pending_until if pend else '?'}: {pend.pending_why if pend else ''}"
        )
        return "success", detail
    removed = list(f.removed) if f.removed else "no old credential"
    detail = (
        f"rotated{rung}: Key Vault version {new_version} holds credential "
        f"{new_key}; removed {removed}{kept}"
    )
    return "success", detail


def display_name(run: Run) -> str:
    name = run.facts.display_name
    if name is None:
        day = f"{run.clock.now():%Y-%m-%d}"
        return f"{run.settings.display_name_prefix} {day} {run.rec.run[-6:]}"
    return name


def lifetime_days(run: Run) -> int:
    return int(run.settings.secret_lifetime.total_seconds() // 86400)


async def plan(run: Run) -> Planned:
    now = run.clock.now()
    clients = run.clients
    current = await run.call("plan", "read Key Vault secret", clients.vault.get_current)
    app = await run.call("plan", "read app registration", clients.app.get_app)
    by_id = {c.key_id: c for c in app.credentials}
    old_keys, unsure = await old_credential(run, app.client_id, app.credentials, current)
    in_use = by_id.get(old_keys[0]) if old_keys else None
    end: datetime | None = in_use.end if in_use else None
    return Planned(
        old_version=current.version,
        old_key_ids=old_keys,
        old_unsure=unsure,
        client_id=app.client_id,
        credential_count=len(app.credentials),
        in_use_end=end.isoformat() if end else None,
        due=is_due(end, now, run.settings.rotate_before),
    )


def entra_verdict(proof: TokenOutcome) -> EntraVerdict:
    if proof.ok:
        return EntraVerdict.VALID
    if proof.failure is TokenFailure.INVALID_SECRET:
        return EntraVerdict.INVALID
    if proof.failure is TokenFailure.EXPIRED_SECRET:
        return EntraVerdict.EXPIRED
    return EntraVerdict.UNKNOWN


async def old_credential(
    run: Run,
    client_id: str,
    credentials: tuple[PasswordCredential, ...],
    current: SecretVersion,
) -> tuple[tuple[str, ...], str | None]:
    """The credential the Key Vault value belongs to, only when that is certain
    (:func:`~remediation.decisions.which_old_credential` decides)."""
    if current.value is None:
        return which_old_credential(False, (), None, EntraVerdict.UNKNOWN)
    proof = await run.clients.entra.try_secret(client_id, current.value)
    cands = [c.key_id for c in candidates(credentials, current.value, current.tags)]
    return which_old_credential(True, cands, current.tags.get(KEY_ID_TAG), entra_verdict(proof))


def old_credential_plan(settings: WorkflowSettings, old: list[str]) -> str:
    """What the real run will do with the old credential(s): kept pending removal until
    proof the app left them, for at most the overlap window (remediation/proof.py)."""
    hours = settings.overlap_window.total_seconds() / 3600
    if hours == 0:
        return f"remove the old credential(s) {old} once the app verifies (overlap window 0)"
    proofs = ["activeVersion on the new version"]
    if settings.pinned_reference:
        proofs.append("the pinned reference")
    if settings.use_sign_ins:
        proofs.append("the app's sign-ins with the new credential only")
    return (
        f"keep the old credential(s) {old} pending removal: removed as soon as there is "
        f"proof the app left them ({', or '.join(proofs)}), else after the overlap window "
        f"({hours:g} h)"
    )


def print_plan(run: Run) -> None:
    f = run.facts
    old = f.old_keys()
    lines = [
        f"add a client secret {display_name(run)!r} valid {lifetime_days(run)} days",
        f"wait up to {run.settings.propagation_timeout:.0f}s until Entra accepts it",
        f"write it to Key Vault as a new version tagged {KEY_ID_TAG}=<new keyId> "
        f"(current version {f.old_version})",
        "reload the app: " + ladder_plan(run.settings) + "; climbing only while the app "
        "does not verify",
        "verify: reference on the new version, /health 200, Graph call OK",
        old_credential_plan(run.settings, list(old))
        if old
        else f"remove no old credential: {f.old_unsure}",
    ]
    for i, line in enumerate(lines, 1):
        run.emit("plan", "plan", f"{i}. {line}")


async def add_password(run: Run) -> Added:
    name = display_name(run)
    end = run.clock.now() + run.settings.secret_lifetime
    app = run.clients.app

    async def attempt() -> NewPassword:
        try:
            return await app.add_password(name, end)
        except TenantError as e:
            if e.maybe_applied:
                # The reply was lost: a credential may exist whose value nobody holds.
                # Find it by this run's display name (waiting out read lag), remove it,
                # and let the retry layer try again.
                await remove_by_name(run, "add_password", name)
            raise

    try:
        new = await run.call("add_password", "addPassword", attempt, passthrough=(TooManySecrets,))
    except TooManySecrets as e:
        await run.step(
            "free_slot", lambda: free_slot(run), FreeSlotCause(e.code or "TooManySecrets")
        )
        new = await add_after_freeing(run, attempt)
    run.new = new
    crash_point("add_password:returned")
    return Added(new.credential.key_id)


async def add_after_freeing(run: Run, attempt: Callable[[], Awaitable[NewPassword]]) -> NewPassword:
    """addPassword right after removePassword may still count the removed secret
    (Graph's reads and checks lag its writes): wait the lag out, then give up."""
    deadline = run.clock.monotonic() + run.settings.graph_read_lag
    delay = run.settings.step_backoff
    while True:
        try:
            return await run.call(
                "add_password", "addPassword", attempt, passthrough=(TooManySecrets,)
            )
        except TooManySecrets as e:
            if run.clock.monotonic() >= deadline:
                raise StepError(
                    run.target,
                    "add_password",
                    f"addPassword: the app still holds the maximum number of client secrets "
                    f"{run.settings.graph_read_lag:.0f}s after one was removed: {e}",
                    permanent=True,
                ) from e
            run.emit("add_password", "info", f"slot not free yet (read lag); retry in {delay:.1f}s")
            await run.clock.sleep(delay)
            delay = min(delay * 2, run.settings.step_backoff_max)


async def remove_by_name(run: Run, step: str, name: str) -> tuple[str, ...]:
    """Remove every credential named ``name`` (this run's). Each ambiguous addPassword
    is settled right after it, so there is at most one to find: reading stops once one
    was found, else goes on until the read lag has passed (a credential created by a
    lost-reply addPassword may not be listed at once)."""
    deadline = run.clock.monotonic() + run.settings.graph_read_lag
    removed: list[str] = []
    while True:
        found = await run.call(
            step,
            "find credentials by display name",
            lambda: run.clients.app.find_credentials(name),
        )
        for c in found:
            if c.key_id not in removed:
                await run.remove_password(step, c.key_id)
                removed.append(c.key_id)
        # Seeing one means the listing has caught up past the addPassword.
        if found or run.clock.monotonic() >= deadline:
            break
        await run.clock.sleep(min(run.settings.verify_poll, run.settings.graph_read_lag))
    if removed:
        run.emit(step, "info", f"removed credential(s) {removed} left by a lost reply")
    return tuple(removed)


async def free_slot(run: Run) -> Freed:
    """The app holds as many secrets as it may: drop an expired one nobody uses."""
    now = run.clock.now()
    app = await run.call("free_slot", "read app registration", run.clients.app.get_app)
    victim = slot_to_free(
        [(c.key_id, c.end) for c in app.credentials],
        run.facts.old_key_ids,
        now,
        timedelta(seconds=run.settings.clock_skew),
    )
    if victim is None:
        held = ", ".join(f"{c.key_id} ({c.display_name})" for c in app.credentials)
        raise StepError(
            run.target,
            "add_password",
            "the app holds the maximum number of client secrets and none has expired; "
            f"remove one by hand: {held}",
            permanent=True,
        )
    await run.remove_password("free_slot", victim)
    return Freed(victim)


async def wait_propagation(run: Run) -> Propagated:
    assert run.new is not None
    new = run.new
    client_id = run.facts.client_id
    s = run.settings
    start = run.clock.monotonic()
    delay = s.propagation_poll
    tries = 0
    while True:
        tries += 1
        out = await run.clients.entra.try_secret(client_id, new.value)
        if out.ok:
            return Propagated(tries, round(run.clock.monotonic() - start, 3))
        left = start + s.propagation_timeout - run.clock.monotonic()
        if left <= 0:
            why = out.failure.value if out.failure else out.error
            raise StepError(
                run.target,
                "wait_propagation",
                f"Entra did not accept the new secret within {s.propagation_timeout:.0f}s "
                f"({tries} tries; last: {why}, AADSTS{out.aadsts})",
            )
        wait = delay if out.failure is not TokenFailure.THROTTLED else max(delay, 1.0)
        await run.clock.sleep(min(wait, left))
        delay = min(delay * 2, s.propagation_poll_max)


async def write_keyvault(run: Run) -> KeyVaultWritten:
    assert run.new is not None
    new = run.new
    tags = {KEY_ID_TAG: new.credential.key_id, RUN_TAG: run.rec.run}
    vault = run.clients.vault

    async def attempt() -> SecretVersion:
        try:
            return await vault.set_value(new.value, tags)
        except TenantError as e:
            if e.maybe_applied:
                # The reply was lost: read before writing again (or removing anything).
                current = await vault.get_current()
                if current.tags.get(KEY_ID_TAG) == new.credential.key_id:
                    return current
            raise

    v = await run.call("write_keyvault", "set secret", attempt)
    return KeyVaultWritten(v.version)


async def write_landed(run: Run) -> bool:
    """After the Key Vault write failed (or its outcome is unknown): does Key Vault
    hold this run's new value after all? Read before removing anything."""
    r = run.rec
    key = run.facts.new_key_id
    if not r.was_begun("write_keyvault") or r.is_done("write_keyvault") or key is None:
        return r.is_done("write_keyvault")
    try:
        current = await run.call(
            "write_keyvault", "read Key Vault secret", run.clients.vault.get_current
        )
    except StepError as e:
        raise StepError(
            run.target,
            "write_keyvault",
            f"the Key Vault write failed and Key Vault cannot be read to tell whether it "
            f"landed ({e.cause}); the new credential {key} is kept: check Key Vault",
        ) from e
    if current.tags.get(KEY_ID_TAG) != key:
        return False
    await run.write("write_keyvault", "done", KeyVaultWritten(current.version))
    run.emit("write_keyvault", "done", f"found version {current.version} (the write landed)")
    return True


async def remove_orphan(run: Run) -> None:
    """Remove this run's new credential before its value reaches Key Vault."""
    if not run.rec.was_begun("add_password") or run.rec.is_done("write_keyvault"):
        return
    await run.step("compensate", lambda: remove_run_credentials(run))


async def remove_run_credentials(run: Run) -> Compensated:
    """This run's new keyId directly when the journal has it (a read may lag; every
    ambiguous addPassword before it was settled inline); otherwise (the process died
    before the keyId was journaled) every credential carrying this run's display name."""
    f = run.facts
    if f.new_key_id:
        await run.remove_password("compensate", f.new_key_id)
        return Compensated((f.new_key_id,))
    if f.display_name:
        return Compensated(await remove_by_name(run, "compensate", f.display_name))
    return Compensated(())


async def recover_lost_value(run: Run) -> None:
    """After a crash between addPassword and the Key Vault write done."""
    f = run.facts
    if run.rec.was_begun("write_keyvault") and f.new_key_id:
        current = await run.call(
            "write_keyvault", "read Key Vault secret", run.clients.vault.get_current
        )
        if current.tags.get(KEY_ID_TAG) == f.new_key_id:
            # The write landed before the crash: nothing was lost.
            await run.write("write_keyvault", "done", KeyVaultWritten(current.version))
            run.emit("write_keyvault", "done", f"found version {current.version} (recovered)")
            return
    run.emit("compensate", "info", "the new secret's value was lost in a crash")
    await run.step("compensate", lambda: remove_run_credentials(run))
    await run.write(RUN, "done", {"outcome": "compensated", "rotated": False, "permanent": False})
    raise Restart()


async def grace(run: Run) -> Waited:
    await run.clock.sleep(run.settings.grace_period)
    return Waited(run.settings.grace_period)


async def remove_old(run: Run) -> Removed:
    removed: list[str] = []
    for key_id in run.facts.old_keys():
        await run.remove_password("remove_old", key_id)
        removed.append(key_id)
    return Removed(tuple(removed))
