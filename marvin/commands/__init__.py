"""Every command Marvin knows, one module per group; `marvin.commands.catalog` lists them.

This package imports nothing itself, so that `marvin.spec` and the policies can import its
modules without pulling in every command.
"""
