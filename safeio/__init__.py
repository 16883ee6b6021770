"""File-system helpers shared by every package that writes outputs (classifier, pipeline): atomic writes,
the cache directory.

Nothing here knows about audio or classification; it sits below both packages so neither imports the other
for it.
"""
