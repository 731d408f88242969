"""The OpenAPI 3.1 document of the attestation service (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

_TYPE = {"name": "type", "in": "path", "required": True,
         "description": "SgxEnclave or OpenEnclave (any case)",
         "schema": {"type": "string", "enum": ["SgxEnclave", "OpenEnclave"]}}
_API_VERSION = {"name": "api-version", "in": "query", "required": False,
                "description": "Accepted and ignored (e.g. 2020-10-01, 2022-08-01).",
                "schema": {"type": "string"}}
_TOKEN = {"200": {"description": "A JWT (RS256; unsecured for a draft policy).",
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/"
                                                                       "TokenResponse"}}}},
          "400": {"$ref": "#/components/responses/Error"}}
_ADMIN = {**_TOKEN, "401": {"$ref": "#/components/responses/Error"}}


def _data() -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": {
        "data": {"type": "string", "description": "base64url (padded or not) of the bytes; "
                                                  "SHA-256 of them must equal REPORTDATA[0:32] "
                                                  "(runtimeData) or CONFIGID[0:32] (initTimeData)"},
        "dataType": {"type": "string", "enum": ["Binary", "JSON"]}}}


def _attest_request(evidence: str, what: str) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": [evidence],
            "properties": {
                evidence: {"type": "string", "description": what},
                "runtimeData": {"$ref": "#/components/schemas/Data"},
                "initTimeData": {"$ref": "#/components/schemas/Data"},
                "draftPolicyForAttestation": {"type": "string",
                                              "description": "policy text; the token is then "
                                                             "unsecured (alg none)"},
                "nonce": {"type": ["string", "number"], "description": "echoed as nonce"}}}


def openapi_document() -> dict[str, Any]:
    """The document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "enclavekit attestation service",
                 "description": "Azure Attestation (MAA) compatible data plane for SGX quotes.",
                 "version": "2020-10-01"},
        "paths": {
            "/attest/SgxEnclave": {"post": {
                "operationId": "Attestation_AttestSgxEnclave", "parameters": [_API_VERSION],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/AttestSgxEnclaveRequest"}}}},
                "responses": _TOKEN}},
            "/attest/OpenEnclave": {"post": {
                "operationId": "Attestation_AttestOpenEnclave", "parameters": [_API_VERSION],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/AttestOpenEnclaveRequest"}}}},
                "responses": _TOKEN}},
            "/certs": {"get": {
                "operationId": "SigningCertificates_Get",
                "responses": {"200": {"description": "JWKS of the token-signing keys",
                                      "content": {"application/json": {"schema": {
                                          "$ref": "#/components/schemas/JsonWebKeySet"}}}}}}},
            "/.well-known/openid-configuration": {"get": {
                "operationId": "MetadataConfiguration_Get",
                "responses": {"200": {"description": "OpenID metadata",
                                      "content": {"application/json": {"schema": {
                                          "type": "object"}}}}}}},
            "/policies/{type}": {
                "get": {"operationId": "Policy_Get", "parameters": [_TYPE, _API_VERSION],
                        "responses": _ADMIN},
                "put": {"operationId": "Policy_Set", "parameters": [_TYPE, _API_VERSION],
                        "requestBody": {"required": True, "content": {"text/plain": {
                            "schema": {"type": "string", "description":
                                       "JWS whose payload is {AttestationPolicy: base64url "
                                       "policy text}; alg none or RS256/RSA256 with the "
                                       "signer in jwk.x5c or x5c"}}}},
                        "responses": _ADMIN}},
            "/policies/{type}:reset": {"post": {
                "operationId": "Policy_Reset", "parameters": [_TYPE, _API_VERSION],
                "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}},
                "responses": _ADMIN}},
            "/certificates": {"get": {"operationId": "PolicyCertificates_Get",
                                      "parameters": [_API_VERSION], "responses": _ADMIN}},
            "/certificates:add": {"post": {
                "operationId": "PolicyCertificates_Add", "parameters": [_API_VERSION],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "string", "description": "JWS {policyCertificate: JWK}"
                                                                " signed by a management cert"}}}},
                "responses": _ADMIN}},
            "/certificates:remove": {"post": {
                "operationId": "PolicyCertificates_Remove", "parameters": [_API_VERSION],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": "string"}}}},
                "responses": _ADMIN}},
        },
        "components": {
            "schemas": {
                "Data": _data(),
                "AttestSgxEnclaveRequest": _attest_request("quote", "base64url SGX quote"),
                "AttestOpenEnclaveRequest": _attest_request(
                    "report", "base64url Open Enclave report (16-byte header + SGX quote)"),
                "TokenResponse": {"type": "object", "required": ["token"],
                                  "properties": {"token": {"type": "string"}}},
                "JsonWebKeySet": {"type": "object", "properties": {"keys": {
                    "type": "array", "items": {"type": "object", "properties": {
                        "kid": {"type": "string"}, "kty": {"type": "string"},
                        "x5c": {"type": "array", "items": {"type": "string"}}}}}}},
                "CloudError": {"type": "object", "properties": {"error": {
                    "type": "object", "properties": {"code": {"type": "string"},
                                                     "message": {"type": "string"}}}}},
            },
            "responses": {"Error": {"description": "CloudError", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/CloudError"}}}}},
        },
    }
