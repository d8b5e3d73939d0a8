"""Orders: exact amounts in fen (integers), payment, partial and full refunds.

A patient's `order_total_fen` is the sum of their paid orders net of refunds; it is recomputed
in SQL after each change, so it never drifts from the orders themselves, and its difference
goes to the referrers' stored figures (domain.referrals.figures).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, OrderLine, OrderStatus, Refund
from domain.care.repository import CareRepository
from domain.errors import BadInput, Conflict, NotFound
from domain.patients.models import LifecycleStage, Patient
from domain.pool.service import PoolService
from domain.referrals import figures
from domain.referrals.models import RewardTrigger
from domain.referrals.service import ReferralService

MAX_LINES = 100
MAX_FEN = 10**12  # ten billion yuan: beyond any single order, well inside BIGINT


def to_fen(amount: Decimal | str, field: str) -> int:
    """Yuan as an exact decimal (at most two places) to integer fen; floats never enter."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise BadInput("not an amount", field=field) from None
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        raise BadInput("amounts have at most two decimal places", field=field)
    fen = int(value * 100)
    if fen < 0 or fen > MAX_FEN:
        raise BadInput("amount out of range", field=field)
    return fen


def to_yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class NewLine:
    service: str
    quantity: int
    unit_price_fen: int


class OrderService:
    def __init__(self, session: AsyncSession, actor: str) -> None:
        self.session = session
        self.actor = actor
        self.repo = CareRepository(session)

    async def create(self, patient: Patient, branch_id: uuid.UUID, lines: list[NewLine]) -> Order:
        if not 0 < len(lines) <= MAX_LINES:
            raise BadInput(f"an order has 1 to {MAX_LINES} lines", field="lines")
        for line in lines:
            if not line.service.strip() or len(line.service) > 200:
                raise BadInput("each line names a service (1-200 characters)", field="lines")
            if not 0 < line.quantity <= 10_000:
                raise BadInput("quantity must be between 1 and 10000", field="lines")
        if not await self.repo.branch_exists(branch_id):
            raise NotFound("no such branch", field="branchId")
        total = sum(line.quantity * line.unit_price_fen for line in lines)
        if total > MAX_FEN:
            raise BadInput("order total out of range", field="lines")
        order = Order(
            id=uuid.uuid4(),
            patient_id=patient.id,
            branch_id=branch_id,
            total_fen=total,
            created_by=self.actor,
        )
        self.session.add(order)
        await self.session.flush()
        for n, line in enumerate(lines, start=1):
            self.session.add(
                OrderLine(
                    order_id=order.id,
                    line_no=n,
                    service=line.service.strip(),
                    quantity=line.quantity,
                    unit_price_fen=line.unit_price_fen,
                )
            )
        await self.session.flush()
        return order

    async def pay(self, order: Order, patient: Patient, at: datetime | None = None) -> Order:
        """Mark paid, now or at `at` (a payment taken earlier, e.g. by the till)."""
        if order.status != OrderStatus.PENDING:
            raise Conflict(f"this order is {order.status}, not pending")
        earlier = await self.repo.paid_order_count(patient)
        order.status = OrderStatus.PAID
        order.paid_at = at.astimezone(UTC) if at else datetime.now(UTC)
        order.is_first = not earlier
        pool = PoolService(self.session, self.actor)
        if order.is_first:
            await pool.change_stage(patient, LifecycleStage.CONVERTED, "first paid order")
            await ReferralService(self.session).on_milestone(
                patient.id, RewardTrigger.FIRST_PAYMENT
            )
        elif patient.lifecycle_stage == LifecycleStage.CONVERTED:
            await pool.change_stage(patient, LifecycleStage.RETURNING, "repurchase")
        await self._total(patient)
        return order

    async def cancel(self, order: Order) -> Order:
        if order.status != OrderStatus.PENDING:
            raise Conflict(f"this order is {order.status}; refund a paid order instead")
        order.status = OrderStatus.CANCELLED
        await self.session.flush()
        return order

    async def refund(self, order: Order, patient: Patient, fen: int, reason: str) -> Refund:
        if order.status != OrderStatus.PAID:
            raise Conflict(f"this order is {order.status}; only paid orders are refunded")
        if fen <= 0:
            raise BadInput("a refund is more than zero", field="amount")
        if fen > order.net_fen:
            raise BadInput(
                f"at most {to_yuan(order.net_fen)} can still be refunded", field="amount"
            )
        if len(reason) > 200:
            raise BadInput("reason is at most 200 characters", field="reason")
        refund = Refund(order_id=order.id, amount_fen=fen, reason=reason, created_by=self.actor)
        self.session.add(refund)
        order.refunded_fen += fen
        if order.refunded_fen == order.total_fen:
            order.status = OrderStatus.REFUNDED
        await self._total(patient)
        return refund

    async def _total(self, patient: Patient) -> None:
        await self.session.flush()
        old = await figures.lock_paid_total(self.session, patient.id)
        patient.order_total_fen = await self.repo.paid_net_fen(patient)
        await self.session.flush()
        await figures.paid_total_changed(self.session, patient.id, old, patient.order_total_fen)
