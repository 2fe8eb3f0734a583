"""Plugin configuration checked by `envoy --mode validate`, which loads the module in V8
and runs on_configure: a bad configuration must make Envoy refuse the file."""

import json

import pytest

from harness import RULES_CONFIG, Ports, bootstrap, envoy_env, jwks, validate, wasm_filter

SECRET = "validate-secret-0123456789abcdef0123456789"


def run_validate(workdir, plugin_config, env=None, host_env_keys=("BETTER_AUTH_SECRET",)):
    config = bootstrap(Ports(), 1, [wasm_filter(plugin_config, host_env_keys)])
    return validate(config, workdir, env=envoy_env(env))


def output(result):
    return result.stdout + result.stderr


GOOD = {
    "inline_secret": ({"secret": SECRET}, None),
    "env_secret": ({}, {"BETTER_AUTH_SECRET": SECRET}),
    "custom_env_name": ({"secret_env": "MY_SECRET"}, {"MY_SECRET": SECRET}),
    "jwks_only": ({"jwks": jwks()}, None),
    "every_option": (RULES_CONFIG, {"BETTER_AUTH_SECRET": SECRET}),
    "catch_all_token_rule": ({"secret": SECRET, "rules": [
        {"path": "/**", "require": "token"}]}, None),
}


@pytest.mark.parametrize("plugin_config,env", list(GOOD.values()), ids=list(GOOD))
def test_valid_config_validate_accepted(module_path, workdir, plugin_config, env):
    keys = ("BETTER_AUTH_SECRET", "MY_SECRET")
    result = run_validate(workdir, plugin_config, env, host_env_keys=keys)
    assert result.returncode == 0, output(result)[-3000:]


def rule(path, require):
    return {"secret": SECRET, "rules": [{"path": path, "require": require}]}


BAD = {
    "unknown_top_level_field": {"secret": SECRET, "secrett": SECRET},
    "unknown_rule_field": {"secret": SECRET,
                           "rules": [{"path": "/x/**", "require": "token", "methods": ["GET"]}]},
    "no_key_env_missing": {},
    "empty_inline_secret_env_missing": {"secret": ""},
    "empty_jwks_env_missing": {"jwks": {"keys": []}},
    "jwks_not_object": {"secret": SECRET, "jwks": "https://auth.example.com/api/auth/jwks"},
    "jwks_without_keys": {"secret": SECRET, "jwks": {"kty": "OKP"}},
    "issuers_not_array": {"secret": SECRET, "issuers": "https://auth.example.com"},
    "audiences_not_strings": {"secret": SECRET, "audiences": [1]},
    "require_exp_string": {"secret": SECRET, "require_exp": "yes"},
    "clock_skew_string": {"secret": SECRET, "clock_skew_seconds": "60"},
    "max_token_bytes_negative": {"secret": SECRET, "max_token_bytes": -1},
    "user_claims_not_array": {"secret": SECRET, "user_claims": "sub"},
    "rules_not_array": {"secret": SECRET, "rules": {"path": "/**", "require": "token"}},
    "rule_unknown_require": rule("/admin/**", "admin"),
    "rule_missing_require": {"secret": SECRET, "rules": [{"path": "/x"}]},
    "rule_path_without_slash": rule("api/{user_id}/**", "user"),
    "rule_double_star_not_last": rule("/api/**/x", "token"),
    "rule_user_without_name": rule("/api/*/**", "user"),
    "rule_user_two_names": rule("/orgs/{org}/users/{user}", "user"),
    "rule_unclosed_brace": rule("/api/{user_id/**", "user"),
}


@pytest.mark.parametrize("plugin_config", list(BAD.values()), ids=list(BAD))
def test_bad_config_validate_refused(module_path, workdir, plugin_config):
    result = run_validate(workdir, plugin_config)
    assert result.returncode != 0, output(result)[-3000:]
    assert "wasm" in output(result).lower(), output(result)[-3000:]


def test_weak_ed25519_key_validate_refused_naming_it(module_path, workdir):
    # The identity point: a valid encoding of a key of small order, under which anyone
    # can forge signatures that plain RFC 8032 verification accepts.
    weak = {"kty": "OKP", "crv": "Ed25519", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
    result = run_validate(workdir, {"secret": SECRET, "jwks": {"keys": [weak]}})
    assert result.returncode != 0, output(result)[-3000:]
    assert "keys[0].x" in output(result), output(result)[-3000:]


@pytest.mark.parametrize("value", ["{not json", "", "[]", "null", '"secret"',
                                   json.dumps({"secret": SECRET}) + " trailing"],
                         ids=["truncated", "empty", "array", "null", "string", "trailing"])
def test_configuration_not_a_json_object_validate_refused(module_path, workdir, value):
    result = run_validate(workdir, value)
    assert result.returncode != 0, output(result)[-3000:]


def test_env_secret_empty_validate_refused(module_path, workdir):
    result = run_validate(workdir, {}, {"BETTER_AUTH_SECRET": ""})
    assert result.returncode != 0, output(result)[-3000:]


def test_env_secret_not_in_host_env_keys_validate_refused(module_path, workdir):
    # The variable is in Envoy's environment, but the VM only sees host_env_keys.
    result = run_validate(workdir, {"secret_env": "MY_SECRET"}, {"MY_SECRET": SECRET},
                          host_env_keys=("BETTER_AUTH_SECRET",))
    assert result.returncode != 0, output(result)[-3000:]


def test_env_secret_without_host_env_keys_validate_refused(module_path, workdir):
    result = run_validate(workdir, {}, {"BETTER_AUTH_SECRET": SECRET}, host_env_keys=())
    assert result.returncode != 0, output(result)[-3000:]
