"""Every model module, imported so the metadata is complete for migrations and checks."""

import domain.campaigns.models
import domain.care.models
import domain.consent.models
import domain.documents.models
import domain.door.models
import domain.exports.models
import domain.imports.models
import domain.patients.models
import domain.pool.models
import domain.reasons.models
import domain.referrals.models
import domain.surveys.models
import domain.tenants.models
import domain.wecom.group_models
import domain.wecom.models  # noqa: F401
import tenancy.keystore  # noqa: F401
from tenancy.orm import Base

target_metadata = Base.metadata
