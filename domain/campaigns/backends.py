"""Sender back-ends: how a message leaves. Pluggable by channel; each speaks a provider's
HTTP API through httpx, and tests run them against a local stand-in of that API.

- `SmsGateway`: a JSON SMS gateway (POST {base}/v1/messages with a bearer key). The delivery
  id travels as the `Idempotency-Key` header: a gateway that sees a key again answers with the
  first message instead of sending another, which is what makes a resend after a crash safe.
- `WecomTasks`: WeCom's customer group-message API (企业群发, `add_msg_template`): the product
  creates a task for the staff members who have these customers; each staff member confirms
  it in WeCom before anything is sent, and the product reads the results back
  (`get_groupmsg_task`, `get_groupmsg_send_result`). A task is not idempotent, so a task whose
  creation was cut off is looked up (`get_groupmsg_list_v2`) before it is created again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class SendError(Exception):
    """A send failed; `transient` ones are retried later, others are final. `code` is ours."""

    def __init__(self, code: str, *, transient: bool) -> None:
        super().__init__(code)
        self.code = code
        self.transient = transient


class OptedOut(SendError):
    def __init__(self) -> None:
        super().__init__("opted_out", transient=False)


@dataclass(frozen=True)
class Sent:
    provider_ref: str
    duplicate: bool = False  # the provider had this idempotency key already


class SmsGateway:
    def __init__(self, base_url: str, api_key: str, client: httpx.AsyncClient | None = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.client = client or httpx.AsyncClient(timeout=TIMEOUT)

    async def send(self, key: str, phone: str, text: str) -> Sent:
        try:
            response = await self.client.post(
                f"{self.base_url}/v1/messages",
                json={"to": phone, "text": text},
                headers={"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": key},
            )
        except httpx.HTTPError:
            raise SendError("network", transient=True) from None
        if response.status_code in (200, 201):
            body = _json(response)
            return Sent(str(body.get("id", ""))[:64], duplicate=bool(body.get("duplicate")))
        code = str(_json(response).get("code", ""))
        if response.status_code == 403 and code == "opted_out":
            raise OptedOut()
        if response.status_code == 429 or response.status_code >= 500:
            raise SendError(f"http_{response.status_code}", transient=True)
        raise SendError(f"http_{response.status_code}", transient=False)

    async def aclose(self) -> None:
        await self.client.aclose()


@dataclass(frozen=True)
class TaskResult:
    external_userid: str
    status: int  # 0 not sent yet, 1 sent, 2 not a contact, 3 already got a group message today
    send_time: datetime | None


class WecomError(SendError):
    def __init__(self, code: str, *, transient: bool, errcode: int = 0) -> None:
        super().__init__(code, transient=transient)
        self.errcode = errcode


# errcodes that mean "get a new access token and try again"
_TOKEN_EXPIRED = {40014, 42001, 40001}
_BUSY = {-1, 45009, 45033}
MAX_TASK_RECIPIENTS = 10_000  # WeCom's limit per add_msg_template


class WecomTasks:
    def __init__(
        self,
        base_url: str,
        corp_id: str,
        secret: str,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.corp_id = corp_id
        self.secret = secret
        self.client = client or httpx.AsyncClient(timeout=TIMEOUT)
        self._token: tuple[str, float] | None = None

    async def _access_token(self, fresh: bool = False) -> str:
        if self._token and not fresh and self._token[1] > time.monotonic():
            return self._token[0]
        body = await self._call(
            "GET", "/cgi-bin/gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret}
        )
        expires = int(body.get("expires_in", 7200))
        self._token = (str(body["access_token"]), time.monotonic() + max(expires - 300, 60))
        return self._token[0]

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = await self.client.request(method, f"{self.base_url}{path}", **kwargs)
        except httpx.HTTPError:
            raise WecomError("network", transient=True) from None
        if response.status_code != 200:
            raise WecomError(f"http_{response.status_code}", transient=response.status_code >= 500)
        body = _json(response)
        errcode = int(body.get("errcode", 0) or 0)
        if errcode:
            transient = errcode in _BUSY or errcode in _TOKEN_EXPIRED
            raise WecomError(f"wecom_{errcode}", transient=transient, errcode=errcode)
        return body

    async def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        token = await self._access_token()
        try:
            return await self._call("POST", path, params={"access_token": token}, json=payload)
        except WecomError as exc:
            if exc.errcode in _TOKEN_EXPIRED:
                token = await self._access_token(fresh=True)
                return await self._call("POST", path, params={"access_token": token}, json=payload)
            raise

    async def create_task(self, external_userids: list[str], text: str) -> tuple[str, set[str]]:
        """Create a group-message task; returns its msgid and the ids WeCom refused."""
        body = await self._post(
            "/cgi-bin/externalcontact/add_msg_template",
            {"chat_type": "single", "external_userid": external_userids, "text": {"content": text}},
        )
        failed = {str(f) for f in body.get("fail_list", [])}
        return str(body["msgid"]), failed

    async def find_task(
        self, text: str, since: datetime, exclude: set[str] | frozenset[str] = frozenset()
    ) -> str | None:
        """A task with this text created since `since` and not in `exclude` (to adopt one
        whose creation was cut off before its msgid was recorded)."""
        cursor = ""
        while True:
            body = await self._post(
                "/cgi-bin/externalcontact/get_groupmsg_list_v2",
                {
                    "chat_type": "single",
                    "start_time": int(since.timestamp()) - 60,
                    "end_time": int(time.time()) + 60,
                    "create_type": 1,  # created through the API
                    "limit": 100,
                    "cursor": cursor,
                },
            )
            for msg in body.get("group_msg_list", []):
                msgid = str(msg.get("msgid", ""))
                if (msg.get("text") or {}).get("content") == text and msgid not in exclude:
                    return msgid
            cursor = str(body.get("next_cursor") or "")
            if not cursor:
                return None

    async def results(self, msgid: str) -> list[TaskResult]:
        """Per customer, what became of the task so far."""
        userids, cursor = [], ""
        while True:
            body = await self._post(
                "/cgi-bin/externalcontact/get_groupmsg_task",
                {"msgid": msgid, "limit": 1000, "cursor": cursor},
            )
            userids += [str(t["userid"]) for t in body.get("task_list", [])]
            cursor = str(body.get("next_cursor") or "")
            if not cursor:
                break
        out: list[TaskResult] = []
        for userid in userids:
            cursor = ""
            while True:
                body = await self._post(
                    "/cgi-bin/externalcontact/get_groupmsg_send_result",
                    {"msgid": msgid, "userid": userid, "limit": 1000, "cursor": cursor},
                )
                for r in body.get("send_list", []):
                    sent = r.get("send_time")
                    out.append(
                        TaskResult(
                            str(r.get("external_userid", "")),
                            int(r.get("status", 0)),
                            datetime.fromtimestamp(int(sent), UTC) if sent else None,
                        )
                    )
                cursor = str(body.get("next_cursor") or "")
                if not cursor:
                    break
        return out

    async def aclose(self) -> None:
        await self.client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
