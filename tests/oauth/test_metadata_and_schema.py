"""Discovery: the authorization-server metadata (RFC 8414) and the OAuth2 flows in OpenAPI."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_the_metadata_document_names_the_endpoints_grants_scopes_and_pkce():
    response = Client().get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    body = response.json()
    assert body["issuer"] == "http://testserver"
    assert body["authorization_endpoint"] == "http://testserver/oauth/authorize/"
    assert body["token_endpoint"] == "http://testserver/oauth/token/"
    assert body["revocation_endpoint"] == "http://testserver/oauth/revoke/"
    assert body["introspection_endpoint"] == "http://testserver/oauth/introspect/"
    assert body["grant_types_supported"] == ["authorization_code", "client_credentials", "refresh_token"]
    assert body["response_types_supported"] == ["code"]
    assert body["code_challenge_methods_supported"] == ["S256"]
    assert body["scopes_supported"] == ["jobs", "models:read", "models:write", "predict"]
    assert body["authorization_response_iss_parameter_supported"] is True
    assert "client_secret_basic" in body["token_endpoint_auth_methods_supported"]


def test_the_openapi_schema_declares_both_oauth2_flows(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    scheme = schema["components"]["securitySchemes"]["oauth2"]
    assert scheme["type"] == "oauth2"
    flows = scheme["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/oauth/token/"
    assert flows["authorizationCode"]["authorizationUrl"] == "/oauth/authorize/"
    assert set(flows["authorizationCode"]["scopes"]) == {"models:read", "models:write", "predict", "jobs"}


def test_each_operation_names_the_scope_an_oauth_token_needs(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    predict = paths["/api/v1/models/{name}/predict"]["post"]["security"]
    assert {"oauth2": ["predict"]} in predict
    assert {"jwtAuth": []} in predict
    # Key and application management is closed to OAuth tokens: no oauth2 requirement.
    applications = paths["/api/v1/oauth/applications/"]["post"]["security"]
    assert not any("oauth2" in requirement for requirement in applications)


def test_swagger_ui_is_set_up_for_pkce_and_its_oauth_redirect_is_served(client):
    page = client.get("/api/docs/").content.decode()
    assert "usePkceWithAuthorizationCodeGrant" in page
    response = client.get("/api/docs/oauth2-redirect.html?code=x&state=y")
    assert response.status_code == 302
    assert "oauth2-redirect.html?code=x&state=y" in response["Location"]
