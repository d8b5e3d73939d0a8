"""Satisfaction surveys end to end through the GraphQL API, the sender's pass and the stand-in
SMS gateway on real HTTP: a rule sends a link after an arrived visit, the patient answers
through the link (no sign-in), and `metrics { satisfaction }` equals an oracle computed by
hand over a scripted month. Links refuse reuse, forgery and expiry alike; consent withdrawn
before sending means no link; a low score opens exactly one complaint callback; another
tenant sees none of it."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from api.context import AppState
from api.ids import to_global_id
from auth.access_log import AccessLogEntry
from domain.patients.models import Patient
from domain.surveys import tokens
from domain.surveys.answers import REFUSED
from domain.surveys.models import SurveyAnswer, SurveyDelivery
from tenancy.keystore import load_cipher
from tenancy.session import bind_tenant
from tests.campaigns.standin import StandIn
from tests.support import SEEDED, World, codes, gql, ok, sign_in
from tests.surveys.conftest import add_patients, tick, tokens_by_phone, withdraw_sms

RULES = """mutation { setContactRules(frequencyCap: 5, frequencyDays: 7, quietStart: "00:00",
  quietEnd: "00:00", timezone: "Asia/Shanghai") { frequencyCap } }"""
TEMPLATE = """mutation($i: SurveyTemplateInput!) { createSurveyTemplate(input: $i) {
  id version questions { key kind } } }"""
REVISE = """mutation($id: ID!, $i: SurveyTemplateInput!) { reviseSurveyTemplate(id: $id, input: $i)
  { id version title } }"""
RULE = (
    """mutation($i: SurveyRuleInput!) { createSurveyRule(input: $i) { id channels lowRating } }"""
)
BOOK = """mutation($p: ID!, $b: ID!, $at: DateTime!, $d: ID) { bookVisit(patientId: $p,
  branchId: $b, scheduledAt: $at, doctorId: $d) { id } }"""
ARRIVE = """mutation($id: ID!, $at: DateTime) { markArrived(id: $id, arrivedAt: $at) { id } }"""
FORM = """query($t: String!) { surveyForm(token: $t) { title questions { key kind options } } }"""
ANSWER = """mutation($t: String!, $a: [SurveyAnswerInput!]!) { answerSurvey(token: $t,
  answers: $a) { accepted } }"""
METRICS = """query($f: DateTime!, $to: DateTime!) { metrics(from: $f, to: $to) { satisfaction {
  total { sent answered responseRate averageRating nps npsAnswers promoters detractors }
  byBranch { branch { code } figures { sent answered responseRate averageRating nps } }
  byDoctor { doctor { id } figures { sent answered averageRating nps } } } } }"""
ANSWERS = """query { surveyAnswers(first: 50) { totalCount edges { node { patientId nps
  lowScore templateVersion items { key score choices } freeText { key text } } } } }"""
TASKS = """query { followUps(first: 50, filter: {kinds: [COMPLAINT_CALLBACK]}) { edges { node {
  patient { id } branch { code } } } } }"""


def _questions(title: str) -> dict[str, object]:
    return {
        "name": "诊后满意度",
        "title": title,
        "intro": "感谢您到诊，请为本次服务打分：",
        "questions": [
            {"key": "service", "kind": "RATING", "text": "您对本次服务满意吗？"},
            {"key": "recommend", "kind": "NPS", "text": "您有多大可能向朋友推荐我们？"},
            {
                "key": "came_for",
                "kind": "SINGLE",
                "text": "您本次来做什么？",
                "options": ["洁牙", "正畸", "种植"],
            },
            {"key": "words", "kind": "TEXT", "text": "还有什么想对我们说的？", "required": False},
        ],
    }


def _answers(rating: int, nps: int, text: str | None = None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = [
        {"key": "service", "score": rating},
        {"key": "recommend", "score": nps},
        {"key": "came_for", "choices": ["洁牙"]},
    ]
    if text is not None:
        out.append({"key": "words", "text": text})
    return out


@dataclass
class Scripted:
    branch: str
    doctor: bool
    arrived_day: int  # days after the start of the month
    rating: int | None  # None: never answers
    nps: int | None
    consent: bool = True


# The scripted month. Ticks on days 8, 16 and 25 send what is due (delay 1 day).
MONTH = [
    Scripted("b1", True, 1, 5, 10),
    Scripted("b1", True, 3, 2, 6),  # low: a complaint callback
    Scripted("b1", False, 10, 4, 8),
    Scripted("b2", False, 12, 1, 3),  # low, with free text
    Scripted("b2", False, 20, None, None),  # delivered, never answered
    Scripted("b1", True, 5, None, None, consent=False),  # withdrew before sending: no link
]
TICKS = (8, 16, 25)


def _sent_day(s: Scripted) -> int:
    return next(t for t in TICKS if t >= s.arrived_day + 1)


def _oracle(rows: list[Scripted], since: int, until: int) -> dict[str, object]:
    """By hand: links delivered in [since, until); response rate, mean rating, NPS."""
    sent = [s for s in rows if s.consent and since <= _sent_day(s) < until]
    answered = [s for s in sent if s.rating is not None]
    scores = [s.nps for s in answered if s.nps is not None]
    promoters = sum(1 for n in scores if n >= 9)
    detractors = sum(1 for n in scores if n <= 6)
    return {
        "sent": len(sent),
        "answered": len(answered),
        "responseRate": len(answered) / len(sent) if sent else None,
        "averageRating": (
            sum(s.rating for s in answered) / len(answered) if answered else None  # type: ignore[misc]
        ),
        "nps": 100 * (promoters - detractors) / len(scores) if scores else None,
    }


async def _visit(
    client: httpx.AsyncClient, token: str, world: World, patient: Patient, s: Scripted, at: datetime
) -> None:
    doctor = to_global_id("Staff", world.staff["doctor"].id) if s.doctor else None
    booked = ok(
        await gql(
            client,
            BOOK,
            {
                "p": to_global_id("Patient", patient.id),
                "b": world.branch_gid(s.branch),
                "at": at.isoformat(),
                "d": doctor,
            },
            token,
        )
    )
    vid = booked["bookVisit"]["id"]
    ok(await gql(client, ARRIVE, {"id": vid, "at": at.isoformat()}, token))


async def _setup(client: httpx.AsyncClient, world: World, start: datetime) -> tuple[str, str]:
    admin = await sign_in(client, world, "hq_admin")
    ok(await gql(client, RULES, None, admin))
    template = ok(await gql(client, TEMPLATE, {"i": _questions("本次就诊体验")}, admin))
    tid = template["createSurveyTemplate"]["id"]
    rule = {
        "name": "诊后一天",
        "templateId": tid,
        "channels": ["SMS"],
        "delayDays": 1,
        "startsAt": start.isoformat(),
        "answerDays": 60,
    }
    ok(await gql(client, RULE, {"i": rule}, admin))
    return admin, tid


async def test_a_scripted_month_from_rule_to_answer_to_figure(
    sclient: httpx.AsyncClient,
    owner_state: AppState,
    survey_state: AppState,
    world: World,
    other: World,
    provider: tuple[StandIn, str],
) -> None:
    fake, url = provider
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=30)
    admin, tid = await _setup(sclient, world, start)
    reached = await add_patients(owner_state, world, [s.branch for s in MONTH])
    people = [r.patient for r in reached]
    phones = {r.patient.id: r.phone for r in reached}
    for patient, s in zip(people, MONTH, strict=True):
        await _visit(sclient, admin, world, patient, s, start + timedelta(days=s.arrived_day))
    # Consent withdrawn before the link is sent: it never is.
    await withdraw_sms(owner_state, world, people[5])

    # The template is edited after the first links left: those keep version 1.
    await tick(survey_state, world, url, start + timedelta(days=TICKS[0]))
    revised = ok(await gql(sclient, REVISE, {"id": tid, "i": _questions("新版体验")}, admin))
    assert revised["reviseSurveyTemplate"]["version"] == 2
    for day in TICKS[1:]:
        await tick(survey_state, world, url, start + timedelta(days=day))
    again = await tick(survey_state, world, url, start + timedelta(days=TICKS[-1]))
    assert not again.outcomes.get("survey_delivered"), "a visit is surveyed once"

    links = tokens_by_phone(fake)
    assert set(links) == {phones[p.id] for p, s in zip(people, MONTH, strict=True) if s.consent}
    assert all(n == 1 for n in fake.handed_to_carrier.values())

    # The page shows the version each link was sent with; the patient answers, no sign-in.
    first = ok(await gql(sclient, FORM, {"t": links[phones[people[0].id]]}))
    assert first["surveyForm"]["title"] == "本次就诊体验"
    later = ok(await gql(sclient, FORM, {"t": links[phones[people[2].id]]}))
    assert later["surveyForm"]["title"] == "新版体验"
    complaint = f"note-{uuid.uuid4().hex[:6]} 候诊太久"  # health text: checked against logs
    SEEDED.add(complaint)
    for patient, s in zip(people, MONTH, strict=True):
        if s.rating is None or not s.consent:
            continue
        text = complaint if s.rating == 1 else None
        result = await gql(
            sclient, ANSWER, {"t": links[phones[patient.id]], "a": _answers(s.rating, s.nps, text)}
        )
        assert ok(result)["answerSurvey"]["accepted"] is True

    # Figures equal the oracle, for the month and for a part of it.
    for since, until in ((0, 30), (10, 20), (0, 10)):
        got = ok(
            await gql(
                sclient,
                METRICS,
                {
                    "f": (start + timedelta(days=since)).isoformat(),
                    "to": (start + timedelta(days=until)).isoformat(),
                },
                admin,
            )
        )["metrics"]["satisfaction"]
        want = _oracle(MONTH, since, until)
        total = got["total"]
        assert {k: total[k] for k in want} == want, (since, until)
    month = ok(await gql(sclient, METRICS, {"f": start.isoformat(), "to": now.isoformat()}, admin))[
        "metrics"
    ]["satisfaction"]
    b1 = next(b for b in month["byBranch"] if b["branch"]["code"] == "b1")["figures"]
    want_b1 = _oracle([s for s in MONTH if s.branch == "b1"], 0, 30)
    assert {k: b1[k] for k in want_b1} == want_b1
    only_b2 = ok(
        await gql(
            sclient,
            "query($f: DateTime!, $to: DateTime!, $b: ID) { metrics(from: $f, to: $to, "
            "branchId: $b) { satisfaction { total { sent answered } "
            "byBranch { branch { code } } } } }",
            {"f": start.isoformat(), "to": now.isoformat(), "b": world.branch_gid("b2")},
            admin,
        )
    )["metrics"]["satisfaction"]
    want_b2 = _oracle([s for s in MONTH if s.branch == "b2"], 0, 30)
    assert only_b2["total"] == {"sent": want_b2["sent"], "answered": want_b2["answered"]}
    assert [b["branch"]["code"] for b in only_b2["byBranch"]] == ["b2"]
    (doctor,) = month["byDoctor"]
    assert doctor["doctor"]["id"] == to_global_id("Staff", world.staff["doctor"].id)
    want_doctor = _oracle([s for s in MONTH if s.doctor], 0, 30)
    assert {k: doctor["figures"][k] for k in ("sent", "answered", "averageRating", "nps")} == {
        k: want_doctor[k] for k in ("sent", "answered", "averageRating", "nps")
    }

    # Low scores: exactly one complaint callback each, at the visit's branch.
    tasks = ok(await gql(sclient, TASKS, None, admin))["followUps"]["edges"]
    low = [p for p, s in zip(people, MONTH, strict=True) if s.rating is not None and s.rating <= 2]
    assert sorted(t["node"]["patient"]["id"] for t in tasks) == sorted(
        to_global_id("Patient", p.id) for p in low
    )

    # Answers: the free text is health data. HQ reads it only after stating a purpose (the
    # care/reason gate of health fields); each read is logged; it is sealed at rest.
    low_text = next(p for p, s_ in zip(people, MONTH, strict=True) if s_.rating == 1)
    gated = await gql(sclient, ANSWERS, None, admin)
    assert [e["extensions"] for e in gated["errors"]] == [
        {"code": "FORBIDDEN", "reason": "REASON_REQUIRED"}
    ]
    stated = await gql(
        sclient,
        "mutation($id: ID!) { statePurpose(patientId: $id, purpose: COMPLAINT, "
        'note: "投诉回访") { id } }',
        {"id": to_global_id("Patient", low_text.id)},
        admin,
    )
    assert "errors" not in stated, stated
    answers = ok(await gql(sclient, ANSWERS, None, admin))["surveyAnswers"]
    assert answers["totalCount"] == 4
    texts = [a["node"]["freeText"] for a in answers["edges"] if a["node"]["freeText"]]
    assert texts == [[{"key": "words", "text": complaint}]]
    versions = sorted(a["node"]["templateVersion"] for a in answers["edges"])
    assert versions == [1, 1, 2, 2]
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        sealed = [a.free_text_ct for a in await s.scalars(select(SurveyAnswer))]
        assert all(complaint.encode() not in (b or b"") for b in sealed)
        reads = await s.scalars(
            select(AccessLogEntry).where(
                AccessLogEntry.actor_id == str(world.staff["hq_admin"].id),
                AccessLogEntry.field_groups.contains("health"),
            )
        )
        assert any(str(low_text.id) in r.patient_ids for r in reads)
        callbacks = await s.scalars(
            select(AccessLogEntry).where(AccessLogEntry.actor_id == "surveys")
        )
        assert any("complaint-callback" in r.operation_name for r in callbacks)

    # The patient's data copy (PIPL) holds what they answered, free text opened.
    copied = ok(
        await gql(
            sclient,
            "mutation($p: ID!) { exportPatientData(patientId: $p) { content } }",
            {"p": to_global_id("Patient", low_text.id)},
            admin,
        )
    )
    held = json.loads(copied["exportPatientData"]["content"])["survey_answers"]
    assert [a["free_text"] for a in held] == [{"words": complaint}]
    assert held[0]["rating_count"] >= 1

    # A link answers once; a forged or expired one is refused the same way.
    used = links[phones[people[0].id]]
    open_link = links[phones[people[4].id]]
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        cipher = await load_cipher(s, owner_state.key_provider)
        delivery = tokens.peek(open_link).delivery_id
        expired = tokens.issue(cipher, delivery, datetime.now(UTC) - timedelta(minutes=1))
    forged = _flipped(open_link)
    other_tenant = _retarget(open_link, other.tenant_id)
    refusals = []
    for bad in (used, forged, expired, other_tenant, "not-a-link"):
        result = await gql(sclient, ANSWER, {"t": bad, "a": _answers(3, 7)})
        refusals.append((tuple(codes(result)), result["errors"][0]["message"]))
        form = await gql(sclient, FORM, {"t": bad})
        refusals.append((tuple(codes(form)), form["errors"][0]["message"]))
    assert set(refusals) == {(("BAD_USER_INPUT",), REFUSED)}
    # …and the open link still answers, once.
    assert ok(await gql(sclient, ANSWER, {"t": open_link, "a": _answers(3, 7)}))
    tasks_after = ok(await gql(sclient, TASKS, None, admin))["followUps"]["edges"]
    assert len(tasks_after) == len(low)

    # Erasing the patient destroys what they wrote; their scores stay in the figures.
    erased = await gql(
        sclient,
        "mutation($id: ID!) { erasePatient(id: $id) { patient { id } } }",
        {"id": to_global_id("Patient", low_text.id)},
        admin,
    )
    assert "errors" not in erased, erased
    after = ok(await gql(sclient, ANSWERS, None, admin))["surveyAnswers"]["edges"]
    assert not any(a["node"]["freeText"] for a in after) and len(after) == 5

    # Another tenant sees none of it.
    b_admin = await sign_in(sclient, other, "hq_admin")
    missing = await gql(
        sclient, "query($id: ID!) { surveyTemplate(id: $id) { id } }", {"id": tid}, b_admin
    )
    assert codes(missing) == ["NOT_FOUND"]
    b_answers = ok(await gql(sclient, ANSWERS, None, b_admin))["surveyAnswers"]
    assert b_answers["totalCount"] == 0
    b_templates = ok(await gql(sclient, "{ surveyTemplates { totalCount } }", None, b_admin))
    assert b_templates["surveyTemplates"]["totalCount"] == 0
    b_month = ok(
        await gql(sclient, METRICS, {"f": start.isoformat(), "to": now.isoformat()}, b_admin)
    )["metrics"]["satisfaction"]["total"]
    assert b_month["sent"] == 0


def _raw(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def _encoded(raw: bytearray) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _flipped(token: str) -> str:
    """The same link with one bit of its tag changed."""
    raw = _raw(token)
    raw[-1] ^= 1
    return _encoded(raw)


def _retarget(token: str, tenant_id: uuid.UUID) -> str:
    """The same link claiming another tenant (its tag no longer matches anything)."""
    raw = _raw(token)
    raw[:16] = tenant_id.bytes
    return _encoded(raw)


async def test_bad_input_is_answered_with_codes_and_staff_need_their_rights(
    sclient: httpx.AsyncClient, world: World
) -> None:
    admin = await sign_in(sclient, world, "hq_admin")
    operator = await sign_in(sclient, world, "operator")
    bad = _questions("x")
    bad["questions"] = [{"key": "a", "kind": "SINGLE", "text": "只有一个选项", "options": ["是"]}]
    assert codes(await gql(sclient, TEMPLATE, {"i": bad}, admin)) == ["BAD_USER_INPUT"]
    assert codes(await gql(sclient, TEMPLATE, {"i": _questions("x")}, operator)) == ["FORBIDDEN"]
    assert codes(await gql(sclient, ANSWERS, None, operator)) == ["FORBIDDEN"]
    tid = ok(await gql(sclient, TEMPLATE, {"i": _questions("x")}, admin))["createSurveyTemplate"]
    rule = {"name": "r", "templateId": tid["id"], "channels": ["SMS"], "delayDays": 400}
    assert codes(await gql(sclient, RULE, {"i": rule}, admin)) == ["BAD_USER_INPUT"]


async def test_quiet_hours_caps_and_a_withdrawal_between_queue_and_send(
    sclient: httpx.AsyncClient,
    owner_state: AppState,
    survey_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    """Surveys obey the campaigns' rules: nothing leaves in quiet hours, consent is read again
    when sending, and survey links and campaign messages share one frequency cap."""
    fake, url = provider
    now = datetime.now(UTC).replace(microsecond=0)
    quiet = now - timedelta(days=3)
    local = quiet.astimezone(ZoneInfo("Asia/Shanghai"))
    minute = local.hour * 60 + local.minute
    admin = await sign_in(sclient, world, "hq_admin")
    hhmm = [f"{(m % 1440) // 60:02d}:{m % 60:02d}" for m in (minute - 60, minute + 60)]
    ok(
        await gql(
            sclient,
            "mutation($s: String!, $e: String!) { setContactRules(frequencyCap: 1, "
            'frequencyDays: 7, quietStart: $s, quietEnd: $e, timezone: "Asia/Shanghai") '
            "{ frequencyCap } }",
            {"s": hhmm[0], "e": hhmm[1]},
            admin,
        )
    )
    tid = ok(await gql(sclient, TEMPLATE, {"i": _questions("体验")}, admin))
    rule = {
        "name": "诊后",
        "templateId": tid["createSurveyTemplate"]["id"],
        "channels": ["SMS"],
        "startsAt": (now - timedelta(days=10)).isoformat(),
    }
    ok(await gql(sclient, RULE, {"i": rule}, admin))
    reached = await add_patients(owner_state, world, ["b1", "b1", "b1"])
    twice, withdrawing, plain = reached
    visits = [(twice, 5), (twice, 4), (withdrawing, 5), (plain, 5)]
    for who, days in visits:
        s = Scripted("b1", False, 0, None, None)
        await _visit(sclient, admin, world, who.patient, s, now - timedelta(days=days))

    queued = await tick(survey_state, world, url, quiet)
    assert fake.messages == {}, "nothing leaves in quiet hours"
    assert queued.outcomes == {"survey_skipped_capped": 1}  # the second visit of `twice`
    await withdraw_sms(owner_state, world, withdrawing.patient)
    sent = await tick(survey_state, world, url, quiet + timedelta(hours=2))
    assert set(tokens_by_phone(fake)) == {twice.phone, plain.phone}
    assert sent.outcomes == {"survey_delivered": 2, "survey_withdrawn": 1}

    # A campaign now finds both surveyed patients at the cap.
    from tests.campaigns.conftest import campaign, launch, segment

    marketing = await sign_in(sclient, world, "marketing")
    seg = await segment(sclient, marketing, {"branchIds": [world.branch_gid("b1")]})
    launched = await launch(sclient, marketing, await campaign(sclient, marketing, seg))
    assert launched["excludedByCap"] == 2
    async with owner_state.sessions() as s, s.begin():
        await bind_tenant(s, world.tenant_id)
        rows = list(await s.scalars(select(SurveyDelivery)))
    assert sorted(r.status for r in rows) == ["delivered", "delivered", "skipped", "withdrawn"]


async def test_a_channel_without_a_provider_passes_to_the_rules_next_one(
    sclient: httpx.AsyncClient,
    owner_state: AppState,
    survey_state: AppState,
    world: World,
    provider: tuple[StandIn, str],
) -> None:
    """WeCom first, SMS second, and this chain has no WeCom app: the patient, reachable on
    both, gets the link by SMS in the first pass; nothing waits for a WeCom that is not there."""
    from domain.consent.models import ContactChannel
    from tests.campaigns.conftest import add_patients as add_contacts

    fake, url = provider
    noon = datetime.now(UTC).replace(hour=4, minute=0, second=0, microsecond=0)  # 12:00 上海
    admin = await sign_in(sclient, world, "hq_admin")
    tid = ok(await gql(sclient, TEMPLATE, {"i": _questions("体验")}, admin))
    rule = {
        "name": "诊后",
        "templateId": tid["createSurveyTemplate"]["id"],
        "channels": ["WECOM", "SMS"],
        "startsAt": (noon - timedelta(days=10)).isoformat(),
    }
    ok(await gql(sclient, RULE, {"i": rule}, admin))
    both = (ContactChannel.SMS, ContactChannel.WECOM)
    (who,) = await add_contacts(owner_state, world, 1, consent_on=both, wecom=True)
    s = Scripted("b1", False, 0, None, None)
    await _visit(sclient, admin, world, who.patient, s, noon - timedelta(days=5))
    sent = await tick(survey_state, world, url, noon)
    assert sent.outcomes == {"survey_delivered": 1}
    assert set(tokens_by_phone(fake)) == {who.phone}
    async with owner_state.sessions() as session, session.begin():
        await bind_tenant(session, world.tenant_id)
        rows = list(await session.scalars(select(SurveyDelivery)))
    assert [(r.channel, r.status) for r in rows] == [("sms", "delivered")]


async def test_the_public_link_is_rate_limited_per_address(survey_state: AppState) -> None:
    """No sign-in guards the link's endpoints: past the window's limit an address is answered
    RATE_LIMITED before any token is read (a real link or a guess alike)."""
    import dataclasses

    from api.app import create_app
    from auth.ratelimit import WindowLimit

    limits = dataclasses.replace(
        survey_state.sign_in_limits, survey_link=WindowLimit(2, 300, f"link-{uuid.uuid4().hex}")
    )
    tight = dataclasses.replace(survey_state, sign_in_limits=limits)
    transport = httpx.ASGITransport(app=create_app(tight.settings, tight))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await gql(client, FORM, {"t": "not-a-link"})
        second = await gql(client, ANSWER, {"t": "not-a-link", "a": _answers(3, 7)})
        assert codes(first) == codes(second) == ["BAD_USER_INPUT"]
        for refused in (
            await gql(client, FORM, {"t": "not-a-link"}),
            await gql(client, ANSWER, {"t": "not-a-link", "a": _answers(3, 7)}),
        ):
            assert codes(refused) == ["RATE_LIMITED"]
