"""The Settings area in a real Chromium: an admin sets up a team from an empty database
(a Connect account, an app key, an invited marketer who sets a password and signs in), and
the marketer then cannot open the settings pages. Screenshots of every settings page at
1400, 1024 and 390 px go to test-artifacts/settings/."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from connectadmin.models import AppKey, AttentiveAccount, ConnectAccount
from tests.browser.test_every_page import inner_scroll, serious_violations, too_wide
from tests.browser.test_pages import ARTIFACTS, browser, sign_in, strict_page  # noqa: F401
from tests.browser.test_pages import page as page
from tests.factories import make_account, make_app_key
from tests.test_views import make_user

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

WIDTHS = (1400, 1024, 390)
SHOTS = ARTIFACTS / "settings"


def nothing_wider_than_the_window(tab: Any) -> None:
    widths = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{tab.url} is {widths[0]} px wide in {widths[1]} px"


def look_at(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        tab.set_viewport_size({"width": width, "height": 900})
        nothing_wider_than_the_window(tab)
        tab.screenshot(path=SHOTS / f"{name}-{width}.png", full_page=True)
    tab.set_viewport_size({"width": 1280, "height": 900})


def test_an_admin_sets_up_a_team_from_an_empty_database(
    page: Any,
    browser: Any,  # noqa: F811
    live_server: Any,
) -> None:
    assert not ConnectAccount.objects.exists() and not AppKey.objects.exists()
    make_user("ada", "admin")
    sign_in(page, "ada")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    look_at(page, "01-overview")
    page.get_by_role("link", name="Add a Connect account").first.click()
    # Submitted empty, the browser stops at the first field to fill.
    page.get_by_role("button", name="Add the account").click()
    assert page.evaluate("document.activeElement.name") == "name"
    # What only the server knows (SPEC §8: no + in the Connect user), it names the field of.
    page.get_by_label("Name").fill("Shop (sandbox)")
    page.get_by_label("Region").select_option(value="sandbox")
    page.get_by_label("API key").fill("browser-typed-secret-key")
    page.get_by_label("Connect user e-mail").fill("connect+user@example.com")
    page.get_by_role("button", name="Add the account").click()
    alert = page.get_by_role("alert")
    assert "Connect user e-mail: " in alert.inner_text()
    assert "browser-typed-secret-key" not in page.content()
    look_at(page, "02-account-new-errors")
    page.get_by_label("Name").fill("Shop (sandbox)")
    page.get_by_label("Region").select_option(value="sandbox")
    page.get_by_label("API key").fill("browser-typed-secret-key")
    page.get_by_label("Connect user e-mail").fill("connect.user@example.com")
    page.get_by_role("button", name="Add the account").click()
    page.wait_for_selector("text=added, with its API key stored encrypted")
    assert "browser-typed-secret-key" not in page.content()
    assert page.get_by_label("API key").input_value() == ""
    look_at(page, "03-account-edit")
    # The test connection goes to the sandbox's port, where nothing listens here.
    page.get_by_role("button", name="Test the connection").click()
    result = page.locator(".connection-result")
    assert result.is_visible() and re.search(r"Unreachable|Wrong key|OK", result.inner_text())
    look_at(page, "04-account-tested")

    page.get_by_role("link", name="Add an app key to this account").click()
    page.get_by_label("App key").fill("shop-web")
    page.get_by_label("Label").fill("Web shop")
    page.get_by_label("Tier").select_option(value="premium")
    look_at(page, "05-app-key-new")
    page.get_by_role("button", name="Add the app key").click()
    page.wait_for_selector("text=App key shop-web added to Shop (sandbox)")
    look_at(page, "06-app-keys")

    page.get_by_role("link", name="Users and roles").first.click()
    page.get_by_label("User name").fill("nina")
    page.get_by_label("E-mail").fill("nina@example.com")
    page.get_by_label("Role").select_option(value="marketer")
    page.get_by_role("button", name="Invite").click()
    link = page.locator(".invite-link code").inner_text()
    assert "/invite/" in link
    look_at(page, "07-users-invited")
    page.get_by_role("link", name="nina").click()
    look_at(page, "08-user-edit")

    # The invitee, in a browser of their own.
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, base_url=live_server.url, bypass_csp=True
    )
    context.set_default_timeout(10_000)
    invitee = context.new_page()
    invitee.goto(link)
    assert "Set your password" in invitee.content()
    look_at(invitee, "09-invite-accept")
    password = "nina-chose-this-long-one"
    invitee.locator("#id_new_password1").fill(password)
    invitee.get_by_label("New password confirmation").fill(password)
    invitee.get_by_role("button", name="Set the password and sign in").click()
    invitee.wait_for_selector("text=Sign out")
    assert "Your password is set and you are signed in" in invitee.content()
    assert invitee.get_by_role("link", name="Settings").count() == 0
    # The link is spent.
    invitee.goto(link)
    assert "This link does not work any more" in invitee.content()
    invitee.get_by_role("button", name="Sign out").click()

    # Signs in with the password chosen, sees the team's key, is refused the settings.
    invitee.goto("/login/")
    invitee.get_by_label("User name").fill("nina")
    invitee.get_by_label("Password").fill(password)
    invitee.get_by_role("button", name="Sign in").click()
    invitee.wait_for_selector("text=Sign out")
    invitee.goto("/imports/new")
    assert "shop-web" in invitee.content()
    for path in ("/settings/", "/settings/accounts", "/settings/app-keys", "/settings/users"):
        response = invitee.goto(path)
        assert response is not None and response.status == 403
        assert "Only administrators change the settings" in invitee.content()
    look_at(invitee, "10-marketer-refused")
    context.close()
    assert User.objects.get(username="nina").groups.get().name == "marketer"


def test_every_settings_page_fits_three_widths_and_has_no_serious_axe_finding(
    strict_page: Any,  # noqa: F811
) -> None:
    admin = make_user("ada", "admin")
    make_user("mia", "marketer")
    account = make_account(name="Shop with a rather long name for a narrow screen")
    app_key = make_app_key(account, key="a-long-application-key-0123456789abcdef", active=False)
    attentive = AttentiveAccount.objects.create(
        name="Attentive for a brand with a rather long name too",
        api_key="k",
        graphql_endpoint="http://127.0.0.1:8765/v1/graphql",
    )
    sign_in(strict_page, "ada")
    paths = {
        "overview": "/settings/",
        "accounts": "/settings/accounts",
        "account-new": "/settings/accounts/new",
        "account-edit": f"/settings/accounts/{account.pk}",
        "app-keys": "/settings/app-keys",
        "app-key-new": "/settings/app-keys/new",
        "app-key-edit": f"/settings/app-keys/{app_key.pk}",
        "attentive": "/settings/attentive",
        "attentive-new": "/settings/attentive/new",
        "attentive-edit": f"/settings/attentive/{attentive.pk}",
        "users": "/settings/users",
        "user-edit": f"/settings/users/{admin.pk}",
    }
    problems: list[str] = []
    for name, path in paths.items():
        for width in WIDTHS:
            strict_page.set_viewport_size({"width": width, "height": 900})
            strict_page.goto(path)
            if wide := too_wide(strict_page):
                problems.append(f"{name} @{width}px wider than the window: {wide}")
            if width == 1400 and (scrolls := inner_scroll(strict_page)):
                problems.append(f"{name} @1400px: a table scrolls inside itself by {scrolls} px")
            if width in (1400, 390):
                problems += [f"{name} @{width}px: {v}" for v in serious_violations(strict_page)]
    assert not problems, "\n".join(problems)


def test_the_account_form_says_the_connect_user_rule_while_it_is_typed(
    strict_page: Any,  # noqa: F811
) -> None:
    make_user("ada", "admin")
    make_account(name="Shop EU")
    sign_in(strict_page, "ada")
    strict_page.goto("/settings/accounts/new")
    strict_page.get_by_label("API key").fill("browser-typed-secret-key")
    strict_page.get_by_label("Name").press_sequentially("Shop EU")
    email = strict_page.get_by_label("Connect user e-mail")
    email.press_sequentially("ann+ops@example.com")
    error = strict_page.locator("#id_connect_user_email-error")
    error.wait_for()
    assert "not '+'" in error.inner_text()
    assert (
        "An account named Shop EU exists already"
        in strict_page.locator("#id_name-error").inner_text()
    )
    # Nothing missing is called missing, nothing was saved, and the typing goes on.
    assert strict_page.locator("#id_api_key-error").count() == 0
    assert strict_page.get_by_role("alert").count() == 0
    assert strict_page.evaluate("document.activeElement.name") == "connect_user_email"
    # The API key, never sent back, is still what was typed.
    assert strict_page.get_by_label("API key").input_value() == "browser-typed-secret-key"
    assert "browser-typed-secret-key" not in strict_page.content()  # no value= given back
    email.fill("")
    email.press_sequentially("ann.ops@example.com")
    error.wait_for(state="detached")
    assert ConnectAccount.objects.count() == 1
