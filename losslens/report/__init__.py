"""Reporters: turn a Frame (and, once analysed, its events and findings) into output.

Only `terminal.py` and the CLI import rich; the others return strings.
"""
