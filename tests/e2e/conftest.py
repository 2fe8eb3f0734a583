"""Fixtures for the jwt-guard end-to-end suite.

Envoy starts a handful of times per run (session/module-scoped fixtures), never per
test. When a test fails, the tail of the log of every Envoy it used (or of every
running Envoy) is attached to the failure report.
"""

import pytest

import harness
from harness import (ENV_SECRET, MAIN_CONFIG, MODULE, RULES_CONFIG, SHADOWED_ENV_SECRET, Envoy,
                     Upstream, envoy_env, start_envoy, stop_checked)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    funcargs = getattr(item, "funcargs", {}) or {}
    used = [v for v in funcargs.values() if isinstance(v, Envoy)]
    for envoy in used or list(harness.ACTIVE):
        rep.sections.append((f"envoy log: {envoy.name} (last 60 lines)", envoy.log_tail(60)))


@pytest.fixture(scope="session")
def module_path():
    if not MODULE.is_file():
        pytest.fail(f"{MODULE} is missing: run `make build` first (make e2e does)", False)
    return MODULE


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def upstream(workdir):
    server = Upstream(workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def guard(module_path, workdir, upstream):
    envoy = start_envoy("guard", MAIN_CONFIG, workdir, upstream,
                        env=envoy_env({"BETTER_AUTH_SECRET": SHADOWED_ENV_SECRET}))
    yield envoy
    stop_checked(envoy)


@pytest.fixture(scope="session")
def guard_rules(module_path, workdir, upstream):
    envoy = start_envoy("guard-rules", RULES_CONFIG, workdir, upstream,
                        env=envoy_env({"BETTER_AUTH_SECRET": ENV_SECRET}))
    yield envoy
    stop_checked(envoy)
