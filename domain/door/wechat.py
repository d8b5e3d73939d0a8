"""The two WeChat calls a mini-program sign-in needs, against a configurable host (a stand-in
on loopback in tests): `code2Session` trades a `wx.login` code for the user's openid (and
unionid, when the mini-program is bound to an open-platform account), and `getPhoneNumber`
trades a phone code for the number the user chose to share (with an access token from
`/cgi-bin/token`). Errors carry WeChat's errcode, never a code, secret or phone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT = httpx.Timeout(5.0)
# code2Session: invalid code (40029), code already used (40163), too frequent (45011).
CODE_REFUSED = {40029, 40163, 40226}


class WeChatError(Exception):
    """WeChat refused or could not be reached; `refused` when the code itself was bad."""

    def __init__(self, reason: str, *, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused


@dataclass(frozen=True)
class WeChatSession:
    openid: str
    unionid: str | None


class MiniProgramClient:
    def __init__(self, base_url: str, app_id: str, secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.secret = secret

    async def _call(self, client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> dict:
        try:
            response = await client.request(method, f"{self.base_url}{path}", **kw)
        except httpx.HTTPError:
            raise WeChatError("network") from None
        if response.status_code != 200:
            raise WeChatError(f"http_{response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise WeChatError("not json") from None
        if not isinstance(body, dict):
            raise WeChatError("not an object")
        errcode = int(body.get("errcode", 0) or 0)
        if errcode:
            raise WeChatError(f"wechat_{errcode}", refused=errcode in CODE_REFUSED)
        return body

    async def code2session(self, code: str) -> WeChatSession:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            body = await self._call(
                client,
                "GET",
                "/sns/jscode2session",
                params={
                    "appid": self.app_id,
                    "secret": self.secret,
                    "js_code": code,
                    "grant_type": "authorization_code",
                },
            )
        openid = body.get("openid")
        if not isinstance(openid, str) or not openid:
            raise WeChatError("no openid")
        unionid = body.get("unionid")
        return WeChatSession(openid, unionid if isinstance(unionid, str) and unionid else None)

    async def phone_number(self, phone_code: str) -> str:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            token = await self._call(
                client,
                "GET",
                "/cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.app_id,
                        "secret": self.secret},
            )  # fmt: skip
            body = await self._call(
                client,
                "POST",
                "/wxa/business/getuserphonenumber",
                params={"access_token": str(token.get("access_token", ""))},
                json={"code": phone_code},
            )
        info = body.get("phone_info") or {}
        phone = info.get("phoneNumber") if isinstance(info, dict) else None
        if not isinstance(phone, str) or not phone:
            raise WeChatError("no phone")
        # phoneNumber carries the country code for numbers outside mainland China.
        return phone
