"""GraphQL types of consent (知情同意): what each patient agreed to, for what, on which channel."""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.ids import to_global_id
from api.rows import RowType
from domain.consent import models as m

PurposeEnum = strawberry.enum(
    m.Purpose,
    description="CARE (reminders about their own care), MARKETING (营销: campaigns, offers) or "
    "HEALTH_DATA (processing sensitive health information, a separate consent under PIPL).",
)
ContactChannelEnum = strawberry.enum(
    m.ContactChannel,
    description="WECOM (企业微信), SMS, PHONE, MINI_PROGRAM (小程序); ANY for HEALTH_DATA.",
)


@strawberry.type(description="The consent in force for one purpose and channel.")
class Consent(RowType):
    _row: strawberry.Private[m.ConsentState]

    @strawberry.field(description="What it is for.")
    def purpose(self) -> PurposeEnum:  # type: ignore[valid-type]
        return m.Purpose(self._row.purpose)

    @strawberry.field(description="Which channel it covers.")
    def channel(self) -> ContactChannelEnum:  # type: ignore[valid-type]
        return m.ContactChannel(self._row.channel)

    granted: bool = strawberry.field(description="Given (true) or withdrawn (false).")
    text_version: str = strawberry.field(
        description="Version of the consent text agreed to or withdrawn from."
    )

    since: datetime = strawberry.field(description="Since when it is in force.")


@strawberry.type(description="One grant or withdrawal of consent, as it was recorded.")
class ConsentRecord(RowType):
    _row: strawberry.Private[m.ConsentRecord]

    @strawberry.field(description="Opaque global id.")
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_global_id("ConsentRecord", self._row.id))

    @strawberry.field(description="What it is for.")
    def purpose(self) -> PurposeEnum:  # type: ignore[valid-type]
        return m.Purpose(self._row.purpose)

    @strawberry.field(description="Which channel it covers.")
    def channel(self) -> ContactChannelEnum:  # type: ignore[valid-type]
        return m.ContactChannel(self._row.channel)

    granted: bool = strawberry.field(description="Given (true) or withdrawn (false).")
    text_version: str = strawberry.field(description="Version of the consent text.")
    method: str = strawberry.field(
        description="How it was given or withdrawn (paper_form, mini_program, …)."
    )

    recorded_by: str = strawberry.field(description="Who recorded it (user:<id> or service:<id>).")
    recorded_at: datetime = strawberry.field(description="When.")


@strawberry.type(description="A patient's consents: in force, and every change.")
class PatientConsents:
    current: list[Consent] = strawberry.field(description="In force, by purpose and channel.")
    history: list[ConsentRecord] = strawberry.field(description="Every change, oldest first.")


@strawberry.type(description="Everything held on one patient (个人信息副本), for their request.")
class PatientDataExport:
    patient_id: strawberry.ID = strawberry.field(description="The patient.")
    exported_at: datetime = strawberry.field(description="When it was made.")
    content: str = strawberry.field(
        description="A JSON document: fields (decrypted), tags, events, visits, orders, "
        "follow-ups, referrals, stage history and consents."
    )
