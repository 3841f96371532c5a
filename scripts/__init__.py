"""Maintenance scripts of a mmpipe checkout. Not part of the installed package: ``pip install``
leaves this folder out, and nothing under ``pipeline``, ``extractors``, ``mmlatch`` or ``flows``
imports it."""
