"""Command-line fix-up so the paper's sweep commands work verbatim.

Hydra 1.3 parses `overrides` as one argparse positional (nargs="*"), so with Python 3.11's
argparse an option between overrides splits them and the second group is rejected:
`python -m xlexp +exp=scaling -m data_size=32,256,2k,8k` fails with "unrecognized arguments:
data_size=32,256,2k,8k". `--multirun` is a plain flag, so moving it in front of the overrides
changes nothing else.
"""

from __future__ import annotations

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
