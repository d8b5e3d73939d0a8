"""Which staff a caller may see or manage, as a value only `auth/` builds (like PatientScope).

HQ and auditors (`staff:read` / `staff:write`) cover the whole chain; a branch manager
(`staff:branch`) the staff of their branches, a region manager (`staff:region`) the staff of
their regions' branches. Seeing needs one shared branch; managing (invite, change, disable,
reset) needs every branch of the person inside the scope and no region of their own, so a
manager never changes someone who also works elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Set
from dataclasses import dataclass

from auth.principal import Principal
from domain.errors import Forbidden


@dataclass(frozen=True)
class StaffScope:
    chain: bool = False
    branch_ids: frozenset[uuid.UUID] = frozenset()

    @property
    def is_empty(self) -> bool:
        return not (self.chain or self.branch_ids)

    def sees(self, branch_ids: Set[uuid.UUID]) -> bool:
        return self.chain or bool(self.branch_ids & branch_ids)

    def holds(self, branch_ids: Set[uuid.UUID], region_ids: Set[uuid.UUID]) -> bool:
        """Everything about a person lies inside the scope (what managing them needs)."""
        if self.chain:
            return True
        return bool(branch_ids) and branch_ids <= self.branch_ids and not region_ids


def staff_scope(principal: Principal, act: str) -> StaffScope:
    """The widest staff scope the principal's rules grant for `act`; FORBIDDEN when none."""
    if principal.allows("staff", act):
        return StaffScope(chain=True)
    branches: frozenset[uuid.UUID] = frozenset()
    if principal.kind == "user":
        if principal.allows("staff:branch", act):
            branches |= principal.branch_ids
        if principal.allows("staff:region", act):
            branches |= principal.region_branch_ids
    if not branches:
        raise Forbidden(f"not allowed: staff:{act}")
    return StaffScope(branch_ids=branches)
