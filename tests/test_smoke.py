from django.test import Client


def test_home_page_is_served(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b"connectadmin" in response.content


def test_healthz_answers_ok(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
