"""Experiments behind the manual's figures and numbers. Each is a module with a ``run`` function that returns its
results and a command that reruns it; the book build of a later issue caches and inserts them."""
