"""Root fields for the WeCom integration (HQ): configure the callback app, read its settings."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.ids import parse_global_id
from api.tenants.types import Branch
from api.wecom.types import WecomSettings
from auth.guard import require
from domain.errors import BadInput, NotFound
from domain.wecom.callbacks import seal_api_secret, seal_secrets
from domain.wecom.models import WecomApp
from domain.wecom.repository import WecomRepository
from tenancy.session import stamp


async def _settings(info: Info, app: WecomApp) -> WecomSettings:
    repo = WecomRepository(info.context.session)
    slug = await repo.slug_of(app)
    branch = await repo.branch(app.default_branch_id)
    return WecomSettings(
        corp_id=app.corp_id,
        callback_path=f"/wecom/{slug}/callback",
        default_branch=Branch.of(branch),
        bulk_send_enabled=app.secret_ct is not None,
    )


async def wecom_settings(info: Info) -> WecomSettings | None:
    require(await info.context.principal(), "policies", "read")
    app = await WecomRepository(info.context.session).app()
    return None if app is None else await _settings(info, app)


async def configure_wecom(
    info: Info,
    corp_id: str,
    token: str,
    encoding_aes_key: str,
    default_branch_id: strawberry.ID,
    secret: str | None = None,
) -> WecomSettings:
    ctx = info.context
    require(await ctx.principal(), "policies", "write")
    corp_id, token, encoding_aes_key = corp_id.strip(), token.strip(), encoding_aes_key.strip()
    if not 1 <= len(corp_id) <= 64:
        raise BadInput("corpId must be 1-64 characters", field="corpId")
    if not 3 <= len(token) <= 32 or not token.isalnum():
        raise BadInput("token must be 3-32 letters or digits, as WeCom makes it", field="token")
    if len(encoding_aes_key) != 43 or not encoding_aes_key.isalnum():
        raise BadInput(
            "encodingAesKey must be WeCom's 43 letters and digits", field="encodingAesKey"
        )
    if secret is not None and not 1 <= len(secret.strip()) <= 128:
        raise BadInput("secret must be 1-128 characters", field="secret")
    branch_id = parse_global_id(default_branch_id, "Branch", "defaultBranchId")
    repo = WecomRepository(ctx.session)
    if await repo.branch(branch_id) is None:
        raise NotFound("no such branch", field="defaultBranchId")
    cipher = await ctx.cipher()
    app = await repo.app() or stamp(ctx.session, WecomApp())
    app.corp_id, app.default_branch_id = corp_id, branch_id
    try:
        seal_secrets(cipher, app, token, encoding_aes_key)
    except (ValueError, AssertionError):
        raise BadInput("encodingAesKey is not a valid key", field="encodingAesKey") from None
    if secret is not None:
        seal_api_secret(cipher, app, secret.strip())
    ctx.session.add(app)
    await ctx.session.flush()
    return await _settings(info, app)
