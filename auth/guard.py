"""Authorization decisions for patient data: the row scope pushed into SQL and field visibility.

Resolvers ask here and nowhere else. Denials are recorded on the request's trail, so the
access log sees every refused read.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from auth.access_log import Action, Outcome
from auth.principal import Principal
from auth.staff_scope import StaffScope
from auth.trail import AccessTrail
from domain.errors import Forbidden
from domain.patients.models import FieldGroup
from domain.patients.scope import PatientScope
from tenancy.keyring import mask_phone


class Visibility(StrEnum):
    FULL = "full"
    MASKED = "masked"
    DENIED = "denied"


def patient_scope(principal: Principal, act: str = "read") -> PatientScope:
    """The widest scope the principal's rules grant for `act` ("read" or "write")."""
    if principal.is_patient:
        # Staff scopes never apply to a patient, whatever the rules say.
        return PatientScope()
    if principal.allows("patients:chain", act):
        return PatientScope(chain=True)
    branches: frozenset[uuid.UUID] = frozenset()
    if principal.allows("patients:branch", act):
        branches |= principal.branch_ids
    if principal.allows("patients:region", act):
        branches |= principal.region_branch_ids
    staff = principal.id if principal.allows("patients:assigned", act) else None
    if principal.kind != "user":
        staff = None
    return PatientScope(branch_ids=frozenset(branches), staff_id=staff)


def care_scope(principal: Principal) -> PatientScope:
    """The caller's own care: the patients assigned to them or seen by them at an arrived
    visit (`PatientScope`'s "my patients" rule, the one place it is written), whatever wider
    scope their rules grant. Empty for anyone but a staff member."""
    if principal.kind != "user":
        return PatientScope()
    return staff_care_scope(principal.id)


def staff_care_scope(staff_id: uuid.UUID) -> PatientScope:
    """A staff member's own care, known by id alone (work they started that runs without
    their request, such as an import's batches)."""
    return PatientScope(staff_id=staff_id)


def require_patient_scope(
    principal: Principal, trail: AccessTrail, act: str, action: Action
) -> PatientScope:
    scope = patient_scope(principal, act)
    if scope.is_empty:
        trail.denied(action, [], f"no patients:{act} rule")
        raise Forbidden("not allowed to access patients")
    return scope


def system_scope() -> PatientScope:
    """The bound tenant's whole pool, for the system's own work outside a request (the demo
    loader, an operator's command): never for a caller."""
    return PatientScope(chain=True)


def event_scope(principal: Principal, trail: AccessTrail) -> PatientScope:
    """Whose events the caller may record: a service token holding `events:write` (a
    mini-program backend; the caller checks that rule) any patient of its tenant, staff the
    patients they may read."""
    if principal.kind == "service":
        return PatientScope(chain=True)
    return require_patient_scope(principal, trail, "read", Action.UPDATE)


def own_record_scope(principal: Principal, act: str = "read") -> PatientScope:
    """A signed-in patient's scope: exactly their own record (FORBIDDEN for anyone else,
    staff and service tokens included)."""
    if not principal.is_patient or not principal.allows("self", act):
        raise Forbidden("only a signed-in patient may do this")
    return PatientScope(patient_id=principal.id)


def require(principal: Principal, obj: str, act: str, why: str = "") -> None:
    """FORBIDDEN unless the principal's rules grant `obj:act` (`why` says so to the caller)."""
    if not principal.allows(obj, act):
        raise Forbidden(why or f"not allowed: {obj}:{act}")


def field_visibility(principal: Principal, group: FieldGroup) -> Visibility:
    if principal.allows(f"fields:{group}", "read"):
        return Visibility.FULL
    if principal.allows(f"fields:{group}_masked", "read"):
        return Visibility.MASKED
    return Visibility.DENIED


def require_unmasked(principal: Principal, group: FieldGroup, field: str) -> None:
    """Filtering, searching, sorting or grouping on a field tells its value as surely as
    reading it (10,000 exact-phone probes recover a masked phone), so only a role that sees
    the field's group in full may do it."""
    if field_visibility(principal, group) is not Visibility.FULL:
        raise Forbidden(
            f"{field}: only roles that see {group} fields unmasked may filter or group by it",
            field=field,
        )


def record_field(
    trail: AccessTrail, patient_id: uuid.UUID, group: FieldGroup, visibility: Visibility
) -> None:
    trail.field(patient_id, str(group), _OUTCOME[visibility])


_OUTCOME = {
    Visibility.FULL: Outcome.ALLOWED,
    Visibility.MASKED: Outcome.MASKED,
    Visibility.DENIED: Outcome.DENIED,
}


def writable_groups(principal: Principal) -> set[FieldGroup]:
    return {g for g in FieldGroup if principal.allows(f"fields:{g}", "write")}


def mask_value(name: str, value: str | None) -> str | None:
    """The masked form some roles may see (masked here, on the server, never in a frontend)."""
    if value is None:
        return None
    if name == "phone":
        return mask_phone(value)
    if name == "name":
        return value[:1] + "*" * max(len(value) - 1, 1)
    return "****"


def scope_to_json(scope: PatientScope) -> dict[str, object]:
    """A scope as plain data, for a job that runs after the request that decided it."""
    return {
        "chain": scope.chain,
        "branch_ids": sorted(str(b) for b in scope.branch_ids),
        "staff_id": None if scope.staff_id is None else str(scope.staff_id),
    }


def scope_from_json(data: dict[str, object]) -> PatientScope:
    """The scope `scope_to_json` wrote (never wider: what the request's rules granted)."""
    staff = data.get("staff_id")
    branches = data.get("branch_ids") or []
    return PatientScope(
        chain=bool(data.get("chain")),
        branch_ids=frozenset(uuid.UUID(str(b)) for b in branches),  # type: ignore[attr-defined]
        staff_id=None if staff is None else uuid.UUID(str(staff)),
    )


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
