"""Which staff a caller may see or manage, as a value only `auth/` builds (`auth.guard.staff_scope`,
like PatientScope), and the filter of a staff list within it.

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


CHAIN = StaffScope(chain=True)


@dataclass(frozen=True)
class StaffFilter:
    """Which staff a list shows: within `scope`, the rest narrowing it."""

    scope: StaffScope = CHAIN
    branch_ids: frozenset[uuid.UUID] = frozenset()
    region_ids: frozenset[uuid.UUID] = frozenset()
    subjects: frozenset[str] | None = None  # holders of a role (from the policy)
    active: bool | None = None
    search: str | None = None
