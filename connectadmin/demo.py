"""Demo data shared by `seed_demo` (what the database holds) and `devstack` (what the
sandbox is started with), so the two always agree."""

from dataclasses import dataclass

from connectadmin.roles import Role
from signals_app.validation.schema import Tier


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: Role
    is_superuser: bool = False


@dataclass(frozen=True)
class DemoAccount:
    name: str
    api_key: str
    email: str
    app_key: str
    tier: Tier


DEMO_USERS = (
    DemoUser("admin", "admin-demo-pass", Role.ADMIN, is_superuser=True),
    DemoUser("marketer", "marketer-demo-pass", Role.MARKETER),
    DemoUser("ops", "ops-demo-pass", Role.OPS),
)

DEMO_ACCOUNTS = (
    DemoAccount(
        "Demo Pro (sandbox)",
        "demo-pro-api-key",
        "pro@demo.connectadmin.test",
        "demo-pro-appkey",
        "pro",
    ),
    DemoAccount(
        "Demo Ultimate (sandbox)",
        "demo-ultimate-api-key",
        "ultimate@demo.connectadmin.test",
        "demo-ultimate-appkey",
        "ultimate",
    ),
)

# One Attentive account, against the sandbox's Attentive endpoint (devstack starts the
# sandbox with this key).
DEMO_ATTENTIVE_NAME = "Demo Attentive (sandbox)"
DEMO_ATTENTIVE_KEY = "demo-attentive-key"


def demo_attentive_endpoint() -> str:
    from django.conf import settings  # read when called: this module is also plain data

    return f"http://127.0.0.1:{settings.SANDBOX_HTTP_PORT}/v1/graphql"
