"""The catalogue of permissions a rule may name, and the default roles a new chain gets.

Data only: `auth.policy` loads and enforces the rules; a chain changes its roles' rules with
`setRolePermissions` (never beyond this catalogue).
"""

from __future__ import annotations

Permission = tuple[str, str]  # (object, action)

# Everything a rule may name; a rule outside this catalogue is refused.
CATALOGUE: frozenset[Permission] = frozenset(
    {
        ("patients:chain", "read"),
        ("patients:chain", "write"),
        ("patients:branch", "read"),
        ("patients:branch", "write"),
        ("patients:region", "read"),
        ("patients:region", "write"),
        ("patients:assigned", "read"),
        ("patients:assigned", "write"),
        ("patients", "erase"),
        ("fields:contact", "read"),
        ("fields:contact_masked", "read"),
        ("fields:contact", "write"),
        ("fields:health", "read"),
        ("fields:health", "write"),
        ("accesslog", "read"),
        ("accesslog", "export"),
        ("policies", "read"),
        ("policies", "write"),
        ("staff", "read"),
        ("staff", "write"),
        ("staff:branch", "read"),
        ("staff:branch", "write"),
        ("staff:region", "read"),
        ("staff:region", "write"),
        ("branches", "read"),
        ("branches", "write"),
        ("tags", "read"),
        ("tags", "write"),
        ("segments", "read"),
        ("segments", "write"),
        ("metrics", "read"),
        ("events", "write"),
        ("scoring", "write"),
        ("visits", "read"),
        ("visits", "write"),
        ("orders", "read"),
        ("orders", "write"),
        ("followups", "read"),
        ("followups", "write"),
        ("referrals", "read"),
        ("referrals", "write"),
        ("rewards", "write"),
        ("consents", "read"),
        ("consents", "write"),
        ("patients", "export"),
        ("campaigns", "read"),
        ("campaigns", "write"),
        # WeCom customer groups (社群): read the groups; write: link staff, group campaigns.
        ("groupchats", "read"),
        ("groupchats", "write"),
        # Satisfaction surveys: templates and rules; the answers (free text also needs
        # fields:health read).
        ("surveys", "read"),
        ("surveys", "write"),
        ("survey_answers", "read"),
        # A signed-in patient's own record, and nothing else (the `patient` role).
        ("self", "read"),
        ("self", "write"),
    }
)

# Holding the key grants the values too, for "cannot grant more than you hold": chain scope
# covers branch and assigned scope, and reading a field group covers its masked form.
IMPLIES: dict[Permission, set[Permission]] = {
    ("patients:chain", "read"): {
        ("patients:region", "read"),
        ("patients:branch", "read"),
        ("patients:assigned", "read"),
    },
    ("patients:chain", "write"): {
        ("patients:region", "write"),
        ("patients:branch", "write"),
        ("patients:assigned", "write"),
    },
    ("fields:contact", "read"): {("fields:contact_masked", "read")},
    # For granting only (a manager inviting a doctor or operator into their own branches):
    # a region's branches cover each branch, and a branch covers the patients assigned to the
    # staff working there, since staff they grant to work only in those branches.
    **{
        ("patients:region", a): {("patients:branch", a), ("patients:assigned", a)}
        for a in ("read", "write")
    },
    **{("patients:branch", a): {("patients:assigned", a)} for a in ("read", "write")},
    # Chain-wide staff rights cover the branch- and region-wide ones.
    **{("staff", a): {("staff:branch", a), ("staff:region", a)} for a in ("read", "write")},
}

# Managing staff, changing rules: whoever holds these can hand out roles, so only a granter
# who may change rules (HQ's `policies:write`) grants a role that carries one. A branch or
# region manager never makes another manager, an HQ admin or an auditor.
RULE_MAKING: frozenset[Permission] = frozenset(
    {
        ("policies", "write"),
        ("staff", "write"),
        ("staff:branch", "write"),
        ("staff:region", "write"),
    }
)
# The rights that let a non-HQ granter give roles at all: managing staff in a scope.
STAFF_MANAGING: tuple[Permission, ...] = (
    ("staff", "write"),
    ("staff:branch", "write"),
    ("staff:region", "write"),
)

_RW = ("read", "write")
_CHAIN_ADMIN: set[Permission] = {
    p for p in CATALOGUE if not p[0].startswith("patients:") and p[0] != "self"
} | {
    ("patients:chain", "read"),
    ("patients:chain", "write"),
}
# Separation of duties: the chain's admins do not read the access log that watches them.
_CHAIN_ADMIN -= {("accesslog", "read"), ("accesslog", "export")}

# A branch manager runs their branches; a region manager (大区经理) the same for every branch
# of their regions: patients, and the staff working there (`staff:branch` / `staff:region`:
# they see those staff and invite, change, disable and reset them, granting only roles they
# hold entirely, never RULE_MAKING ones).
_BRANCH_MANAGER: set[Permission] = {
    ("fields:contact", "read"),
    ("fields:contact", "write"),
    ("fields:health", "read"),
    *(("tags", a) for a in _RW),
    *(("segments", a) for a in _RW),
    ("metrics", "read"),
    ("branches", "read"),
    ("events", "write"),
    *((obj, a) for obj in ("visits", "orders", "followups", "referrals") for a in _RW),
    *(("consents", a) for a in _RW),
    ("groupchats", "read"),
    ("surveys", "read"),
    ("survey_answers", "read"),
}

DEFAULT_ROLES: dict[str, set[Permission]] = {
    "hq_admin": _CHAIN_ADMIN,
    "branch_manager": {
        *(("patients:branch", a) for a in _RW),
        *(("staff:branch", a) for a in _RW),
        *_BRANCH_MANAGER,
        ("patients", "export"),
    },
    "region_manager": {
        *(("patients:region", a) for a in _RW),
        *(("staff:region", a) for a in _RW),
        *_BRANCH_MANAGER,
    },
    "doctor": {
        *(("patients:assigned", a) for a in _RW),
        ("fields:contact", "read"),
        ("fields:health", "read"),
        ("fields:health", "write"),
        ("tags", "read"),
        ("branches", "read"),
        *(("visits", a) for a in _RW),
        *(("followups", a) for a in _RW),
        ("orders", "read"),
        ("referrals", "read"),
        ("consents", "read"),
        ("groupchats", "read"),
        ("survey_answers", "read"),
    },
    "health_manager": {
        *(("patients:assigned", a) for a in _RW),
        ("fields:contact", "read"),
        ("fields:contact", "write"),
        ("fields:health", "read"),
        ("fields:health", "write"),
        ("tags", "read"),
        ("tags", "write"),
        ("branches", "read"),
        ("events", "write"),
        *(("visits", a) for a in _RW),
        *(("followups", a) for a in _RW),
        ("orders", "read"),
        *(("referrals", a) for a in _RW),
        *(("consents", a) for a in _RW),
        ("groupchats", "read"),
        ("survey_answers", "read"),
    },
    "operator": {
        *(("patients:branch", a) for a in _RW),
        ("fields:contact", "read"),
        ("fields:contact", "write"),
        *(("tags", a) for a in _RW),
        ("branches", "read"),
        ("events", "write"),
        *(("visits", a) for a in _RW),
        *(("followups", a) for a in _RW),
        *(("referrals", a) for a in _RW),
        *(("consents", a) for a in _RW),
        ("groupchats", "read"),
    },
    "marketing": {
        ("patients:chain", "read"),
        ("fields:contact_masked", "read"),
        ("tags", "read"),
        *(("segments", a) for a in _RW),
        ("metrics", "read"),
        ("branches", "read"),
        ("referrals", "read"),
        *(("campaigns", a) for a in _RW),
        ("groupchats", "read"),
    },
    "auditor": {
        ("accesslog", "read"),
        ("accesslog", "export"),
        ("policies", "read"),
        ("staff", "read"),
        ("branches", "read"),
    },
}
# The role of a patient signed in from the mini-program: their own record and nothing else.
# Its subject is the role itself (every patient holds it, no per-patient rule is stored), and
# only a patient token carries it (auth.patient_sessions); a staff member given it gains
# nothing, since the patient root fields take patient principals alone.
PATIENT_ROLE = "patient"
PATIENT_PERMISSIONS: set[Permission] = {("self", "read"), ("self", "write")}
DEFAULT_ROLES[PATIENT_ROLE] = PATIENT_PERMISSIONS
