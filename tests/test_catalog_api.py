"""The catalog and public-settings endpoints against a real `pantau api`, and how the static
dashboard modules are served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.routes.catalog import site
from api.routes.devices import DEFAULT_FIELD
from pantau.settings import ApiSettings
from processors.catalog import CATALOG
from tests.api_helpers import ApiProcess, running_api
from tests.conftest import EXAMPLE_REGISTRY

STATIC_JS = Path(__file__).parents[1] / "api" / "static" / "js"


@pytest.fixture(scope="module")
def served(broker: Any, influx: Any) -> Iterator[ApiProcess]:
    with running_api(broker.url, influx.url, "pantau", registry=EXAMPLE_REGISTRY) as served:
        yield served


def _expected_catalog() -> dict[str, Any]:
    return {
        "kinds": [
            {
                "kind": spec.kind,
                "fields": [
                    {
                        "name": f.name,
                        "unit": f.unit,
                        "low": f.low,
                        "high": f.high,
                        "binary": f.binary,
                        "description": f.description,
                    }
                    for f in spec.fields
                ],
                "default_field": DEFAULT_FIELD[spec.kind],
            }
            for spec in CATALOG.values()
        ]
    }


@pytest.mark.integration
def test_catalog_is_the_sensor_catalog(served: ApiProcess) -> None:
    with served.client("read") as http:
        response = http.get("/api/v1/catalog")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == _expected_catalog()
    assert [k["kind"] for k in body["kinds"]] == list(CATALOG)
    for kind in body["kinds"]:
        assert kind["default_field"] in [f["name"] for f in kind["fields"]]
    lamp = next(f for f in body["kinds"][2]["fields"] if f["name"] == "lamp_on")
    assert lamp["binary"] is True


@pytest.mark.integration
def test_public_settings_name_the_regency_and_its_time_zone(served: ApiProcess) -> None:
    with served.client("read") as http:
        body = http.get("/api/v1/settings/public").json()
    assert body == {
        "region_name": "Kabupaten Purbalingga",
        "time_zone": "Asia/Jakarta",
        "time_zone_abbr": "WIB",
    }


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/api/v1/catalog", "/api/v1/settings/public"])
def test_catalog_and_settings_need_a_token(served: ApiProcess, path: str) -> None:
    response = httpx.get(f"{served.url}{path}", trust_env=False)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    bad = httpx.get(
        f"{served.url}{path}", headers={"Authorization": "Bearer pantau_x_y"}, trust_env=False
    )
    assert bad.status_code == 401


@pytest.mark.integration
def test_openapi_documents_both_answers(served: ApiProcess) -> None:
    spec = httpx.get(f"{served.url}/openapi.json", trust_env=False).json()
    refs = {
        path: spec["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ]["$ref"]
        for path in ("/api/v1/catalog", "/api/v1/settings/public")
    }
    assert refs == {
        "/api/v1/catalog": "#/components/schemas/CatalogAnswer",
        "/api/v1/settings/public": "#/components/schemas/SiteAnswer",
    }
    schemas = spec["components"]["schemas"]
    assert set(schemas["FieldAnswer"]["properties"]) == {
        "name",
        "unit",
        "low",
        "high",
        "binary",
        "description",
    }
    assert set(schemas["SiteAnswer"]["required"]) == {"region_name", "time_zone", "time_zone_abbr"}


@pytest.mark.integration
def test_dashboard_modules_are_served_as_javascript(served: ApiProcess) -> None:
    modules = sorted(p.name for p in STATIC_JS.glob("*.js"))
    assert "main.js" in modules
    page = httpx.get(f"{served.url}/", trust_env=False).text
    assert '<script type="module" src="/static/js/main.js">' in page
    for name in modules:
        response = httpx.get(f"{served.url}/static/js/{name}", trust_env=False)
        assert response.status_code == 200, name
        media = response.headers["content-type"].split(";")[0]
        assert media in ("text/javascript", "application/javascript"), (name, media)


def test_site_answers_the_settings() -> None:
    settings = ApiSettings(region_name="Kota Makassar", time_zone="Asia/Makassar")
    answer = site(settings)
    assert (answer.region_name, answer.time_zone, answer.time_zone_abbr) == (
        "Kota Makassar",
        "Asia/Makassar",
        "WITA",
    )


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd"])
def test_an_unknown_time_zone_is_refused_at_start(zone: str) -> None:
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        ApiSettings(time_zone=zone)
