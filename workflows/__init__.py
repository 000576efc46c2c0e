"""Workflow modules stay light: they import temporalio and their own types, nothing heavy.

The sandbox re-imports a workflow module on every run, so sqlmodel, fastapi or aiosmtplib at the
top of one would cost seconds per run on a small machine. Activities are referenced by name.
"""
