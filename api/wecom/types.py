"""GraphQL types of the WeCom (企业微信) integration settings: never the secrets themselves."""

from __future__ import annotations

import strawberry

from api.tenants.types import Branch


@strawberry.type(description="The tenant's WeCom app for external-contact callbacks.")
class WecomSettings:
    corp_id: str = strawberry.field(description="The WeCom corp id (企业ID).")
    callback_path: str = strawberry.field(
        description="Path to set as the app's callback URL (behind your public host); the "
        "token and EncodingAESKey are stored sealed and never shown again."
    )
    default_branch: Branch = strawberry.field(
        description="Where new contacts join the pool until staff move them."
    )
    bulk_send_enabled: bool = strawberry.field(
        description="Whether the customer-contact secret is set, so WeCom campaigns (企业群发) "
        "can create group-message tasks."
    )
