"""The roles of SPEC §1 as groups, with their default permissions (see connectadmin.roles).

Django creates permissions only after all migrations have run (post_migrate), so on a
fresh database the ones granted here are created here first; post_migrate then finds
them and leaves them alone. A one-off migration rather than a post_migrate hook, so an
admin who later changes a group's permissions is not overruled by the next deploy.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# (app_label, model, codename, name)
CONNECTADMIN_MODEL_PERMISSIONS = [
    ("connectadmin", model, f"{action}_{model}", f"Can {action} {verbose}")
    for model, verbose in (("connectaccount", "Connect account"), ("appkey", "application key"))
    for action in ("add", "change", "delete", "view")
]
AUTH_MODEL_PERMISSIONS = [
    ("auth", model, f"{action}_{model}", f"Can {action} {model}")
    for model in ("user", "group")
    for action in ("add", "change", "delete", "view")
]
SEND_LIVE = ("connectadmin", "appkey", "send_live", "Can send live imports (not only test imports)")

GROUPS = {
    # Admins manage accounts, app keys, users and roles, and may send live.
    "admin": [*CONNECTADMIN_MODEL_PERMISSIONS, *AUTH_MODEL_PERMISSIONS, SEND_LIVE],
    # Ops review every import and export: they need to see which account and key was used.
    "ops": [p for p in CONNECTADMIN_MODEL_PERMISSIONS if p[2].startswith("view_")],
    # Marketers send test imports; live sending is granted explicitly by an admin.
    "marketer": [],
}


def create_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    group_model = apps.get_model("auth", "Group")
    for group_name, permissions in GROUPS.items():
        group, _ = group_model.objects.get_or_create(name=group_name)
        for app_label, model, codename, name in permissions:
            content_type, _ = content_type_model.objects.get_or_create(
                app_label=app_label, model=model
            )
            permission, _ = permission_model.objects.get_or_create(
                content_type=content_type, codename=codename, defaults={"name": name}
            )
            group.permissions.add(permission)


def remove_roles(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("connectadmin", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
