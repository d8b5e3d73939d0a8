"""A patient's rights under PIPL: a copy of everything held on them (个人信息副本).

`patient_copy` gathers, for one patient, the decrypted fields and every row about them:
tags, interaction events, stage history, visits, orders with their lines and refunds,
follow-ups, referrals either way, rewards, consents, survey answers (free text opened) and
WeCom customer-group stays. A fixed number of statements, however much there is. After
erasure the sealed fields read as null: nothing readable is left to copy.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.patients.models import SEALED_FIELDS, Patient
from domain.patients.service import unseal
from domain.rights.repository import RightsRepository
from domain.surveys.answers import free_text
from tenancy.keyring import FieldCipher

ORDER_COLUMNS = ("id", "branch_id", "status", "total_fen", "refunded_fen", "paid_at")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _rows(rows: Any, *columns: str) -> list[dict[str, Any]]:
    return [{c: _plain(getattr(r, c)) for c in columns} for r in rows]


async def patient_copy(session: AsyncSession, cipher: FieldCipher, patient: Patient) -> dict:
    pid = patient.id
    repo = RightsRepository(session)
    orders = await repo.orders(patient)
    order_ids = [o.id for o in orders]
    lines = await repo.order_lines(order_ids)
    refunds = await repo.refunds(order_ids)
    tags = await repo.tags(patient)
    answers = await repo.survey_answers(patient)
    stays = (
        await repo.group_stays(patient.wecom_external_id_bidx)
        if patient.wecom_external_id_bidx is not None
        else []
    )
    return {
        "patient": {
            "id": str(pid),
            **{name: unseal(cipher, patient, name) for name in SEALED_FIELDS},
            **{
                c: _plain(getattr(patient, c))
                for c in (
                    "gender",
                    "birth_year",
                    "home_branch_id",
                    "source_channel",
                    "pool_tier",
                    "lifecycle_stage",
                    "trust_level",
                    "referral_code",
                    "lead_score",
                    "created_at",
                    "updated_at",
                    "erased_at",
                )
            },
        },
        "tags": _rows(tags, "name", "source", "added_at"),
        "events": _rows(
            await repo.events(patient),
            "type",
            "occurred_at",
            "source",
        ),
        "stage_history": _rows(
            await repo.stage_history(patient),
            "from_stage",
            "to_stage",
            "reason",
            "occurred_at",
        ),
        "visits": _rows(
            await repo.visits(patient),
            "id",
            "branch_id",
            "doctor_id",
            "scheduled_at",
            "status",
            "arrived_at",
            "is_first",
        ),
        "orders": [
            {
                **_rows([o], *ORDER_COLUMNS)[0],
                "lines": _rows(
                    [x for x in lines if x.order_id == o.id],
                    "service",
                    "quantity",
                    "unit_price_fen",
                ),
                "refunds": _rows(
                    [r for r in refunds if r.order_id == o.id],
                    "amount_fen",
                    "reason",
                    "refunded_at",
                ),
            }
            for o in orders
        ],
        "follow_ups": _rows(
            await repo.follow_ups(patient),
            "kind",
            "status",
            "due_at",
            "outcome",
        ),
        "referrals": _rows(
            await repo.referrals(patient),
            "referrer_id",
            "referred_id",
            "channel",
            "created_at",
        ),
        "rewards": _rows(
            await repo.rewards(patient),
            "status",
            "points",
            "coupon",
            "reason",
            "created_at",
        ),
        "consents": _rows(
            await repo.consents(patient),
            "purpose",
            "channel",
            "granted",
            "text_version",
            "method",
            "recorded_at",
        ),
        "survey_answers": [
            {
                **_rows([a], "answered_at", "rating_sum", "rating_count", "nps", "choices")[0],
                "free_text": free_text(cipher, a),
            }
            for a in answers
        ],
        "group_chats": _rows(stays, "name", "joined_at", "left_at"),
    }
