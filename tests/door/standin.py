"""A stand-in for the WeChat API a mini-program sign-in uses, served over real HTTP on loopback:
code2Session (`/sns/jscode2session`), the access token (`/cgi-bin/token`) and getPhoneNumber
(`/wxa/business/getuserphonenumber`), answering as WeChat documents them. Tests hand out codes
(as `wx.login` and a getPhoneNumber button would) and read what reached it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

APP_ID = "wx-standin-app"
APP_SECRET = "standin-mini-program-secret"


@dataclass
class WeChat:
    # wx.login codes: code -> (openid, unionid or None); each works once.
    codes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # getPhoneNumber codes: code -> phone number as WeChat gives it.
    phones: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def login(self, openid: str, unionid: str | None = None) -> str:
        """What wx.login() gives the mini-program for this WeChat user: a fresh code."""
        code = f"code-{next(self._ids)}"
        self.codes[code] = (openid, unionid)
        return code

    def phone_code(self, phone: str) -> str:
        code = f"phone-{next(self._ids)}"
        self.phones[code] = phone
        return code

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/sns/jscode2session")
        async def code2session(appid: str, secret: str, js_code: str, grant_type: str) -> Any:
            self.calls.append("jscode2session")
            if appid != APP_ID or secret != APP_SECRET:
                return {"errcode": 40125, "errmsg": "invalid appsecret"}
            if grant_type != "authorization_code":
                return {"errcode": 40002, "errmsg": "invalid grant_type"}
            if js_code in self.used:
                return {"errcode": 40163, "errmsg": "code been used"}
            if js_code not in self.codes:
                return {"errcode": 40029, "errmsg": "invalid code"}
            self.used.add(js_code)
            openid, unionid = self.codes[js_code]
            body: dict[str, Any] = {"openid": openid, "session_key": "standin-session-key"}
            if unionid:
                body["unionid"] = unionid
            return body

        @app.get("/cgi-bin/token")
        async def token(grant_type: str, appid: str, secret: str) -> Any:
            if appid != APP_ID or secret != APP_SECRET or grant_type != "client_credential":
                return {"errcode": 40001, "errmsg": "invalid credential"}
            value = f"tok-{next(self._ids)}"
            self.tokens.add(value)
            return {"access_token": value, "expires_in": 7200}

        @app.post("/wxa/business/getuserphonenumber")
        async def phone(request: Request, access_token: str) -> Any:
            self.calls.append("getuserphonenumber")
            if access_token not in self.tokens:
                return {"errcode": 40001, "errmsg": "invalid access_token"}
            code = (await request.json()).get("code")
            if code not in self.phones or code in self.used:
                return {"errcode": 40029, "errmsg": "invalid code"}
            self.used.add(code)
            number = self.phones[code]
            pure = number.removeprefix("+86")
            return {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {"phoneNumber": number, "purePhoneNumber": pure,
                               "countryCode": "86"},
            }  # fmt: skip

        return app
