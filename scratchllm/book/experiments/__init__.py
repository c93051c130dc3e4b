"""Experiments behind the manual's figures; each writes JSON results, a Markdown table and a PNG plot."""
