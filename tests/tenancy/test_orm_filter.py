"""The ORM tenant filter reaches the select inside an INSERT … SELECT: a copy made while bound
to tenant A takes A's rows only, on SQLite too, where no row-level security backs it up."""

from __future__ import annotations

import pytest
from sqlalchemy import func, literal, select

from api.context import AppState
from domain.patients.models import Patient
from domain.referrals.models import ReferralFigures
from tenancy.session import TenantContextError, tenant_session
from tests.support import build_world

COLUMNS = ["tenant_id", "patient_id", "descendants", "converted", "converted_fen"]


def _copy_patients():  # type: ignore[no-untyped-def]
    rows = select(Patient.tenant_id, Patient.id, literal(0), literal(0), literal(0))
    return ReferralFigures.__table__.insert().from_select(COLUMNS, rows)


async def test_insert_select_copies_only_the_bound_tenants_rows(
    state: AppState, owner_state: AppState, unique: str
) -> None:
    a = await build_world(owner_state, f"ia-{unique}")
    b = await build_world(owner_state, f"ib-{unique}")
    async with tenant_session(state.sessions, a.tenant_id) as session, session.begin():
        copied = await session.execute(_copy_patients())
        assert copied.rowcount == len(a.patients)
        # Read past the ORM filter (a driver-level statement): on SQLite this sees every
        # tenant's rows (other tests' too), so B's patients would show here had the copy
        # taken them.
        conn = await session.connection()
        found = (
            await conn.exec_driver_sql("SELECT tenant_id, patient_id FROM referral_figures")
        ).all()
        ids = {str(r[1]).replace("-", "") for r in found}
        assert {p.id.hex for p in a.patients.values()} <= ids
        assert not ids & {p.id.hex for p in b.patients.values()}
        await session.rollback()


async def test_insert_select_through_a_cte_is_filtered(
    state: AppState, owner_state: AppState, unique: str
) -> None:
    """The filter reaches CTEs inside the copied select as well (referral figures use one)."""
    a = await build_world(owner_state, f"ic-{unique}")
    await build_world(owner_state, f"id-{unique}")
    mine = select(Patient.id.label("id")).cte("mine")
    rows = select(literal(a.tenant_id, Patient.tenant_id.type), mine.c.id, 0, 0, 0)
    async with tenant_session(state.sessions, a.tenant_id) as session, session.begin():
        await session.execute(ReferralFigures.__table__.insert().from_select(COLUMNS, rows))
        total = await session.scalar(select(func.count()).select_from(ReferralFigures))
        assert total == len(a.patients)
        await session.rollback()


async def test_insert_select_without_a_tenant_is_refused(state: AppState) -> None:
    async with state.sessions() as session, session.begin():
        with pytest.raises(TenantContextError):
            await session.execute(_copy_patients())
