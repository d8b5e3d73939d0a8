"""WeCom's customer-group API (客户群), spoken by the campaigns' WeCom client (the same access
token, retries and error codes: domain.campaigns.backends.WecomTasks): list the groups
(`externalcontact/groupchat/list`), read one (`externalcontact/groupchat/get`), and create a
group-message task for a group's owner (`add_msg_template` with `chat_type: group`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from domain.campaigns.backends import WecomTasks

PAGE = 1000  # WeCom's largest page for groupchat/list


class WecomGroupChats(WecomTasks):
    async def chat_ids(self) -> AsyncIterator[str]:
        """Every group of the corp's customer-contact staff that is not dismissed."""
        cursor = ""
        while True:
            body = await self._post(
                "/cgi-bin/externalcontact/groupchat/list",
                {"status_filter": 0, "limit": PAGE, "cursor": cursor},
            )
            for chat in body.get("group_chat_list", []):
                if isinstance(chat, dict) and chat.get("chat_id"):
                    yield str(chat["chat_id"])
            cursor = str(body.get("next_cursor") or "")
            if not cursor:
                return

    async def chat(self, chat_id: str) -> dict[str, Any]:
        """One group: name, owner, member_list (userid, type 1 staff / 2 customer, join_time)."""
        body = await self._post(
            "/cgi-bin/externalcontact/groupchat/get", {"chat_id": chat_id, "need_name": 0}
        )
        detail = body.get("group_chat")
        return detail if isinstance(detail, dict) else {"chat_id": chat_id}

    async def create_group_task(self, sender: str, chat_id: str, text: str) -> str:
        """A group-message task for the owner `sender`, to the group `chat_id`; its msgid."""
        body = await self._post(
            "/cgi-bin/externalcontact/add_msg_template",
            {
                "chat_type": "group",
                "sender": sender,
                "chat_id_list": [chat_id],
                "text": {"content": text},
            },
        )
        return str(body["msgid"])
