"""Workflows for accounts and secrets."""

from django.apps import apps
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import TextField, Value
from django.db.models.functions import Cast

from connectadmin import secrets
from connectadmin.demo import DEMO_ACCOUNTS, DEMO_USERS, DemoUser
from connectadmin.fields import EncryptedTextField
from connectadmin.models import AlertChannel, AppKey, ConnectAccount, Region, default_endpoint
from connectadmin.roles import Role


def encrypted_values_rotate() -> int:
    """Re-encrypt every stored secret with the newest key; returns how many were rewritten.

    Works on the raw tokens (MultiFernet.rotate), so plaintext never leaves this function
    and the rows' other columns are untouched.
    """
    rewritten = 0
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if not isinstance(field, EncryptedTextField):
                continue
            with transaction.atomic():
                # Cast to a plain text column so the field does not decrypt on the way out.
                rows = list(
                    model._default_manager.select_for_update()
                    .exclude(**{f"{field.name}__isnull": True})
                    .annotate(raw_token=Cast(field.name, TextField()))
                    .values_list("pk", "raw_token")
                )
                for pk, token in rows:
                    # A plain-text Value is written as it is, not encrypted a second time.
                    new_token = Value(secrets.rotate(token), output_field=TextField())
                    model._default_manager.filter(pk=pk).update(**{field.name: new_token})
                    rewritten += 1
    return rewritten


def demo_seed() -> tuple[DemoUser, ...]:
    """Create or reset the demo users, Connect accounts and app keys (idempotent)."""
    with transaction.atomic():
        for demo_user in DEMO_USERS:
            group, _ = Group.objects.get_or_create(name=demo_user.role)
            user, _ = User.objects.get_or_create(username=demo_user.username)
            # The Django admin is for admins and ops; marketers work in the app's own pages.
            user.is_staff = demo_user.role != Role.MARKETER
            user.is_superuser = demo_user.is_superuser
            user.is_active = True
            # Reset every time so the printed logins are always the ones that work.
            user.set_password(demo_user.password)
            user.email = user.email or f"{demo_user.username}@demo.connectadmin.test"
            user.save()
            user.groups.add(group)
            if demo_user.role == Role.OPS:  # ops hear of failures (e-mails land in the outbox)
                AlertChannel.objects.get_or_create(kind=AlertChannel.Kind.EMAIL, user=user)
        for demo in DEMO_ACCOUNTS:
            account, _ = ConnectAccount.objects.update_or_create(
                name=demo.name,
                defaults={
                    "region": Region.SANDBOX,
                    "graphql_endpoint": default_endpoint(Region.SANDBOX),
                    "api_key": demo.api_key,
                    "connect_user_email": demo.email,
                },
            )
            AppKey.objects.update_or_create(
                key=demo.app_key,
                defaults={
                    "label": demo.name.replace(" (sandbox)", ""),
                    "tier": demo.tier,
                    "account": account,
                    "active": True,
                },
            )
    return DEMO_USERS
