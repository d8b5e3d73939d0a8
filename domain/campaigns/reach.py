"""What campaigns reached and brought in, for many campaigns at once (a page of them costs
the same five statements as one).

Deliveries by outcome; opt-outs (the provider said so, or the patient withdrew marketing
consent on the campaign's channel between delivery and the end of the attribution window);
and conversions credited to the campaign: arrived visits and paid orders of delivered
patients between their delivery and `attributed_until` (delivery + the campaign's
attribution days). Everything is counted in SQL (domain.campaigns.repository).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns.models import DeliveryStatus
from domain.campaigns.repository import CampaignRepository


@dataclass
class Reach:
    by_status: dict[str, int] = field(default_factory=dict)
    withdrew_after: int = 0  # delivered, then withdrew marketing consent within the window
    visits: int = 0
    orders: int = 0
    revenue_fen: int = 0
    converted_patients: int = 0

    @property
    def opted_out(self) -> int:
        return self.by_status.get(str(DeliveryStatus.OPTED_OUT), 0) + self.withdrew_after


async def reach(session: AsyncSession, campaign_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Reach]:
    ids = sorted(set(campaign_ids))
    out = {cid: Reach() for cid in ids}
    if not ids:
        return out
    repo = CampaignRepository(session)
    for cid, status, n in await repo.deliveries_by_status(ids):
        out[cid].by_status[str(status)] = int(n)
    for cid, n in await repo.withdrawn_after_delivery(ids):
        out[cid].withdrew_after = int(n)
    for cid, n in await repo.attributed_visits(ids):
        out[cid].visits = int(n)
    for cid, n, fen in await repo.attributed_orders(ids):
        out[cid].orders, out[cid].revenue_fen = int(n), int(fen)
    for cid, n in await repo.converted_patients(ids):
        out[cid].converted_patients = int(n)
    return out
