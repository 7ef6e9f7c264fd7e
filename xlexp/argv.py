"""Command-line fix-up so the paper's sweep commands work verbatim.

Hydra 1.3 parses `overrides` as one argparse positional (nargs="*"), so with Python 3.11's
argparse an option between overrides splits them and the second group is rejected:
`python -m xlexp +exp=scaling -m data_size=32,256,2k,8k` fails with "unrecognized arguments:
data_size=32,256,2k,8k". `--multirun` is a plain flag, so moving it in front of the overrides
changes nothing else.

Hydra prints its own errors (an override of a key that is not there, a value of the wrong type,
a run dir it cannot make) over several lines with a hint about HYDRA_FULL_ERROR;
`hydra_error_line` says each in one line naming the key or the dir.
"""

from __future__ import annotations

from typing import Any

MULTIRUN_FLAGS = ("-m", "--multirun")


def multirun_flag_first(args: list[str]) -> list[str]:
    """`args` (sys.argv[1:]) with a `-m`/`--multirun` flag moved in front of everything else."""
    flags = [a for a in args if a in MULTIRUN_FLAGS]
    return flags[:1] + [a for a in args if a not in MULTIRUN_FLAGS] if flags else list(args)


def check_overrides(args: list[str]) -> str | None:
    """A message for overrides Hydra would reject with an unhelpful error; None when fine.

    The `translator` group lists several cards under `translators.<name>`, so a key set on the
    group itself (`translator.max_concurrency=16`) has no single target.
    """
    for arg in args:
        key, eq, _ = arg.partition("=")
        if eq and key.lstrip("+~").startswith("translator."):
            field = key.lstrip("+~").removeprefix("translator.")
            return (
                f"{key}: the translator group holds several cards; set the key on one of them as "
                f"translators.<name>.{field}=... (e.g. translators.smollm2-greedy.{field}=...; "
                "`python -m xlexp --cfg job` lists the names)"
            )
    return None


def is_multirun(args: list[str]) -> bool:
    """Whether `args` ask Hydra for a multirun (a flag, or `hydra.mode=MULTIRUN`)."""
    return any(a in MULTIRUN_FLAGS or a.lstrip("+") == "hydra.mode=MULTIRUN" for a in args)


def hydra_error_line(error: BaseException, multirun: bool = False) -> str | None:
    """`<key>: <reason>` for an error Hydra raised before the job started (an override of a
    key that is not there or with a value of the wrong type, an unknown option of a config
    group, an override it cannot parse, a run dir it cannot make); None for any other error."""
    from hydra.errors import (
        CompactHydraException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        if group:
            known = f" (one of: {', '.join(error.options)})" if error.options else ""
            return f"{group.replace('/', '.')}: no config {option!r}{known}"
    if isinstance(error, OverrideParseException):
        key = error.override.partition("=")[0].lstrip("+~") or error.override
        return f"{key}: cannot parse {error.override!r} ({_first_line(str(error))})"
    if isinstance(error, CompactHydraException):
        cause = error.__cause__
        if isinstance(cause, OmegaConfBaseException) and cause.full_key:
            return f"{cause.full_key}: {_omegaconf_reason(cause, str(error))}"
        return f"overrides: {' '.join(str(error).split())}"
    if isinstance(error, OmegaConfBaseException) and error.full_key:
        return f"{error.full_key}: {_first_line(error.msg)}"
    # Before the job, Hydra only makes the run (or sweep) dir and writes its logs and .hydra/
    # there; logging wraps its OSError in a ValueError.
    oserror = next((e for e in _chain(error) if isinstance(e, OSError)), None)
    if oserror is not None and oserror.filename:
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        return f"{key}: cannot make or write {oserror.filename} ({oserror.strerror})"
    return None


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _omegaconf_reason(cause: Any, hydra_message: str) -> str:
    """OmegaConf's own first line, except for a key that is not there: that one names the keys
    that are (when few) and Hydra's hint for adding a new one."""
    from omegaconf import DictConfig
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if not isinstance(cause, ConfigKeyError | ConfigAttributeError):
        return _first_line(cause.msg)
    reason = "no such key"
    parent = getattr(cause, "parent_node", None)
    if isinstance(parent, DictConfig) and 0 < len(parent) <= 12:
        reason += f" (there: {', '.join(str(k) for k in parent)})"
    hint = "To append to your config use "
    for line in hydra_message.splitlines():
        if line.startswith(hint):
            reason += f"; {line.removeprefix(hint)} adds it"
    return reason
