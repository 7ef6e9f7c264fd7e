"""`python -m xlexp.build_xl`: the XL-AlpacaEval builder's command
(xlexp/evaluate/build_xl_command.py)."""

from xlexp.evaluate.build_xl_command import main

if __name__ == "__main__":
    raise SystemExit(main())
