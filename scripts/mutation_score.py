"""Print the mutation score of `make mutate` from mutmut's result files (mutants/*.meta).

Per function: killed (a test failed; a timeout counts as killed), survived, and
"no tests" (no unit test reaches it; the step modules are reached by the fake-port
tests of tests/unit/test_step_modules.py, the integration suite being too slow to run
once per mutant). The safety decisions
are listed first; their survivors are named, to be killed or explained in
docs/remediation.md.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from mutmut.stats import status_by_exit_code

# The safety decisions: what may be removed, what proves it, whether to act at all.
SAFETY = (
    "remediation.decisions.x_is_due",
    "remediation.decisions.x_which_old_credential",
    "remediation.decisions.x_removal",
    "remediation.decisions.x_is_blocked",
    "remediation.proof.x_pending_removals",
    "remediation.verify.x_verify_app",
    "remediation.heal.x_diagnosis",
    "remediation.reload.x_reload_app",
    "remediation.reload.x_wait_verified",
    "exporters.expiry.x_candidates",
    "exporters.expiry.x__pick",
    # The step modules' safety decisions (issue 13): what is removed, on what evidence,
    # and whether a lost reply is settled by this run's own write.
    "remediation.removal.x_reloaded_at",
    "remediation.removal.x_settle_old",
    "remediation.removal.x_recheck",
    "remediation.cleanup.x_cleanup",
    "remediation.rollback.x_rollback",
    "remediation.rollback.x_restore",
    "remediation.rotation.x_rotate",
    "remediation.rotation.x_entra_verdict",
    "remediation.rotation.x_old_credential",
    "remediation.rotation.x_free_slot",
    "remediation.rotation.x_write_keyvault",
    "remediation.rotation.x_write_landed",
    "remediation.rotation.x_remove_orphan",
    "remediation.rotation.x_recover_lost_value",
    "remediation.reload.x_ensure_running",
    "remediation.reload.x_apply_rung",
    # issue 13: a lost reply's orphan, the recycle the ladder journals, and the
    # runner's removePassword of a keyId it just added (tests/unit/test_step_mutants.py)
    "remediation.rotation.x_add_password",
    "remediation.rotation.x_remove_by_name",
    "remediation.reload.x_reload_and_verify",
    "remediation.cleanup.x_recycle",
    "remediation.runner.xǁRunǁremove_password",
    "remediation.runner.xǁRunǁadded_at",
)
_NAME = re.compile(r"^(?P<fn>.+)__mutmut_\d+$")


def main(root: Path = Path("mutants")) -> int:
    by_fn: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    metas = sorted(root.rglob("*.meta"))
    if not metas:
        print("no mutmut results: run `make mutate`", file=sys.stderr)
        return 1
    for meta in metas:
        data = json.loads(meta.read_text())
        for key, code in data["exit_code_by_key"].items():
            m = _NAME.match(key)
            fn = m.group("fn") if m else key
            status = status_by_exit_code.get(code, "other")
            status = "killed" if status in ("killed", "timeout", "caught by type check") else status
            by_fn[fn][status] += 1
            if status == "survived":
                survivors[fn].append(key)

    def line(name: str, c: Counter[str]) -> str:
        tested = c["killed"] + c["survived"]
        score = f"{100 * c['killed'] / tested:5.1f}%" if tested else "    -"
        return f"{name:<48} {c['killed']:>6} {c['survived']:>8} {c['no tests']:>8} {score:>7}"

    head = f"{'function':<48} {'killed':>6} {'survived':>8} {'no tests':>8} {'score':>7}"
    print(head)
    safety: Counter[str] = Counter()
    for fn in SAFETY:
        c = by_fn.get(fn, Counter())
        safety.update(c)
        print(line(fn, c))
    print(line("SAFETY DECISIONS (total)", safety))
    rest: Counter[str] = Counter()
    for fn, c in by_fn.items():
        if fn not in SAFETY:
            rest.update(c)
    print(line("everything else mutated", rest))
    for fn in SAFETY:
        for key in survivors.get(fn, []):
            print(f"survived: {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
