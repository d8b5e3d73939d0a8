"""What one request did to patient data, gathered as it runs and written to the access log.

Root resolvers say which patients they returned and how (read, list, create…); field
resolvers say which field groups they revealed, masked or were refused. At the end of the
operation the trail becomes log entries: one per (action, outcome), with the patient ids and
field groups, so a list of 50 patients costs one entry, not 50.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable

from auth.access_log import AccessEvent, Action, Outcome

# Logged even when the operation rolls back: what was read, refused or found tampered.
READ_ACTIONS = frozenset(
    {Action.READ, Action.LIST, Action.EXPORT, Action.DECRYPT_DENIED, Action.INTEGRITY_FAILED}
)


class AccessTrail:
    def __init__(self) -> None:
        self._action_of: dict[uuid.UUID, Action] = {}
        self._groups: dict[tuple[Action, Outcome], dict[uuid.UUID, set[str]]] = defaultdict(dict)
        self._reasons: dict[tuple[Action, Outcome], str] = {}
        self._exports = False
        self._admin: list[AccessEvent] = []
        # Field reads decided by the care/reason gate (auth.reasons): each (action, outcome,
        # reason) is one entry, so a read under a stated purpose carries that purpose.
        self._reasoned: dict[tuple[Action, Outcome, str], dict[uuid.UUID, set[str]]] = defaultdict(
            dict
        )

    def returned(self, action: Action, patient_ids: Iterable[uuid.UUID]) -> None:
        """Patients handed to the caller by a root field (their fields may follow)."""
        for pid in patient_ids:
            self._action_of.setdefault(pid, action)
            self._groups[(self._action_of[pid], Outcome.ALLOWED)].setdefault(pid, set())

    def field(self, patient_id: uuid.UUID, group: str, outcome: Outcome) -> None:
        action = self._action_of.get(patient_id, Action.READ)
        if outcome is Outcome.DENIED:
            action = Action.DECRYPT_DENIED
        self._groups[(action, outcome)].setdefault(patient_id, set()).add(group)

    def reasoned_field(
        self,
        patient_id: uuid.UUID,
        group: str,
        outcome: Outcome,
        reason: str,
        action: Action | None = None,
    ) -> None:
        """A field group read (or, with `action`, changed) under a stated purpose, or refused
        for want of one (a refused read is a DECRYPT_DENIED, a refused change keeps its
        action and, like every refused change, is rolled back with it)."""
        if action is None:
            action = self._action_of.get(patient_id, Action.READ)
            if outcome is Outcome.DENIED:
                action = Action.DECRYPT_DENIED
        self._reasoned[(action, outcome, reason)].setdefault(patient_id, set()).add(group)

    def purpose(self, action: Action, patient_id: uuid.UUID, reason: str) -> None:
        """A purpose stated, or flagged by an auditor: one entry of its own, written only when
        the operation commits (as the change it is)."""
        self._admin.append(
            AccessEvent(
                action=action, patient_ids=[patient_id], field_groups=["health"], reason=reason
            )
        )

    def integrity_failed(self, patient_id: uuid.UUID, group: str) -> None:
        """A sealed value of this patient failed to decrypt: it was changed or moved."""
        self._groups[(Action.INTEGRITY_FAILED, Outcome.DENIED)].setdefault(patient_id, set()).add(
            group
        )
        self._reasons[(Action.INTEGRITY_FAILED, Outcome.DENIED)] = (
            "ciphertext failed to authenticate"
        )

    def changed(
        self, action: Action, patient_ids: Iterable[uuid.UUID], groups: Iterable[str] = ()
    ) -> None:
        bucket = self._groups[(action, Outcome.ALLOWED)]
        for pid in patient_ids:
            bucket.setdefault(pid, set()).update(groups)
            self._action_of.setdefault(pid, action)

    def exported(self, patient_ids: Iterable[uuid.UUID]) -> None:
        """An export (of data or of log entries about these patients): always logged, even
        when it covers no patient."""
        self._groups[(Action.EXPORT, Outcome.ALLOWED)].update({pid: set() for pid in patient_ids})
        self._exports = True

    def denied(self, action: Action, patient_ids: Iterable[uuid.UUID], reason: str) -> None:
        bucket = self._groups[(action, Outcome.DENIED)]
        for pid in patient_ids:
            bucket.setdefault(pid, set())
        self._reasons[(action, Outcome.DENIED)] = reason

    def admin(
        self, change: str, target_kind: str, target_id: uuid.UUID | str, detail: str = ""
    ) -> None:
        """One administrative change (e.g. `branch.close` on a Branch): one entry of its own,
        written only when the operation commits. Ids and role names only, no personal data."""
        reason = f"{change} {target_kind}:{target_id}" + (f" {detail}" if detail else "")
        self._admin.append(AccessEvent(action=Action.ADMIN, patient_ids=[], reason=reason))

    def events(self, *, reads_only: bool = False) -> list[AccessEvent]:
        out: list[AccessEvent] = [] if reads_only else list(self._admin)
        for (action, outcome), by_patient in self._groups.items():
            empty_export = action is Action.EXPORT and self._exports
            if (not by_patient and not empty_export) or (reads_only and action not in READ_ACTIONS):
                continue
            groups = set().union(*by_patient.values())
            out.append(
                AccessEvent(
                    action=action,
                    patient_ids=sorted(by_patient),
                    field_groups=sorted(groups),
                    outcome=outcome,
                    reason=self._reasons.get((action, outcome), ""),
                )
            )
        for (action, outcome, reason), by_patient in self._reasoned.items():
            if reads_only and action not in READ_ACTIONS:
                continue
            out.append(
                AccessEvent(
                    action=action,
                    patient_ids=sorted(by_patient),
                    field_groups=sorted(set().union(*by_patient.values())),
                    outcome=outcome,
                    reason=reason,
                )
            )
        return sorted(out, key=lambda e: (e.action, e.outcome, e.reason))
