"""Root fields of two-factor sign-in, kept apart from `api/schema.py` so it stays small;
`Query` and `Mutation` there inherit these."""

from __future__ import annotations

import strawberry

from api.sessions import two_factor
from api.sessions.resolvers import AuthPayload


@strawberry.type(description="Read the chain's second-factor setting.")
class TwoFactorQuery:
    two_factor_policy: two_factor.TwoFactorPolicy = strawberry.field(
        resolver=two_factor.two_factor_policy,
        description="Which roles must sign in with a second factor (policies:read).",
    )


@strawberry.type(description="Set up and use a second factor.")
class TwoFactorMutation:
    verify_totp: AuthPayload = strawberry.field(
        resolver=two_factor.verify_totp_mutation,
        description="Finish a sign-in that answered secondFactorRequired: the challenge and "
        "a code from your app (or a recovery code, once). Tokens, or UNAUTHENTICATED for any "
        "wrong part, or RATE_LIMITED after too many tries (no sign-in needed).",
    )
    start_totp_enrolment: two_factor.TotpEnrolment = strawberry.field(
        resolver=two_factor.start_totp_enrolment,
        description="Start setting up your second factor (TOTP): a new secret for your "
        "authenticator app; nothing changes until confirmTotp.",
    )
    confirm_totp: two_factor.TotpConfirmation = strawberry.field(
        resolver=two_factor.confirm_totp,
        description="Turn your second factor on with a code from your app; answers your ten "
        "recovery codes, once. From your next sign-in, signIn answers a challenge.",
    )
    reset_totp: bool = strawberry.field(
        resolver=two_factor.reset_totp,
        description="Remove a staff member's second factor and recovery codes (HQ), e.g. a "
        "lost phone; true if they had one. They enrol again.",
    )
    set_two_factor_policy: two_factor.TwoFactorPolicy = strawberry.field(
        resolver=two_factor.set_two_factor_policy,
        description="Require a second factor of these roles (HQ): their members without one "
        "can then only enrol (signIn answers enrolmentRequired).",
    )
