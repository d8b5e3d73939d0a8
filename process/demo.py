"""Two demo chains that feel real, generated deterministically from a seed: a dental chain and a
TCM clinic chain, with branches, staff in every role and a few hundred patients each."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from auth import access_log
from auth.access_log import Actor, RequestInfo
from auth.guard import system_scope
from auth.models import StaffTokenPurpose, StaffUser
from auth.policy import load_policy
from auth.provisioning import create_tenant
from auth.staff import StaffService
from auth.staff_tokens import spend
from auth.trail import AccessTrail
from domain.care.orders import NewLine, OrderService
from domain.care.visits import VisitService
from domain.consent import service as consent
from domain.consent.models import ContactChannel, Purpose
from domain.consent.service import ConsentChange
from domain.patients.models import Gender, LifecycleStage, Patient, PoolTier, TrustLevel
from domain.patients.service import PatientService
from domain.pool.models import Channel, EventType
from domain.pool.service import NewEvent, PoolService
from domain.pool.tags import TagService
from domain.referrals import figures
from domain.referrals.models import Referral, RewardRule, RewardTrigger
from domain.tenants.branches import BranchService
from domain.tenants.models import Branch, Region
from domain.tenants.repository import TenantRepository
from process.operator import owner_session, provider
from process.settings import Settings
from tenancy.keyring import KeyProvider
from tenancy.keystore import load_cipher

SEED = 20261124
# Who made the demo's staff, on their invitations' admin entries.
DEMO_ACTOR = Actor("system", "cli:demo")
PATIENTS_PER_CHAIN = 300


@dataclass(frozen=True)
class Chain:
    slug: str
    name: str
    kind: str
    branches: list[tuple[str, str, str]]  # code, name, city
    regions: dict[str, list[str]]  # region name -> branch codes
    channels: list[str]
    treatments: list[str]
    health_tags: list[str]
    diagnoses: list[str]


CHAINS = [
    Chain(
        slug="smile-dental",
        name="微笑口腔连锁",
        kind="dental",
        branches=[
            ("sh-xh", "微笑口腔·上海徐汇店", "上海"),
            ("sh-ja", "微笑口腔·上海静安店", "上海"),
            ("hz-xh", "微笑口腔·杭州西湖店", "杭州"),
            ("nj-xjk", "微笑口腔·南京新街口店", "南京"),
        ],
        regions={"上海大区": ["sh-xh", "sh-ja"], "江浙大区": ["hz-xh", "nj-xjk"]},
        channels=[
            "xiaohongshu",
            "douyin",
            "wechat_official",
            "dianping",
            "referral",
            "offline_event",
        ],
        treatments=["正畸", "种植", "洁牙", "儿童齿科"],
        health_tags=["牙周炎", "根管治疗史"],
        diagnoses=[
            "慢性牙周炎（II度）",
            "左下6 深龋，已行根管治疗",
            "安氏II类错颌，隐形矫正中",
            "右上8 阻生智齿，建议拔除",
            "牙列缺损，种植修复计划中",
            "牙龈退缩，牙本质敏感",
        ],
    ),
    Chain(
        slug="renhe-tcm",
        name="仁和中医馆",
        kind="tcm",
        branches=[
            ("bj-cy", "仁和中医·北京朝阳馆", "北京"),
            ("bj-hd", "仁和中医·北京海淀馆", "北京"),
            ("cd-jj", "仁和中医·成都锦江馆", "成都"),
        ],
        regions={"华北片区": ["bj-cy", "bj-hd"], "西南片区": ["cd-jj"]},
        channels=[
            "wechat_official",
            "douyin",
            "xiaohongshu",
            "referral",
            "community_event",
            "live_stream",
        ],
        treatments=["针灸", "推拿", "膏方", "三伏贴"],
        health_tags=["失眠", "颈椎病"],
        diagnoses=[
            "脾胃虚寒，纳差便溏",
            "失眠多梦，心脾两虚",
            "颈椎病，气滞血瘀",
            "痛经，寒凝血瘀",
            "湿疹，湿热内蕴",
            "慢性咳嗽，肺气不足",
        ],
    ),
]
CHANNEL_NAMES = {
    "xiaohongshu": "小红书",
    "douyin": "抖音",
    "wechat_official": "公众号",
    "dianping": "大众点评",
    "referral": "老带新",
    "offline_event": "线下义诊",
    "community_event": "社区讲座",
    "live_stream": "直播",
}
SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓"
    "曹彭曾萧田董潘袁蔡蒋余于杜叶程魏苏吕丁沈任姚卢傅钟"
)
GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
    "玉兰萍红婷雪梅琳晨浩宇欣怡子涵梓轩思远佳琪雨萱诗雨一鸣"
)
HISTORY = [
    "无特殊",
    "高血压 5 年，服用氨氯地平",
    "2 型糖尿病，二甲双胍控制",
    "甲状腺结节随访中",
    "哮喘史，近年未发作",
    "乙肝携带，肝功能正常",
    "孕 20 周",
]
ALLERGIES = ["无", "青霉素过敏", "头孢类过敏", "对乳胶过敏", "磺胺类过敏", "花粉过敏"]
NOTES = [
    "患者对价格敏感，倾向分期",
    "工作日晚间方便联系",
    "由家人陪同就诊",
    "希望周末预约",
    "对疼痛敏感，需充分沟通",
    "已加企业微信，活跃",
]
ROLES_PER_BRANCH = ["branch_manager", "doctor", "doctor", "health_manager", "operator"]
HQ_ROLES = ["marketing", "auditor"]


def accounts_file(cfg: Settings) -> Path:
    return cfg.data_dir / "demo-accounts.json"


def _name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"


async def _load_chain(
    session: AsyncSession, keys: KeyProvider, chain: Chain, rng: random.Random
) -> list[dict[str, object]]:
    trail = AccessTrail()
    admin_pw = f"Demo-{rng.randrange(10**6):06d}"
    created = await create_tenant(
        session,
        keys,
        slug=chain.slug,
        name=chain.name,
        kind=chain.kind,
        admin_email=f"admin@{chain.slug}.demo",
        admin_password=admin_pw,
    )
    accounts: list[dict[str, object]] = [
        {
            "tenant": chain.slug,
            "email": created.admin.email,
            "password": admin_pw,
            "roles": ["hq_admin"],
            "branches": [],
        }
    ]
    # The same services a chain's HQ uses through the API (createBranch, createRegion).
    places = BranchService(session)
    branches = [
        await places.create(code=code, name=name, city=city) for code, name, city in chain.branches
    ]
    by_code = {b.code: b for b in branches}
    regions = []
    for region_name, codes in chain.regions.items():
        region = await places.create_region(region_name)
        for code in codes:
            await places.set_region(by_code[code], region)
        regions.append(region)

    # Staff come the way a chain's own do: invited (as the platform operator's `staff invite`
    # does, so auditors too), then each invitation accepted with the person's password.
    policy = await load_policy(session)
    people = StaffService(session, trail)

    async def staff(
        role: str, email: str, name: str, at: list[Branch], manages: list[Region] | None = None
    ) -> StaffUser:
        password = f"Demo-{rng.randrange(10**6):06d}"
        user, token = await people.invite(
            policy, None, email=email, name=name, roles={role}, branches=at, regions=manages or ()
        )
        await spend(session, StaffTokenPurpose.INVITATION, token, password, RequestInfo())
        accounts.append(
            {
                "tenant": chain.slug,
                "email": email,
                "password": password,
                "roles": [role],
                "branches": [b.code for b in at],
            }
        )
        return user

    carers: dict[str, list[StaffUser]] = {}
    for branch in branches:
        for i, role in enumerate(ROLES_PER_BRANCH):
            user = await staff(
                role,
                f"{role.replace('_', '')}{i}.{branch.code}@{chain.slug}.demo",
                _name(rng),
                [branch],
            )
            if role in ("doctor", "health_manager"):
                carers.setdefault(branch.code, []).append(user)
    for role in HQ_ROLES:
        await staff(role, f"{role}@{chain.slug}.demo", _name(rng), [])
    for i, region in enumerate(regions):
        email = f"regionmanager{i}@{chain.slug}.demo"
        await staff("region_manager", email, _name(rng), [], [region])

    service = PatientService(session, await load_cipher(session, keys))
    now = datetime.now(UTC)
    stages = list(LifecycleStage)
    patients: list[Patient] = []
    for _ in range(PATIENTS_PER_CHAIN):
        branch = rng.choice(branches)
        patient = await service.create(
            {
                "name": _name(rng),
                "phone": _phone(rng),
                "wechat_id": f"wxid_{rng.randrange(16**10):010x}" if rng.random() < 0.7 else None,
                "home_branch_id": branch.id,
                "assigned_staff": rng.choice(carers[branch.code]) if rng.random() < 0.6 else None,
                "gender": rng.choice([Gender.FEMALE, Gender.FEMALE, Gender.MALE]).value,
                "birth_year": rng.randrange(1950, 2012),
                "source_channel": rng.choice(chain.channels),
                "pool_tier": rng.choice(list(PoolTier)).value,
                "lifecycle_stage": rng.choices(stages, weights=[6, 5, 3, 2, 3, 3, 2, 1, 1])[
                    0
                ].value,
                "trust_level": rng.choice(list(TrustLevel)).value,
                "medical_history": rng.choice(HISTORY),
                "allergies": rng.choice(ALLERGIES),
                "diagnoses": rng.choice(chain.diagnoses),
                "notes": rng.choice(NOTES),
                "consent": rng.random() < 0.8,
            }
        )
        patient.created_at = now - timedelta(days=rng.randrange(365), minutes=rng.randrange(1440))
        patients.append(patient)
    await session.flush()
    await _load_pool(session, chain, patients, rng, now)
    await _load_care(session, chain, patients, carers, rng)
    await _load_consents(session, patients, rng)
    await access_log.append(session, DEMO_ACTOR, RequestInfo(), trail.events())
    return accounts


async def _load_consents(
    session: AsyncSession, patients: list[Patient], rng: random.Random
) -> None:
    """Most patients agreed to health-data processing at their first visit (paper form);
    many to marketing on WeCom or SMS; a few withdrew one later."""
    for p in patients:
        changes = [
            ConsentChange(Purpose.HEALTH_DATA, ContactChannel.ANY, True, "2026-01", "paper_form")
        ]
        if p.consent_at is not None:
            for channel in rng.sample(
                [ContactChannel.WECOM, ContactChannel.SMS], k=rng.randint(1, 2)
            ):
                changes.append(
                    ConsentChange(Purpose.MARKETING, channel, True, "2026-01", "mini_program")
                )
            if rng.random() < 0.1:
                changes.append(
                    ConsentChange(
                        Purpose.MARKETING, changes[-1].channel, False, "2026-01", "wecom_chat"
                    )
                )
        for change in changes:
            await consent.record(session, p, change, "system:demo")


async def _load_pool(
    session: AsyncSession,
    chain: Chain,
    patients: list[Patient],
    rng: random.Random,
    now: datetime,
) -> None:
    """Channels, tags and a few weeks of interaction events (which give the lead scores)."""
    for code in chain.channels:
        session.add(Channel(code=code, name=CHANNEL_NAMES.get(code, code)))
    tags = TagService(session)
    treatments = await tags.create_group("项目", False)
    conversion = await tags.create_group("转化", False)
    diagnosis = await tags.create_group("诊断标签", True)
    by_group = {
        treatments: [await tags.create_tag(treatments, n, None) for n in chain.treatments],
        conversion: [await tags.create_tag(conversion, n, None) for n in ("未转化", "已转化")],
        diagnosis: [await tags.create_tag(diagnosis, n, None) for n in chain.health_tags],
    }
    everyone = system_scope()
    for group_tags in by_group.values():
        for tag in group_tags:
            chosen = [p.id for p in patients if rng.random() < 0.3]
            await tags.tag(tag, everyone, chosen)
    kinds = [e.value for e in EventType if e is not EventType.WENT_QUIET]
    events = [
        NewEvent(
            f"demo-{p.id}-{i}",
            p,
            rng.choice(kinds),
            now - timedelta(days=rng.randrange(30), minutes=rng.randrange(1440)),
            "demo",
        )
        for p in patients
        if rng.random() < 0.7
        for i in range(rng.randrange(1, 5))
    ]
    pool = PoolService(session, "system")
    for start in range(0, len(events), 500):
        await pool.record_events(events[start : start + 500])


VISITED_STAGES = {
    LifecycleStage.VISITED,
    LifecycleStage.CONVERTED,
    LifecycleStage.RETURNING,
    LifecycleStage.REFERRER,
}
PAID_STAGES = VISITED_STAGES - {LifecycleStage.VISITED}


async def _load_care(
    session: AsyncSession,
    chain: Chain,
    patients: list[Patient],
    carers: dict[str, list[StaffUser]],
    rng: random.Random,
) -> None:
    """Referral links (as made at sign-up), reward rules, past visits and paid orders."""
    session.add(RewardRule(trigger=RewardTrigger.FIRST_VISIT, points=100))
    session.add(RewardRule(trigger=RewardTrigger.REFERRED_COUNT, threshold=3, coupon="洁牙券"))
    by_age = sorted(patients, key=lambda p: p.created_at)
    for i, patient in enumerate(by_age[10:], start=10):
        if rng.random() < 0.3:
            referrer = by_age[rng.randrange(i)]
            session.add(
                Referral(
                    referred_id=patient.id,
                    referrer_id=referrer.id,
                    channel="old_brings_new",
                    created_at=patient.created_at,
                )
            )
            referrer.referral_count += 1
    await session.flush()
    await figures.rebuild(session)  # the links above were written directly
    branch_of = {b.id: b for b in await BranchService(session).list()}
    visits, orders = VisitService(session, "system"), OrderService(session, "system")
    for patient in patients:
        if LifecycleStage(patient.lifecycle_stage) not in VISITED_STAGES:
            continue
        stage = patient.lifecycle_stage
        doctors = carers[branch_of[patient.home_branch_id].code]
        day = patient.created_at + timedelta(days=rng.randrange(1, 30))
        for _ in range(rng.choice([1, 1, 2, 3])):
            visit = await visits.book(patient, patient.home_branch_id, rng.choice(doctors).id, day)
            # Invented days may run past today; an arrival is never in the future.
            await visits.arrive(visit, patient, min(day, datetime.now(UTC)))
            day += timedelta(days=rng.randrange(7, 90))
        if LifecycleStage(stage) in PAID_STAGES:
            for _ in range(rng.choice([1, 1, 2])):
                item = rng.choice(chain.treatments)
                order = await orders.create(
                    patient,
                    patient.home_branch_id,
                    [NewLine(item, 1, rng.randrange(200, 20_000) * 100)],
                )
                await orders.pay(order, patient, day)
        # The stage the demo chose stays (visits and orders would move it on).
        patient.lifecycle_stage = stage


async def load_demo(
    cfg: Settings, progress: Callable[[str], None] = lambda _m: None, seed: int = SEED
) -> bool:
    """Load the demo chains unless tenants exist already; True when it loaded them."""
    keys = provider(cfg)
    rng = random.Random(seed)
    accounts: list[dict[str, object]] = []
    async with owner_session(cfg) as session, session.begin():
        if await TenantRepository(session).count():
            return False
    # One transaction per chain, each on its own session (a session binds one tenant): an
    # interrupted load leaves whole chains only, never half of one.
    for n, chain in enumerate(CHAINS, 1):
        progress(f"demo: loading {chain.slug} ({n}/{len(CHAINS)}) …")
        async with owner_session(cfg) as session, session.begin():
            accounts += await _load_chain(session, keys, chain, rng)
    path = accounts_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(accounts, fh, ensure_ascii=False, indent=2)
    return True
