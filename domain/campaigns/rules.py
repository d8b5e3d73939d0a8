"""Contact rules in force for a tenant: the frequency cap across channels and quiet hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns.models import ContactRules
from domain.campaigns.repository import CampaignRepository
from domain.errors import BadInput

DAY = 24 * 60


@dataclass(frozen=True)
class Rules:
    frequency_cap: int = 2
    frequency_days: int = 7
    quiet_start_minute: int = 21 * 60
    quiet_end_minute: int = 8 * 60
    timezone: str = "Asia/Shanghai"

    def _local_minute(self, moment: datetime) -> tuple[datetime, int]:
        local = moment.astimezone(ZoneInfo(self.timezone))
        return local, local.hour * 60 + local.minute

    def is_quiet(self, moment: datetime) -> bool:
        start, end = self.quiet_start_minute, self.quiet_end_minute
        if start == end:
            return False  # no quiet hours
        _local, minute = self._local_minute(moment)
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end  # across midnight, e.g. 21:00-08:00

    def next_allowed(self, moment: datetime) -> datetime:
        """`moment` itself, or the end of the quiet hours it falls in."""
        if not self.is_quiet(moment):
            return moment
        local, minute = self._local_minute(moment)
        wait = (self.quiet_end_minute - minute) % DAY
        end = (local + timedelta(minutes=wait)).replace(second=0, microsecond=0)
        return end.astimezone(moment.tzinfo)


def check(rules: Rules) -> None:
    if not 1 <= rules.frequency_cap <= 50:
        raise BadInput("frequencyCap must be 1-50", field="frequencyCap")
    if not 1 <= rules.frequency_days <= 90:
        raise BadInput("frequencyDays must be 1-90", field="frequencyDays")
    for name, minute in (
        ("quietStart", rules.quiet_start_minute),
        ("quietEnd", rules.quiet_end_minute),
    ):
        if not 0 <= minute < DAY:
            raise BadInput(f"{name} must be a time of day", field=name)
    try:
        ZoneInfo(rules.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(
            "timezone must be an IANA name such as Asia/Shanghai", field="timezone"
        ) from None


async def load(session: AsyncSession) -> Rules:
    row = await CampaignRepository(session).contact_rules()
    if row is None:
        return Rules()
    return Rules(
        row.frequency_cap,
        row.frequency_days,
        row.quiet_start_minute,
        row.quiet_end_minute,
        row.timezone,
    )


async def save(session: AsyncSession, rules: Rules) -> Rules:
    check(rules)
    row = await CampaignRepository(session).contact_rules() or ContactRules()
    row.frequency_cap = rules.frequency_cap
    row.frequency_days = rules.frequency_days
    row.quiet_start_minute = rules.quiet_start_minute
    row.quiet_end_minute = rules.quiet_end_minute
    row.timezone = rules.timezone
    session.add(row)
    await session.flush()
    return rules
