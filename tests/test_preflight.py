"""Preflight of OpenAI-compatible roles against a fault server: a dead port, a wrong key, a
missing key variable and a model the server does not serve each fail in seconds with one line
naming the role; healthy roles pass, each endpoint asked once."""

from __future__ import annotations

import time

import pytest
from fakeserver import FakeOpenAI, dead_url
from omegaconf import OmegaConf

from xlexp.llm.preflight import PreflightError, check_roles


def card(base_url: str, model: str = "served-model", env: str | None = None):
    return OmegaConf.create(
        {"backend": "openai", "model": model, "base_url": base_url, "api_key_env": env}
    )


def test_healthy_roles_pass(monkeypatch):
    monkeypatch.setenv("XLEXP_PF_KEY", "k1")
    with FakeOpenAI(api_key="k1", served=["served-model", "other"]) as srv:
        check_roles(
            {
                "teacher": card(srv.base_url, env="XLEXP_PF_KEY"),
                "judge": card(srv.base_url, "other", "XLEXP_PF_KEY"),
                "model": OmegaConf.create({"backend": "hf", "model": "x"}),
            }
        )
        assert srv.calls == 0  # /v1/models only, no chat call


def test_each_broken_role_is_one_line_naming_it(monkeypatch):
    monkeypatch.setenv("XLEXP_PF_KEY", "k1")
    monkeypatch.setenv("XLEXP_PF_WRONG", "nope")
    monkeypatch.delenv("XLEXP_PF_UNSET", raising=False)
    with FakeOpenAI(api_key="k1", served=["served-model"]) as srv:
        started = time.time()
        with pytest.raises(PreflightError) as err:
            check_roles({
                "teacher": card(srv.base_url, "no-such-model", "XLEXP_PF_KEY"),
                "judge": card(srv.base_url, env="XLEXP_PF_WRONG"),
                "reference": card(dead_url(), env="XLEXP_PF_KEY"),
                "qe.llm": card(srv.base_url, env="XLEXP_PF_UNSET"),
                "model": card(srv.base_url, env="XLEXP_PF_KEY"),
            })
        assert time.time() - started < 15
    lines = err.value.lines
    assert len(lines) == 4, lines
    by_role = {line.split(":", 1)[0]: line for line in lines}
    assert (
        "does not serve teacher.model 'no-such-model' (it serves: served-model)"
        in by_role["teacher"]
    )
    assert "rejected the key (401)" in by_role["judge"] and "XLEXP_PF_WRONG" in by_role["judge"]
    assert "cannot reach" in by_role["reference"]
    assert "XLEXP_PF_UNSET is not set" in by_role["qe.llm"]
    assert "nope" not in str(err.value) and "k1" not in str(err.value)
