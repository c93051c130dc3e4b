"""Allows ``python -m scratchllm ...`` as a synonym of the ``scratchllm`` console script."""

from scratchllm.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
