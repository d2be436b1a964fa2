"""FewStep Token Merge: fewer attention tokens in a UNet's high-resolution levels, or in a
Flux DiT's blocks.

Pure: merge.py (ToDo key/value downsampling, also of a span of a DiT's joint sequence, ToMe
bipartite merging with a seeded partition), settings.py (the node's settings, their check,
level and block-group selection). Hooks: hooks.py (an attn1 patch for ToDo, object patches
on transformer blocks' `forward` for ToMe, an OUTER_SAMPLE wrapper for the run's sigma
window), dit.py (ToDo on Flux through the attention override slot).
"""
