"""Right to erasure (删除权): the patient's sealed fields and blind indexes are destroyed (the
data key stays, so other patients are untouched; see PatientService.erase), and the free
text that staff wrote about them elsewhere, and their own survey free text, is blanked. Ids,
dates, stages, amounts and links stay, so counts, referral shapes, metrics and the access log
still add up.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.care.models import Order, Refund
from domain.door.repository import DoorRepository
from domain.patients.models import Patient
from domain.patients.service import PatientService
from domain.pool.models import FollowUp, StageChange
from domain.surveys.models import SurveyAnswer
from domain.wecom import groups
from tenancy.keyring import FieldCipher

ERASED = "[erased]"


async def erase(session: AsyncSession, cipher: FieldCipher, patient: Patient) -> None:
    # The customer groups keep members by the same blind index: forgotten there too.
    await groups.forget_member(session, patient.wecom_external_id_bidx)
    # Their WeChat identities too: the person signing in again starts a record of their own.
    await DoorRepository(session).forget_identities(patient.id)
    await PatientService(session, cipher).erase(patient)
    pid = patient.id
    orders = select(Order.id).where(Order.patient_id == pid)
    for stmt in (
        update(FollowUp)
        .where(FollowUp.patient_id == pid, FollowUp.outcome != "")
        .values(outcome=ERASED),
        update(StageChange)
        .where(StageChange.patient_id == pid, StageChange.reason != "")
        .values(reason=ERASED),
        update(Refund)
        .where(Refund.order_id.in_(orders), Refund.reason != "")
        .values(reason=ERASED),
        # What they wrote in satisfaction surveys; their scores stay in the figures.
        update(SurveyAnswer)
        .where(SurveyAnswer.patient_id == pid, SurveyAnswer.free_text_ct.is_not(None))
        .values(free_text_ct=None),
    ):
        await session.execute(stmt.execution_options(synchronize_session=False))
