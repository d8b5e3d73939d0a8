"""Two-factor sign-in through the API, on a chain made by `tenant create`: enrol, sign in to a
challenge, verify with a code pyotp computes; no code twice; brute force rate-limited (the
right code too, until the window passes); recovery codes once; challenges expire; HQ resets
a factor with one admin entry; a required role without a factor may only enrol; nobody
else's challenge or token stands in. Time is a clock the test moves, never a sleep."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pyotp
import pytest

from api.app import create_app
from api.context import AppState
from auth.ratelimit import WindowLimit
from auth.sessions import SignInLimits
from process.serve import app_state
from tests.chain.conftest import NEW_PASSWORD, Operator, new_chain
from tests.support import codes, gql, ok

SIGN_IN = """mutation($t: String!, $e: String!, $p: String!) {
  signIn(tenant: $t, email: $e, password: $p) {
    accessToken refreshToken expiresIn secondFactorRequired challenge enrolmentRequired } }"""
VERIFY = """mutation($c: String!, $k: String!) { verifyTotp(challenge: $c, code: $k) {
  accessToken refreshToken secondFactorRequired } }"""
START = "mutation { startTotpEnrolment { otpauthUri secret } }"
CONFIRM = "mutation($k: String!) { confirmTotp(code: $k) { recoveryCodes } }"
RESET = "mutation($s: ID!) { resetTotp(staffId: $s) }"
POLICY = "mutation($r: [String!]) { setTwoFactorPolicy(roles: $r) { enforced requiredRoles } }"
INVITE = """mutation($i: InviteStaffInput!) {
  inviteStaff(input: $i) { invitationToken staff { id } } }"""
ACCEPT = "mutation($t: String!, $p: String!) { acceptInvitation(token: $t, password: $p) }"
ADMIN_LOG = """{ accessLog(first: 100, filter: {actions: [ADMIN]}) {
  totalCount edges { node { actorId change target changeDetail patientIds } } } }"""
ME = "{ me { roles user { id } } }"
LIMIT = 5
WINDOW = 300.0


class Clock:
    """The wall clock of challenges and TOTP steps, and the limiter's monotonic clock."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC)
        self.mono = 0.0

    def now(self) -> datetime:
        return self.at

    def tick(self) -> float:
        return self.mono


@dataclass
class Chain:
    slug: str
    client: httpx.AsyncClient
    clock: Clock
    hq: str
    hq_id: str
    auditor: str
    branch: str
    n: int = 0
    secrets: dict[str, str] = field(default_factory=dict)

    async def q(self, query: str, variables: dict[str, Any] | None = None, token: str = "") -> Any:
        return await gql(self.client, query, variables, token=token or None)

    async def sign_in(self, email: str) -> dict[str, Any]:
        answer = await self.q(SIGN_IN, {"t": self.slug, "e": email, "p": NEW_PASSWORD})
        return ok(answer)["signIn"]

    async def member(self, role: str = "doctor") -> tuple[str, str, str]:
        """A staff member who accepted: (email, staff id, access token)."""
        self.n += 1
        email = f"{role}{self.n}@{self.slug}.test"
        values = {"email": email, "name": "n", "roles": [role], "branchIds": [self.branch]}
        invited = ok(await self.q(INVITE, {"i": values}, self.hq))["inviteStaff"]
        ok(await self.q(ACCEPT, {"t": invited["invitationToken"], "p": NEW_PASSWORD}))
        return email, invited["staff"]["id"], (await self.sign_in(email))["accessToken"]

    def code(self, email: str, later: int = 0) -> str:
        return pyotp.TOTP(self.secrets[email]).at(self.clock.at + timedelta(seconds=later))

    async def enrol(self, email: str, token: str) -> list[str]:
        """Enrol with the code of now; the clock then moves one step on (that code is spent)."""
        started = ok(await self.q(START, token=token))["startTotpEnrolment"]
        parsed = pyotp.parse_uri(started["otpauthUri"])
        assert isinstance(parsed, pyotp.TOTP) and parsed.secret == started["secret"]
        assert parsed.issuer == "patientpool"
        self.secrets[email] = parsed.secret
        confirmed = ok(await self.q(CONFIRM, {"k": self.code(email)}, token))["confirmTotp"]
        self.clock.at += timedelta(seconds=30)
        return confirmed["recoveryCodes"]

    async def challenge(self, email: str) -> str:
        answer = await self.sign_in(email)
        assert answer["secondFactorRequired"] is True, answer
        assert answer["accessToken"] is None and answer["refreshToken"] is None
        return answer["challenge"]

    async def verify(self, challenge: str, code: str) -> dict[str, Any]:
        return await self.q(VERIFY, {"c": challenge, "k": code})

    async def admin_log(self) -> dict[str, Any]:
        return ok(await self.q(ADMIN_LOG, token=self.auditor))["accessLog"]


async def _chain(state: AppState, operator: Operator, clock: Clock) -> AsyncIterator[Chain]:
    slug = f"tfa-{uuid.uuid4().hex[:8]}"
    password = await new_chain(operator, slug, "--branch-name", "总店", "--branch-city", "上海")
    transport = httpx.ASGITransport(app=create_app(state.settings, state))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        signed = await gql(client, SIGN_IN, {"t": slug, "e": f"admin@{slug}.test", "p": password})
        hq = ok(signed)["signIn"]["accessToken"]
        me = ok(await gql(client, ME, token=hq))["me"]
        out = await operator.run(
            "staff", "invite", "--tenant", slug, "--email", f"audit@{slug}.test",
            "--role", "auditor",
        )  # fmt: skip
        ok(await gql(client, ACCEPT, {"t": out.strip().splitlines()[-1], "p": NEW_PASSWORD}))
        auditor = await gql(
            client, SIGN_IN, {"t": slug, "e": f"audit@{slug}.test", "p": NEW_PASSWORD}
        )
        branches = ok(await gql(client, "{ branches { edges { node { id } } } }", token=hq))
        yield Chain(
            slug,
            client,
            clock,
            hq,
            me["user"]["id"],
            ok(auditor)["signIn"]["accessToken"],
            branches["branches"]["edges"][0]["node"]["id"],
        )


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def state(chain_state: AppState, clock: Clock) -> AppState:
    """The chain tests' app, with the second factor's limiter and clock under the test's hand."""
    limits = SignInLimits(
        WindowLimit(1000, 300, "account"),
        WindowLimit(100_000, 300, "address"),
        second_factor=WindowLimit(LIMIT, WINDOW, "second_factor", clock=clock.tick),
        challenge_ttl=timedelta(minutes=5),
        now=clock.now,
    )
    return app_state(
        chain_state.settings,
        chain_state.sessions,
        chain_state.key_provider,
        chain_state.signing_keys,
        limits,
    )


@pytest.fixture(scope="module")
async def chain(state: AppState, operator: Operator, clock: Clock) -> AsyncIterator[Chain]:
    async for c in _chain(state, operator, clock):
        yield c


async def test_enrol_then_sign_in_answers_a_challenge_and_a_code_finishes_it(chain: Chain):
    email, _staff_id, token = await chain.member()
    recovery = await chain.enrol(email, token)
    assert len(recovery) == 10 and len(set(recovery)) == 10
    challenge = await chain.challenge(email)
    assert challenge.startswith("ppc_")
    # A challenge is no bearer token.
    assert codes(await chain.q(ME, token=challenge)) == ["UNAUTHENTICATED"]
    done = ok(await chain.verify(challenge, chain.code(email)))["verifyTotp"]
    assert done["secondFactorRequired"] is False and done["refreshToken"]
    assert ok(await chain.q(ME, token=done["accessToken"]))["me"]["roles"] == ["doctor"]
    # The same code again, with a new challenge, is refused; so is the spent challenge.
    replay = await chain.verify(await chain.challenge(email), chain.code(email))
    assert codes(replay) == ["UNAUTHENTICATED"]
    chain.clock.at += timedelta(seconds=30)
    assert codes(await chain.verify(challenge, chain.code(email))) == ["UNAUTHENTICATED"]
    # Enrolled means enrolled: a second enrolment is refused until HQ resets it.
    started = await chain.q(START, token=done["accessToken"])
    assert codes(started) == ["CONFLICT"]


async def test_the_code_used_to_confirm_does_not_sign_in(chain: Chain) -> None:
    email, _id, token = await chain.member()
    started = ok(await chain.q(START, token=token))["startTotpEnrolment"]
    chain.secrets[email] = pyotp.parse_uri(started["otpauthUri"]).secret
    wrong = await chain.q(
        CONFIRM, {"k": "000000" if chain.code(email) != "000000" else "111111"}, token
    )
    assert (
        codes(wrong) == ["BAD_USER_INPUT"] and wrong["errors"][0]["extensions"]["field"] == "code"
    )
    code = chain.code(email)
    ok(await chain.q(CONFIRM, {"k": code}, token))
    assert codes(await chain.verify(await chain.challenge(email), code)) == ["UNAUTHENTICATED"]


async def test_brute_force_is_rate_limited_and_then_even_the_right_code_waits(chain: Chain):
    email, _id, token = await chain.member()
    await chain.enrol(email, token)
    challenge = await chain.challenge(email)
    right = chain.code(email)
    wrongs = [f"{(int(right) + i) % 1_000_000:06d}" for i in range(1, LIMIT + 1)]
    messages = set()
    for wrong in wrongs:
        answer = await chain.verify(challenge, wrong)
        assert codes(answer) == ["UNAUTHENTICATED"]
        messages.add(answer["errors"][0]["message"])
    # A wrong code and a made-up challenge read the same: nothing tells which part was wrong.
    made_up = challenge[:-4] + ("aaaa" if not challenge.endswith("aaaa") else "bbbb")
    forged = await chain.verify(made_up, right)
    assert codes(forged) == ["UNAUTHENTICATED"]
    assert messages == {forged["errors"][0]["message"]}
    assert codes(await chain.verify(challenge, right)) == ["RATE_LIMITED"]
    # A fresh challenge does not start the count again: the limit is the member's.
    assert codes(await chain.verify(await chain.challenge(email), right)) == ["RATE_LIMITED"]
    # The shared limiter (auth.ratelimit, counted in the database) weighs the previous window
    # by its overlap: two windows on, the attempts are forgotten.
    chain.clock.mono += 2 * WINDOW + 1
    fresh = await chain.challenge(email)
    assert ok(await chain.verify(fresh, right))["verifyTotp"]["accessToken"]


async def test_a_recovery_code_works_exactly_once(chain: Chain) -> None:
    email, staff_id, token = await chain.member()
    recovery = await chain.enrol(email, token)
    before = (await chain.admin_log())["totalCount"]
    used = ok(await chain.verify(await chain.challenge(email), recovery[0].upper()))
    assert used["verifyTotp"]["accessToken"]
    again = await chain.verify(await chain.challenge(email), recovery[0])
    assert codes(again) == ["UNAUTHENTICATED"]
    assert ok(await chain.verify(await chain.challenge(email), recovery[1]))
    log = await chain.admin_log()
    assert log["totalCount"] == before + 2
    newest = log["edges"][0]["node"]
    assert newest["change"] == "staff.recovery_code_use" and newest["target"] == staff_id
    assert all(code not in str(log) for code in recovery)


async def test_a_challenge_expires(chain: Chain, state: AppState) -> None:
    email, _id, token = await chain.member()
    await chain.enrol(email, token)
    challenge = await chain.challenge(email)
    chain.clock.at += state.sign_in_limits.challenge_ttl + timedelta(seconds=1)
    assert codes(await chain.verify(challenge, chain.code(email))) == ["UNAUTHENTICATED"]
    assert ok(await chain.verify(await chain.challenge(email), chain.code(email)))


async def test_hq_resets_a_second_factor_with_one_admin_entry(
    chain: Chain, operator: Operator
) -> None:
    email, staff_id, token = await chain.member()
    await chain.enrol(email, token)
    pending = await chain.challenge(email)
    before = (await chain.admin_log())["totalCount"]
    # Not for the member themselves, nor for an auditor.
    assert codes(await chain.q(RESET, {"s": staff_id}, token)) == ["FORBIDDEN"]
    assert codes(await chain.q(RESET, {"s": staff_id}, chain.auditor)) == ["FORBIDDEN"]
    assert ok(await chain.q(RESET, {"s": staff_id}, chain.hq))["resetTotp"] is True
    log = await chain.admin_log()
    assert log["totalCount"] == before + 1
    assert log["edges"][0]["node"] == {
        "actorId": chain.hq_id,
        "change": "staff.totp_reset",
        "target": staff_id,
        "changeDetail": None,
        "patientIds": [],
    }
    assert codes(await chain.verify(pending, chain.code(email))) == ["UNAUTHENTICATED"]
    plain = await chain.sign_in(email)
    assert plain["secondFactorRequired"] is False and plain["accessToken"]
    # Nothing to reset: nothing changes and nothing is logged.
    assert ok(await chain.q(RESET, {"s": staff_id}, chain.hq))["resetTotp"] is False
    assert (await chain.admin_log())["totalCount"] == before + 1
    # They enrol again with a new secret.
    await chain.enrol(email, plain["accessToken"])
    assert await chain.challenge(email)
    out = await operator.run("audit", "verify", "--tenant", chain.slug)
    assert f"{chain.slug}: ok" in out


async def test_other_tokens_never_stand_in(chain: Chain, state: AppState) -> None:
    email, _id, token = await chain.member()
    await chain.enrol(email, token)
    challenge = await chain.challenge(email)
    _, tenant_hex, secret = challenge.split("_")
    other = f"ppc_{uuid.uuid4().hex}_{secret}"
    assert codes(await chain.verify(other, chain.code(email))) == ["UNAUTHENTICATED"]
    access = (await chain.sign_in(f"audit@{chain.slug}.test"))["accessToken"]
    assert codes(await chain.verify(access, chain.code(email))) == ["UNAUTHENTICATED"]
    refresh = "ppr_" + tenant_hex + "_" + secret
    assert codes(await chain.verify(refresh, chain.code(email))) == ["UNAUTHENTICATED"]
    # A service token is not a staff member: it cannot enrol.
    made = await chain.q(
        """mutation { createServiceToken(name: "mp", permissions: [{object: "tags",
        action: "read"}]) { token } }""",
        token=chain.hq,
    )
    service = ok(made)["createServiceToken"]["token"]
    assert codes(await chain.q(START, token=service)) == ["FORBIDDEN"]
    # The challenge still works for its own member.
    assert ok(await chain.verify(challenge, chain.code(email)))


async def test_another_chains_challenge_does_not_open_this_one(
    chain: Chain, state: AppState, operator: Operator, clock: Clock
) -> None:
    email, _id, token = await chain.member()
    await chain.enrol(email, token)
    async for other in _chain(state, operator, clock):
        theirs, _, their_token = await other.member()
        await other.enrol(theirs, their_token)
        foreign = await other.challenge(theirs)
        # Our member's code with their challenge, their code with our challenge: refused.
        assert codes(await chain.verify(foreign, chain.code(email))) == ["UNAUTHENTICATED"]
        ours = await chain.challenge(email)
        assert codes(await chain.verify(ours, other.code(theirs))) == ["UNAUTHENTICATED"]
        assert ok(await chain.verify(ours, chain.code(email)))


async def test_a_required_role_without_a_factor_may_only_enrol(
    state: AppState, operator: Operator, clock: Clock
) -> None:
    async for chain in _chain(state, operator, clock):
        doctor, _id, _token = await chain.member()
        shown = ok(await chain.q("{ twoFactorPolicy { enforced requiredRoles } }", token=chain.hq))
        assert shown["twoFactorPolicy"] == {
            "enforced": False,
            "requiredRoles": ["hq_admin", "auditor"],
        }
        before = (await chain.admin_log())["totalCount"]
        turned = ok(await chain.q(POLICY, {}, chain.hq))["setTwoFactorPolicy"]
        assert turned == {"enforced": True, "requiredRoles": ["auditor", "hq_admin"]}
        assert (await chain.admin_log())["totalCount"] == before + 1
        assert codes(await chain.q(POLICY, {"r": ["king"]}, chain.hq)) == ["BAD_USER_INPUT"]
        assert codes(await chain.q(POLICY, {}, chain.auditor)) == ["FORBIDDEN"]

        admin = f"audit@{chain.slug}.test"
        limited = await chain.sign_in(admin)
        assert limited["enrolmentRequired"] is True and limited["secondFactorRequired"] is False
        assert limited["refreshToken"] is None and limited["accessToken"]
        only = limited["accessToken"]
        assert ok(await chain.q(ME, token=only))["me"]["roles"] == ["auditor"]
        for query in (ADMIN_LOG, "{ branches { totalCount } }", "{ me { roles } tenant { slug } }"):
            refused = await chain.q(query, token=only)
            assert codes(refused) == ["FORBIDDEN"]
            assert refused["errors"][0]["extensions"]["reason"] == "TOTP_ENROLMENT_REQUIRED"
        await chain.enrol(admin, only)
        challenge = await chain.challenge(admin)
        full = ok(await chain.verify(challenge, chain.code(admin)))["verifyTotp"]["accessToken"]
        assert ok(await chain.q(ADMIN_LOG, token=full))["accessLog"]["totalCount"] >= 1

        # A role not named signs in as before.
        plain = await chain.sign_in(doctor)
        assert plain["enrolmentRequired"] is False and plain["refreshToken"]
        # An empty list requires it of nobody; enrolled members still get the challenge.
        ok(await chain.q(POLICY, {"r": []}, chain.hq))
        assert await chain.challenge(admin)
