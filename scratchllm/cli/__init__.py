"""The ``scratchllm`` command line: ``main.py`` builds the parser, one module per stage adds its subcommands.

This package file imports nothing, so that importing one stage's module (``scratchllm.cli.demo``) does not import
every other stage: the manual's experiments key their cached results by exactly what they import. Nothing in the
package imports the CLI.
"""
