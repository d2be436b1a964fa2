"""FewStep Token Merge: fewer attention tokens in a UNet's high-resolution levels.

Pure: merge.py (ToDo key/value downsampling, ToMe bipartite merging with a seeded
partition), settings.py (the node's settings, their check, level selection). Hooks:
hooks.py (an attn1 patch for ToDo, object patches on transformer blocks' `forward` for
ToMe, an OUTER_SAMPLE wrapper for the run's sigma window).
"""
