"""Every model module, imported so the metadata is complete for migrations and checks."""

import tenancy.keystore  # noqa: F401
from tenancy.orm import Base

target_metadata = Base.metadata
