"""Right to erasure (删除权): the patient's sealed fields and blind indexes are destroyed (the
data key stays, so other patients are untouched; see PatientService.erase), and the free
text that staff wrote about them elsewhere, and their own survey free text, is blanked. Ids,
dates, stages, amounts and links stay, so counts, referral shapes, metrics and the access log
still add up.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from domain.door.repository import DoorRepository
from domain.patients.models import Patient
from domain.patients.service import PatientService
from domain.rights.repository import RightsRepository
from domain.wecom import groups
from tenancy.keyring import FieldCipher


async def erase(session: AsyncSession, cipher: FieldCipher, patient: Patient) -> None:
    # The customer groups keep members by the same blind index: forgotten there too.
    await groups.forget_member(session, patient.wecom_external_id_bidx)
    # Their WeChat identities too: the person signing in again starts a record of their own.
    await DoorRepository(session).forget_identities(patient.id)
    await PatientService(session, cipher).erase(patient)
    await RightsRepository(session).blank_free_text(patient)
