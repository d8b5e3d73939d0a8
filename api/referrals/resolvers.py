"""Root fields of referrals: trees, top referrers, links and the reward programme."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.ids import parse_global_id
from api.pagination import (
    Connection,
    held_connection,
    keyset_connection,
    keyset_position,
    ranked_connection,
)
from api.patients.loaders import patient_in_scope
from api.patients.types import Patient
from api.referrals.types import (
    Referral,
    ReferralTree,
    ReferrerFigures,
    ReferrerLink,
    Reward,
    RewardRule,
    RewardTrigger,
)
from api.selection import asks
from api.tenants.loaders import branch_loader
from api.tenants.types import Branch
from auth.access_log import Action
from auth.guard import require, require_patient_scope
from domain.care.orders import to_yuan
from domain.errors import BadInput, NotFound
from domain.patients.models import Patient as PatientRow
from domain.patients.repository import PatientRepository
from domain.patients.scope import PatientScope
from domain.referrals import models as rm
from domain.referrals import tree
from domain.referrals.repository import ReferralRepository
from domain.referrals.service import ReferralService

MAX_DEPTH = 50
MAX_NODES = 10_000


async def _visible(
    info: Info, scope: PatientScope, ids: list[uuid.UUID]
) -> dict[uuid.UUID, PatientRow]:
    """The visible patients of an answer, in one query; each is logged as returned."""
    rows = await PatientRepository(info.context.session).get_many(scope, ids)
    info.context.trail.returned(Action.LIST, rows)
    return rows


PATIENT = frozenset({"patient"})


async def referral_tree(
    info: Info,
    patient_id: strawberry.ID,
    depth: int = 3,
    max_nodes: int = 1000,
) -> ReferralTree:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "referrals", "read")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    if not 0 <= depth <= MAX_DEPTH:
        raise BadInput(f"depth must be between 0 and {MAX_DEPTH}", field="depth")
    if not 1 <= max_nodes <= MAX_NODES:
        raise BadInput(f"maxNodes must be between 1 and {MAX_NODES}", field="maxNodes")
    root = await patient_in_scope(info, scope, patient_id)
    sub = await tree.subtree(ctx.session, root.id, depth, scope, max_nodes)
    up = await tree.ancestors(ctx.session, root.id, scope)
    seen = {n.patient_id for n in sub.nodes if n.visible} | {pid for pid, ok in up if ok}
    # The figures are about these patients: logged whether or not their records are asked
    # for; the records themselves (10,000 rows for a big tree) are read only when they are.
    if asks(info.selected_fields, PATIENT):
        rows = await _visible(info, scope, list(seen))
    else:
        rows = {}
        ctx.trail.returned(Action.LIST, seen)  # (the log sorts the ids it writes)
    return ReferralTree(
        referrers=[
            ReferrerLink(
                hops=i,
                patient=Patient.of(rows[pid], _ctx=ctx) if pid in rows else None,
                anonymous=pid not in seen,
            )
            for i, (pid, _seen) in enumerate(up, start=1)
        ],
        truncated=sub.truncated,
        _sub=sub,
        _shown=seen,
        _records=rows,
        _ctx=ctx,
    )


async def top_referrers(
    info: Info,
    from_: Annotated[datetime, strawberry.argument(name="from", description="Start (inclusive).")],
    to: Annotated[
        datetime, strawberry.argument(description="End (exclusive); at most 366 days on.")
    ],
    branch_id: strawberry.ID | None = None,
    first: int | None = None,
    after: str | None = None,
) -> Connection[ReferrerFigures]:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "referrals", "read")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.LIST)
    if from_.tzinfo is None or to.tzinfo is None:
        raise BadInput("give times with a timezone offset", field="from")
    since, until = from_.astimezone(UTC), to.astimezone(UTC)
    if not since < until <= since + timedelta(days=366):
        raise BadInput("the period runs forward, at most 366 days", field="to")
    branch = parse_global_id(branch_id, "Branch", "branchId") if branch_id else None

    async def fetch(n: int) -> list[tree.ReferrerFigures]:
        return await tree.top_referrers(ctx.session, scope, since, until, branch, n)

    async def count() -> int:
        return await tree.count_referrers(ctx.session, scope, since, until, branch)

    async def present(figures: list[tree.ReferrerFigures]) -> list[ReferrerFigures]:
        rows = await _visible(info, scope, [f.referrer_id for f in figures if f.visible])
        branches = ctx.loader("branch", lambda: branch_loader(ctx.session))
        found = await branches.load_many([f.branch_id for f in figures])
        return [
            ReferrerFigures(
                patient=Patient.of(rows[f.referrer_id], _ctx=ctx)
                if f.referrer_id in rows
                else None,
                anonymous=f.referrer_id not in rows,
                branch=Branch.of(b) if b is not None else None,
                referred_count=f.referred,
                converted_count=f.converted,
                converted_value=to_yuan(f.converted_fen),
            )
            for f, b in zip(figures, found, strict=True)
        ]

    return await ranked_connection(fetch, present, count, first, after)


async def link_referral(
    info: Info, patient_id: strawberry.ID, referral_code: str, channel: str = ""
) -> Referral:
    """Record who referred an existing patient, by the referrer's referral code."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "referrals", "write")
    scope = require_patient_scope(principal, ctx.trail, "write", Action.UPDATE)
    referred = await patient_in_scope(info, scope, patient_id)
    return await make_link(info, scope, referred, referral_code, channel)


async def make_link(
    info: Info, scope: PatientScope, referred: PatientRow, code: str, channel: str
) -> Referral:
    """Shared by linkReferral and createPatient(referralCode): link, log both patients."""
    ctx = info.context
    service = ReferralService(ctx.session)
    referrer = await service.by_code(code)
    link = await service.link(referrer, referred, channel)
    ctx.trail.changed(Action.UPDATE, [referrer.id, referred.id])
    visible = await PatientRepository(ctx.session).get_many(scope, [referrer.id])
    return Referral(
        referrer=Patient.of(referrer, _ctx=ctx) if referrer.id in visible else None,
        referred=Patient.of(referred, _ctx=ctx),
        channel=link.channel,
        eligible=link.eligible,
        ineligible_reason=link.ineligible_reason,
        created_at=link.created_at,
    )


async def reward_rules(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[RewardRule]:
    ctx = info.context
    require(await ctx.principal(), "referrals", "read")
    rows = await ReferralRepository(ctx.session).reward_rules()
    found = [((r.trigger, f"{r.threshold:06d}", str(r.id)), RewardRule.of(r)) for r in rows]
    return held_connection(found, 3, first, after)


@strawberry.input(description="A reward rule; give `id` to change an existing one.")
class RewardRuleInput:
    id: strawberry.ID | None = strawberry.field(default=None, description="Rule to change.")
    trigger: RewardTrigger = strawberry.field(description="What earns it.")  # type: ignore[valid-type]
    threshold: int = strawberry.field(default=1, description="N for REFERRED_COUNT (1-1000).")
    points: int = strawberry.field(default=0, description="Points granted (0-100000).")
    coupon: str = strawberry.field(default="", description="Coupon code or name (≤100).")
    active: bool = strawberry.field(default=True, description="Whether it grants rewards.")


async def set_reward_rule(info: Info, input: RewardRuleInput) -> RewardRule:
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "rewards", "write")
    if not 1 <= input.threshold <= 1000:
        raise BadInput("threshold must be between 1 and 1000", field="threshold")
    if not 0 <= input.points <= 100_000 or len(input.coupon) > 100:
        raise BadInput("points 0-100000, coupon at most 100 characters", field="points")
    if input.points == 0 and not input.coupon.strip():
        raise BadInput("a reward grants points or a coupon", field="points")
    if input.id is not None:
        row = await ReferralRepository(ctx.session).reward_rule(
            parse_global_id(input.id, "RewardRule")
        )
        if row is None:
            raise NotFound("no such reward rule")
    else:
        row = rm.RewardRule()
        ctx.session.add(row)
    row.trigger = str(input.trigger)
    row.threshold = input.threshold if input.trigger == rm.RewardTrigger.REFERRED_COUNT else 1
    row.points, row.coupon, row.active = input.points, input.coupon.strip(), input.active
    await ctx.session.flush()
    return RewardRule.of(row)


async def rewards(
    info: Info, patient_id: strawberry.ID, first: int | None = None, after: str | None = None
) -> Connection[Reward]:
    """Rewards recorded on a referrer in your scope, oldest first."""
    ctx = info.context
    principal = await ctx.principal()
    require(principal, "referrals", "read")
    scope = require_patient_scope(principal, ctx.trail, "read", Action.READ)
    referrer = await patient_in_scope(info, scope, patient_id)
    ctx.trail.returned(Action.READ, [referrer.id])
    limit, key = keyset_position(first, after)
    page = await ReferralRepository(ctx.session).reward_page(referrer, limit, key)
    return keyset_connection(page, [Reward.of(r) for r in page.rows])
