"""Root fields of WeCom customer groups, kept apart from `api/schema.py`; `Query` and
`Mutation` there inherit these."""

from __future__ import annotations

import strawberry

from api.pagination import Connection
from api.tenants.types import Staff
from api.wecom import group_resolvers as resolvers
from api.wecom.group_types import GroupChat, GroupChatCampaign


@strawberry.type(description="Read the chain's WeCom customer groups.")
class GroupChatQuery:
    group_chats: Connection[GroupChat] = strawberry.field(
        resolver=resolvers.group_chats,
        description="The customer groups (社群) you may see (HQ: the chain's; managers and "
        "operators: their branches'; others: the groups they own), oldest first.",
    )
    group_chat: GroupChat = strawberry.field(
        resolver=resolvers.group_chat,
        description="One customer group (NOT_FOUND for one you may not see).",
    )


@strawberry.type(description="Run the chain's WeCom customer groups.")
class GroupChatMutation:
    link_wecom_staff: Staff = strawberry.field(
        resolver=resolvers.link_wecom_staff,
        description="Say which staff member a WeCom UserID is (HQ), so the groups they own "
        "name them as owner and they see those groups.",
    )
    create_group_chat_campaign: GroupChatCampaign = strawberry.field(
        resolver=resolvers.create_group_chat_campaign,
        description="A message to one customer group through WeCom's group-message task "
        "(chat_type group): `patientpool campaigns send` creates one task for the group's "
        "owner once the window opens, outside quiet hours; the owner confirms it in WeCom.",
    )
