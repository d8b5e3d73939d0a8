"""`metrics { satisfaction }`: the surveys' figures beside the conversion figures, for the same
period and within the caller's patient scope (the root field has checked `metrics:read`)."""

from __future__ import annotations

from typing import Any

from strawberry.types import Info

from api.surveys.types import (
    BranchSatisfaction,
    DoctorSatisfaction,
    SatisfactionFigures,
    SatisfactionMetrics,
)
from api.tenants.types import Branch, Staff
from auth.guard import patient_scope, require
from auth.staff import StaffService
from domain.surveys.figures import satisfaction
from domain.tenants.branches import BranchService


async def satisfaction_metrics(root: Any, info: Info) -> SatisfactionMetrics:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "metrics", "read")
    figures = await satisfaction(
        ctx.session, patient_scope(principal, "read"), root.since, root.until, root.branch_id
    )
    branches = {b.id: b for b in await BranchService(ctx.session).by_ids(list(figures.by_branch))}
    staff = StaffService(ctx.session, ctx.trail)
    doctors = {s.id: s for s in await staff.by_ids(list(figures.by_doctor))}
    return SatisfactionMetrics(
        total=SatisfactionFigures(_f=figures.total),
        by_branch=[
            BranchSatisfaction(branch=Branch.of(branches[b]), figures=SatisfactionFigures(_f=f))
            for b, f in sorted(figures.by_branch.items(), key=lambda kv: branches[kv[0]].name)
        ],
        by_doctor=[
            DoctorSatisfaction(doctor=Staff.of(doctors[d]), figures=SatisfactionFigures(_f=f))
            for d, f in sorted(figures.by_doctor.items(), key=lambda kv: str(kv[0]))
            if d in doctors
        ],
    )
