"""The principal of a request: who, which tenant, which roles and branches, and their policy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from auth.access_log import Actor
from auth.policy import TenantPolicy
from auth.roles import PATIENT_ROLE


@dataclass(frozen=True)
class Principal:
    kind: str  # "user", "service" or "patient" (signed in from the mini-program)
    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_slug: str
    display_name: str
    roles: tuple[str, ...]
    branch_ids: frozenset[uuid.UUID]
    policy: TenantPolicy
    session_id: uuid.UUID | None = None
    # The branches of the regions this staff member manages (the `patients:region` scope).
    region_branch_ids: frozenset[uuid.UUID] = frozenset()
    # Signed in only to set up a second factor: no rule applies (the gate in api/ also lets
    # such a token reach nothing but the enrolment fields and `me`).
    enrolment_only: bool = False
    # Decisions already taken for this principal (its policy version never changes in
    # place): a page of 50 patients asks the same few questions for every field it shows.
    _decided: dict[tuple[str, str], bool] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @property
    def subject(self) -> str:
        return f"{self.kind}:{self.id}"

    @property
    def actor(self) -> Actor:
        return Actor(self.kind, str(self.id), self.roles)

    @property
    def is_patient(self) -> bool:
        return self.kind == "patient"

    def allows(self, obj: str, act: str) -> bool:
        decided = self._decided.get((obj, act))
        if decided is None:
            decided = self._decided[obj, act] = self._decide(obj, act)
        return decided

    def _decide(self, obj: str, act: str) -> bool:
        if self.enrolment_only:
            return False
        # A patient's rules are the patient role's: no rule is stored per patient.
        subject = PATIENT_ROLE if self.is_patient else self.subject
        return self.policy.allows(subject, obj, act)
