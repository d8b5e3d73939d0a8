"""The mini-program's settings and finding (or making) the record a WeChat user signs in to.

One person, one record (OneID): a sign-in first looks for the unionid, then the openid (both
by blind index), then the phone the user shared (blind index); only when none matches is a
lead made, with the mini-program as its channel. The identities found are stored against the
record, so the next sign-in finds it directly. First sign-ins of a tenant are serialised, so
two at once cannot make two records for one person.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from domain.door.models import IdentityKind, MiniProgramApp, PatientIdentity
from domain.door.repository import DoorRepository
from domain.door.wechat import WeChatSession
from domain.errors import BadInput, NotFound
from domain.patients.models import Patient
from domain.patients.service import PatientService, phone_digest
from domain.referrals.service import ReferralService
from tenancy.keyring import FieldCipher, normalise_phone
from tenancy.session import current_tenant, lock_tenant

CHANNEL = "mini_program"
APP_TABLE = MiniProgramApp.__tablename__
IDENTITY_TABLE = PatientIdentity.__tablename__
# What a lead made by the mini-program is called until the patient or staff give a name:
# WeChat's own name for a user who shared none.
PLACEHOLDER_NAME = "微信用户"
LOCK = "door.sign_in"


def app_secret(cipher: FieldCipher, app: MiniProgramApp) -> str:
    return cipher.decrypt(app.secret_ct, table=APP_TABLE, column="secret", row_id=app.tenant_id)


async def move_identities(
    session: AsyncSession, cipher: FieldCipher, old: Patient, new: Patient
) -> None:
    """A merge's part of the door: `old`'s WeChat identities now sign in to `new`, each value
    re-sealed for its new record (the ciphertext is bound to the record it belongs to)."""
    for row in await DoorRepository(session).identities_of(old):
        value = cipher.decrypt(row.value_ct, table=IDENTITY_TABLE, column=row.kind, row_id=old.id)
        row.patient_id = new.id
        row.value_ct = cipher.encrypt(value, table=IDENTITY_TABLE, column=row.kind, row_id=new.id)
    await session.flush()


@dataclass(frozen=True)
class SignedIn:
    patient: Patient
    created: bool
    linked: bool  # an identity was added to the record in this sign-in
    referrer: Patient | None = None  # whose poster brought this new patient


class DoorService:
    def __init__(self, session: AsyncSession, cipher: FieldCipher) -> None:
        self.session = session
        self.cipher = cipher
        self.repo = DoorRepository(session)

    async def configure(
        self, app_id: str, secret: str, default_branch_id: uuid.UUID, show_staff_names: bool
    ) -> MiniProgramApp:
        app_id, secret = app_id.strip(), secret.strip()
        if not 1 <= len(app_id) <= 64 or not app_id.isascii():
            raise BadInput("appId must be 1-64 characters (wx…)", field="appId")
        if not 1 <= len(secret) <= 128:
            raise BadInput("secret must be 1-128 characters", field="secret")
        if not await self.repo.branch_exists(default_branch_id):
            raise NotFound("no such branch", field="defaultBranchId")
        tenant_id = current_tenant(self.session)
        assert tenant_id is not None
        app = await self.repo.app() or MiniProgramApp()
        app.app_id, app.default_branch_id = app_id, default_branch_id
        app.show_staff_names = show_staff_names
        app.secret_ct = self.cipher.encrypt(
            secret, table=APP_TABLE, column="secret", row_id=tenant_id
        )
        self.session.add(app)
        await self.session.flush()
        return app

    def _digest(self, kind: IdentityKind, value: str) -> bytes:
        return self.cipher.blind_index(value, kind=f"wechat_{kind}")

    async def _live(self, patient_id: uuid.UUID) -> Patient | None:
        """The record an identity points at, followed through merges to the kept one."""
        seen: set[uuid.UUID] = set()
        patient = await self.repo.patient(patient_id)
        while patient is not None and patient.merged_into_id is not None:
            if patient.id in seen:
                return None
            seen.add(patient.id)
            patient = await self.repo.patient(patient.merged_into_id)
        if patient is None or patient.erased_at is not None:
            return None
        return patient

    async def sign_in(
        self,
        app: MiniProgramApp,
        wechat: WeChatSession,
        phone: str | None,
        referral_code: str | None = None,
    ) -> SignedIn:
        await lock_tenant(self.session, LOCK)
        ids = {IdentityKind.OPENID: wechat.openid}
        if wechat.unionid:
            ids[IdentityKind.UNIONID] = wechat.unionid
        known: dict[IdentityKind, PatientIdentity] = {}
        dead: dict[IdentityKind, PatientIdentity] = {}
        reached: dict[uuid.UUID, Patient | None] = {}  # identity's record → its live record
        patient: Patient | None = None
        for kind in (IdentityKind.UNIONID, IdentityKind.OPENID):
            if kind not in ids:
                continue
            found = await self.repo.identity(str(kind), self._digest(kind, ids[kind]))
            if found is None:
                continue
            # openid and unionid mostly name the same record: followed once
            if found.patient_id not in reached:
                reached[found.patient_id] = await self._live(found.patient_id)
            live = reached[found.patient_id]
            if live is None:
                # it names a record that is gone (erased before erasure forgot identities):
                # repointed below at the record this sign-in reaches, so the person does not
                # get a new record at every sign-in
                dead[kind] = found
                continue
            known[kind] = found
            patient = patient or live
        if patient is None and phone is not None:
            try:
                canonical = normalise_phone(phone)
            except ValueError:
                canonical = None
            if canonical is not None:
                matches = await self.repo.live_by_phone(phone_digest(self.cipher, canonical))
                patient = matches[0] if matches else None
        created = patient is None
        if patient is None:
            values: dict[str, object] = {
                "name": PLACEHOLDER_NAME,
                "home_branch_id": app.default_branch_id,
                "source_channel": CHANNEL,
            }
            if phone is not None:
                values["phone"] = phone
            patient = await PatientService(self.session, self.cipher).create(values)
        linked = False
        for kind, value in ids.items():
            if kind in known:
                continue  # already points at a record (this one, or one merged into it)
            sealed = self.cipher.encrypt(
                value, table=IDENTITY_TABLE, column=str(kind), row_id=patient.id
            )
            if kind in dead:
                dead[kind].patient_id, dead[kind].value_ct = patient.id, sealed
                linked = True
                continue
            self.session.add(
                PatientIdentity(
                    kind=str(kind),
                    digest=self._digest(kind, value),
                    patient_id=patient.id,
                    value_ct=sealed,
                )
            )
            linked = True
        await self.session.flush()
        referrer = None
        if created and referral_code:
            referrer = await self._referred_by(patient, referral_code)
        return SignedIn(patient, created, linked and not created, referrer)

    async def _referred_by(self, patient: Patient, code: str) -> Patient | None:
        """A new patient who came through a friend's poster is linked to that friend (the
        referral checks apply); a code that names no one is ignored, not an error: the
        sign-in itself stands."""
        service = ReferralService(self.session)
        try:
            referrer = await service.by_code(code[:16])
        except NotFound:
            return None
        await service.link(referrer, patient, CHANNEL)
        return referrer
