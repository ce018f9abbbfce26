from typing import Any

from django.test import Client


def test_home_page_is_served_after_sign_in(client: Client, django_user_model: Any) -> None:
    assert client.get("/")["Location"] == "/login/?next=/"
    client.force_login(django_user_model.objects.create_user("someone"))
    response = client.get("/")
    assert response.status_code == 200
    assert b"connectadmin" in response.content


def test_healthz_answers_ok(client: Client) -> None:
    assert client.get("/healthz?live=1").json() == {"status": "ok"}
