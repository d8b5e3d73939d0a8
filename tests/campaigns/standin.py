"""A local stand-in for the providers campaigns talk to, served over real HTTP on loopback:
the JSON SMS gateway (docs/campaigns.md) and the parts of WeCom's API the WeCom sender uses
(gettoken, add_msg_template for customers and for groups, get_groupmsg_list_v2,
get_groupmsg_task, get_groupmsg_send_result) and the customer-group sync uses
(groupchat/list, groupchat/get), answering as WeCom documents them. Tests drive its behaviour
(failures, opted-out numbers, a staff member confirming a task) and read what reached it."""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

SMS_KEY = "sms-test-key"
CORP_ID = "ww-standin-corp"
CORP_SECRET = "standin-contact-secret"
STAFF = "zhangsan"


@dataclass
class Task:
    msgid: str
    text: str
    externals: list[str]
    created: int
    confirmed: bool = False
    chat_type: str = "single"
    sender: str = ""
    chat_ids: list[str] = field(default_factory=list)


@dataclass
class Chat:
    """A customer group as WeCom holds it: members are (userid, type 1 staff / 2 customer)."""

    name: str
    owner: str
    members: list[tuple[str, int]] = field(default_factory=list)
    join_time: int = 1_764_000_000


@dataclass
class StandIn:
    # SMS
    messages: dict[str, dict[str, str]] = field(default_factory=dict)  # idempotency key -> msg
    handed_to_carrier: Counter[str] = field(default_factory=Counter)  # phone -> times sent
    duplicates: int = 0
    fail_next: int = 0
    opted_out: set[str] = field(default_factory=set)
    # WeCom
    contacts: set[str] = field(default_factory=set)  # external ids that are STAFF's customers
    tasks: dict[str, Task] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    chats: dict[str, Chat] = field(default_factory=dict)  # chat id -> group (not dismissed)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def confirm(self, msgid: str) -> None:
        """The staff member confirms the task in WeCom: it goes to their customers."""
        self.tasks[msgid].confirmed = True

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/messages")
        async def send(
            request: Request,
            authorization: str = Header(""),
            idempotency_key: str = Header(""),
        ) -> JSONResponse:
            if authorization != f"Bearer {SMS_KEY}":
                return JSONResponse({"code": "unauthorized"}, 401)
            if not idempotency_key:
                return JSONResponse({"code": "idempotency_key_required"}, 400)
            if self.fail_next > 0:
                self.fail_next -= 1
                return JSONResponse({"code": "unavailable"}, 503)
            if idempotency_key in self.messages:
                self.duplicates += 1
                first = self.messages[idempotency_key]
                return JSONResponse({"id": first["id"], "duplicate": True}, 200)
            body = await request.json()
            if body["to"] in self.opted_out:
                return JSONResponse({"code": "opted_out"}, 403)
            msg = {"id": f"sms-{next(self._ids)}", "to": body["to"], "text": body["text"]}
            self.messages[idempotency_key] = msg
            self.handed_to_carrier[body["to"]] += 1
            return JSONResponse({"id": msg["id"], "status": "accepted"}, 201)

        def _auth(access_token: str) -> dict[str, Any] | None:
            if access_token not in self.tokens:
                return {"errcode": 40014, "errmsg": "invalid access_token"}
            return None

        @app.get("/cgi-bin/gettoken")
        async def gettoken(corpid: str, corpsecret: str) -> dict[str, Any]:
            if corpid != CORP_ID or corpsecret != CORP_SECRET:
                return {"errcode": 40001, "errmsg": "invalid credential"}
            token = f"tok-{next(self._ids)}"
            self.tokens.add(token)
            return {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}

        @app.post("/cgi-bin/externalcontact/add_msg_template")
        async def add_msg_template(request: Request, access_token: str) -> dict[str, Any]:
            if (refused := _auth(access_token)) is not None:
                return refused
            body = await request.json()
            externals = [str(e) for e in body.get("external_userid", [])]
            msgid = f"msg{next(self._ids)}"
            chat_type = str(body.get("chat_type", "single"))
            if chat_type == "group" and not body.get("sender"):
                return {"errcode": 41048, "errmsg": "sender required for group"}
            self.tasks[msgid] = Task(
                msgid,
                body["text"]["content"],
                externals,
                int(time.time()),
                chat_type=chat_type,
                sender=str(body.get("sender", "")),
                chat_ids=[str(c) for c in body.get("chat_id_list", [])],
            )
            fail = [e for e in externals if e not in self.contacts]
            return {"errcode": 0, "errmsg": "ok", "fail_list": fail, "msgid": msgid}

        @app.post("/cgi-bin/externalcontact/groupchat/list")
        async def groupchat_list(request: Request, access_token: str) -> dict[str, Any]:
            if (refused := _auth(access_token)) is not None:
                return refused
            body = await request.json()
            ids = sorted(self.chats)
            start = int(body.get("cursor") or 0)
            page = ids[start : start + int(body.get("limit", 100))]
            after = start + len(page)
            return {
                "errcode": 0,
                "errmsg": "ok",
                "group_chat_list": [{"chat_id": c, "status": 0} for c in page],
                "next_cursor": str(after) if after < len(ids) else "",
            }

        @app.post("/cgi-bin/externalcontact/groupchat/get")
        async def groupchat_get(request: Request, access_token: str) -> dict[str, Any]:
            if (refused := _auth(access_token)) is not None:
                return refused
            chat_id = (await request.json())["chat_id"]
            chat = self.chats.get(chat_id)
            if chat is None:
                return {"errcode": 701008, "errmsg": "not a customer group"}
            members = [
                {"userid": u, "type": t, "join_time": chat.join_time, "join_scene": 1}
                for u, t in chat.members
            ]
            return {
                "errcode": 0,
                "errmsg": "ok",
                "group_chat": {
                    "chat_id": chat_id,
                    "name": chat.name,
                    "owner": chat.owner,
                    "create_time": chat.join_time,
                    "member_list": members,
                },
            }

        @app.post("/cgi-bin/externalcontact/get_groupmsg_list_v2")
        async def list_v2(request: Request, access_token: str) -> dict[str, Any]:
            if (refused := _auth(access_token)) is not None:
                return refused
            body = await request.json()
            found = [
                {"msgid": t.msgid, "creator": STAFF, "create_type": 1, "text": {"content": t.text}}
                for t in self.tasks.values()
                if body["start_time"] <= t.created <= body["end_time"]
                and t.chat_type == body.get("chat_type", "single")
            ]
            return {"errcode": 0, "errmsg": "ok", "next_cursor": "", "group_msg_list": found}

        @app.post("/cgi-bin/externalcontact/get_groupmsg_task")
        async def task(request: Request, access_token: str) -> dict[str, Any]:
            if (refused := _auth(access_token)) is not None:
                return refused
            t = self.tasks.get((await request.json())["msgid"])
            if t is None:
                return {"errcode": 41063, "errmsg": "msgid not found"}
            status = 2 if t.confirmed else 0
            return {
                "errcode": 0,
                "errmsg": "ok",
                "next_cursor": "",
                "task_list": [{"userid": STAFF, "status": status, "send_time": t.created}],
            }

        @app.post("/cgi-bin/externalcontact/get_groupmsg_send_result")
        async def send_result(request: Request, access_token: str) -> dict[str, Any]:
            if (refused := _auth(access_token)) is not None:
                return refused
            body = await request.json()
            t = self.tasks[body["msgid"]]
            rows = [
                {
                    "external_userid": e,
                    "userid": STAFF,
                    "status": (1 if e in self.contacts else 2) if t.confirmed else 0,
                    "send_time": int(time.time()) if t.confirmed else 0,
                }
                for e in t.externals
            ]
            return {"errcode": 0, "errmsg": "ok", "next_cursor": "", "send_list": rows}

        return app


class Served:
    """Serve an ASGI app with uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("stand-in server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
