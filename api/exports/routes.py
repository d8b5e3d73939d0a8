"""`GET /exports/{job id}`: the file of an export, for the staff member who asked for it.

The file is made here, on each download, from the patients the job found: as the caller may
read them now (a role or scope taken away since is taken away from the file too), masked as
they see them, in memory, never written anywhere. Nothing else stores it, so nothing stored
needs protecting or cleaning up, and an expired export holds only ids.

Answers, each a JSON body with a GraphQL-style error and code: 401 UNAUTHENTICATED (no or a bad
token), 404 NOT_FOUND (no such export, another tenant's, or another staff member's: the same
answer), 403 FORBIDDEN (the caller may no longer export), 409 CONFLICT with reason
EXPORT_NOT_READY (the job is still running), 410 NOT_FOUND with reason EXPORT_EXPIRED. The
download is logged as an EXPORT of exactly the patients in the file."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.context import AppState, new_request_id
from api.exports.files import render, sheet_for
from api.ids import parse_global_id
from auth import access_log
from auth.access_log import AccessEvent, Action, Outcome, RequestInfo
from auth.guard import patient_scope
from auth.reasons import grants
from auth.sessions import AuthError, principal_from_bearer
from domain.errors import BadInput
from domain.exports.models import ExportFormat
from domain.exports.repository import ExportRepository
from domain.patients.models import FieldGroup
from domain.patients.repository import PatientRepository
from domain.pool.models import JobStatus
from tenancy.keystore import load_cipher

log = logging.getLogger(__name__)
CHUNK = 5000  # ids per query: under every driver's limit on bound parameters
MEDIA = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def _error(status: int, code: str, message: str, reason: str | None = None) -> JSONResponse:
    extensions = {"code": code} | ({"reason": reason} if reason else {})
    body = {"errors": [{"message": message, "extensions": extensions}]}
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


def exports_router(state: AppState) -> APIRouter:
    router = APIRouter()

    @router.get("/exports/{job_id}", include_in_schema=False)
    async def download(job_id: str, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not bearer:
            return _error(401, "UNAUTHENTICATED", "sign in first")
        try:
            export_id = parse_global_id(job_id, "Job")
        except BadInput:
            return _error(404, "NOT_FOUND", "no such export")
        info = RequestInfo(
            request_id=new_request_id(),
            operation_name="exports.download",
            client_addr=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", "")[:300],
        )
        async with state.sessions() as session, session.begin():
            try:
                principal = await principal_from_bearer(session, state.signing_keys, bearer)
            except AuthError:
                return _error(401, "UNAUTHENTICATED", "sign in again")
            exports = ExportRepository(session)
            export = await exports.get(export_id)
            job = await exports.job(export_id)
            if export is None or job is None or export.requested_by != principal.subject:
                return _error(404, "NOT_FOUND", "no such export")
            if not principal.allows("patients", "export"):
                return _error(403, "FORBIDDEN", "not allowed: patients:export")
            if export.expires_at <= datetime.now(UTC):
                return _error(410, "NOT_FOUND", "this export has expired", "EXPORT_EXPIRED")
            if job.status != JobStatus.DONE:
                return _error(409, "CONFLICT", "the export is not ready yet", "EXPORT_NOT_READY")
            scope = patient_scope(principal, "read")
            repo = PatientRepository(session)
            ids = exports.ids_of(export)
            found = {}
            for start in range(0, len(ids), CHUNK):
                found |= await repo.get_many(scope, ids[start : start + CHUNK])
            # as `patients` lists them: live records only, newest first
            patients = sorted(
                (p for p in found.values() if p.erased_at is None and p.merged_into_id is None),
                key=lambda p: (p.created_at, p.id),
                reverse=True,
            )
            # The reason gate, as for `patients`: health cells only for patients in the
            # caller's care or under a purpose they stated that is still open.
            given = await grants(session, principal, patients)
            cipher = await load_cipher(session, state.key_provider)
            sheet = sheet_for(principal, cipher, patients, lambda pid: given[pid].opens)
            reason = f"patients export {export.id} ({export.format})"
            groups = sorted(str(g) for g in sheet.groups)
            opened = [p.id for p in patients if p.id not in sheet.health_withheld]
            events = []
            if opened or not sheet.health_withheld:
                events.append(
                    AccessEvent(
                        action=Action.EXPORT, patient_ids=opened, field_groups=groups, reason=reason
                    )
                )
            if sheet.health_withheld:
                events.append(
                    AccessEvent(
                        action=Action.EXPORT,
                        patient_ids=sorted(sheet.health_withheld),
                        field_groups=[g for g in groups if g != str(FieldGroup.HEALTH)],
                        reason=f"{reason}; health withheld: no stated purpose",
                    )
                )
            if sheet.integrity_failed:
                events.append(
                    AccessEvent(
                        action=Action.INTEGRITY_FAILED,
                        patient_ids=sorted(sheet.integrity_failed),
                        outcome=Outcome.DENIED,
                        reason="ciphertext failed to authenticate",
                    )
                )
            await access_log.append(session, principal.actor, info, events)
        fmt = ExportFormat(export.format)
        log.info("export %s downloaded: %d patients", export.id, len(patients))
        return Response(
            render(sheet, fmt),
            media_type=MEDIA[fmt],
            headers={
                "content-disposition": f'attachment; filename="patients-{export.id}.{fmt}"',
                "cache-control": "no-store",
            },
        )

    return router
